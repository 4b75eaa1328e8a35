import { fileURLToPath } from 'node:url';

import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import test from 'ava';
import type { ExecutionContext } from 'ava';
import pino from 'pino';

import type { RunConfig } from '../src/config/types.js';
import { makeTaggerBatch, encodeSentences } from '../src/data/brown-dataset.js';
import { readCorpus, splitCorpus } from '../src/data/brown-corpus.js';
import { buildTagList, Vocabulary } from '../src/data/vocabulary.js';
import { SHAPE_COUNT, SUFFIX_LENGTHS } from '../src/data/word-features.js';
import { TransformerTagger, type TaggerConfig } from '../src/models/tagger.js';
import type { TaggerBatch } from '../src/models/tagger-batch.js';
import { loadLocalTask } from '../src/tasks/build.js';
import { defaultConfig } from '../src/config/defaults.js';

const fixture = fileURLToPath(new URL('../../test/fixtures/brown-mini', import.meta.url));

/** Fixture training sentences encoded for a tiny tagger, and the tagger's sizes. */
function tinySetup(): { config: TaggerConfig; batchOf: (indices: number[], padMultiple?: number) => TaggerBatch } {
  const splits = splitCorpus(readCorpus(fixture, 0), 2, 64);
  const vocabulary = Vocabulary.build(splits.train, 2, 100);
  const tags = buildTagList([...splits.train, ...splits.eval]);
  const encoded = encodeSentences(splits.train, vocabulary, tags, 32);
  const config: TaggerConfig = {
    vocabularySize: vocabulary.size,
    suffixBuckets: 32,
    suffixCount: SUFFIX_LENGTHS.length,
    shapeCount: SHAPE_COUNT,
    maxLength: 32,
    classCount: tags.length,
    dModel: 8,
    heads: 2,
    layers: 2,
    ffDim: 12,
    contextWindow: 1,
    seed: 7,
  };
  return { config, batchOf: (indices, padMultiple = 1) => makeTaggerBatch(encoded, indices, padMultiple) };
}

async function useBackend(name: 'cpu' | 'wasm'): Promise<void> {
  await tf.setBackend(name);
  await tf.ready();
}

/** Returns the largest |a - b| divided by the largest |b| (at least 1e-12). */
function relativeMaxDifference(a: Float32Array, b: Float32Array): number {
  let difference = 0;
  let scale = 1e-12;
  for (let i = 0; i < a.length; i++) {
    difference = Math.max(difference, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return difference / scale;
}

function assertNear(t: ExecutionContext, actual: number, expected: number, tolerance: number, label: string): void {
  t.true(Math.abs(actual - expected) <= tolerance, `${label}: expected ${expected} ± ${tolerance}, got ${actual}`);
}

// Backend switches are global, so the tests of this file run one at a time.

test.serial('computeGradients leaks no tensors', async (t) => {
  for (const backend of ['cpu', 'wasm'] as const) {
    await useBackend(backend);
    const { config, batchOf } = tinySetup();
    const model = new TransformerTagger(config);
    const gradients = new Float32Array(model.parameterCount);
    const batch = batchOf([0, 1, 2]);
    model.computeGradients(batch, gradients);
    const before = tf.memory().numTensors;
    model.computeGradients(batch, gradients);
    model.predict(batch);
    t.is(tf.memory().numTensors, before, `tensor count on ${backend}`);
    model.dispose();
  }
});

test.serial('computeGradients matches finite differences', async (t) => {
  await useBackend('cpu');
  const { config, batchOf } = tinySetup();
  const model = new TransformerTagger(config);
  // Initial embedding entries (std 0.02) feed a layer norm through the window projection, where the loss curves
  // so sharply that no float32 step size is both linear and above rounding noise. Scaling the tables to std 0.5
  // moves the check to a regime where h = 1e-2 is accurate for every parameter.
  for (const [index, spec] of model.specs.entries()) {
    if (spec.name.startsWith('embedding/')) {
      const variable = model.variables[index];
      const scaled = tf.mul(variable, 25);
      variable.assign(scaled);
      scaled.dispose();
    }
  }
  // Sentences 2 and 1: 14 tokens.
  const batch = batchOf([2, 1]);
  const gradients = new Float32Array(model.parameterCount);
  model.computeGradients(batch, gradients);

  const lossAt = (): number => tf.tidy(() => model.lossTensor(batch).dataSync()[0]);
  const offsets: number[] = [];
  model.specs.reduce((offset, spec) => {
    offsets.push(offset);
    return offset + spec.shape.reduce((product, size) => product * size, 1);
  }, 0);

  // "the" has word id 2, so element 19 is entry 3 of its row. Other picks: a position row, the window kernel,
  // a query kernel, a value bias, a norm gain, a feed-forward kernel, the classifier.
  const probes: Array<[string, number]> = [
    ['embedding/word', 2 * config.dModel + 3],
    ['embedding/position', 1 * config.dModel + 5],
    ['input/window/kernel', 40],
    ['layer0/attention/head1/query/kernel', 9],
    ['layer1/attention/head0/value/bias', 2],
    ['layer0/feedforward/norm/gain', 4],
    ['layer1/feedforward/hidden/kernel', 17],
    ['classifier/kernel', 30],
  ];
  // Central differences with h = 1e-2 in float32. The loss (about 14 * ln 21 = 43) carries rounding errors of a
  // few times 43 * 6e-8 = 2.6e-6, so the quotient is off by about 1e-3; the h^2 term is smaller.
  // Tolerance: 2e-3 absolute plus 2% of the gradient.
  const h = 1e-2;
  for (const [name, element] of probes) {
    const index = model.specs.findIndex((spec) => spec.name === name);
    const variable = model.variables[index];
    const original = variable.dataSync().slice() as Float32Array;
    const setValues = (values: Float32Array): void => {
      const tensor = tf.tensor(values, variable.shape);
      variable.assign(tensor);
      tensor.dispose();
    };
    const shifted = (delta: number): number => {
      const values = original.slice();
      values[element] += delta;
      setValues(values);
      return lossAt();
    };
    const numeric = (shifted(h) - shifted(-h)) / (2 * h);
    setValues(original);
    const analytic = gradients[offsets[index] + element];
    assertNear(t, analytic, numeric, 2e-3 + 0.02 * Math.abs(numeric), `${name}[${element}]`);
  }
  model.dispose();
});

test.serial('computeGradients equals tf.grads on cpu', async (t) => {
  await useBackend('cpu');
  const { config, batchOf } = tinySetup();
  const model = new TransformerTagger(config);
  const batch = batchOf([1, 3, 5]);
  const gradients = new Float32Array(model.parameterCount);
  model.computeGradients(batch, gradients);

  // On cpu tf.gather is differentiable, so the variables' gradients come straight from the tape.
  const { grads } = tf.variableGrads(() => model.lossTensor(batch), model.variables as tf.Variable[]);
  let offset = 0;
  for (const [index, spec] of model.specs.entries()) {
    const reference = grads[model.variables[index].name].dataSync() as Float32Array;
    const ours = gradients.subarray(offset, offset + reference.length);
    // Same float32 operations in a different order: 1e-5 of the largest entry.
    t.true(relativeMaxDifference(ours, reference) <= 1e-5, `gradient of ${spec.name}`);
    offset += reference.length;
  }
  tf.dispose(grads);
  model.dispose();
});

test.serial('cpu and wasm agree', async (t) => {
  const { config, batchOf } = tinySetup();
  const batch = batchOf([0, 1, 3]);
  const results: Array<{ loss: number; gradients: Float32Array; parameters: Float32Array }> = [];
  for (const backend of ['cpu', 'wasm'] as const) {
    await useBackend(backend);
    const model = new TransformerTagger(config);
    const gradients = new Float32Array(model.parameterCount);
    const { lossSum } = model.computeGradients(batch, gradients);
    const parameters = new Float32Array(model.parameterCount);
    let offset = 0;
    for (const variable of model.variables) {
      parameters.set(variable.dataSync() as Float32Array, offset);
      offset += variable.size;
    }
    results.push({ loss: lossSum, gradients, parameters });
    model.dispose();
  }
  const [cpu, wasm] = results;
  t.deepEqual(wasm.parameters, cpu.parameters, 'initial parameters are bit-identical');
  // Float32 kernels of two backends: relative 1e-5 on the loss, 1e-4 of the largest gradient entry.
  assertNear(t, wasm.loss, cpu.loss, 1e-5 * Math.abs(cpu.loss), 'loss');
  t.true(relativeMaxDifference(wasm.gradients, cpu.gradients) <= 1e-4, 'gradients');
});

test.serial('padding leaves loss unchanged', async (t) => {
  for (const backend of ['cpu', 'wasm'] as const) {
    await useBackend(backend);
    const { config, batchOf } = tinySetup();
    const model = new TransformerTagger(config);
    const gradients = new Float32Array(model.parameterCount);
    // Sentence 2 has 6 tokens: padded to 6 and to 24 positions.
    const tight = batchOf([2]);
    const padded = batchOf([2], 24);
    t.is(padded.length, 24);
    const { lossSum: tightLoss, count } = model.computeGradients(tight, gradients);
    const tightGradients = gradients.slice();
    const { lossSum: paddedLoss } = model.computeGradients(padded, gradients);
    t.is(count, 6);
    assertNear(t, paddedLoss, tightLoss, 1e-5 * Math.abs(tightLoss), `loss on ${backend}`);
    t.true(relativeMaxDifference(gradients, tightGradients) <= 1e-5, `gradients on ${backend}`);
    model.dispose();
  }
});

test.serial('predict marks padding with -1', async (t) => {
  await useBackend('cpu');
  const { config, batchOf } = tinySetup();
  const model = new TransformerTagger(config);
  const batch = batchOf([2, 1]);
  const predicted = model.predict(batch);
  t.is(predicted.length, 16);
  for (let i = 0; i < predicted.length; i++) {
    if (batch.labels[i] < 0) {
      t.is(predicted[i], -1, `position ${i}`);
    } else {
      t.true(predicted[i] >= 0 && predicted[i] < config.classCount, `position ${i}`);
    }
  }
  model.dispose();
});

test.serial('host values give the same gradients as the variables', async (t) => {
  await useBackend('wasm');
  const { config, batchOf } = tinySetup();
  const batch = batchOf([0, 1, 2, 3]);
  const fromVariables = new TransformerTagger(config);
  const fromHost = new TransformerTagger(config);
  const flat = new Float32Array(fromHost.parameterCount);
  let offset = 0;
  for (const variable of fromHost.variables) {
    flat.set(variable.dataSync() as Float32Array, offset);
    offset += variable.size;
  }
  const hostOnly = fromHost.useHostValues(flat);
  t.deepEqual(
    hostOnly.map((index) => fromHost.specs[index]?.name).sort(),
    ['embedding/position', 'embedding/shape', 'embedding/suffix', 'embedding/word'],
  );

  // Twice: with the initial values, then after new values went into both the variables and the host array.
  for (let round = 0; round < 2; round++) {
    const expected = new Float32Array(fromVariables.parameterCount);
    const actual = new Float32Array(fromHost.parameterCount);
    const expectedResult = fromVariables.computeGradients(batch, expected);
    const actualResult = fromHost.computeGradients(batch, actual);
    t.is(actualResult.lossSum, expectedResult.lossSum, `round ${round}: loss`);
    t.deepEqual(Buffer.from(actual.buffer), Buffer.from(expected.buffer), `round ${round}: gradients`);
    for (let i = 0; i < flat.length; i++) flat[i] = (flat[i] as number) * 0.5 + (i % 7) * 1e-3;
    for (const model of [fromVariables, fromHost]) {
      offset = 0;
      for (const variable of model.variables) {
        variable.assign(tf.tensor(flat.slice(offset, offset + variable.size), variable.shape));
        offset += variable.size;
      }
    }
  }
  // The host array is what the tagger reads its embeddings from: changing only the array changes the loss.
  for (let i = 0; i < flat.length; i++) flat[i] = (flat[i] as number) * 2;
  const unchanged = fromVariables.computeGradients(batch, new Float32Array(fromVariables.parameterCount));
  const changed = fromHost.computeGradients(batch, new Float32Array(fromHost.parameterCount));
  t.not(changed.lossSum, unchanged.lossSum);
  t.throws(() => fromHost.useHostValues(new Float32Array(3)), { message: /host parameter array has 3 values/ });
  fromVariables.dispose();
  fromHost.dispose();
});

test.serial('computeGradients rejects short buffer', async (t) => {
  await useBackend('cpu');
  const { config, batchOf } = tinySetup();
  const model = new TransformerTagger(config);
  const error = t.throws(() => model.computeGradients(batchOf([0]), new Float32Array(10)));
  t.regex(error?.message ?? '', /parameterCount/);
  model.dispose();
});

test.serial('TransformerTagger rejects heads not dividing', async (t) => {
  await useBackend('cpu');
  const { config } = tinySetup();
  const error = t.throws(() => new TransformerTagger({ ...config, heads: 3 }));
  t.regex(error?.message ?? '', /model\.heads \(3\) must divide model\.dModel \(8\)/);
});

test.serial('brown-pos task loads fixture corpus', async (t) => {
  await useBackend('cpu');
  const config = defaultConfig();
  config.seed = 3;
  config.backend = 'cpu';
  config.data = { ...config.data, corpus: fixture, heldOutEvery: 2, maxSentenceTokens: 10, minWordCount: 2, maxVocabulary: 100, limitFiles: 0 };
  config.model = { ...config.model, dModel: 8, heads: 2, layers: 1, ffDim: 16, suffixBuckets: 64 };
  const { task, makeBatch } = await loadLocalTask(config);
  // Training pieces after splitting at 10 tokens: 6, 6, 8, 6 (ca01) and 8, 7, 8, 9, 9 (cb01).
  t.is(task.info.trainSize, 9);
  t.deepEqual([...(task.info.trainLengths ?? [])], [6, 6, 8, 6, 8, 7, 8, 9, 9]);
  t.is(task.info.evalSize, 3);
  t.is(task.classNames.length, 21);
  const batch = makeBatch('eval', [0, 1, 2]) as TaggerBatch;
  // Held-out lengths 7, 8 (ca02) and 7 (cb02): 22 tokens.
  t.is(batch.tokenCount, 22);
  t.is(task.evaluateBatch(batch).labels, batch.labels);
  task.model.dispose();
});
