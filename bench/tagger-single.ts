/**
 * Trains the Brown POS tagger in one process, with the worker's own training step and the coordinator's batch
 * plan, and prints held-out token accuracy and throughput as training goes. Used to choose the values in
 * configs/brown-pos.json.
 *
 * Usage: node dist/bench/tagger-single.js [--config FILE] [--backend wasm|cpu] [--eval-every STEPS]
 *        [--max-minutes M] [--report] [--set key.path=value ...]
 * `--max-minutes` stops training after M minutes of wall time since start-up and then evaluates once more.
 * `--report` prints the per-class table of the final evaluation.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import pino from 'pino';

import type { RunConfig } from '../src/config/types.js';
import { batchesPerEpoch, planEpoch, splitRange } from '../src/data/batch-plan.js';
import { classificationReport, formatReport } from '../src/metrics/classification.js';
import { loadLocalTask } from '../src/tasks/build.js';
import { DataParallelTrainer } from '../worker/trainer.js';
import type { Task, Split } from '../src/tasks/task.js';
import type { TaggerBatch } from '../src/models/tagger-batch.js';

const started = performance.now();
const elapsedSeconds = () => (performance.now() - started) / 1000;

const { values } = parseArgs({
  options: {
    config: { type: 'string', default: 'configs/brown-pos.json' },
    backend: { type: 'string', default: 'wasm' },
    'eval-every': { type: 'string', default: '200' },
    'max-minutes': { type: 'string', default: '0' },
    report: { type: 'boolean', default: false },
    set: { type: 'string', multiple: true, default: [] },
  },
});

/** Sets `path` (dot-separated) in `config` to `raw` parsed as JSON, or as a string when it is not JSON. */
function applyOverride(config: RunConfig, assignment: string): void {
  const equals = assignment.indexOf('=');
  if (equals <= 0) {
    throw new Error(`--set expects key.path=value (got "${assignment}"), e.g. --set optimizer.lr=0.003`);
  }
  const path = assignment.slice(0, equals).split('.');
  const raw = assignment.slice(equals + 1);
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    value = raw;
  }
  let target = config as unknown as Record<string, unknown>;
  for (const key of path.slice(0, -1)) {
    const next = target[key];
    if (typeof next !== 'object' || next === null) {
      throw new Error(`--set ${assignment}: "${key}" is not a config section; use a key such as model.dModel`);
    }
    target = next as Record<string, unknown>;
  }
  const last = path[path.length - 1];
  if (!(last in target)) {
    throw new Error(`--set ${assignment}: "${last}" is not a config key; check src/config/types.ts for the names`);
  }
  target[last] = value;
}

const config = JSON.parse(readFileSync(values.config, 'utf8')) as RunConfig;
for (const assignment of values.set) {
  applyOverride(config, assignment);
}
const evalEvery = Number(values['eval-every']);
const maxSeconds = Number(values['max-minutes']) * 60;
if (!Number.isInteger(evalEvery) || evalEvery < 1) {
  throw new Error(`--eval-every must be a positive integer of steps (got "${values['eval-every']}")`);
}
if (!(maxSeconds >= 0)) {
  throw new Error(`--max-minutes must be a number of at least 0 (got "${values['max-minutes']}"); 0 means no limit`);
}

await tf.setBackend(values.backend);
await tf.ready();
const logger = pino({ level: 'warn' });
const local = await loadLocalTask(config);
const task = local.task as Task<TaggerBatch>;
const makeBatch = (split: Split, indices: readonly number[]) => local.makeBatch(split, indices) as TaggerBatch;
const trainSize = task.info.trainSize;
const evalSize = task.info.evalSize;
const trainLengths = task.info.trainLengths as Uint16Array;
const trainer = new DataParallelTrainer(task, config, logger);

const perEpoch = batchesPerEpoch(trainSize, config.train.globalBatchSize, 'drop');
const totalSteps =
  config.train.maxSteps > 0 ? Math.min(config.train.maxSteps, perEpoch * config.train.epochs) : perEpoch * config.train.epochs;
trainer.startSchedule(totalSteps);
const evalIndices = splitRange(evalSize, 1)[0] as number[];

console.log(
  JSON.stringify({
    backend: tf.getBackend(),
    model: config.model,
    data: { maxVocabulary: config.data.maxVocabulary, minWordCount: config.data.minWordCount },
    train: { globalBatchSize: config.train.globalBatchSize, epochs: config.train.epochs, totalSteps },
    optimizer: config.optimizer,
    parameters: trainer.parameterCount,
    trainSentences: trainSize,
    startupSeconds: Number(elapsedSeconds().toFixed(1)),
  }),
);

/** Returns held-out token accuracy on words outside the vocabulary (word id 1) and on all other words. */
function accuracyByVocabulary(): { unknownShare: number; unknownAccuracy: number; knownAccuracy: number } {
  const counts = { unknown: 0, unknownCorrect: 0, known: 0, knownCorrect: 0 };
  for (let start = 0; start < evalSize; start += 64) {
    const batch = makeBatch('eval', evalIndices.slice(start, start + 64));
    const predicted = task.model.predict(batch);
    for (let i = 0; i < predicted.length; i++) {
      if (batch.labels[i] < 0) {
        continue;
      }
      const correct = predicted[i] === batch.labels[i] ? 1 : 0;
      if (batch.wordIds[i] === 1) {
        counts.unknown++;
        counts.unknownCorrect += correct;
      } else {
        counts.known++;
        counts.knownCorrect += correct;
      }
    }
  }
  return {
    unknownShare: Number((counts.unknown / (counts.unknown + counts.known)).toFixed(4)),
    unknownAccuracy: Number((counts.unknownCorrect / counts.unknown).toFixed(4)),
    knownAccuracy: Number((counts.knownCorrect / counts.known).toFixed(4)),
  };
}

/** Evaluates on the whole held-out split and prints accuracy, evaluation time and elapsed wall time. */
async function evaluate(step: number, final: boolean): Promise<void> {
  const evalStarted = performance.now();
  const { confusion } = await trainer.evaluate(evalIndices, async (chunk) => makeBatch('eval', chunk));
  const report = classificationReport(confusion, task.classNames);
  console.log(
    JSON.stringify({
      step,
      elapsedSeconds: Number(elapsedSeconds().toFixed(1)),
      accuracy: Number(report.accuracy.toFixed(5)),
      evalSeconds: Number(((performance.now() - evalStarted) / 1000).toFixed(1)),
    }),
  );
  if (final) {
    console.log(JSON.stringify(accuracyByVocabulary()));
  }
  if (final && values.report) {
    console.log(formatReport(report));
  }
}

const identity = async (): Promise<void> => {};
let step = 0;
let interval = { steps: 0, tokens: 0, ms: 0, computeMs: 0, optimizerMs: 0, loss: 0 };
training: for (let epoch = 0; step < totalSteps; epoch++) {
  for (const batch of planEpoch({ size: trainSize, lengths: trainLengths, globalBatchSize: config.train.globalBatchSize, seed: config.seed, epoch, lastBatch: 'drop' })) {
    if (step >= totalSteps || (maxSeconds > 0 && elapsedSeconds() > maxSeconds)) {
      break training;
    }
    step++;
    const stepStarted = performance.now();
    const result = await trainer.step(makeBatch('train', batch), identity, { isRoot: true, dataWaitMs: 0, worldSize: 1 });
    interval.steps++;
    interval.tokens += result.globalCount;
    interval.ms += performance.now() - stepStarted;
    interval.computeMs += result.timings.computeMs;
    interval.optimizerMs += result.timings.optimizerMs;
    interval.loss += result.loss;

    if (step % evalEvery === 0 || step === totalSteps) {
      console.log(
        JSON.stringify({
          step,
          epoch,
          loss: Number((interval.loss / interval.steps).toFixed(4)),
          lr: Number(result.lr.toExponential(3)),
          stepMs: Number((interval.ms / interval.steps).toFixed(1)),
          computeMs: Number((interval.computeMs / interval.steps).toFixed(1)),
          optimizerMs: Number((interval.optimizerMs / interval.steps).toFixed(1)),
          stepsPerSecond: Number(((1000 * interval.steps) / interval.ms).toFixed(2)),
          tokensPerSecond: Math.round((1000 * interval.tokens) / interval.ms),
        }),
      );
      interval = { steps: 0, tokens: 0, ms: 0, computeMs: 0, optimizerMs: 0, loss: 0 };
      if (step !== totalSteps) {
        await evaluate(step, false);
      }
    }
  }
}
await evaluate(step, true);
