/**
 * Differentiable ops of the character transformer that avoid kernels which are missing or slow on the tfjs WASM
 * backend: a one-hot product for the embedding lookup (WASM cannot differentiate `tf.gather`) and a broadcast
 * row add whose gradient is a column sum instead of `tf.sum` over the batch axis.
 */
import * as tf from '@tensorflow/tfjs';

import { columnSums, customGradient, type MatMulStrategy } from './fast-matmul.js';

/** Additive attention bias of future keys, whose exp() underflows to exactly 0 in float32. */
const FUTURE_KEY_BIAS = -1e9;

/**
 * Returns the rows of `table` [rows, width] selected by `ids` (each in [0, rows)) as an [ids.length, width]
 * matrix: the product of a one-hot matrix with `table`. Only `table` gets a gradient, oneHotᵀ @ dy.
 *
 * The one-hot matrix is filled in JavaScript because the WASM `OneHot` kernel of tfjs 4.22 ignores the requested
 * dtype and writes int32 bits into a float32 output (1 reads back as 1.4e-45).
 */
export function embedRows(ids: ArrayLike<number>, table: tf.Tensor2D, strategy: MatMulStrategy): tf.Tensor2D {
  const rows = table.shape[0];
  const oneHotValues = new Float32Array(ids.length * rows);
  for (let i = 0; i < ids.length; i++) {
    oneHotValues[i * rows + ids[i]] = 1;
  }
  const oneHot = tf.tensor2d(oneHotValues, [ids.length, rows]);
  const lookup = customGradient(([matrix], save) => {
    // Saving the one-hot matrix keeps it alive when the caller's tidy scope ends before backpropagation.
    save([oneHot]);
    return {
      value: tf.matMul(oneHot, matrix as tf.Tensor2D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const savedOneHot = saved[0] as tf.Tensor2D;
        if (strategy === 'built-in') {
          return tf.matMul(savedOneHot, dy as tf.Tensor2D, true, false);
        }
        return tf.matMul(tf.transpose(savedOneHot), dy as tf.Tensor2D);
      },
    };
  });
  return lookup(table) as tf.Tensor2D;
}

/**
 * Returns `x + row` for `x` [rows, width] and `row` [1, width], broadcasting `row` to every row of `x`.
 * The gradient of `row` is the column sum of dy, taken with `strategy` (a product with ones on WASM).
 */
export function addToEveryRow(x: tf.Tensor2D, row: tf.Tensor2D, strategy: MatMulStrategy): tf.Tensor2D {
  const add = customGradient(([matrix, broadcastRow]) => ({
    value: tf.add(matrix, broadcastRow),
    gradFunc: (dy: tf.Tensor) => {
      const dyMatrix = dy as tf.Tensor2D;
      // A clone, because returning dy itself made the WASM backend of tfjs 4.22 fail with out-of-bounds memory
      // errors later in the same backward pass.
      return [tf.clone(dyMatrix), tf.reshape(columnSums(dyMatrix, strategy), [1, dyMatrix.shape[1]])];
    },
  }));
  return add(x, row) as tf.Tensor2D;
}

/**
 * Returns the additive causal mask [1, time, time]: 0 where key position <= query position, FUTURE_KEY_BIAS
 * elsewhere, so the softmax gives future positions a weight of exactly 0.
 */
export function causalKeyBias(time: number): tf.Tensor3D {
  const values = new Float32Array(time * time);
  for (let query = 0; query < time; query++) {
    values.fill(FUTURE_KEY_BIAS, query * time + query + 1, (query + 1) * time);
  }
  return tf.tensor3d(values, [1, time, time]);
}
