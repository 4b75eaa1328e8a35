import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import test from 'ava';
import type { ExecutionContext } from 'ava';

import { CharTransformer, type CharTransformerOptions } from '../src/models/char-transformer.js';
import { SeededRandom } from '../src/random.js';

// Backend switches are global to the process, so the tests of this file run one at a time.

/** A model small enough for finite differences on the pure-JS cpu backend. */
const tiny: CharTransformerOptions = {
  vocabularySize: 7,
  contextLength: 8,
  dModel: 8,
  heads: 2,
  layers: 2,
  ffDim: 12,
  dropout: 0,
  seed: 11,
};

async function useBackend(name: 'cpu' | 'wasm'): Promise<void> {
  await tf.setBackend(name);
  await tf.ready();
}

/** Returns `batch * time` seeded ids in [0, vocabularySize). */
function randomIds(batch: number, time: number, vocabularySize: number, seed: number): Int32Array {
  const random = new SeededRandom(seed);
  return Int32Array.from({ length: batch * time }, () => random.nextInt(vocabularySize));
}

/** Returns the logits of `ids` as a flat array, disposing every tensor it made. */
function logitsOf(model: CharTransformer, ids: Int32Array, batch: number, time: number, training: boolean): Float32Array {
  return tf.tidy(() => {
    const tokens = tf.tensor2d(ids, [batch, time], 'int32');
    return model.forward({ tokens }, training);
  }).dataSync() as Float32Array;
}

/** Returns the summed softmax cross-entropy of logits [batch, time, vocabulary] against `targets`. */
function summedCrossEntropy(logits: tf.Tensor, targets: Int32Array): tf.Scalar {
  const vocabulary = logits.shape[2] as number;
  const oneHot = new Float32Array(targets.length * vocabulary);
  targets.forEach((target, row) => {
    oneHot[row * vocabulary + target] = 1;
  });
  const logProbabilities = tf.logSoftmax(tf.reshape(logits, [targets.length, vocabulary]));
  return tf.neg(tf.sum(tf.mul(tf.tensor2d(oneHot, [targets.length, vocabulary]), logProbabilities))) as tf.Scalar;
}

/** Returns the summed loss and every gradient, keyed by parameter name, as plain arrays. */
function lossAndGradients(model: CharTransformer, ids: Int32Array, targets: Int32Array, batch: number, time: number) {
  const tokens = tf.tensor2d(ids, [batch, time], 'int32');
  const { value, grads } = tf.variableGrads(() => summedCrossEntropy(model.forward({ tokens }, true), targets));
  const gradients = new Map<string, Float32Array>();
  for (const entry of model.variables) {
    gradients.set(entry.name, grads[entry.variable.name].dataSync() as Float32Array);
  }
  const loss = value.dataSync()[0];
  tf.dispose([tokens, value, ...Object.values(grads)]);
  return { loss, gradients };
}

/** Returns the summed loss without gradients. */
function lossOnly(model: CharTransformer, ids: Int32Array, targets: Int32Array, batch: number, time: number): number {
  const loss = tf.tidy(() => {
    const tokens = tf.tensor2d(ids, [batch, time], 'int32');
    return summedCrossEntropy(model.forward({ tokens }, false), targets);
  });
  const value = loss.dataSync()[0];
  loss.dispose();
  return value;
}

function variableValues(model: CharTransformer): Float32Array[] {
  return model.variables.map((entry) => entry.variable.dataSync() as Float32Array);
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && a.every((value, index) => Object.is(value, b[index]));
}

function assertNear(t: ExecutionContext, actual: number, expected: number, tolerance: number, label: string): void {
  t.true(Math.abs(actual - expected) <= tolerance, `${label}: expected ${expected} ± ${tolerance}, got ${actual}`);
}

test.serial('forward returns logits shape', async (t) => {
  await useBackend('cpu');
  const model = new CharTransformer(tiny);
  const tokens = tf.tensor2d(randomIds(3, 5, tiny.vocabularySize, 1), [3, 5], 'int32');
  const before = tf.memory().numTensors;
  const logits = model.forward({ tokens }, false);

  t.deepEqual(logits.shape, [3, 5, tiny.vocabularySize]);
  t.is(logits.dtype, 'float32');
  logits.dispose();
  t.is(tf.memory().numTensors, before, 'forward leaves only its output behind');
  tokens.dispose();
  model.dispose();
});

test.serial('variables have unique ordered names', async (t) => {
  await useBackend('cpu');
  const model = new CharTransformer(tiny);
  const names = model.variables.map((entry) => entry.name);

  t.is(new Set(names).size, names.length, 'names are unique');
  t.deepEqual(names.slice(0, 3), ['embedding/token', 'embedding/position', 'block0/attention/norm/gain']);
  t.true(names.includes('block1/attention/query/kernel'));
  t.deepEqual(names.slice(-2), ['output/kernel', 'output/bias']);
  t.true(model.variables.find((entry) => entry.name === 'block0/feedforward/hidden/kernel')!.decay);
  t.false(model.variables.find((entry) => entry.name === 'embedding/token')!.decay);
  model.dispose();
});

test.serial('causality keeps earlier logits identical', async (t) => {
  await useBackend('cpu');
  const model = new CharTransformer(tiny);
  const time = tiny.contextLength;
  const vocabulary = tiny.vocabularySize;
  const changedPosition = 4;
  const ids = randomIds(2, time, vocabulary, 2);
  const changed = ids.slice();
  // Change position 4 of both sequences to a different id.
  changed[changedPosition] = (ids[changedPosition] + 1) % vocabulary;
  changed[time + changedPosition] = (ids[time + changedPosition] + 3) % vocabulary;

  const original = logitsOf(model, ids, 2, time, false);
  const altered = logitsOf(model, changed, 2, time, false);
  for (let sequence = 0; sequence < 2; sequence++) {
    const start = sequence * time * vocabulary;
    const before = original.subarray(start, start + changedPosition * vocabulary);
    const after = altered.subarray(start, start + changedPosition * vocabulary);
    t.true(sameBits(before, after), `sequence ${sequence}: logits before position ${changedPosition} changed`);

    const at = start + changedPosition * vocabulary;
    const originalAt = original.subarray(at, at + vocabulary);
    const alteredAt = altered.subarray(at, at + vocabulary);
    t.false(sameBits(originalAt, alteredAt), `sequence ${sequence}: logits at the changed position did not change`);
  }
  model.dispose();
});

test.serial('same seed gives identical variables', async (t) => {
  await useBackend('cpu');
  const first = new CharTransformer(tiny);
  const second = new CharTransformer(tiny);
  const firstValues = variableValues(first);
  const secondValues = variableValues(second);
  first.variables.forEach((entry, index) => {
    t.true(sameBits(firstValues[index], secondValues[index]), `${entry.name} differs`);
  });
  first.dispose();
  second.dispose();
});

test.serial('different seed changes variables', async (t) => {
  await useBackend('cpu');
  const first = new CharTransformer(tiny);
  const second = new CharTransformer({ ...tiny, seed: tiny.seed + 1 });
  const firstValues = variableValues(first);
  const secondValues = variableValues(second);
  // Embeddings and kernels are drawn from the seed, while biases and norm gains start as constants.
  first.variables.forEach((entry, index) => {
    if (entry.name.endsWith('/kernel') || entry.name.startsWith('embedding/')) {
      t.false(sameBits(firstValues[index], secondValues[index]), `${entry.name} did not change with the seed`);
    }
  });
  first.dispose();
  second.dispose();
});

test.serial('dropout acts only when training', async (t) => {
  await useBackend('cpu');
  const withDropout = new CharTransformer({ ...tiny, dropout: 0.5 });
  const withoutDropout = new CharTransformer(tiny);
  const ids = randomIds(2, 6, tiny.vocabularySize, 3);

  const evaluation = logitsOf(withDropout, ids, 2, 6, false);
  t.true(sameBits(evaluation, logitsOf(withDropout, ids, 2, 6, false)), 'evaluation is deterministic');
  t.true(sameBits(evaluation, logitsOf(withoutDropout, ids, 2, 6, false)), 'evaluation ignores the dropout rate');

  const firstTraining = logitsOf(withDropout, ids, 2, 6, true);
  const secondTraining = logitsOf(withDropout, ids, 2, 6, true);
  t.false(sameBits(firstTraining, evaluation), 'training output equals evaluation output');
  t.false(sameBits(firstTraining, secondTraining), 'two training calls drew the same dropout masks');
  t.true(sameBits(logitsOf(withoutDropout, ids, 2, 6, true), evaluation), 'rate 0 changes training output');
  withDropout.dispose();
  withoutDropout.dispose();
});

test.serial('gradients match central differences', async (t) => {
  await useBackend('cpu');
  const model = new CharTransformer(tiny);
  // time 6 < contextLength 8 also exercises the slice of the position table.
  const batch = 2;
  const time = 6;
  const ids = randomIds(batch, time, tiny.vocabularySize, 4);
  const targets = randomIds(batch, time, tiny.vocabularySize, 5);
  const { gradients } = lossAndGradients(model, ids, targets, batch, time);

  // The loss is about 12 terms of ln 7 ≈ 1.95, so L ≈ 23, where a float32 ulp is 1.9e-6. Allowing 5 ulps of
  // rounding in L, the quotient carries 2 × 1e-5 / (2h) = 0.1 of rounding error for h = 1e-4. h must stay far
  // below the 0.02 scale of the initial embeddings, whose layer norm makes the loss strongly curved in them
  // (h = 1e-3 still misses the token-embedding gradient by 15%, h = 1e-4 by 0.2%). Tolerance: 0.2 absolute
  // plus 1% relative.
  const h = 1e-4;
  const names = [
    'embedding/token',
    'embedding/position',
    'block0/attention/query/kernel',
    'block0/attention/key/kernel',
    'block1/attention/value/bias',
    'block1/attention/output/kernel',
    'block1/feedforward/hidden/kernel',
    'final/norm/gain',
    'output/bias',
  ];
  for (const name of names) {
    const variable = model.variables.find((entry) => entry.name === name)!.variable;
    const analytic = gradients.get(name)!;
    // The element with the largest gradient makes a wrong sign or scale stand out above the tolerance.
    let index = 0;
    analytic.forEach((value, i) => {
      if (Math.abs(value) > Math.abs(analytic[index])) {
        index = i;
      }
    });
    const original = variable.dataSync() as Float32Array;
    const shifted = (delta: number): number => {
      const values = original.slice();
      values[index] += delta;
      tf.tidy(() => variable.assign(tf.tensor(values, variable.shape)));
      return lossOnly(model, ids, targets, batch, time);
    };
    const numeric = (shifted(h) - shifted(-h)) / (2 * h);
    tf.tidy(() => variable.assign(tf.tensor(original, variable.shape)));
    assertNear(t, analytic[index], numeric, 0.2 + 0.01 * Math.abs(numeric), `${name}[${index}]`);
    t.log(`${name}[${index}]: analytic ${analytic[index]}, numeric ${numeric}`);
  }
  model.dispose();
});

test.serial('wasm gradients match cpu gradients', async (t) => {
  const options = { ...tiny, contextLength: 16, dModel: 16, heads: 4 };
  const batch = 3;
  const time = 12;
  const ids = randomIds(batch, time, options.vocabularySize, 6);
  const targets = randomIds(batch, time, options.vocabularySize, 7);

  await useBackend('cpu');
  const cpuModel = new CharTransformer(options);
  const cpu = lossAndGradients(cpuModel, ids, targets, batch, time);
  cpuModel.dispose();

  await useBackend('wasm');
  const wasmModel = new CharTransformer(options);
  const wasm = lossAndGradients(wasmModel, ids, targets, batch, time);
  const wasmShape = tf.tidy(() => wasmModel.forward({ tokens: tf.tensor2d(ids, [batch, time], 'int32') }, false).shape);
  t.deepEqual(wasmShape, [batch, time, options.vocabularySize]);
  wasmModel.dispose();

  // Both backends compute in float32 but sum in different orders (and wasm uses the kernel
  // gradients), so each gradient may differ by a few float32 ulps per op: 1e-4 of its largest entry is ample.
  // The absolute 1e-5 covers gradients that are zero in exact arithmetic, such as the key biases (a shift
  // common to all keys of a query leaves its softmax unchanged), where both backends return rounding noise.
  assertNear(t, wasm.loss, cpu.loss, 1e-4 * Math.abs(cpu.loss), 'summed loss');
  for (const [name, cpuGradient] of cpu.gradients) {
    const wasmGradient = wasm.gradients.get(name)!;
    const scale = Math.max(...Array.from(cpuGradient, Math.abs));
    const difference = Math.max(...Array.from(cpuGradient, (value, i) => Math.abs(value - wasmGradient[i])));
    t.true(difference <= 1e-4 * scale + 1e-5, `${name}: max difference ${difference} exceeds 1e-4 × ${scale} + 1e-5`);
  }
  await useBackend('cpu');
});

test.serial('tiny model learns repeating text', async (t) => {
  await useBackend('cpu');
  const text = 'hello world '.repeat(40);
  const alphabet = [...new Set(text)].sort();
  const ids = Int32Array.from(text, (character) => alphabet.indexOf(character));
  const time = 12;
  const batch = 8;
  const model = new CharTransformer({
    vocabularySize: alphabet.length,
    contextLength: time,
    dModel: 16,
    heads: 2,
    layers: 1,
    ffDim: 32,
    dropout: 0,
    seed: 5,
  });
  const optimizer = tf.train.adam(1e-2);
  const random = new SeededRandom(9);

  // With one character of context 'l' is followed by 'l', 'o' or 'd' and 'o' by ' ' or 'r', so a bigram model
  // is stuck at (3/12) ln 3 + (2/12) ln 2 ≈ 0.39 nats per character. Two characters fix every successor, so
  // a model that attends to earlier positions can reach 0.39 / 12 ≈ 0.03 (only position 0 stays uncertain).
  // A mean below 0.2 therefore shows attention at work.
  const bound = 0.2;
  const maxSteps = 400;
  let meanLoss = Number.POSITIVE_INFINITY;
  let steps = 0;
  while (steps < maxSteps && meanLoss >= bound) {
    const starts = Array.from({ length: batch }, () => random.nextInt(ids.length - time - 1));
    const tokens = new Int32Array(batch * time);
    const targets = new Int32Array(batch * time);
    starts.forEach((start, row) => {
      tokens.set(ids.subarray(start, start + time), row * time);
      targets.set(ids.subarray(start + 1, start + time + 1), row * time);
    });
    const tokenTensor = tf.tensor2d(tokens, [batch, time], 'int32');
    const loss = optimizer.minimize(
      () => tf.div(summedCrossEntropy(model.forward({ tokens: tokenTensor }, true), targets), batch * time) as tf.Scalar,
      true,
    )!;
    meanLoss = loss.dataSync()[0];
    tf.dispose([loss, tokenTensor]);
    steps += 1;
  }
  t.true(meanLoss < bound, `mean loss ${meanLoss} after ${steps} steps, expected below ${bound}`);
  optimizer.dispose();
  model.dispose();
});

test.serial('forward rejects out-of-range ids', async (t) => {
  await useBackend('cpu');
  const model = new CharTransformer(tiny);
  const tokens = tf.tensor2d([0, 1, tiny.vocabularySize], [1, 3], 'int32');
  const error = t.throws(() => model.forward({ tokens }, false));
  t.regex(error!.message, /token id 7 at flat index 2 is outside \[0, 7\)/);

  const tooLong = tf.zeros([1, tiny.contextLength + 1], 'int32');
  t.throws(() => model.forward({ tokens: tooLong }, false), { message: /1 <= time <= contextLength \(8\)/ });
  tf.dispose([tokens, tooLong]);
  model.dispose();
});

test.serial('constructor rejects invalid heads', (t) => {
  t.throws(() => new CharTransformer({ ...tiny, heads: 3 }), { message: /heads \(3\) must divide dModel \(8\)/ });
});
