import { createWriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { RunConfig } from '../src/config/types.js';
import type { StepDoneMessage } from '../src/comm/protocol.js';
import { batchesPerEpoch, splitRange } from '../src/data/batch-plan.js';
import { StepPlanner } from './step-planner.js';
import { RingtrainError } from '../src/errors.js';
import { combineEvaluation, formatEvaluation, type EvaluationReport } from '../src/metrics/evaluation.js';
import type { RunLogSink } from '../src/log/run-log-sink.js';
import { ProgressDisplay } from './progress.js';
import type { WorkerConnection, WorkerHub } from './worker-hub.js';

/** Result of a finished or stopped run, for the coordinator's entry point. */
export interface RunSummary {
  /** Steps completed, counting those before a resume. */
  steps: number;
  finalLoss: number;
  trainSeconds: number;
  skippedSteps: number;
  /** Null when the run stopped on request before evaluation. */
  report: EvaluationReport | null;
  stopped: boolean;
  lastCheckpoint: string | null;
}

/** Starting point of training: `step` steps are already complete (0 for a fresh run). */
export interface StartPoint {
  step: number;
}

/** Returns the number of optimizer steps the run will take. */
export function plannedSteps(config: RunConfig, trainSize: number): number {
  const perEpoch = batchesPerEpoch(trainSize, config.train.globalBatchSize, config.data.lastBatch);
  if (perEpoch === 0) {
    throw new RingtrainError(
      'RINGTRAIN_ERR_DATA',
      `the training split has ${trainSize} examples, fewer than train.globalBatchSize=${config.train.globalBatchSize}; ` +
        'lower the batch size, use more data, or set data.lastBatch=partial',
    );
  }
  const all = perEpoch * config.train.epochs;
  return config.train.maxSteps > 0 ? Math.min(config.train.maxSteps, all) : all;
}

/**
 * Drives training after rendezvous: sends every rank its shard of each global batch, checks that parameter
 * checksums agree, records per-step metrics and requests checkpoints from rank 0. It then runs the
 * data-parallel evaluation and requests the final weights from rank 0. Every wait goes through the hub, so a failed worker ends the run
 * instead of hanging it. When `stopRequested()` turns true, the run checkpoints at the next step boundary and
 * returns without evaluating.
 */
export async function runTraining(
  hub: WorkerHub,
  workers: readonly WorkerConnection[],
  config: RunConfig,
  runDir: string,
  start: StartPoint,
  stopRequested: () => boolean,
  sink: RunLogSink,
  logger: Logger,
): Promise<RunSummary> {
  const firstJoin = (workers[0] as WorkerConnection).join;
  const worldSize = workers.length;
  const totalSteps = plannedSteps(config, firstJoin.trainSize);
  const planner = new StepPlanner(config, firstJoin.trainSize, firstJoin.trainLengths.length > 0 ? firstJoin.trainLengths : undefined, worldSize);
  const perEpoch = planner.perEpoch;
  const checkpointDirectory = join(runDir, 'checkpoints');

  const metrics = createWriteStream(join(runDir, 'metrics.jsonl'), { flags: start.step > 0 ? 'a' : 'w' });
  const progress = new ProgressDisplay(totalSteps, sink);
  logger.info(
    {
      totalSteps,
      firstStep: start.step + 1,
      epochsToRun: Math.ceil(totalSteps / perEpoch),
      globalBatchSize: config.train.globalBatchSize,
      worldSize,
      // Both settings do nothing with one worker.
      shardState: config.optimizer.shardState && worldSize > 1,
      skipZeroBlocks: config.allreduce.skipZeroBlocks && worldSize > 1,
    },
    start.step > 0 ? 'training resumed' : 'training started',
  );
  if (config.train.balance) logger.info({ minShare: 0.25, maxShare: 4 }, 'shard balancing on: shard sizes follow each rank\'s measured throughput');
  if (totalSteps <= config.optimizer.warmupSteps) {
    // A short run of a new task with another task's config file ends inside the warm-up and learns little.
    logger.warn(
      { totalSteps, warmupSteps: config.optimizer.warmupSteps, config: 'optimizer.warmupSteps' },
      `the run has ${totalSteps} steps, no more than optimizer.warmupSteps, so the learning rate never reaches optimizer.lr; ` +
        `lower it (e.g. --set optimizer.warmupSteps=${Math.max(1, Math.floor(totalSteps / 10))}) or train longer. ` +
        'A config file of your own can set train.maxSteps and optimizer.warmupSteps together, as examples/two-moons.json does',
    );
  }
  if (start.step >= totalSteps) logger.info({ step: start.step }, 'the checkpoint is from the last step; only evaluating and saving');

  const started = performance.now();
  let windowStart = started;
  let windowSamples = 0;
  let lastLoss = Number.NaN;
  let skippedSteps = 0;
  let lastCheckpoint: string | null = null;
  let step = start.step;
  let stopped = false;

  const checkpoint = async (): Promise<void> => {
    hub.currentActivity = `checkpoint after step ${step}`;
    const sampler = { epoch: Math.floor(step / perEpoch), nextBatch: step % perEpoch };
    const message = { type: 'checkpoint', step, sampler, directory: checkpointDirectory, keep: config.checkpoint.keep } as const;
    // Sharded optimizer moments are spread over the ranks, so every rank takes part in gathering them.
    const sharded = config.optimizer.shardState && worldSize > 1;
    for (let rank = 0; rank < (sharded ? worldSize : 1); rank++) hub.send(rank, message);
    const [written] = await hub.collect('checkpointed', [0]);
    lastCheckpoint = written?.path ?? null;
  };

  try {
    while (step < totalSteps) {
      const epoch = Math.floor(step / perEpoch);
      step++;
      hub.currentActivity = `step ${step}`;

      const shards = planner.shards(step);
      const batch = shards.flat();
      const upcomingSteps: number[] = [];
      for (let next = step + 1; next <= Math.min(step + config.data.prefetch, totalSteps); next++) upcomingSteps.push(next);
      const upcoming = upcomingSteps.map((next) => ({ step: next, shards: planner.shards(next) }));
      const checksum = config.train.checksumEvery > 0 && (step % config.train.checksumEvery === 0 || step === totalSteps);
      const stepStarted = performance.now();
      shards.forEach((indices, rank) =>
        hub.send(rank, {
          type: 'step',
          step,
          epoch,
          indices,
          checksum,
          upcoming: upcoming.map((next) => ({ step: next.step, indices: next.shards[rank] as number[] })),
        }),
      );

      const results = await hub.collect('stepDone');
      if (checksum) verifyChecksums(results, step);
      planner.record(shards, results);
      planner.forget(step);

      const now = performance.now();
      const first = results[0] as StepDoneMessage;
      if (first.skipped) skippedSteps++;
      lastLoss = first.loss;
      windowSamples += batch.length;
      const samplesPerSecond = (batch.length * 1000) / (now - stepStarted);
      metrics.write(
        JSON.stringify({
          step,
          epoch,
          loss: first.loss,
          lr: first.lr,
          gradNorm: first.gradNorm,
          skipped: first.skipped,
          skippedSteps,
          samples: batch.length,
          tokens: first.globalCount,
          stepMs: now - stepStarted,
          samplesPerSecond,
          timings: results.map((result) => result.timings),
          shardSizes: shards.map((shard) => shard.length),
        }) + '\n',
      );
      progress.update({ step, loss: first.loss, samplesPerSecond });

      if (step % config.train.logEvery === 0 || step === totalSteps) {
        const elapsedSeconds = (now - started) / 1000;
        const windowRate = (windowSamples * 1000) / (now - windowStart);
        const stepsDone = step - start.step;
        logger.info(
          {
            step,
            totalSteps,
            epoch,
            loss: first.loss,
            lr: first.lr,
            samplesPerSecond: windowRate,
            skippedSteps,
            elapsedSeconds,
            etaSeconds: (elapsedSeconds / stepsDone) * (totalSteps - step),
            ...(config.train.balance ? { shardSizes: shards.map((shard) => shard.length) } : {}),
          },
          'progress',
        );
        windowStart = now;
        windowSamples = 0;
      }

      const checkpointDue = (config.checkpoint.every > 0 && step % config.checkpoint.every === 0) || step === totalSteps;
      if (checkpointDue) await checkpoint();
      if (stopRequested() && step < totalSteps) {
        if (!checkpointDue) await checkpoint();
        stopped = true;
        break;
      }
    }
  } finally {
    progress.stop(sink);
    await new Promise((resolve) => metrics.end(resolve));
  }
  const trainSeconds = (performance.now() - started) / 1000;

  if (stopped) {
    logger.warn({ step, checkpoint: lastCheckpoint, resume: `npm run launch -- --gpus ${worldSize} --resume ${runDir}` }, 'run stopped on request after a checkpoint');
    return { steps: step, finalLoss: lastLoss, trainSeconds, skippedSteps, report: null, stopped, lastCheckpoint };
  }
  logger.info({ steps: step, trainSeconds, finalLoss: lastLoss, skippedSteps }, 'training finished');

  hub.currentActivity = 'evaluation';
  const report = await evaluate(hub, workers, config, logger);
  await writeReport(runDir, report);
  sink.printLine('\n' + formatEvaluation(report) + '\n');

  hub.currentActivity = 'saving the final weights';
  hub.send(0, { type: 'save', directory: runDir });
  const [saved] = await hub.collect('saved', [0]);
  logger.info({ files: saved?.files }, 'final weights saved');

  return { steps: step, finalLoss: lastLoss, trainSeconds, skippedSteps, report, stopped, lastCheckpoint };
}

async function evaluate(hub: WorkerHub, workers: readonly WorkerConnection[], config: RunConfig, logger: Logger): Promise<EvaluationReport> {
  const evalSize = (workers[0] as WorkerConnection).join.evalSize;
  const started = performance.now();
  splitRange(evalSize, workers.length).forEach((indices, rank) => hub.send(rank, { type: 'evaluate', indices }));
  const results = await hub.collect('evalDone');
  const report = combineEvaluation(results, evalSize, results[0]?.metrics.includes('perplexity') ?? false);
  logger.info(
    {
      accuracy: report.accuracy,
      ...(report.loss === null ? {} : { loss: report.loss }),
      ...(report.perplexity === null ? {} : { perplexity: report.perplexity }),
      examples: evalSize,
      seconds: (performance.now() - started) / 1000,
    },
    'evaluation finished',
  );
  return report;
}

async function writeReport(runDir: string, report: EvaluationReport): Promise<void> {
  await writeFile(join(runDir, 'eval-report.json'), JSON.stringify(report, null, 2) + '\n');
  await writeFile(join(runDir, 'eval-report.txt'), formatEvaluation(report) + '\n');
}

/** Raises RINGTRAIN_ERR_PARAMETER_MISMATCH naming the step and every rank whose checksum differs from rank 0's. */
export function verifyChecksums(results: readonly StepDoneMessage[], step: number): void {
  const reference = results[0]?.checksum;
  const differing = results
    .map((result, rank) => ({ rank, checksum: result.checksum }))
    .filter(({ checksum }) => checksum !== reference);
  if (differing.length === 0) return;
  const detail = differing.map(({ rank, checksum }) => `rank ${rank} has ${checksum ?? 'none'}`).join(', ');
  throw new RingtrainError(
    'RINGTRAIN_ERR_PARAMETER_MISMATCH',
    `parameters differ across ranks after step ${step}: rank 0 has ${reference ?? 'none'}, ${detail}; ` +
      'the ranks no longer apply identical updates (mixed backends or a nondeterministic model?)',
  );
}
