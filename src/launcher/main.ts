/**
 * `npm run launch -- [flags]`: resolves the config, creates the run directory, starts the coordinator and one
 * worker process per device, watches them and exits with the run's status. `--help` lists the flags.
 *
 * Each worker gets, like torchrun's workers: RANK, LOCAL_RANK, WORLD_SIZE (single node: RANK = LOCAL_RANK),
 * RINGTRAIN_RESTART_COUNT (0 in the first attempt), plus the RINGTRAIN_* variables documented in worker/main.ts.
 *
 * Exit codes: 0 the run finished, 1 it failed (after any restarts), 2 invalid flags, config or data, 130 it was
 * stopped by SIGINT or SIGTERM (after a checkpoint, unless the signal came twice).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readCheckpoint, resolveCheckpoint } from '../checkpoint/store.js';
import { RingtrainError } from '../errors.js';
import { createLogger } from '../log/logger.js';
import { RunLogSink } from '../log/run-log-sink.js';
import { helpText, parseLaunchArgs, type LaunchOptions } from './args.js';
import { isTaskModulePath } from '../config/validate.js';
import { importTask } from '../tasks/registry.js';
import { detectGpus } from './devices.js';
import { runAttempt, runRemoteAttempt, type AttemptOutcome, type StopControl } from './worker-group.js';

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const EXIT_STOPPED = 130;

function fail(message: string, exitCode: number): never {
  process.stderr.write(`ringtrain: ${message}\n`);
  process.exit(exitCode);
}

function parseOrExit(argv: string[]): LaunchOptions {
  try {
    return parseLaunchArgs(argv);
  } catch (error) {
    if (error instanceof RingtrainError) fail(error.message, EXIT_USAGE);
    throw error;
  }
}

/** Returns the latest checkpoint of `runDir`, or null when it has none yet. */
async function latestCheckpoint(runDir: string): Promise<string | null> {
  try {
    return await resolveCheckpoint(runDir);
  } catch {
    return null;
  }
}

async function main(): Promise<number> {
  const options = parseOrExit(process.argv.slice(2));
  if (options.help) {
    process.stdout.write(helpText());
    return 0;
  }

  if (isTaskModulePath(options.config.task)) {
    // Importing the module here turns a syntax error or a missing task field into one line and exit code 2,
    // before any process starts.
    try {
      await importTask(options.config.task);
    } catch (error) {
      fail((error as Error).message, EXIT_USAGE);
    }
  }

  let resumeFile: string | null = null;
  let resumedWorldSize: number | null = null;
  if (options.resume !== null) {
    try {
      resumeFile = await resolveCheckpoint(options.resume);
      // Reading verifies the checksum, so a damaged file is reported here rather than by every worker.
      resumedWorldSize = (await readCheckpoint(resumeFile)).worldSize;
    } catch (error) {
      fail(`cannot resume from ${options.resume}: ${(error as Error).message}`, EXIT_USAGE);
    }
    if (!options.workersGiven) options.workers = resumedWorldSize as number;
  }

  const runDir = resolve(options.runDir);
  mkdirSync(runDir, { recursive: true });
  const configFile = join(runDir, 'config.json');
  writeFileSync(configFile, JSON.stringify(options.config, null, 2) + '\n');

  const sink = new RunLogSink(join(runDir, 'logs.jsonl'));
  const logger = createLogger({ run: options.runId, node: options.nodeRank, rank: null, role: 'launcher' }, sink);
  if (options.logTo !== null) sink.streamTo(options.logTo, options.token, logger);
  if (options.token !== null) process.env.RINGTRAIN_TOKEN = options.token;
  logger.info({ workers: options.workers, config: options.configPath, runDir, resumeFile, maxRestarts: options.maxRestarts }, 'launching run');
  if (resumedWorldSize !== null && resumedWorldSize !== options.workers) {
    logger.warn(
      { checkpointWorkers: resumedWorldSize, workers: options.workers },
      `resuming a checkpoint written by ${resumedWorldSize} workers with ${options.workers}: the all-reduce sums in ` +
        'another order, so the run will not repeat the uninterrupted one bit for bit',
    );
  }
  const resumeCommand = `npm run launch -- --gpus ${options.workers} --resume ${runDir}`;

  const gpus =
    options.config.backend === 'auto' || options.config.backend === 'tensorflow'
      ? detectGpus()
      : { count: 0, reason: `backend '${options.config.backend}' was requested` };
  const useGpus = gpus.count >= options.workers;
  if (!useGpus) {
    logger.info({ reason: gpus.reason, gpusFound: gpus.count }, `no usable GPU for ${options.workers} workers; running them on the CPU`);
  }

  const stop: StopControl = { signalCount: 0, onSignal: () => {} };
  const onSignal = (signal: NodeJS.Signals): void => {
    stop.signalCount++;
    logger.warn(
      { signal, signalCount: stop.signalCount },
      stop.signalCount === 1 ? 'stopping after a checkpoint at the next step boundary; send the signal again to kill now' : 'second signal: killing every process now',
    );
    stop.onSignal(signal);
    if (stop.signalCount > 1) process.exit(EXIT_STOPPED);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const failures: Extract<AttemptOutcome, { kind: 'failed' }>[] = [];
  let exitCode = EXIT_FAILED;
  for (let attempt = 0; attempt <= options.maxRestarts; attempt++) {
    if (attempt > 0) {
      resumeFile = await latestCheckpoint(runDir);
      logger.warn(
        { attempt, maxRestarts: options.maxRestarts, resumeFile, previousFailure: failures.at(-1)?.reason },
        resumeFile === null ? 'restarting the worker group from the start (no checkpoint yet)' : 'restarting the worker group from the latest checkpoint',
      );
    }
    const plan = { options, runDir, configFile, attempt, resumeFile, useGpus, stop, logger };
    const outcome = options.nodeRank === 0 ? await runAttempt(plan) : await runRemoteAttempt(plan);
    if (outcome.kind === 'finished') {
      exitCode = 0;
      break;
    }
    if (outcome.kind === 'stopped') {
      exitCode = EXIT_STOPPED;
      logger.warn({ checkpoint: outcome.checkpoint, resume: resumeCommand }, 'run stopped');
      break;
    }
    failures.push(outcome);
    if (outcome.userError !== undefined) {
      // A bad config value or data file fails every attempt alike, so it ends the run without restarts.
      logger.error({ code: outcome.userError.code }, `run failed: ${outcome.userError.message}`);
      await sink.close();
      fail(outcome.userError.message, EXIT_USAGE);
    }
    if (stop.signalCount > 0) {
      exitCode = EXIT_STOPPED;
      break;
    }
  }

  if (exitCode === EXIT_FAILED) {
    const checkpoint = await latestCheckpoint(runDir);
    logger.error(
      {
        failures: failures.map((failure, attempt) => ({ attempt, reason: failure.reason })),
        checkpoint,
        resume: checkpoint === null ? null : resumeCommand,
      },
      `run failed after ${failures.length} attempt(s)` + (checkpoint === null ? '; no checkpoint was written' : `; resume from ${checkpoint}`),
    );
  } else {
    logger.info({ exitCode, runDir }, exitCode === 0 ? 'run complete' : 'run stopped');
  }
  await sink.close();
  return exitCode;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => fail((error as Error).stack ?? String(error), 1),
);
