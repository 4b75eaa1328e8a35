import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import test from 'ava';

import { batchMatMulScalar } from '../src/kernels/batch-matmul.js';
import { tensorKernels } from '../src/kernels/tensor-kernels.js';
import { SeededRandom } from '../src/random.js';
import { sameBits } from './helpers/bits.js';

/** Returns `length` values spread over several orders of magnitude, with a few signed zeros. */
function values(random: SeededRandom, length: number): Float32Array {
  const array = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    array[i] = (random.next() - 0.5) * 2 ** (random.nextInt(20) - 10);
  }
  array[0] = -0;
  return array;
}

test.serial('in-place products match scalar bits', async (t) => {
  await tf.setBackend('wasm');
  await tf.ready();
  const kernels = tensorKernels();
  if (kernels === null) {
    t.fail('tensorKernels() returned null on the wasm backend; tfjs internals it reads may have changed');
    return;
  }
  const random = new SeededRandom(7);
  const before = tf.memory().numTensors;
  // 2-D products of the tagger's shapes and ragged ones, then batches. The right-hand operand grows between
  // transposed calls, so the transpose area is reallocated.
  const shapes = [
    [1, 96, 64, 24],
    [1, 13, 19, 29],
    [1, 64, 150, 40],
    [3, 5, 7, 37],
    [8, 24, 32, 24],
  ];
  for (const [batch, m, k, n] of shapes as Array<[number, number, number, number]>) {
    for (const transposeA of [false, true]) {
      for (const transposeB of [false, true]) {
        const shape = { batch, m, k, n, transposeA, transposeB };
        const aValues = values(random, batch * m * k);
        const bValues = values(random, batch * k * n);
        const rank3 = batch > 1;
        const aShape = transposeA ? [k, m] : [m, k];
        const bShape = transposeB ? [n, k] : [k, n];
        const a = tf.tensor(aValues, rank3 ? [batch, ...aShape] : aShape);
        const b = tf.tensor(bValues, rank3 ? [batch, ...bShape] : bShape);
        const outputShape = rank3 ? [batch, m, n] : [m, n];
        const product = kernels.product(a, b, shape, outputShape);
        const label = `${batch}x${m}x${k}x${n} transposeA ${transposeA} transposeB ${transposeB}`;
        if (product === null) {
          t.fail(`no in-place product for ${label}`);
          continue;
        }
        t.deepEqual(product.shape, outputShape, label);
        t.true(sameBits(product.dataSync() as Float32Array, batchMatMulScalar(aValues, bValues, shape)), label);
        tf.dispose([a, b, product]);
      }
    }
  }
  t.is(tf.memory().numTensors, before, 'every product tensor is disposed with its operands');
});

test.serial('in-place column sums match loop', async (t) => {
  await tf.setBackend('wasm');
  await tf.ready();
  const random = new SeededRandom(8);
  for (const [rows, columns] of [
    [1536, 64],
    [7, 13],
    [1, 3],
  ] as Array<[number, number]>) {
    const x = values(random, rows * columns);
    const expected = new Float32Array(columns);
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < columns; j++) expected[j] = Math.fround((expected[j] as number) + (x[i * columns + j] as number));
    }
    const input = tf.tensor2d(x, [rows, columns]);
    const sums = tensorKernels()?.columnSums(input);
    t.truthy(sums, `column sums of ${rows} x ${columns}`);
    t.true(sameBits(sums!.dataSync() as Float32Array, expected), `${rows} x ${columns}`);
    tf.dispose([input, sums!]);
  }
});

test.serial('in-place kernels reject bad input', async (t) => {
  await tf.setBackend('cpu');
  t.is(tensorKernels(), null);
  await tf.setBackend('wasm');
  const a = tf.ones([4, 3]);
  const b = tf.ones([3, 2]);
  t.throws(() => tensorKernels()!.product(a, b, { batch: 1, m: 4, k: 2, n: 2, transposeA: false, transposeB: false }, [4, 2]), {
    message: /operands of 12 and 6 values and output shape \[4, 2\] do not match batch 1, m 4, k 2, n 2/,
  });
  const ints = tf.ones([4, 3], 'int32');
  t.is(tensorKernels()!.product(ints, b, { batch: 1, m: 4, k: 3, n: 2, transposeA: false, transposeB: false }, [4, 2]), null);
  tf.dispose([a, b, ints]);
});
