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
import { join } from 'node:path';
import type { Logger } from 'pino';
import { selectBackend } from '../src/backend/select.js';
import { PROTOCOL_VERSION, type CoordinatorMessage, type WelcomeMessage } from '../src/comm/protocol.js';
import { Ring } from '../src/comm/ring-allreduce.js';
import { RingListener } from '../src/comm/ring-listener.js';
import { nodeIdentity } from '../src/comm/ring-unix-socket.js';
import { validateConfig } from '../src/config/validate.js';
import type { RunConfig } from '../src/config/types.js';
import { writeSafetensors } from '../src/checkpoint/safetensors.js';
import { readCheckpoint, writeCheckpoint } from '../src/checkpoint/store.js';
import { checkCompatible } from '../src/checkpoint/compatibility.js';
import { hashConfig } from '../src/checkpoint/config-hash.js';
import type { AdamWState } from '../src/optim/adamw.js';
import { firesAt, readFaultPlan, slowdownMs, type FaultPlan } from './fault-injection.js';
import { isUserErrorCode, RingtrainError } from '../src/errors.js';
import { LinkDestination } from '../src/log/link-destination.js';
import { createLogger } from '../src/log/logger.js';
import { formatLogLine } from '../src/log/pretty.js';
import { importTask } from '../src/tasks/registry.js';
import { buildTask } from '../src/tasks/build.js';
import { LoaderPool } from '../src/data/loader-pool.js';
import { mixSeed, SeededRandom } from '../src/random.js';
import { ControlLink } from './control-link.js';
import { DataParallelTrainer, type ShardCollectives } from './trainer.js';
import { checksumFloats } from '../src/kernels/checksum.js';

interface WorkerEnvironment {
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

function readEnvironment(): WorkerEnvironment {
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

const destination = new LinkDestination();

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

async function runWithLoader(
  environment: WorkerEnvironment,
  baseLogger: Logger,
  startLogger: Logger,
  config: RunConfig,
  backendName: string,
  loader: LoaderPool,
): Promise<number> {
  let logger = startLogger;
  const loadStarted = performance.now();
  const [definition, info] = await Promise.all([importTask(config.task), loader.describe()]);
  logger.info({ task: definition.name, trainSize: info.trainSize, evalSize: info.evalSize, seconds: (performance.now() - loadStarted) / 1000, ...info.meta }, 'data loaded');
  // tfjs draws unseeded random values (layer initialisers, dropout masks) from Math.random, so seeding it makes a
  // run repeat for the same --seed. The stream depends on the worker, as independent devices would; rank 0's
  // initial values reach every rank anyway.
  seedMathRandom(mixSeed(config.seed, 0x1a17, environment.node, environment.localRank));
  const task = await buildTask(definition, info, config);
  const trainer = new DataParallelTrainer(task, config, logger);
  logger.info(
    { parameters: trainer.parameterCount, tensors: trainer.specs.length, buffers: task.buffers.length, initialChecksum: trainer.checksum() },
    'model built',
  );
  const resumed = environment.resumeFile === null ? null : await loadResumeState(environment.resumeFile, trainer, config, logger);
  const bindHost = environment.bindHost ?? config.coordinator.host;
  const token = process.env.RINGTRAIN_TOKEN === undefined || process.env.RINGTRAIN_TOKEN === '' ? null : process.env.RINGTRAIN_TOKEN;
  const listener = await RingListener.listen({
    host: bindHost,
    logger,
    token,
    localTransport: config.allreduce.localTransport,
    nodeId: nodeIdentity(environment.node),
  });
  const faults = readFaultPlan();

  const link = await ControlLink.connect(environment.coordinatorUrl, config.coordinator.joinTimeoutMs, logger, token);
  destination.attach((line) => link.send({ type: 'log', line }));
  link.onShutdown = (message) => {
    // A shutdown can arrive while a step is blocked in the all-reduce; exit without waiting for it.
    logger.info({ reason: message.reason, exitCode: message.exitCode }, 'shutdown requested by coordinator');
    void exitSoon(link, message.exitCode);
  };
  link.onClose = () => {
    logger.error('lost the connection to the coordinator; exiting');
    void exitSoon(null, 1);
  };
  const heartbeat = setInterval(() => link.send({ type: 'heartbeat' }), config.health.heartbeatIntervalMs);
  heartbeat.unref();

  link.send({
    type: 'join',
    protocolVersion: PROTOCOL_VERSION,
    runId: environment.runId,
    node: environment.node,
    localRank: environment.localRank,
    nodeWorkers: environment.nodeWorkers,
    pid: process.pid,
    ring: listener.peerAddress(environment.advertiseHost ?? bindHost),
    backend: backendName,
    trainSize: info.trainSize,
    evalSize: info.evalSize,
    trainLengths: info.trainLengths ?? new Uint16Array(0),
    parameterSpecs: trainer.specs.map((spec) => ({ name: spec.name, shape: [...spec.shape] })),
    parameterCount: trainer.parameterCount,
    parameterLayoutHash: trainer.layoutHash(),
    initialChecksum: checksumFloats(trainer.parameters),
  });

  let ring: Ring | null = null;
  let currentStep: number | null = null;
  let rank = -1;
  try {
    for (;;) {
      const message: CoordinatorMessage | null = await link.next();
      if (message === null) return 1;

      switch (message.type) {
        case 'welcome': {
          rank = message.rank;
          // Dropout masks of the training steps then depend on the seed and the global rank only.
          seedMathRandom(mixSeed(config.seed, 0xd207, rank));
          // Like torchrun's workers, code in this process can read its global rank and the world size.
          process.env.RANK = String(rank);
          process.env.WORLD_SIZE = String(message.worldSize);
          logger = baseLogger.child({ rank });
          trainer.setLogger(logger);
          ring = await connectRing(message, listener, environment.runId, config, token, logger);
          const connected = ring;
          // Resumed parameters come from one checkpoint file on every rank, so they are equal already.
          if (resumed === null) {
            await trainer.broadcastFromRoot((buffer) => allReduceFloat32(connected, buffer), rank === 0);
            logger.info({ checksum: trainer.checksum() }, "initial parameters copied from rank 0");
          }
          trainer.startSchedule(message.totalSteps, resumed?.optimizer);
          link.send({ type: 'ready' });
          break;
        }
        case 'step': {
          if (ring === null) throw new RingtrainError('RINGTRAIN_ERR_PROTOCOL', `received step ${message.step} before welcome`);
          currentStep = message.step;
          injectStartOfStepFaults(faults, rank, message.step, logger);
          const activeRing = ring;
          const injectNan = firesAt(faults.nan, rank, message.step);
          for (const next of message.upcoming) {
            if (next.indices.length > 0) loader.prefetch(`train:${next.step}`, 'train', next.indices);
          }
          const waitStarted = performance.now();
          const batch = message.indices.length > 0 ? await loader.take(`train:${message.step}`, 'train', message.indices) : null;
          const dataWaitMs = performance.now() - waitStarted;
          const shard = shardCollectives(activeRing, config);
          const result = await trainer.step(
            batch,
            (buffer, exact) => {
              if (injectNan && !exact) buffer[0] = Number.NaN;
              return exact ? allReduceFloat32(activeRing, buffer) : activeRing.allReduce(buffer);
            },
            {
              isRoot: rank === 0,
              dataWaitMs,
              worldSize: activeRing.worldSize,
              extraComputeMs: slowdownMs(faults, rank, message.indices.length),
              shard:
                shard === undefined || !injectNan
                  ? shard
                  : {
                      ...shard,
                      reduceScatter: (buffer) => {
                        buffer[0] = Number.NaN;
                        return shard.reduceScatter(buffer);
                      },
                    },
            },
          );
          if (firesAt(faults.perturb, rank, message.step)) {
            logger.warn({ step: message.step }, 'fault injection: perturbing one parameter on this rank');
            trainer.parameters[0] = (trainer.parameters[0] as number) + 1e-3;
          }
          link.send({
            type: 'stepDone',
            step: message.step,
            ...result,
            checksum: message.checksum ? trainer.checksum() : undefined,
          });
          break;
        }
        case 'checkpoint': {
          // With sharded optimizer state the coordinator sends `checkpoint` to every rank, because the moments
          // must be gathered from all of them. Only rank 0 writes and replies.
          const shard = ring === null ? undefined : shardCollectives(ring, config);
          if (shard !== undefined) await trainer.gatherOptimizerState(shard);
          if (rank !== 0) break;
          const state = trainer.exportState();
          const written = await writeCheckpoint(
            message.directory,
            {
              specs: trainer.specs,
              parameters: state.parameters,
              optimizer: state.optimizer,
              totalSteps: trainer.totalSteps,
              sampler: message.sampler,
              seed: config.seed,
              worldSize: ring?.worldSize ?? 1,
              config: hashConfig(config),
              metadata: { runId: environment.runId, step: String(message.step), backend: backendName },
            },
            { keep: message.keep, logger },
          );
          link.send({ type: 'checkpointed', step: message.step, path: written.path, bytes: written.bytes });
          break;
        }
        case 'evaluate': {
          // The coordinator evaluates once, after the last step, so the exchange's numbers are final here.
          trainer.logExchangeSummary();
          const counts = await trainer.evaluate(message.indices, (chunk) => loader.take(`eval:${chunk[0]}`, 'eval', chunk));
          link.send({ type: 'evalDone', ...counts, classNames: [...task.classNames], metrics: [...task.metrics] });
          break;
        }
        case 'save': {
          const file = join(message.directory, 'weights.safetensors');
          const weights = trainer.exportWeights();
          await writeSafetensors(file, weights.specs, weights.values, { runId: environment.runId, task: config.task });
          logger.info({ file }, 'final weights written');
          link.send({ type: 'saved', files: [file] });
          break;
        }
        case 'shutdown':
          await ring?.close();
          await listener.close();
          return message.exitCode;
      }
    }
  } catch (error) {
    const code = error instanceof RingtrainError ? error.code : 'RINGTRAIN_ERR_WORKER_FAILED';
    // A RingtrainError's message names the cause; a stack trace helps only for unexpected errors.
    const details = error instanceof RingtrainError ? { code, error: error.message } : { err: error };
    logger.error({ step: currentStep, ...details }, 'worker failed');
    link.send({ type: 'failed', step: currentStep, code, message: (error as Error).message });
    await ring?.close().catch(() => {});
    await listener.close().catch(() => {});
    return 1;
  } finally {
    clearInterval(heartbeat);
    await link.close();
  }
}

/** Reads the checkpoint to resume from, checks that it fits this model and config, and loads its parameters. */
async function loadResumeState(file: string, trainer: DataParallelTrainer<unknown>, config: RunConfig, logger: Logger): Promise<{ optimizer: AdamWState }> {
  const checkpoint = await readCheckpoint(file);
  // WORLD_SIZE comes from the launcher; rendezvous confirms it later.
  const worldSize = Number(process.env.WORLD_SIZE ?? checkpoint.worldSize);
  const { notes } = checkCompatible(checkpoint, { specs: trainer.specs, configHash: hashConfig(config), worldSize, source: file });
  trainer.loadParameters(checkpoint.parameters);
  logger.info({ file, step: checkpoint.optimizer.step, sampler: checkpoint.sampler, notes }, 'resuming from checkpoint');
  return { optimizer: checkpoint.optimizer };
}

function injectStartOfStepFaults(faults: FaultPlan, rank: number, step: number, logger: Logger): void {
  if (firesAt(faults.kill, rank, step)) {
    logger.warn({ step }, 'fault injection: killing this worker with SIGKILL');
    destination.flushTo(writeToStderr);
    process.kill(process.pid, 'SIGKILL');
  }
  if (firesAt(faults.hang, rank, step)) {
    logger.warn({ step }, 'fault injection: blocking this worker forever');
    // Busy-wait without yielding, as a deadlocked native call would; only SIGKILL ends it.
    for (;;) {
      /* hang */
    }
  }
}

async function connectRing(
  welcome: WelcomeMessage,
  listener: RingListener,
  runId: string,
  config: RunConfig,
  token: string | null,
  logger: Logger,
): Promise<Ring> {
  logger.info({ worldSize: welcome.worldSize, previous: welcome.previous, next: welcome.next }, 'connecting ring links');
  return Ring.connect({
    listener,
    rank: welcome.rank,
    worldSize: welcome.worldSize,
    runId,
    previous: welcome.previous,
    next: welcome.next,
    timeoutMs: config.allreduce.timeoutMs,
    bucketBytes: config.allreduce.bucketBytes,
    compression: config.allreduce.compression,
    token,
    logger,
  });
}

/** Returns the collectives of a sharded optimizer step, or undefined when `optimizer.shardState` is off or the ring has one rank. */
function shardCollectives(ring: Ring, config: RunConfig): ShardCollectives | undefined {
  if (!config.optimizer.shardState || ring.worldSize === 1) return undefined;
  return {
    reduceScatter: (buffer) => ring.reduceScatter(buffer),
    allGather: (buffer) => ring.allGather(buffer),
    sumFloat64: (value) => ring.sumFloat64(value),
    ownedRanges: (length) => ring.ownedRanges(length),
  };
}

/** Replaces Math.random in this thread with a generator seeded by `seed`. */
function seedMathRandom(seed: number): void {
  const generator = new SeededRandom(seed);
  Math.random = () => generator.next();
}

/** Sums `buffer` across the ring with float32 values on the wire, whatever the value of `allreduce.compression`. */
function allReduceFloat32(ring: Ring, buffer: Float32Array): Promise<void> {
  const reduction = ring.beginAllReduce(buffer, { compression: 'none' });
  reduction.markFilled(buffer.length);
  return reduction.done;
}

/** Writes log lines that never reached the coordinator to stderr, formatted like the merged terminal log. */
function writeToStderr(text: string): void {
  process.stderr.write(formatLogLine(text) + '\n');
}

/** Sends a start failure to the launcher over IPC and waits until it is written, so exiting does not drop it. */
function reportStartFailure(error: RingtrainError): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined) return resolve();
    process.send({ type: 'startFailed', code: error.code, message: error.message }, () => resolve());
  });
}

let exiting = false;

async function exitSoon(link: ControlLink | null, code: number): Promise<void> {
  if (exiting) return;
  exiting = true;
  await link?.close(1000);
  destination.flushTo(writeToStderr);
  process.exit(code);
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
