/**
 * The coordinator process: rendezvous, step planning, checksum checks, evaluation and the merged log. It never
 * carries gradients. The launcher forks it with an IPC channel and this environment:
 *   RINGTRAIN_RUN_ID, RINGTRAIN_RUN_DIR, RINGTRAIN_CONFIG_FILE (the resolved config),
 *   RINGTRAIN_WORKERS_PER_NODE (comma-separated worker counts, one per node).
 * It sends the launcher `{ type: 'listening', url }` once workers can connect, and accepts
 * `{ type: 'workerExited', node, localRank, code, signal }` so that a dead worker fails the run at once.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { validateConfig } from '../src/config/validate.js';
import { RingtrainError } from '../src/errors.js';
import { createLogger } from '../src/log/logger.js';
import { RunLogSink } from '../src/log/run-log-sink.js';
import { rendezvous, welcomeMessages } from './rendezvous.js';
import { plannedSteps, runTraining } from './training-run.js';
import { WorkerHub } from './worker-hub.js';

/** Message from the launcher about a worker process that ended. */
interface WorkerExitedNotice {
  type: 'workerExited';
  node: number;
  localRank: number;
  code: number | null;
  signal: string | null;
}

function requireEnvironment(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') {
    process.stderr.write(`ringtrain coordinator: ${name} is not set; start the coordinator with 'npm run launch'\n`);
    process.exit(2);
  }
  return value;
}

async function main(): Promise<number> {
  const runId = requireEnvironment('RINGTRAIN_RUN_ID');
  const runDir = requireEnvironment('RINGTRAIN_RUN_DIR');
  const config = validateConfig(JSON.parse(readFileSync(requireEnvironment('RINGTRAIN_CONFIG_FILE'), 'utf8')));
  const workersPerNode = requireEnvironment('RINGTRAIN_WORKERS_PER_NODE').split(',').map(Number);

  const sink = new RunLogSink(join(runDir, 'logs.jsonl'));
  const logger = createLogger({ run: runId, node: 0, rank: null, role: 'coordinator' }, sink);
  const hub = await WorkerHub.listen(config.coordinator.host, config.coordinator.port, (line) => sink.write(line), logger);
  const url = `ws://${config.coordinator.host}:${hub.address.port}`;
  logger.info({ url, workersPerNode, runDir }, 'coordinator listening');

  process.on('message', (notice: WorkerExitedNotice) => {
    if (notice.type !== 'workerExited') return;
    const how = notice.signal !== null ? `was killed by ${notice.signal}` : `exited with code ${notice.code}`;
    hub.fail(new RingtrainError('RINGTRAIN_ERR_WORKER_FAILED', `worker on node ${notice.node} local rank ${notice.localRank} ${how}`));
  });
  process.send?.({ type: 'listening', url });

  let exitCode = 0;
  try {
    const workers = await rendezvous(hub, { runId, workersPerNode }, config.coordinator.joinTimeoutMs, logger);
    const totalSteps = plannedSteps(config, (workers[0] as (typeof workers)[number]).join.trainSize);
    welcomeMessages(workers, totalSteps).forEach((welcome) => hub.send(welcome.rank, welcome));
    await hub.collect('ready');
    logger.info({ worldSize: workers.length }, 'all ring links connected');

    const summary = await runTraining(hub, workers, config, runDir, sink, logger);
    logger.info(
      { steps: summary.steps, finalLoss: summary.finalLoss, trainSeconds: summary.trainSeconds, accuracy: summary.report.accuracy, runDir },
      'run finished',
    );
    hub.broadcast({ type: 'shutdown', exitCode: 0, reason: 'run finished' });
  } catch (error) {
    exitCode = 1;
    const code = error instanceof RingtrainError ? error.code : 'RINGTRAIN_ERR_WORKER_FAILED';
    logger.error({ code, err: error }, `run failed: ${(error as Error).message}`);
    hub.broadcast({ type: 'shutdown', exitCode: 1, reason: (error as Error).message });
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
