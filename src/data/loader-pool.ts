/**
 * The data-loading side of a worker process: a piscina pool of threads that build batches, and a prefetch queue
 * so that the batch of the next step is usually ready before the step starts.
 */
import type { Logger } from 'pino';
import { Piscina } from 'piscina';
import type { RunConfig } from '../config/types.js';
import { RingtrainError, type ErrorCode } from '../errors.js';
import type { DatasetInfo, Split } from '../tasks/api.js';
import type { LoaderFailure, LoaderRequest, LoaderThreadData } from './loader-thread.js';

/** A batch that was requested ahead of the step that needs it. */
interface Pending {
  key: string;
  indices: readonly number[];
  batch: Promise<unknown>;
}

/**
 * Builds batches in worker threads. `prefetch(key, ...)` starts building a batch; `take(key, ...)` returns it,
 * waiting only when it is not ready yet. Keys are the caller's (a step number), and a key asked for with other
 * indices than it was prefetched with is rebuilt, so a stale prefetch never trains on the wrong examples.
 */
export class LoaderPool {
  private readonly pending = new Map<string, Pending>();

  private constructor(
    private readonly pool: Piscina,
    private readonly logger: Logger,
  ) {}

  /** Starts `config.data.loaderThreads` loading threads for `config.task`. */
  static start(config: RunConfig, logger: Logger): LoaderPool {
    const threads = config.data.loaderThreads;
    const pool = new Piscina({
      filename: new URL('./loader-thread.js', import.meta.url).href,
      workerData: { config } satisfies LoaderThreadData,
      minThreads: threads,
      maxThreads: threads,
      // The thread keeps its loaded data for the whole run, so it must not be retired when idle.
      idleTimeout: Number.MAX_SAFE_INTEGER,
    });
    logger.info({ threads, task: config.task }, 'data-loading threads started');
    return new LoaderPool(pool, logger);
  }

  /** Loads the data in a loading thread and returns its sizes and facts. */
  async describe(): Promise<DatasetInfo> {
    return (await this.run({ kind: 'describe' })) as DatasetInfo;
  }

  /** Starts building the batch of `indices` under `key` unless it is already under way. */
  prefetch(key: string, split: Split, indices: readonly number[]): void {
    if (this.pending.has(key)) return;
    const batch = this.run({ kind: 'batch', split, indices: [...indices] });
    // A prefetched batch that is never taken (the run stopped) must not raise an unhandled rejection.
    batch.catch(() => {});
    this.pending.set(key, { key, indices, batch });
  }

  /** Returns the batch of `indices`, using the one prefetched under `key` when its indices match. */
  async take(key: string, split: Split, indices: readonly number[]): Promise<unknown> {
    const pending = this.pending.get(key);
    this.pending.delete(key);
    if (pending !== undefined && sameIndices(pending.indices, indices)) return pending.batch;
    if (pending !== undefined) this.logger.debug({ key }, 'prefetched batch had other indices; rebuilding');
    return this.run({ kind: 'batch', split, indices: [...indices] });
  }

  /** Stops the loading threads. */
  async close(): Promise<void> {
    this.pending.clear();
    await this.pool.destroy();
    this.logger.debug('data-loading threads stopped');
  }

  private async run(request: LoaderRequest): Promise<unknown> {
    const result = (await this.pool.run(request)) as unknown;
    if (typeof result === 'object' && result !== null && 'loaderFailure' in result) {
      const { code, message, stack } = (result as LoaderFailure).loaderFailure;
      if (code !== null && code.startsWith('RINGTRAIN_ERR_')) throw new RingtrainError(code as ErrorCode, message);
      const error = new Error(`data loading failed: ${message}`);
      error.stack = stack;
      throw error;
    }
    return result;
  }
}

function sameIndices(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((value, index) => value === b[index]);
}
