import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import test from 'ava';

import {
  createBatchMatMul,
  createDense,
  createMatMul,
  preferredStrategy,
  type MatMulStrategy,
} from '../src/models/fast-matmul.js';
import { normalArray, parameterRandom } from '../src/models/init.js';
import { createLayerNorm, maskedCrossEntropy } from '../src/models/tagger-ops.js';
import { SeededRandom } from '../src/random.js';

const backends = ['cpu', 'wasm'] as const;
const strategies: MatMulStrategy[] = ['kernel', 'built-in'];

async function useBackend(name: 'cpu' | 'wasm'): Promise<void> {
  await tf.setBackend(name);
  await tf.ready();
}

/** Returns a tensor of standard normal values drawn from `seed`. */
function randomTensor(shape: number[], seed: number): tf.Tensor {
  const size = shape.reduce((product, length) => product * length, 1);
  return tf.tensor(normalArray(size, 1, new SeededRandom(seed)), shape);
}

/** Returns max |a - b| / max |b| over two tensors of the same shape. */
function relativeDifference(a: tf.Tensor, b: tf.Tensor): number {
  const x = a.dataSync();
  const y = b.dataSync();
  let difference = 0;
  let scale = 1e-12;
  for (let i = 0; i < x.length; i++) {
    difference = Math.max(difference, Math.abs(x[i] - y[i]));
    scale = Math.max(scale, Math.abs(y[i]));
  }
  return difference / scale;
}

// Every comparison below uses the same float32 products in a different order, so 1e-5 relative to the
// largest entry is about 100 float32 ulps of headroom.
const TOLERANCE = 1e-5;

test.serial('createMatMul gradients equal built-in', async (t) => {
  for (const backend of backends) {
    await useBackend(backend);
    for (const strategy of strategies) {
      const matMul = createMatMul(strategy);
      const a = randomTensor([37, 19], 1);
      const b = randomTensor([19, 23], 2);
      const weights = randomTensor([37, 23], 3);
      const ours = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(matMul(x as tf.Tensor2D, y as tf.Tensor2D), weights)))([a, b]);
      const reference = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y), weights)))([a, b]);
      t.true(relativeDifference(ours[0], reference[0]) <= TOLERANCE, `da, ${strategy} on ${backend}`);
      t.true(relativeDifference(ours[1], reference[1]) <= TOLERANCE, `db, ${strategy} on ${backend}`);
      tf.dispose([a, b, weights, ...ours, ...reference]);
    }
  }
});

test.serial('createDense gradients equal built-in', async (t) => {
  for (const backend of backends) {
    await useBackend(backend);
    for (const strategy of strategies) {
      const dense = createDense(strategy);
      const inputs = [randomTensor([29, 11], 4), randomTensor([11, 7], 5), randomTensor([7], 6)];
      const weights = randomTensor([29, 7], 7);
      const ours = tf.grads((x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) =>
        tf.sum(tf.mul(dense(x as tf.Tensor2D, w as tf.Tensor2D, b as tf.Tensor1D), weights)),
      )(inputs);
      const reference = tf.grads((x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.add(tf.matMul(x, w), b), weights)))(
        inputs,
      );
      ['dx', 'dkernel', 'dbias'].forEach((name, i) => {
        t.true(relativeDifference(ours[i], reference[i]) <= TOLERANCE, `${name}, ${strategy} on ${backend}`);
      });
      tf.dispose([...inputs, weights, ...ours, ...reference]);
    }
  }
});

test.serial('createBatchMatMul gradients equal built-in', async (t) => {
  for (const backend of backends) {
    await useBackend(backend);
    for (const strategy of strategies) {
      const batchMatMul = createBatchMatMul(strategy);
      for (const transposeB of [false, true]) {
        const a = randomTensor([3, 5, 4], 8);
        const b = randomTensor(transposeB ? [3, 6, 4] : [3, 4, 6], 9);
        const weights = randomTensor([3, 5, 6], 10);
        const ours = tf.grads((x: tf.Tensor, y: tf.Tensor) =>
          tf.sum(tf.mul(batchMatMul(x as tf.Tensor3D, y as tf.Tensor3D, transposeB), weights)),
        )([a, b]);
        const reference = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x, y, false, transposeB), weights)))([a, b]);
        const label = `${strategy}, transposeB ${transposeB} on ${backend}`;
        t.true(relativeDifference(ours[0], reference[0]) <= TOLERANCE, `da, ${label}`);
        t.true(relativeDifference(ours[1], reference[1]) <= TOLERANCE, `db, ${label}`);
        tf.dispose([a, b, weights, ...ours, ...reference]);
      }
    }
  }
});

test.serial('createLayerNorm gradients equal autodiff', async (t) => {
  for (const backend of backends) {
    await useBackend(backend);
    for (const strategy of strategies) {
      const layerNorm = createLayerNorm(strategy);
      const inputs = [randomTensor([13, 8], 11), randomTensor([8], 12), randomTensor([8], 13)];
      const weights = randomTensor([13, 8], 14);
      const reference = tf.grads((x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor) => {
        const { mean, variance } = tf.moments(x, -1, true);
        const normalised = tf.div(tf.sub(x, mean), tf.sqrt(tf.add(variance, 1e-5)));
        return tf.sum(tf.mul(tf.add(tf.mul(normalised, gain), bias), weights));
      })(inputs);
      const ours = tf.grads((x: tf.Tensor, gain: tf.Tensor, bias: tf.Tensor) =>
        tf.sum(tf.mul(layerNorm(x as tf.Tensor2D, gain as tf.Tensor1D, bias as tf.Tensor1D), weights)),
      )(inputs);
      ['dx', 'dgain', 'dbias'].forEach((name, i) => {
        t.true(relativeDifference(ours[i], reference[i]) <= TOLERANCE, `${name}, ${strategy} on ${backend}`);
      });
      tf.dispose([...inputs, weights, ...ours, ...reference]);
    }
  }
});

test.serial('maskedCrossEntropy skips padding rows', async (t) => {
  await useBackend('cpu');
  // Two rows of three classes; row 1 is padding. Row 0 logits [0, ln 2, 0], gold class 1:
  // softmax = [1/4, 1/2, 1/4], loss = -ln(1/2) = ln 2, gradient = [1/4, -1/2, 1/4].
  const logits = tf.tensor2d([0, Math.log(2), 0, 5, -3, 1], [2, 3]);
  const targets = tf.tensor2d([0, 1, 0, 0, 0, 0], [2, 3]);
  const rowMask = tf.tensor2d([1, 0], [2, 1]);
  const loss = maskedCrossEntropy(logits, targets, rowMask);
  t.true(Math.abs(loss.dataSync()[0] - Math.log(2)) <= 1e-6, `loss ${loss.dataSync()[0]}`);
  const [gradient] = tf.grads((x: tf.Tensor) => maskedCrossEntropy(x as tf.Tensor2D, targets, rowMask))([logits]);
  const expected = [0.25, -0.5, 0.25, 0, 0, 0];
  const actual = gradient.dataSync();
  expected.forEach((value, i) => t.true(Math.abs(actual[i] - value) <= 1e-6, `gradient[${i}] = ${actual[i]}`));
  tf.dispose([logits, targets, rowMask, loss, gradient]);
});

test('preferredStrategy picks per backend', (t) => {
  t.is(preferredStrategy('wasm'), 'kernel');
  t.is(preferredStrategy('cpu'), 'built-in');
  t.is(preferredStrategy('tensorflow'), 'built-in');
});

test('parameterRandom depends on seed and name', (t) => {
  const draw = (seed: number, name: string) => normalArray(4, 1, parameterRandom(seed, name));
  t.deepEqual(draw(1, 'classifier/kernel'), draw(1, 'classifier/kernel'));
  t.notDeepEqual(draw(1, 'classifier/kernel'), draw(2, 'classifier/kernel'));
  t.notDeepEqual(draw(1, 'classifier/kernel'), draw(1, 'classifier/bias'));
});

test('normalArray has unit variance', (t) => {
  const values = normalArray(20000, 1, new SeededRandom(5));
  const mean = values.reduce((sum, value) => sum + value, 0) / values.length;
  const variance = values.reduce((sum, value) => sum + (value - mean) ** 2, 0) / values.length;
  // Standard errors for 20000 samples: 0.007 for the mean, 0.01 for the variance; allow about 4 of each.
  t.true(Math.abs(mean) <= 0.03, `mean ${mean}`);
  t.true(Math.abs(variance - 1) <= 0.04, `variance ${variance}`);
});
