/**
 * One data-loading thread of a worker process (run by piscina). It imports the task module, loads the data once,
 * and builds batches on request. Every typed array that owns its whole buffer is transferred to the training
 * thread instead of copied.
 */
import { workerData } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { RunConfig } from '../config/types.js';
import type { AnyTaskDefinition, DatasetInfo, Split } from '../tasks/api.js';
import { importTask } from '../tasks/registry.js';
import { ownedBuffers } from './transfer.js';

/** A request to a loading thread. */
export type LoaderRequest = { kind: 'describe' } | { kind: 'batch'; split: Split; indices: number[] };

/** The data the pool passes to each thread when it starts. */
export interface LoaderThreadData {
  config: RunConfig;
}

const { config } = workerData as LoaderThreadData;
let loaded: Promise<{ definition: AnyTaskDefinition; data: unknown }> | null = null;

function load(): Promise<{ definition: AnyTaskDefinition; data: unknown }> {
  loaded ??= (async () => {
    const definition = await importTask(config.task);
    const data = await definition.load({ config, options: config.taskOptions, seed: config.seed });
    return { definition, data };
  })();
  return loaded;
}

/** A failure inside the thread, returned as a value so that its error code survives the thread boundary. */
export interface LoaderFailure {
  loaderFailure: { code: string | null; message: string; stack: string | undefined };
}

/** Handles one request: the dataset facts, or one batch wrapped for transfer. */
export default async function handle(request: LoaderRequest): Promise<unknown> {
  try {
    return await answer(request);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const failure: LoaderFailure = {
      loaderFailure: { code: typeof code === 'string' ? code : null, message: (error as Error).message ?? String(error), stack: (error as Error).stack },
    };
    return failure;
  }
}

async function answer(request: LoaderRequest): Promise<unknown> {
  const { definition, data } = await load();
  if (request.kind === 'describe') {
    const info: DatasetInfo = definition.describe(data);
    return info;
  }
  const batch = definition.batch(data, request.split, request.indices);
  return Piscina.move({
    [Piscina.transferableSymbol]: ownedBuffers(batch),
    [Piscina.valueSymbol]: batch,
  } as never);
}
