import { createWriteStream, type WriteStream } from 'node:fs';
import type { Logger } from 'pino';
import type { LineDestination } from './logger.js';
import { LogShipper } from './shipper.js';
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

  private shipper: LogShipper | null = null;

  write(line: string): void {
    const complete = line.endsWith('\n') ? line : line + '\n';
    this.file.write(complete);
    this.shipper?.write(complete);
    this.printLine(formatLogLine(complete));
  }

  /**
   * Also streams every line to a log aggregator at `url` (`npm run aggregator`), presenting `token` when given.
   * The shipper buffers in a bounded queue and reconnects with backoff, so a lost aggregator never slows the run.
   */
  streamTo(url: string, token: string | null, logger?: Logger): void {
    this.shipper = new LogShipper({ url, token: token ?? undefined, logger });
  }

  /** Sends what the aggregator can still take (for at most 2 s), then flushes and closes the log file. */
  async close(): Promise<void> {
    await this.shipper?.close(2000);
    await new Promise((resolve) => this.file.end(resolve));
  }
}
