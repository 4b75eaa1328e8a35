/**
 * `npm run launch -- [flags]`: resolves the config, creates the run directory, starts the coordinator and one
 * worker process per device, watches them and exits with the run's status. `--help` lists the flags.
 *
 * Each worker sees, like torchrun's workers: RANK, LOCAL_RANK, WORLD_SIZE (single node: RANK = LOCAL_RANK),
 * plus the RINGTRAIN_* variables documented in worker/main.ts.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { RingtrainError } from '../errors.js';
import { createLogger } from '../log/logger.js';
import { RunLogSink } from '../log/run-log-sink.js';
import { helpText, parseLaunchArgs, type LaunchOptions } from './args.js';
import { detectGpus } from './devices.js';

const distRoot = fileURLToPath(new URL('../../', import.meta.url));
const coordinatorEntry = join(distRoot, 'coordinator', 'main.js');
const workerEntry = join(distRoot, 'worker', 'main.js');

/** How long workers may take to exit after the coordinator has finished, before they are killed. */
const WORKER_EXIT_GRACE_MS = 10_000;

function fail(message: string, exitCode: number): never {
  process.stderr.write(`ringtrain: ${message}\n`);
  process.exit(exitCode);
}

function parseOrExit(argv: string[]): LaunchOptions {
  try {
    return parseLaunchArgs(argv);
  } catch (error) {
    if (error instanceof RingtrainError) fail(error.message, 2);
    throw error;
  }
}

async function main(): Promise<number> {
  const options = parseOrExit(process.argv.slice(2));
  if (options.help) {
    process.stdout.write(helpText());
    return 0;
  }

  const runDir = resolve(options.runDir);
  mkdirSync(runDir, { recursive: true });
  const configFile = join(runDir, 'config.json');
  writeFileSync(configFile, JSON.stringify(options.config, null, 2) + '\n');

  const sink = new RunLogSink(join(runDir, 'logs.jsonl'));
  const logger = createLogger({ run: options.runId, node: 0, rank: null, role: 'launcher' }, sink);
  logger.info({ workers: options.workers, config: options.configPath, runDir }, 'launching run');

  const gpus = options.config.backend === 'auto' || options.config.backend === 'tensorflow' ? detectGpus() : { count: 0, reason: `backend '${options.config.backend}' was requested` };
  const useGpus = gpus.count >= options.workers;
  if (!useGpus) {
    logger.info({ reason: gpus.reason, gpusFound: gpus.count }, `no usable GPU for ${options.workers} workers; running them on the CPU`);
  }

  const children = new Set<ChildProcess>();
  const stopChildren = (signal: NodeJS.Signals): void => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  let signalCount = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signalCount++;
    logger.warn({ signal, signalCount }, signalCount === 1 ? 'stopping the run' : 'second signal: killing every process now');
    stopChildren(signalCount === 1 ? 'SIGTERM' : 'SIGKILL');
    if (signalCount > 1) process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const baseEnvironment = {
    ...process.env,
    RINGTRAIN_RUN_ID: options.runId,
    RINGTRAIN_RUN_DIR: runDir,
    RINGTRAIN_CONFIG_FILE: configFile,
  };

  const coordinator = fork(coordinatorEntry, [], {
    env: { ...baseEnvironment, RINGTRAIN_WORKERS_PER_NODE: String(options.workers) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(coordinator);
  const coordinatorExit = new Promise<number>((resolveExit) => {
    coordinator.once('exit', (code, signal) => {
      children.delete(coordinator);
      resolveExit(code ?? (signal !== null ? 1 : 0));
    });
  });

  const url = await waitForListening(coordinator, coordinatorExit);
  if (url === null) {
    logger.error('the coordinator exited before it started listening');
    await sink.close();
    return 1;
  }

  const workers: ChildProcess[] = [];
  for (let localRank = 0; localRank < options.workers; localRank++) {
    const worker = fork(workerEntry, [], {
      env: {
        ...baseEnvironment,
        RINGTRAIN_COORDINATOR_URL: url,
        RINGTRAIN_NODE: '0',
        LOCAL_RANK: String(localRank),
        RANK: String(localRank),
        WORLD_SIZE: String(options.workers),
        // NOTE: not yet run on a GPU. One device per worker, as torchrun users expect.
        ...(useGpus ? { CUDA_VISIBLE_DEVICES: String(localRank) } : {}),
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.add(worker);
    workers.push(worker);
    watchWorker(worker, localRank, coordinator, children, logger);
  }

  const exitCode = await coordinatorExit;
  await waitForWorkers(workers, logger);
  logger.info({ exitCode, runDir }, exitCode === 0 ? 'run complete' : 'run failed');
  await sink.close();
  return signalCount > 0 && exitCode === 0 ? 130 : exitCode;
}

function waitForListening(coordinator: ChildProcess, exited: Promise<number>): Promise<string | null> {
  return new Promise((resolveUrl) => {
    coordinator.on('message', (message: { type?: string; url?: string }) => {
      if (message.type === 'listening' && typeof message.url === 'string') resolveUrl(message.url);
    });
    void exited.then(() => resolveUrl(null));
  });
}

function watchWorker(worker: ChildProcess, localRank: number, coordinator: ChildProcess, children: Set<ChildProcess>, logger: Logger): void {
  worker.once('exit', (code, signal) => {
    children.delete(worker);
    if (code === 0) return;
    logger.error({ localRank, pid: worker.pid, code, signal }, 'worker process ended abnormally');
    if (coordinator.connected) coordinator.send({ type: 'workerExited', node: 0, localRank, code, signal });
  });
}

async function waitForWorkers(workers: readonly ChildProcess[], logger: Logger): Promise<void> {
  const running = workers.filter((worker) => worker.exitCode === null && worker.signalCode === null);
  if (running.length === 0) return;
  const allExited = Promise.all(running.map((worker) => new Promise((done) => worker.once('exit', done))));
  const timedOut = await Promise.race([
    allExited.then(() => false),
    new Promise<boolean>((done) => setTimeout(() => done(true), WORKER_EXIT_GRACE_MS).unref()),
  ]);
  if (timedOut) {
    const pids = running.filter((worker) => worker.exitCode === null).map((worker) => worker.pid);
    logger.warn({ pids }, `workers still running ${WORKER_EXIT_GRACE_MS} ms after the coordinator exited; killing them`);
    for (const worker of running) worker.kill('SIGKILL');
    await allExited;
  }
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => fail((error as Error).stack ?? String(error), 1),
);
