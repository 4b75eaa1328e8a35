import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { validateConfig } from '../src/config/validate.js';
import { countPredictions } from '../src/metrics/classification.js';
import { loadLocalTask } from '../src/tasks/build.js';
import { ownedBuffers } from '../src/data/transfer.js';
import { checkDatasetInfo, defineTask } from '../src/tasks/api.js';
import { TensorModel } from '../src/models/tensor-model.js';
import { launch, pidsInLog, readSafetensors, repositoryRoot, runningPids } from './helpers/launch.js';

const examplePath = join(repositoryRoot, 'examples', 'two-moons-task.js');
const exampleConfig = join(repositoryRoot, 'examples', 'two-moons.json');
const fixtureTask = (name: string): string => join(repositoryRoot, 'test', 'fixtures', 'tasks', name);

interface LogLine {
  msg: string;
  rank?: number | null;
  localRank?: number;
  [key: string]: unknown;
}

function readLog(runDir: string): LogLine[] {
  return readFileSync(join(runDir, 'logs.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as LogLine);
}

function readMetrics(runDir: string): Array<{ step: number; epoch: number; samples: number; samplesPerSecond: number; stepMs: number; timings: Array<{ dataWaitMs: number }> }> {
  return readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

// The example task through the launcher: two workers, a tfjs-layers model with dropout and batch normalisation.
test.serial('example task trains on two workers', async (t) => {
  t.timeout(120_000);
  // 650 examples in batches of 64: 10 full batches and a partial one of 10 under data.lastBatch=partial.
  const result = await launch(t, [
    '--gpus', '2',
    '--config', exampleConfig,
    '--task', examplePath,
    '--backend', 'cpu',
    '--epochs', '1',
    '--set', 'taskOptions.trainSize=650',
  ]);
  t.is(result.exitCode, 0, `${result.stderr}\n${result.stdout.slice(-3000)}`);

  const metrics = readMetrics(result.runDir);
  t.is(metrics.length, 11);
  t.is(metrics.reduce((sum, record) => sum + record.samples, 0), 650);
  t.is((metrics.at(-1) as { samples: number }).samples, 10);

  const log = readLog(result.runDir);
  // Layer initialisers draw from tfjs's unseeded random source, so the ranks build different initial values...
  const built = log.filter((line) => line.msg === 'model built');
  t.is(built.length, 2);
  t.not(built[0]?.initialChecksum, built[1]?.initialChecksum);
  // ...and rank 0's values are copied to both before the first step.
  const copied = log.filter((line) => line.msg === 'initial parameters copied from rank 0');
  t.is(copied.length, 2);
  t.is(copied[0]?.checksum, copied[1]?.checksum);

  // Two moons with noise 0.2 is nearly separable; chance is 0.5, and 11 steps of AdamW at lr 0.01 pass 0.8.
  const report = JSON.parse(readFileSync(join(result.runDir, 'eval-report.json'), 'utf8')) as { accuracy: number; examples: number };
  t.is(report.examples, 500);
  t.true(report.accuracy > 0.8, `accuracy ${report.accuracy}`);
  // The weights file contains the batch-normalisation statistics as well as the trainable weights.
  const weights = readSafetensors(join(result.runDir, 'weights.safetensors'));
  t.true([...weights.keys()].some((name) => name.includes('moving_mean')), [...weights.keys()].join(', '));
  t.deepEqual(runningPids(pidsInLog(result.runDir)), []);
});

test.serial('same seed repeats a dropout model', async (t) => {
  t.timeout(120_000);
  // Layer initialisers and dropout masks draw from the worker's seeded random source, so two runs with one seed
  // end with the same bits, and another seed ends elsewhere.
  const flags = ['--gpus', '2', '--config', exampleConfig, '--task', examplePath, '--backend', 'cpu', '--max-steps', '6'];
  const first = await launch(t, [...flags, '--seed', '5']);
  const second = await launch(t, [...flags, '--seed', '5']);
  const other = await launch(t, [...flags, '--seed', '6']);
  for (const run of [first, second, other]) t.is(run.exitCode, 0, run.stderr);
  // The files differ in their run id metadata, so compare the tensors' bits.
  const bits = (runDir: string): string =>
    [...readSafetensors(join(runDir, 'weights.safetensors'))].map(([name, values]) => `${name}:${Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString('hex')}`).join('|');
  t.is(bits(first.runDir), bits(second.runDir));
  t.not(bits(first.runDir), bits(other.runDir));
});

test.serial('differing models are named at start', async (t) => {
  t.timeout(60_000);
  const result = await launch(t, ['--gpus', '2', '--task', fixtureTask('rank-dependent-task.js'), '--backend', 'cpu', '--max-steps', '2']);
  t.not(result.exitCode, 0);
  // The first dense layer has 4 + LOCAL_RANK units: kernel [2, 4] on rank 0, [2, 5] on rank 1.
  t.regex(result.stderr + result.stdout, /first difference at parameter 0: rank 0 has '[^']+' \[2, 4\], rank 1 has '[^']+' \[2, 5\]/);
  t.deepEqual(runningPids(pidsInLog(result.runDir)), []);
});

test.serial('broken task module exits with usage error', async (t) => {
  t.timeout(60_000);
  const result = await launch(t, ['--gpus', '2', '--task', fixtureTask('missing-batch-task.js'), '--backend', 'cpu']);
  t.is(result.exitCode, 2);
  t.regex(result.stderr, /task field 'batch' must be a function \(got nothing\)/);
});

test.serial('data loading error ends run at once', async (t) => {
  t.timeout(90_000);
  // The join timeout is longer than the launch timeout, so only a run that fails at once exits by itself.
  const result = await launch(t, ['--gpus', '2', '--task', fixtureTask('failing-load-task.js'), '--backend', 'cpu', '--set', 'coordinator.joinTimeoutMs=120000'], {
    timeoutMs: 60_000,
  });
  t.is(result.signal, null);
  t.is(result.exitCode, 1);
  t.regex(result.stdout + result.stderr, /cannot open \/nonexistent\/train\.jsonl/);
  t.notRegex(result.stdout + result.stderr, /workers joined within/);
  t.deepEqual(runningPids(pidsInLog(result.runDir)), []);
});

test.serial('bad labels end the run without restarts', async (t) => {
  t.timeout(90_000);
  const result = await launch(t, ['--gpus', '2', '--task', fixtureTask('one-based-labels-task.js'), '--backend', 'cpu', '--set', 'train.globalBatchSize=8', '--max-restarts', '2']);
  // A data error recurs in every attempt, so the launcher reports it once with exit code 2 instead of restarting.
  t.is(result.exitCode, 2);
  t.regex(result.stderr, /ringtrain: .*failed at step 1: batch\(\) of the 'train' split \(training\) returned 'labels' value 3/);
  t.notRegex(result.stdout + result.stderr, /attempt 1|restarting/i);
  t.deepEqual(runningPids(pidsInLog(result.runDir)), []);
});

test.serial('evaluation equals single-process evaluation', async (t) => {
  t.timeout(120_000);
  // Three workers split the 500 evaluation examples 167/167/166.
  const result = await launch(t, ['--gpus', '3', '--config', exampleConfig, '--task', examplePath, '--backend', 'cpu', '--max-steps', '8']);
  t.is(result.exitCode, 0, result.stderr);
  const report = JSON.parse(readFileSync(join(result.runDir, 'eval-report.json'), 'utf8')) as {
    accuracy: number;
    loss: number;
    classes: Array<{ name: string; support: number; precision: number; recall: number }>;
  };

  // Evaluate the saved weights on the whole split in this process.
  await tf.setBackend('cpu');
  const config = validateConfig(JSON.parse(readFileSync(join(result.runDir, 'config.json'), 'utf8')));
  const { task, makeBatch } = await loadLocalTask(config);
  const weights = readSafetensors(join(result.runDir, 'weights.safetensors'));
  for (const variable of [...task.model.variables, ...task.buffers]) {
    const values = weights.get(variable.name);
    t.truthy(values, `weights file lacks ${variable.name}`);
    variable.assign(tf.tensor(values as Float32Array, variable.shape));
  }
  const indices = Array.from({ length: task.info.evalSize }, (_, index) => index);
  const evaluation = task.evaluateBatch(makeBatch('eval', indices));
  const confusion = countPredictions(evaluation.labels as Int32Array, evaluation.predictions as Int32Array, 2);
  const correct = (confusion[0] as number) + (confusion[3] as number);
  t.is(report.accuracy, correct / 500);
  t.deepEqual(
    report.classes.map((entry) => entry.support),
    [(confusion[0] as number) + (confusion[1] as number), (confusion[2] as number) + (confusion[3] as number)],
  );
  // Summed in another order across three ranks: float32 per-example losses agree, the float64 sums within 1e-6.
  t.true(Math.abs(report.loss - evaluation.lossSum / evaluation.count) < 1e-6, `${report.loss} vs ${evaluation.lossSum / evaluation.count}`);
  task.model.dispose();
});

test.serial('balancing speeds up a slow rank', async (t) => {
  t.timeout(180_000);
  // Rank 1 spends 4 ms more per example, so equal shards of 16 add 64 ms to every step. Balanced, its share
  // falls to the 0.25 floor (4 examples, 16 ms), so the balanced run must be clearly faster.
  const flags = ['--gpus', '2', '--config', exampleConfig, '--task', examplePath, '--backend', 'cpu', '--max-steps', '30', '--set', 'train.globalBatchSize=32', '--set', 'train.checksumEvery=0'];
  const env = { RINGTRAIN_FAULT_SLOW: '1:4' };
  const equal = await launch(t, flags, { env });
  t.is(equal.exitCode, 0, equal.stderr);
  const balanced = await launch(t, [...flags, '--balance'], { env });
  t.is(balanced.exitCode, 0, balanced.stderr);

  const rate = (runDir: string): number => median(readMetrics(runDir).slice(10).map((record) => record.samplesPerSecond));
  const equalRate = rate(equal.runDir);
  const balancedRate = rate(balanced.runDir);
  t.true(balancedRate > 1.3 * equalRate, `balanced ${balancedRate.toFixed(0)}/s vs equal ${equalRate.toFixed(0)}/s`);
  const lastShards = (readMetrics(balanced.runDir).at(-1) as unknown as { shardSizes: number[] }).shardSizes;
  t.true((lastShards[1] as number) < (lastShards[0] as number), `shards ${lastShards.join('/')}`);
});

test.serial('prefetch hides data loading time', async (t) => {
  t.timeout(120_000);
  // Each batch takes 20 ms to build (the loading thread sleeps) and each step computes for at least 32 ms
  // (1 ms per example of 32), so with batches prepared ahead the step should almost never wait for data.
  const flags = ['--gpus', '1', '--task', fixtureTask('slow-batch-task.js'), '--backend', 'cpu', '--max-steps', '25', '--set', 'train.globalBatchSize=32'];
  const env = { RINGTRAIN_FAULT_SLOW: '0:1' };
  const none = await launch(t, [...flags, '--set', 'data.prefetch=0'], { env });
  t.is(none.exitCode, 0, none.stderr);
  const ahead = await launch(t, [...flags, '--set', 'data.prefetch=2'], { env });
  t.is(ahead.exitCode, 0, ahead.stderr);

  const wait = (runDir: string): number => median(readMetrics(runDir).slice(5).map((record) => (record.timings[0] as { dataWaitMs: number }).dataWaitMs));
  const withoutPrefetch = wait(none.runDir);
  const withPrefetch = wait(ahead.runDir);
  t.true(withoutPrefetch > 15, `data wait without prefetch ${withoutPrefetch} ms`);
  t.true(withPrefetch < withoutPrefetch / 3, `data wait with prefetch ${withPrefetch} ms vs ${withoutPrefetch} ms`);
});

test('ownedBuffers moves whole buffers only', (t) => {
  const owned = new Float32Array(4);
  const dataset = new Int32Array(100);
  const view = dataset.subarray(10, 20);
  const batch = { inputs: { data: owned, shape: [2, 2] }, labels: { data: view, shape: [10] }, again: { data: owned, shape: [4] } };
  const buffers = ownedBuffers(batch);
  t.is(buffers.length, 1);
  t.is(buffers[0], owned.buffer);
});

test('defineTask names unknown field', (t) => {
  const error = t.throws(() =>
    defineTask({ name: 'x', load: () => 0, describe: () => ({ trainSize: 1, evalSize: 1 }), batch: () => ({}), model: () => ({ variables: [], forward: (x: Record<string, tf.Tensor>) => x.inputs as tf.Tensor }), losss: 'mean-squared-error' } as never),
  );
  t.regex(error?.message ?? '', /unknown task field 'losss' \(did you mean loss\?\)/);
});

test('checkDatasetInfo names misspelt field', (t) => {
  const error = t.throws(() => checkDatasetInfo({ trainSize: 4, evalSize: 2, classnames: ['a', 'b'] }, 'mine'));
  t.regex(error?.message ?? '', /task mine: describe\(\) returned an unknown field 'classnames' \(did you mean classNames\?\)/);
});

test.serial('TensorModel rejects out-of-range labels', async (t) => {
  await tf.setBackend('cpu');
  const layers = tf.sequential({ layers: [tf.layers.dense({ inputShape: [2], units: 3 })] });
  const model = new TensorModel(layers, { labels: 'labels', loss: 'softmax-cross-entropy', classification: true });
  const batch = {
    inputs: { data: new Float32Array([1, 2, 3, 4]), shape: [2, 2] },
    // Labels counted from 1: class 3 does not exist among the 3 outputs.
    labels: { data: new Int32Array([1, 3]), shape: [2] },
  };
  const error = t.throws(() => model.computeGradients(batch, new Float32Array(9 + 3)));
  t.regex(error?.message ?? '', /batch\(\) of the 'train' split \(training\) returned 'labels' value 3 at position 1 of this rank's batch, outside 0\.\.2/);
  const shapeError = t.throws(() => model.computeGradients({ ...batch, inputs: { data: new Float32Array(3), shape: [2, 2] } }, new Float32Array(12)));
  t.regex(shapeError?.message ?? '', /array 'inputs' with 3 values for shape \[2, 2\] \(4 values\)/);
  model.dispose();
});
