/**
 * The coordinator process: rendezvous, step planning, checksum checks, evaluation and the merged log. It never
 * carries gradients. The launcher forks it with an IPC channel and this environment:
 *   RINGTRAIN_RUN_ID, RINGTRAIN_RUN_DIR, RINGTRAIN_CONFIG_FILE (the resolved config),
 *   RINGTRAIN_NNODES (nodes in the run, default 1), RINGTRAIN_COORDINATOR_HOST and RINGTRAIN_COORDINATOR_PORT
 *   (where to listen, default coordinator.host and coordinator.port of the config).
 *   RINGTRAIN_RESUME_FILE (optional checkpoint to resume from), RINGTRAIN_LOG_TO (optional aggregator URL).
 * Over IPC it sends the launcher `listening` {url} once workers can connect, `failed` {code, message, activity}
 * before exiting with 1, and `stopped` {step, checkpoint} before exiting with 130 after a requested stop. It
 * accepts `workerExited` {node, localRank, code, signal}, so a dead worker fails the run at once, and `stop`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readCheckpoint } from '../src/checkpoint/store.js';
import { validateConfig } from '../src/config/validate.js';
import { batchesPerEpoch } from '../src/data/batch-plan.js';
import { RingtrainError } from '../src/errors.js';
import { createLogger } from '../src/log/logger.js';
import { RunLogSink } from '../src/log/run-log-sink.js';
import { rendezvous, welcomeMessages } from './rendezvous.js';
import { plannedSteps, runTraining } from './training-run.js';
import { WorkerHub } from './worker-hub.js';

/** Messages from the launcher: a worker process ended, or the user asked the run to stop. */
type LauncherNotice =
  | { type: 'workerExited'; node: number; localRank: number; code: number | null; signal: string | null }
  | { type: 'stop'; signal: string };

/** Exit code of a coordinator whose run stopped on request after writing a checkpoint. */
export const EXIT_STOPPED = 130;

function requireEnvironment(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') {
    process.stderr.write(`ringtrain coordinator: ${name} is not set; start the coordinator with 'npm run launch'\n`);
    process.exit(2);
  }
  return value;
}

/** Returns the number of steps a checkpoint has completed, from its sampler position. */
async function resumeStep(file: string, perEpoch: (trainSize: number) => number, trainSize: number): Promise<number> {
  const checkpoint = await readCheckpoint(file);
  return checkpoint.sampler.epoch * perEpoch(trainSize) + checkpoint.sampler.nextBatch;
}

async function main(): Promise<number> {
  const runId = requireEnvironment('RINGTRAIN_RUN_ID');
  const runDir = requireEnvironment('RINGTRAIN_RUN_DIR');
  const config = validateConfig(JSON.parse(readFileSync(requireEnvironment('RINGTRAIN_CONFIG_FILE'), 'utf8')));
  const nodeCount = Number(process.env.RINGTRAIN_NNODES ?? '1');
  const listenHost = process.env.RINGTRAIN_COORDINATOR_HOST || config.coordinator.host;
  const listenPort = Number(process.env.RINGTRAIN_COORDINATOR_PORT || config.coordinator.port);
  const resumeFile = process.env.RINGTRAIN_RESUME_FILE ?? '';

  const sink = new RunLogSink(join(runDir, 'logs.jsonl'));
  const logger = createLogger({ run: runId, node: 0, rank: null, role: 'coordinator' }, sink);
  // Worker lines arrive through this sink too, so one shipper streams the lines of every process.
  const logTo = process.env.RINGTRAIN_LOG_TO ?? '';
  if (logTo !== '') sink.streamTo(logTo, process.env.RINGTRAIN_TOKEN ?? null, logger);
  const token = process.env.RINGTRAIN_TOKEN === undefined || process.env.RINGTRAIN_TOKEN === '' ? null : process.env.RINGTRAIN_TOKEN;
  const hub = await WorkerHub.listen(listenHost, listenPort, (line) => sink.write(line), logger, token);
  hub.stallWarnMs = config.health.stallWarnMs;
  const url = `ws://${listenHost}:${hub.address.port}`;
  logger.info({ url, nodeCount, runDir, resumeFile: resumeFile === '' ? null : resumeFile }, 'coordinator listening');

  let stopRequested = false;
  process.on('SIGINT', () => logger.info('SIGINT ignored; the launcher stops the run'));
  process.on('message', (notice: LauncherNotice) => {
    if (notice.type === 'stop') {
      stopRequested = true;
      logger.warn({ signal: notice.signal }, 'stop requested; checkpointing at the next step boundary');
      return;
    }
    if (notice.type !== 'workerExited') return;
    const how = notice.signal !== null ? `was killed by ${notice.signal}` : `exited with code ${notice.code}`;
    hub.failWorkerExit(notice.node, notice.localRank, how);
  });
  process.send?.({ type: 'listening', url });

  let exitCode = 0;
  try {
    const workers = await rendezvous(hub, { runId, nodeCount }, config.coordinator.joinTimeoutMs, logger);
    hub.monitorHeartbeats(config.health.heartbeatTimeoutMs);
    const trainSize = (workers[0] as (typeof workers)[number]).join.trainSize;
    const totalSteps = plannedSteps(config, trainSize);
    const startStep = resumeFile === '' ? 0 : await resumeStep(resumeFile, (size) => batchesPerEpoch(size, config.train.globalBatchSize, config.data.lastBatch), trainSize);
    welcomeMessages(workers, totalSteps).forEach((welcome) => hub.send(welcome.rank, welcome));
    await hub.collect('ready');
    logger.info({ worldSize: workers.length }, 'all ring links connected');

    const summary = await runTraining(hub, workers, config, runDir, { step: startStep }, () => stopRequested, sink, logger);
    if (summary.stopped) {
      exitCode = EXIT_STOPPED;
      hub.broadcast({ type: 'shutdown', exitCode: 0, reason: 'stopped on request' });
      process.send?.({ type: 'stopped', step: summary.steps, checkpoint: summary.lastCheckpoint });
    } else {
      logger.info(
        {
          steps: summary.steps,
          finalLoss: summary.finalLoss,
          trainSeconds: summary.trainSeconds,
          skippedSteps: summary.skippedSteps,
          accuracy: summary.report?.accuracy,
          runDir,
        },
        'run finished',
      );
      hub.broadcast({ type: 'shutdown', exitCode: 0, reason: 'run finished' });
    }
  } catch (error) {
    exitCode = 1;
    const code = error instanceof RingtrainError ? error.code : 'RINGTRAIN_ERR_WORKER_FAILED';
    const message = (error as Error).message;
    // A RingtrainError's message is the whole story; a stack trace helps only for unexpected errors.
    const details = error instanceof RingtrainError ? {} : { err: error };
    logger.error({ code, activity: hub.currentActivity, ...details }, `run failed: ${message}`);
    process.send?.({ type: 'failed', code, message, activity: hub.currentActivity });
    hub.broadcast({ type: 'shutdown', exitCode: 1, reason: message });
  }

  await hub.close();
  await sink.close();
  return exitCode;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`ringtrain coordinator failed to start: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  },
);
