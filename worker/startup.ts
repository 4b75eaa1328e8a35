/**
 * Start-up inputs of a worker: the environment variables the launcher sets (listed in worker/main.ts) and,
 * for a resumed run, the checkpoint whose parameters it loads.
 */
import type { Logger } from 'pino';
import type { RunConfig } from '../src/config/types.js';
import { readCheckpoint } from '../src/checkpoint/store.js';
import { checkCompatible } from '../src/checkpoint/compatibility.js';
import { hashConfig } from '../src/checkpoint/config-hash.js';
import type { AdamWState } from '../src/optim/adamw.js';
import { RingtrainError } from '../src/errors.js';
import type { DataParallelTrainer } from './trainer.js';

/** The launcher's settings for one worker, read from its environment variables. */
export interface WorkerEnvironment {
  coordinatorUrl: string;
  runId: string;
  configFile: string;
  node: number;
  localRank: number;
  /** Workers started by this node's launcher. */
  nodeWorkers: number;
  /** Address the ring listener binds to, and the address ring neighbours dial. */
  bindHost: string | null;
  advertiseHost: string | null;
  /** Checkpoint to resume from, or null for a fresh start. */
  resumeFile: string | null;
}

/**
 * Reads the environment variables the launcher sets. Throws a usage error that names the required ones that
 * are missing, as when the worker is started directly.
 */
export function readEnvironment(): WorkerEnvironment {
  const missing = ['RINGTRAIN_COORDINATOR_URL', 'RINGTRAIN_RUN_ID', 'RINGTRAIN_CONFIG_FILE', 'LOCAL_RANK'].filter(
    (name) => process.env[name] === undefined,
  );
  if (missing.length > 0) {
    throw new RingtrainError(
      'RINGTRAIN_ERR_USAGE',
      `worker environment is missing ${missing.join(', ')}; start workers with 'npm run launch', not directly`,
    );
  }
  return {
    coordinatorUrl: process.env.RINGTRAIN_COORDINATOR_URL as string,
    runId: process.env.RINGTRAIN_RUN_ID as string,
    configFile: process.env.RINGTRAIN_CONFIG_FILE as string,
    node: Number(process.env.RINGTRAIN_NODE ?? '0'),
    localRank: Number(process.env.LOCAL_RANK),
    nodeWorkers: Number(process.env.RINGTRAIN_NODE_WORKERS ?? process.env.WORLD_SIZE ?? '1'),
    bindHost: process.env.RINGTRAIN_BIND === undefined || process.env.RINGTRAIN_BIND === '' ? null : process.env.RINGTRAIN_BIND,
    advertiseHost: process.env.RINGTRAIN_ADVERTISE === undefined || process.env.RINGTRAIN_ADVERTISE === '' ? null : process.env.RINGTRAIN_ADVERTISE,
    resumeFile: process.env.RINGTRAIN_RESUME_FILE === undefined || process.env.RINGTRAIN_RESUME_FILE === '' ? null : process.env.RINGTRAIN_RESUME_FILE,
  };
}

/** Reads the checkpoint to resume from, checks that it fits this model and config, and loads its parameters. */
export async function loadResumeState(file: string, trainer: DataParallelTrainer<unknown>, config: RunConfig, logger: Logger): Promise<{ optimizer: AdamWState }> {
  const checkpoint = await readCheckpoint(file);
  // WORLD_SIZE comes from the launcher; rendezvous confirms it later.
  const worldSize = Number(process.env.WORLD_SIZE ?? checkpoint.worldSize);
  const { notes } = checkCompatible(checkpoint, { specs: trainer.specs, configHash: hashConfig(config), worldSize, source: file });
  trainer.loadParameters(checkpoint.parameters);
  logger.info({ file, step: checkpoint.optimizer.step, sampler: checkpoint.sampler, notes }, 'resuming from checkpoint');
  return { optimizer: checkpoint.optimizer };
}
