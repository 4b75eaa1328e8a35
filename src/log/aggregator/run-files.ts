/** The aggregator's output: one append-only JSONL file per run, opened on first use and closed when idle. */
import { createHash } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';

/** File name stem of lines whose JSON has no usable `run` field. */
export const UNKNOWN_RUN_FILE = 'unknown-run';

const MAX_STEM_CHARACTERS = 100;
/** Files without a line for this long are closed, so a long-lived aggregator does not hold one descriptor per past run. */
const IDLE_CLOSE_MS = 60_000;

/**
 * Returns the file name stem for a run id: the id itself when it contains only letters, digits, '.', '_' and
 * '-', does not start with '.', and is at most 100 characters. Any other id is rewritten to those characters
 * and suffixed with 8 hex digits of its SHA-256, so distinct ids never share a file and no id leaves the directory.
 */
export function runFileStem(run: string): string {
  const safe = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(run) && run.length <= MAX_STEM_CHARACTERS && run !== UNKNOWN_RUN_FILE;
  if (safe) return run;
  const hash = createHash('sha256').update(run).digest('hex').slice(0, 8);
  const readable = run.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_').slice(0, MAX_STEM_CHARACTERS);
  return `${readable}-${hash}`;
}

interface OpenFile {
  stream: WriteStream;
  lastWriteMs: number;
  /** Callbacks waiting for the stream's buffer to empty. One 'drain' listener serves them all. */
  drainWaiters: (() => void)[];
}

/** The set of open run files in one output directory. */
export class RunFiles {
  private readonly files = new Map<string, OpenFile>();
  private readonly idleTimer: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly directory: string,
    private readonly logger: Logger,
  ) {
    this.idleTimer = setInterval(() => this.closeIdle(Date.now() - IDLE_CLOSE_MS), IDLE_CLOSE_MS / 2);
    this.idleTimer.unref();
  }

  /** Returns the path that lines of `run` (null: no run field) are written to. */
  pathFor(run: string | null): string {
    return join(this.directory, `${run === null ? UNKNOWN_RUN_FILE : runFileStem(run)}.jsonl`);
  }

  /**
   * Appends `text` (whole lines, each ending in '\n') to the run's file. Returns false when the file's buffer is
   * full. `onDrain` is then called once the buffer has been written, so the caller can pause its input until then.
   */
  append(run: string | null, text: string, onDrain: () => void): boolean {
    if (this.closed) throw new Error(`run files in ${this.directory} are closed; no more lines can be written`);
    const path = this.pathFor(run);
    let file = this.files.get(path);
    if (file === undefined) {
      file = this.open(path);
      this.files.set(path, file);
    }
    file.lastWriteMs = Date.now();
    const accepted = file.stream.write(text);
    if (!accepted) file.drainWaiters.push(onDrain);
    return accepted;
  }

  /** Flushes and closes every file. Later appends throw. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.idleTimer);
    const pending = [...this.files.values()].map((file) => endStream(file.stream));
    this.files.clear();
    await Promise.all(pending);
  }

  private open(path: string): OpenFile {
    const stream = createWriteStream(path, { flags: 'a' });
    const file: OpenFile = { stream, lastWriteMs: 0, drainWaiters: [] };
    const wakeWaiters = (): void => {
      for (const waiter of file.drainWaiters.splice(0)) waiter();
    };
    stream.on('drain', wakeWaiters);
    stream.on('error', (error) => {
      // The stream is unusable after an error. Forgetting it makes the next line reopen the file.
      this.logger.error({ err: error, path }, 'failed to write a run log file; lines written meanwhile may be lost');
      if (this.files.get(path) === file) this.files.delete(path);
      wakeWaiters();
    });
    return file;
  }

  private closeIdle(beforeMs: number): void {
    for (const [path, file] of this.files) {
      if (file.lastWriteMs >= beforeMs) continue;
      this.files.delete(path);
      void endStream(file.stream);
      this.logger.debug({ path }, 'closed idle run log file');
    }
  }
}

function endStream(stream: WriteStream): Promise<void> {
  return new Promise((resolve) => {
    if (stream.destroyed) {
      resolve();
      return;
    }
    stream.once('error', () => resolve());
    stream.end(() => resolve());
  });
}
