import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { LaunchOptions } from './args.js';
import { isUserErrorCode } from '../errors.js';

const distRoot = fileURLToPath(new URL('../../', import.meta.url));
const coordinatorEntry = join(distRoot, 'coordinator', 'main.js');
const workerEntry = join(distRoot, 'worker', 'main.js');

/** How long workers may take to exit after the coordinator has finished, before they are killed. */
const WORKER_EXIT_GRACE_MS = 10_000;

/** How long a worker may take to exit after SIGTERM before it is killed with SIGKILL. */
const WORKER_TERMINATE_GRACE_MS = 2_000;

/** The coordinator's exit code after a requested stop (it checkpointed first). */
const COORDINATOR_EXIT_STOPPED = 130;

/** Shared between the launcher's signal handler and the running attempt. */
export interface StopControl {
  /** SIGINT and SIGTERM received so far. */
  signalCount: number;
  /** Called on every signal; the running attempt replaces it. */
  onSignal: (signal: NodeJS.Signals) => void;
}

/** The outcome of one attempt: a coordinator and its workers. */
export type AttemptOutcome =
  | { kind: 'finished' }
  | { kind: 'stopped'; checkpoint: string | null }
  | { kind: 'failed'; reason: string; userError?: { code: string; message: string } };

/** Inputs of runAttempt for one worker group. */
export interface AttemptPlan {
  options: LaunchOptions;
  runDir: string;
  configFile: string;
  /** 0 for the first attempt; each restart adds one. */
  attempt: number;
  resumeFile: string | null;
  useGpus: boolean;
  stop: StopControl;
  logger: Logger;
}

/** Coordinator-to-launcher IPC messages. */
type CoordinatorNotice =
  | { type: 'listening'; url: string }
  | { type: 'failed'; code: string; message: string; activity: string }
  | { type: 'stopped'; step: number; checkpoint: string | null };

/**
 * Starts a coordinator and the workers of this node, waits until the coordinator exits and every worker is gone,
 * and returns how the attempt ended. A worker that exits abnormally is reported to the coordinator, which fails
 * the run. Workers still running 10 s after the coordinator exited are killed, so no process outlives it.
 */
export async function runAttempt(plan: AttemptPlan): Promise<AttemptOutcome> {
  const { options, logger } = plan;
  const baseEnvironment = attemptEnvironment(plan);

  const children = new Set<ChildProcess>();
  const coordinator = fork(coordinatorEntry, [], {
    env: {
      ...baseEnvironment,
      RINGTRAIN_NNODES: String(options.nodeCount),
      RINGTRAIN_COORDINATOR_HOST: options.coordinator?.host ?? '',
      RINGTRAIN_COORDINATOR_PORT: options.coordinator === null ? '' : String(options.coordinator.port),
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(coordinator);
  // An IPC send can race with the coordinator's exit; the exit itself is handled below, so only log it.
  coordinator.on('error', (error) => logger.debug({ err: error }, 'message to the coordinator not delivered'));
  const notifyCoordinator = (message: object): void => {
    if (!coordinator.connected) return;
    coordinator.send(message, (error) => {
      if (error !== null) logger.debug({ err: error }, 'message to the coordinator not delivered');
    });
  };

  let failure: string | null = null;
  let failureCode: string | null = null;
  let stoppedCheckpoint: string | null = null;
  let resolveUrl: (url: string | null) => void = () => {};
  const listening = new Promise<string | null>((resolve) => (resolveUrl = resolve));
  coordinator.on('message', (notice: CoordinatorNotice) => {
    if (notice.type === 'listening') resolveUrl(notice.url);
    if (notice.type === 'failed') {
      failure = notice.message;
      failureCode = notice.code;
    }
    if (notice.type === 'stopped') stoppedCheckpoint = notice.checkpoint;
  });
  const coordinatorExit = new Promise<number>((resolve) => {
    coordinator.once('exit', (code, signal) => {
      children.delete(coordinator);
      resolveUrl(null);
      resolve(code ?? (signal !== null ? 1 : 0));
    });
  });

  plan.stop.onSignal = (signal) => {
    if (plan.stop.signalCount === 1 && coordinator.connected) {
      notifyCoordinator({ type: 'stop', signal });
      return;
    }
    for (const child of children) child.kill('SIGKILL');
  };

  const url = await listening;
  if (url === null) {
    return { kind: 'failed', reason: `the coordinator exited with code ${await coordinatorExit} before it started listening` };
  }

  let userError: { code: string; message: string } | null = null;
  const workers = spawnWorkers(
    plan,
    baseEnvironment,
    url,
    children,
    (localRank, code, signal) => notifyCoordinator({ type: 'workerExited', node: options.nodeRank, localRank, code, signal }),
    (failure) => {
      // A config or data error fails every worker the same way and no restart can fix it, so stop at the first.
      if (userError !== null) return;
      userError = failure;
      coordinator.kill('SIGTERM');
    },
  );

  const exitCode = await coordinatorExit;
  await waitForWorkers(workers, logger);
  plan.stop.onSignal = () => {};
  if (userError !== null) {
    const failure = userError as { code: string; message: string };
    return { kind: 'failed', reason: failure.message, userError: failure };
  }

  if (exitCode === 0) return { kind: 'finished' };
  // The coordinator finds some data problems itself, e.g. a training split smaller than one global batch.
  if (failure !== null && failureCode !== null && isUserErrorCode(failureCode)) {
    return { kind: 'failed', reason: failure, userError: { code: failureCode, message: failure } };
  }
  if (exitCode === COORDINATOR_EXIT_STOPPED) return { kind: 'stopped', checkpoint: stoppedCheckpoint };
  return { kind: 'failed', reason: failure ?? `the coordinator exited with code ${exitCode}` };
}

/** Returns the environment every process of one attempt starts with. */
function attemptEnvironment(plan: AttemptPlan): NodeJS.ProcessEnv {
  return {
    ...process.env,
    RINGTRAIN_RUN_ID: plan.options.runId,
    RINGTRAIN_RUN_DIR: plan.runDir,
    RINGTRAIN_CONFIG_FILE: plan.configFile,
    RINGTRAIN_RESTART_COUNT: String(plan.attempt),
    RINGTRAIN_RESUME_FILE: plan.resumeFile ?? '',
    RINGTRAIN_LOG_TO: plan.options.logTo ?? '',
  };
}

/**
 * Starts this node's workers. `onAbnormalExit` hears of every worker that exits with a non-zero code or a
 * signal, after the exit is logged.
 */
function spawnWorkers(
  plan: AttemptPlan,
  baseEnvironment: NodeJS.ProcessEnv,
  coordinatorUrl: string,
  children: Set<ChildProcess>,
  onAbnormalExit: (localRank: number, code: number | null, signal: NodeJS.Signals | null) => void,
  onStartFailure: (failure: { code: string; message: string }) => void = () => {},
): ChildProcess[] {
  const { options, logger } = plan;
  const singleNode = options.nodeCount === 1;
  const workers: ChildProcess[] = [];
  for (let localRank = 0; localRank < options.workers; localRank++) {
    const worker = fork(workerEntry, [], {
      execArgv: workerExecArgv(process.execArgv),
      env: {
        ...baseEnvironment,
        RINGTRAIN_COORDINATOR_URL: coordinatorUrl,
        RINGTRAIN_NODE: String(options.nodeRank),
        RINGTRAIN_NODE_WORKERS: String(options.workers),
        RINGTRAIN_BIND: options.bind,
        RINGTRAIN_ADVERTISE: options.advertise,
        LOCAL_RANK: String(localRank),
        // Across nodes the global rank and world size are known only after rendezvous; the worker sets them then.
        ...(singleNode ? { RANK: String(localRank), WORLD_SIZE: String(options.workers) } : {}),
        // NOTE: not yet run on a GPU. One device per worker, as torchrun users expect.
        ...(plan.useGpus ? { CUDA_VISIBLE_DEVICES: String(localRank) } : {}),
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.add(worker);
    workers.push(worker);
    worker.on('message', (message: { type?: unknown; code?: unknown; message?: unknown }) => {
      if (message?.type === 'startFailed' && typeof message.code === 'string' && typeof message.message === 'string') {
        onStartFailure({ code: message.code, message: message.message });
      }
    });
    worker.once('exit', (code, signal) => {
      children.delete(worker);
      if (code === 0) return;
      logger.error({ localRank, pid: worker.pid, code, signal, attempt: plan.attempt }, 'worker process ended abnormally');
      onAbnormalExit(localRank, code, signal);
    });
  }
  return workers;
}

/**
 * Runs this node's workers against the coordinator of node 0 (nodes 1 and up start no coordinator), and returns
 * how they ended: finished when every worker exits with 0.
 */
export async function runRemoteAttempt(plan: AttemptPlan): Promise<AttemptOutcome> {
  const { options } = plan;
  const coordinator = options.coordinator as { host: string; port: number };
  const baseEnvironment = attemptEnvironment(plan);
  const children = new Set<ChildProcess>();
  const failures: string[] = [];
  plan.stop.onSignal = () => {
    for (const child of children) child.kill(plan.stop.signalCount === 1 ? 'SIGTERM' : 'SIGKILL');
  };
  const workers = spawnWorkers(plan, baseEnvironment, `ws://${coordinator.host}:${coordinator.port}`, children, (localRank, code, signal) => {
    failures.push(`local rank ${localRank} ${signal !== null ? `was killed by ${signal}` : `exited with code ${code}`}`);
  });
  await Promise.all(workers.map((worker) => new Promise((resolve) => (worker.exitCode !== null || worker.signalCode !== null ? resolve(null) : worker.once('exit', resolve)))));
  plan.stop.onSignal = () => {};
  if (failures.length === 0) return { kind: 'finished' };
  if (plan.stop.signalCount > 0) return { kind: 'stopped', checkpoint: null };
  return { kind: 'failed', reason: `workers of node ${options.nodeRank} failed: ${failures.join('; ')}` };
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
    logger.warn({ pids }, `workers still running ${WORKER_EXIT_GRACE_MS} ms after the coordinator exited; terminating them`);
    // SIGTERM first lets a worker write its buffered log lines to stderr; a hung one needs SIGKILL.
    for (const worker of running) worker.kill('SIGTERM');
    const killTimer = setTimeout(() => {
      for (const worker of running) worker.kill('SIGKILL');
    }, WORKER_TERMINATE_GRACE_MS);
    await allExited;
    clearTimeout(killTimer);
  }
}

/**
 * V8 flags for worker processes. A training step leaves several megabytes of short-lived tensors and typed
 * arrays in the old generation. With V8's default starting limit this triggered a full mark-compact about once
 * per step (106 in a 30-step run of the default job), often during the all-reduce, which then waited for the
 * slower rank's collector. A 256 MB starting old generation cut that to 29 with the same memory ceiling.
 */
const WORKER_V8_FLAGS = ['--initial-old-space-size=256'];

/** Returns the Node options of a worker: the launcher's own, plus WORKER_V8_FLAGS unless they set the same flag. */
export function workerExecArgv(launcherExecArgv: readonly string[]): string[] {
  const extra = WORKER_V8_FLAGS.filter((flag) => !launcherExecArgv.some((given) => given.startsWith(flag.split('=')[0] as string)));
  return [...launcherExecArgv, ...extra];
}

