/**
 * The worker process: one per device. It builds the task, joins the coordinator, connects its ring links and
 * then runs whatever the coordinator sends (steps, checkpoints, evaluation, save) until it receives `shutdown`.
 *
 * Environment contract (set by the launcher):
 *   RINGTRAIN_COORDINATOR_URL  ws://host:port of the coordinator
 *   RINGTRAIN_RUN_ID           run id, also the `run` log binding
 *   RINGTRAIN_CONFIG_FILE      the resolved run config (JSON)
 *   RINGTRAIN_NODE             node index (default 0)
 *   LOCAL_RANK                 index of this worker on its node
 *   RINGTRAIN_NODE_WORKERS     workers started on this node (default WORLD_SIZE)
 *   RINGTRAIN_BIND             address the ring listener binds to (default coordinator.host of the config)
 *   RINGTRAIN_ADVERTISE        address ring neighbours dial (default the bind address)
 *   RINGTRAIN_RESUME_FILE      optional checkpoint to resume from
 *   RINGTRAIN_TOKEN            optional run token, presented on every connection and required on the listener
 */
import { readFileSync } from 'node:fs';
import type { Logger } from 'pino';
import { selectBackend } from '../src/backend/select.js';
import { validateConfig } from '../src/config/validate.js';
import type { RunConfig } from '../src/config/types.js';
import { isUserErrorCode, RingtrainError } from '../src/errors.js';
import { createLogger } from '../src/log/logger.js';
import { LoaderPool } from '../src/data/loader-pool.js';
import { destination, exitSoon, reportStartFailure, writeToStderr } from './exit.js';
import { runWithLoader } from './message-loop.js';
import { readEnvironment, type WorkerEnvironment } from './startup.js';

async function run(environment: WorkerEnvironment, baseLogger: Logger): Promise<number> {
  let logger = baseLogger.child({ rank: null });
  const config: RunConfig = validateConfig(JSON.parse(readFileSync(environment.configFile, 'utf8')));

  const backend = await selectBackend(config.backend, logger);
  const loader = LoaderPool.start(config, logger);
  try {
    return await runWithLoader(environment, baseLogger, logger, config, backend.name, loader);
  } finally {
    await loader.close();
  }
}

async function main(): Promise<void> {
  let environment: WorkerEnvironment;
  try {
    environment = readEnvironment();
  } catch (error) {
    process.stderr.write(`ringtrain worker: ${(error as Error).message}\n`);
    process.exit(2);
  }
  const baseLogger = createLogger({ run: environment.runId, node: environment.node, role: 'worker' }, destination).child({
    localRank: environment.localRank,
  });

  // Ctrl-C reaches every process of the terminal's group; the launcher alone decides how the run stops.
  process.on('SIGINT', () => baseLogger.info('SIGINT ignored; the launcher stops the run'));
  // The launcher sends SIGTERM only to workers that outlived their coordinator; lines not yet sent go to stderr.
  process.on('SIGTERM', () => {
    baseLogger.warn('SIGTERM received; exiting');
    void exitSoon(null, 143);
  });
  process.on('uncaughtException', (error) => {
    baseLogger.fatal({ err: error }, 'uncaught exception in worker');
    void exitSoon(null, 1);
  });

  let code = 1;
  try {
    code = await run(environment, baseLogger);
  } catch (error) {
    // A RingtrainError's message names the cause (a task module, a data file); other errors need their stack.
    const details = error instanceof RingtrainError ? { code: error.code, error: error.message } : { err: error };
    baseLogger.fatal(details, 'worker could not start');
    if (error instanceof RingtrainError && isUserErrorCode(error.code)) await reportStartFailure(error);
  }
  destination.flushTo(writeToStderr);
  process.exit(code);
}

void main();
