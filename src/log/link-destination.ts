import type { LineDestination } from './logger.js';

/** Lines kept while no link is attached; older lines are dropped first and counted. */
const DEFAULT_BUFFER_LINES = 10_000;

/**
 * A pino destination that forwards every line through a link (a worker's control connection to the
 * coordinator). Lines written before the link is attached, or after it is gone, wait in a bounded buffer,
 * and `flushTo` writes whatever is left somewhere else, such as stderr at exit.
 */
export class LinkDestination implements LineDestination {
  private send: ((line: string) => void) | null = null;
  private readonly pending: string[] = [];
  private droppedLines = 0;

  constructor(private readonly maxBufferedLines = DEFAULT_BUFFER_LINES) {}

  write(line: string): void {
    if (this.send !== null) {
      this.send(line);
      return;
    }
    if (this.pending.length >= this.maxBufferedLines) {
      this.pending.shift();
      this.droppedLines++;
    }
    this.pending.push(line);
  }

  /** Starts forwarding through `send`, first the buffered lines in order. */
  attach(send: (line: string) => void): void {
    this.send = send;
    for (const line of this.pending.splice(0)) send(line);
  }

  /** Stops forwarding; later lines are buffered again. */
  detach(): void {
    this.send = null;
  }

  /** Writes the buffered lines to `write` (for example stderr) and empties the buffer. */
  flushTo(write: (text: string) => void): void {
    if (this.droppedLines > 0) write(`ringtrain: ${this.droppedLines} earlier log lines were dropped\n`);
    for (const line of this.pending.splice(0)) write(line.endsWith('\n') ? line : line + '\n');
  }
}
