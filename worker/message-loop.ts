/**
 * The worker's message loop, which runs once the data loader has started: building the task and the trainer,
 * joining the coordinator, and handling each coordinator message (welcome, step, checkpoint, evaluate, save).
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { PROTOCOL_VERSION, type CoordinatorMessage } from '../src/comm/protocol.js';
import type { Ring } from '../src/comm/ring-allreduce.js';
import { RingListener } from '../src/comm/ring-listener.js';
import { nodeIdentity } from '../src/comm/ring-unix-socket.js';
import type { RunConfig } from '../src/config/types.js';
import { writeSafetensors } from '../src/checkpoint/safetensors.js';
import { writeCheckpoint } from '../src/checkpoint/store.js';
import { hashConfig } from '../src/checkpoint/config-hash.js';
import { firesAt, injectStartOfStepFaults, readFaultPlan, slowdownMs } from './fault-injection.js';
import { RingtrainError } from '../src/errors.js';
import { importTask } from '../src/tasks/registry.js';
import { buildTask } from '../src/tasks/build.js';
import type { LoaderPool } from '../src/data/loader-pool.js';
import { mixSeed, SeededRandom } from '../src/random.js';
import { ControlLink } from './control-link.js';
import { DataParallelTrainer } from './trainer.js';
import { checksumFloats } from '../src/kernels/checksum.js';
import { destination, exitSoon } from './exit.js';
import { allReduceFloat32, connectRing, shardCollectives } from './ring-collectives.js';
import { loadResumeState, type WorkerEnvironment } from './startup.js';

/**
 * Builds the task and the trainer, joins the coordinator and then handles its messages in order. Returns the
 * exit code that `shutdown` names, or 1 when the control link closes or handling a message throws. A thrown
 * error is logged and sent to the coordinator as a `failed` message.
 */
export async function runWithLoader(
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

/** Replaces Math.random in this thread with a generator seeded by `seed`. */
function seedMathRandom(seed: number): void {
  const generator = new SeededRandom(seed);
  Math.random = () => generator.next();
}
