import { createWriteStream, type WriteStream } from 'node:fs';
import type { LineDestination } from './logger.js';
import { formatLogLine } from './pretty.js';

/**
 * The merged log of a run: every JSON line from the coordinator and the workers is appended unchanged to
 * `<run-dir>/logs.jsonl` and shown to a person on the terminal in a readable form.
 */
export class RunLogSink implements LineDestination {
  private readonly file: WriteStream;
  /** Prints one formatted line; the progress display swaps this to keep its bar below the log. */
  printLine: (text: string) => void = (text) => process.stdout.write(text + '\n');

  constructor(path: string) {
    this.file = createWriteStream(path, { flags: 'a' });
  }

  write(line: string): void {
    const complete = line.endsWith('\n') ? line : line + '\n';
    this.file.write(complete);
    this.printLine(formatLogLine(complete));
  }

  /** Flushes and closes the log file. */
  close(): Promise<void> {
    return new Promise((resolve) => this.file.end(resolve));
  }
}
