/**
 * The worker process: one per device. It builds the task, joins the coordinator, connects its ring links and
 * then runs whatever the coordinator sends (steps, evaluation, save) until told to shut down.
 *
 * Environment contract (set by the launcher):
 *   RINGTRAIN_COORDINATOR_URL  ws://host:port of the coordinator
 *   RINGTRAIN_RUN_ID           run id, also the `run` log binding
 *   RINGTRAIN_CONFIG_FILE      the resolved run config (JSON)
 *   RINGTRAIN_NODE             node index (default 0)
 *   LOCAL_RANK                 index of this worker on its node
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { selectBackend } from '../src/backend/select.js';
import { PROTOCOL_VERSION, type CoordinatorMessage, type WelcomeMessage } from '../src/comm/protocol.js';
import { Ring } from '../src/comm/ring-allreduce.js';
import { RingListener } from '../src/comm/ring-listener.js';
import { validateConfig } from '../src/config/validate.js';
import type { RunConfig } from '../src/config/types.js';
import { writeSafetensors } from '../src/checkpoint/safetensors.js';
import { RingtrainError } from '../src/errors.js';
import { LinkDestination } from '../src/log/link-destination.js';
import { createLogger } from '../src/log/logger.js';
import { createTask } from '../src/tasks/registry.js';
import { ControlLink } from './control-link.js';
import { DataParallelTrainer, hashFloats } from './trainer.js';

interface WorkerEnvironment {
  coordinatorUrl: string;
  runId: string;
  configFile: string;
  node: number;
  localRank: number;
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
  };
}

const destination = new LinkDestination();

async function run(environment: WorkerEnvironment, baseLogger: Logger): Promise<number> {
  let logger = baseLogger.child({ rank: null });
  const config: RunConfig = validateConfig(JSON.parse(readFileSync(environment.configFile, 'utf8')));

  const backend = await selectBackend(config.backend, logger);
  const task = await createTask(config, logger);
  const trainer = new DataParallelTrainer(task, config, logger);
  const listener = await RingListener.listen({ host: config.coordinator.host, logger });

  const link = await ControlLink.connect(environment.coordinatorUrl, config.coordinator.joinTimeoutMs, logger);
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

  link.send({
    type: 'join',
    protocolVersion: PROTOCOL_VERSION,
    runId: environment.runId,
    node: environment.node,
    localRank: environment.localRank,
    pid: process.pid,
    ring: { host: config.coordinator.host, port: listener.port },
    backend: backend.name,
    trainSize: task.trainSize,
    evalSize: task.evalSize,
    trainLengths: task.trainLengths,
    parameterCount: trainer.parameterCount,
    parameterLayoutHash: trainer.layoutHash(),
    initialChecksum: hashFloats(trainer.parameters),
  });

  let ring: Ring | null = null;
  let currentStep: number | null = null;
  let welcomeRank = -1;
  const faultInjection = parseFaultInjection(process.env.RINGTRAIN_FAULT_PERTURB);
  try {
    for (;;) {
      const message: CoordinatorMessage | null = await link.next();
      if (message === null) return 1;

      switch (message.type) {
        case 'welcome': {
          welcomeRank = message.rank;
          logger = baseLogger.child({ rank: message.rank });
          ring = await connectRing(message, listener, environment.runId, config, logger);
          trainer.startSchedule(message.totalSteps);
          link.send({ type: 'ready' });
          break;
        }
        case 'step': {
          if (ring === null) throw new RingtrainError('RINGTRAIN_ERR_PROTOCOL', `received step ${message.step} before welcome`);
          currentStep = message.step;
          const activeRing = ring;
          const result = await trainer.step(message.indices, (buffer) => activeRing.allReduce(buffer));
          if (faultInjection !== null && faultInjection.rank === welcomeRank && faultInjection.step === message.step) {
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
        case 'evaluate': {
          const confusion = trainer.evaluate(message.indices);
          link.send({ type: 'evalDone', confusion, classNames: [...task.classNames] });
          break;
        }
        case 'save': {
          const file = join(message.directory, 'weights.safetensors');
          await writeSafetensors(file, trainer.specs, trainer.parameters, { runId: environment.runId, task: config.task });
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
    logger.error({ err: error, step: currentStep }, 'worker failed');
    link.send({ type: 'failed', step: currentStep, code, message: (error as Error).message });
    await ring?.close().catch(() => {});
    await listener.close().catch(() => {});
    return 1;
  } finally {
    await link.close();
  }
}

async function connectRing(
  welcome: WelcomeMessage,
  listener: RingListener,
  runId: string,
  config: RunConfig,
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
    logger,
  });
}

/**
 * Parses RINGTRAIN_FAULT_PERTURB=RANK:STEP, a fault injection for tests of the cross-rank checksum: after
 * step STEP, rank RANK changes one parameter so its checksum no longer matches. Unset in normal runs.
 */
function parseFaultInjection(value: string | undefined): { rank: number; step: number } | null {
  if (value === undefined || value === '') return null;
  const match = /^(\d+):(\d+)$/.exec(value);
  if (match === null) throw new RingtrainError('RINGTRAIN_ERR_USAGE', `RINGTRAIN_FAULT_PERTURB must be RANK:STEP (got '${value}')`);
  return { rank: Number(match[1]), step: Number(match[2]) };
}

let exiting = false;

async function exitSoon(link: ControlLink | null, code: number): Promise<void> {
  if (exiting) return;
  exiting = true;
  await link?.close(1000);
  destination.flushTo((text) => process.stderr.write(text));
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

  process.on('uncaughtException', (error) => {
    baseLogger.fatal({ err: error }, 'uncaught exception in worker');
    void exitSoon(null, 1);
  });

  let code = 1;
  try {
    code = await run(environment, baseLogger);
  } catch (error) {
    baseLogger.fatal({ err: error }, 'worker could not start');
  }
  destination.flushTo((text) => process.stderr.write(text));
  process.exit(code);
}

void main();
