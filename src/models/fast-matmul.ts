/**
 * Matrix products with gradients that suit the tfjs backend in use.
 *
 * tfjs's built-in matMul gradient calls matMul with `transposeA`/`transposeB` set. On the WASM backend
 * (tfjs 4.22) such a call is several times slower than transposing explicitly and multiplying plainly, while on
 * the pure-JS cpu backend the explicit transpose is the slower route. Column sums (bias gradients) are also
 * cheaper on WASM as a product with a row of ones than through `tf.sum(x, 0)`. Batched products of small
 * matrices (attention) are slow on WASM with or without the flags, so that strategy runs them on ringtrain's own
 * kernel instead.
 */
import * as tf from '@tensorflow/tfjs';

import { batchMatMul } from '../kernels/batch-matmul.js';

/** Gradient route of matrix products: explicit transposes, or tfjs's built-in gradients. */
export type MatMulStrategy = 'explicit-transpose' | 'built-in';

/** Returns the faster strategy for a backend name: explicit transposes on `wasm`, tfjs's own gradients elsewhere. */
export function preferredStrategy(backendName: string = tf.getBackend()): MatMulStrategy {
  return backendName === 'wasm' ? 'explicit-transpose' : 'built-in';
}

/** A 2-D product `a @ b`. */
export type MatMul2D = (a: tf.Tensor2D, b: tf.Tensor2D) => tf.Tensor2D;

/** A 2-D affine map `x @ kernel + bias` with `x` of shape [rows, in], `kernel` [in, out], `bias` [out]. */
export type Dense = (x: tf.Tensor2D, kernel: tf.Tensor2D, bias: tf.Tensor1D) => tf.Tensor2D;

/** A batched product `a @ b` (or `a @ bᵀ` when `transposeB`) of 3-D tensors with equal batch sizes. */
export type BatchMatMul = (a: tf.Tensor3D, b: tf.Tensor3D, transposeB: boolean) => tf.Tensor3D;

/** The forward value and gradient rule of a custom-gradient op. */
export interface CustomGradientResult {
  value: tf.Tensor;
  gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor | tf.Tensor[];
}

/**
 * Wraps `tf.customGrad` so that `f` receives its tensor inputs as an array and the save function separately.
 * The returned op must be called with as many tensors as `gradFunc` returns gradients.
 */
export function customGradient(
  f: (inputs: tf.Tensor[], save: tf.GradSaveFunc) => CustomGradientResult,
): (...inputs: tf.Tensor[]) => tf.Tensor {
  return tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    return f(args.slice(0, -1) as tf.Tensor[], save);
  });
}

/** Returns the column sums of a 2-D tensor as a 1-D tensor. */
export function columnSums(x: tf.Tensor2D, strategy: MatMulStrategy): tf.Tensor1D {
  if (strategy === 'built-in') {
    return tf.sum(x, 0);
  }
  const ones = tf.ones([1, x.shape[0]]) as tf.Tensor2D;
  return tf.reshape(tf.matMul(ones, x), [x.shape[1]]);
}

/**
 * Returns xᵀ @ dy, the gradient of a weight matrix, without transpose flags. The explicit transpose goes to the
 * narrower of the two operands: with x wider than dy, (dyᵀ @ x)ᵀ transposes dy and the small product instead of x.
 */
function weightGradient(x: tf.Tensor2D, dy: tf.Tensor2D): tf.Tensor2D {
  if (x.shape[1] > dy.shape[1]) {
    return tf.transpose(tf.matMul(tf.transpose(dy), x)) as tf.Tensor2D;
  }
  return tf.matMul(tf.transpose(x), dy);
}

/** A 2-D product whose gradient transposes explicitly and then multiplies without transpose flags. */
const explicitTransposeMatMul = customGradient(
  ([a, b], save) => {
    save([a, b]);
    return {
      value: tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [savedA, savedB] = saved as tf.Tensor2D[];
        const dyMatrix = dy as tf.Tensor2D;
        return [tf.matMul(dyMatrix, tf.transpose(savedB)), weightGradient(savedA, dyMatrix)];
      },
    };
  },
) as MatMul2D;

/** Returns a 2-D product for `strategy`; `built-in` is `tf.matMul` itself. */
export function createMatMul(strategy: MatMulStrategy): MatMul2D {
  return strategy === 'explicit-transpose' ? explicitTransposeMatMul : (a, b) => tf.matMul(a, b);
}

/** Returns `x @ kernel + bias` with one custom gradient for all three inputs, computed with `strategy`. */
export function createDense(strategy: MatMulStrategy): Dense {
  const dense = customGradient(([x, kernel, bias], save) => {
    save([x, kernel]);
    return {
      value: tf.add(tf.matMul(x as tf.Tensor2D, kernel as tf.Tensor2D), bias),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [savedX, savedKernel] = saved as tf.Tensor2D[];
        const dyMatrix = dy as tf.Tensor2D;
        if (strategy === 'built-in') {
          return [
            tf.matMul(dyMatrix, savedKernel, false, true),
            tf.matMul(savedX, dyMatrix, true, false),
            tf.sum(dyMatrix, 0),
          ];
        }
        return [
          tf.matMul(dyMatrix, tf.transpose(savedKernel)),
          weightGradient(savedX, dyMatrix),
          columnSums(dyMatrix, strategy),
        ];
      },
    };
  });
  return dense as Dense;
}

/** The parts of tfjs 4.22's WASM backend that locate a tensor's values in its memory. */
interface WasmBackendInternals {
  wasm?: { HEAPF32?: unknown };
  dataIdMap?: { get(dataId: object): { memoryOffset?: unknown } | undefined };
}

/**
 * Returns the values of a float32 tensor for reading at once: on the WASM backend a view of its memory, which
 * spares the copy that dataSync makes (about 0.05 ms per attention operand), else dataSync's copy. The view is
 * valid only until tfjs allocates again, so the caller copies it before creating any tensor.
 */
function valuesOf(tensor: tf.Tensor): Float32Array {
  if (tf.getBackend() === 'wasm') {
    const backend = tf.backend() as unknown as WasmBackendInternals;
    const heap = backend.wasm?.HEAPF32;
    const offset = backend.dataIdMap?.get(tensor.dataId)?.memoryOffset;
    if (heap instanceof Float32Array && typeof offset === 'number' && offset % 4 === 0) {
      return heap.subarray(offset / 4, offset / 4 + tensor.size);
    }
  }
  return tensor.dataSync() as Float32Array;
}

/**
 * Returns op(a) @ op(b) for 3-D tensors, computed by the `batchMatMul` kernel (src/kernels/batch-matmul.ts)
 * on copies of their values. tfjs's own batched product on WASM took 4.7 to 8.8 times as long for attention
 * shapes (`npm run bench:kernels`).
 */
function kernelProduct(a: tf.Tensor3D, b: tf.Tensor3D, transposeA: boolean, transposeB: boolean): tf.Tensor3D {
  const [batch, aRows, aColumns] = a.shape;
  const [, bRows, bColumns] = b.shape;
  const m = transposeA ? aColumns : aRows;
  const k = transposeA ? aRows : aColumns;
  const n = transposeB ? bRows : bColumns;
  const products = batchMatMul(valuesOf(a), valuesOf(b), {
    batch,
    m,
    k,
    n,
    transposeA,
    transposeB,
  });
  // The WASM backend copies the values into its own memory at once. Other backends keep the array they get,
  // which the next product would overwrite, so they get a copy.
  return tf.tensor3d(tf.getBackend() === 'wasm' ? products : products.slice(), [batch, m, n]);
}

/** A batched product `a @ b` whose forward and backward products run on the kernel. */
const kernelBatchMatMul = customGradient(([a, b], save) => {
  save([a, b]);
  return {
    value: kernelProduct(a as tf.Tensor3D, b as tf.Tensor3D, false, false),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [savedA, savedB] = saved as tf.Tensor3D[];
      const dyBatch = dy as tf.Tensor3D;
      // d(a @ b)/da = dy @ bᵀ and d(a @ b)/db = aᵀ @ dy.
      return [kernelProduct(dyBatch, savedB, false, true), kernelProduct(savedA, dyBatch, true, false)];
    },
  };
});

/** A batched product `a @ bᵀ` whose forward and backward products run on the kernel. */
const kernelBatchMatMulTransposeB = customGradient(([a, b], save) => {
  save([a, b]);
  return {
    value: kernelProduct(a as tf.Tensor3D, b as tf.Tensor3D, false, true),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [savedA, savedB] = saved as tf.Tensor3D[];
      const dyBatch = dy as tf.Tensor3D;
      // d(a @ bᵀ)/da = dy @ b and d(a @ bᵀ)/db = dyᵀ @ a.
      return [kernelProduct(dyBatch, savedB, false, false), kernelProduct(dyBatch, savedA, true, false)];
    },
  };
});

/**
 * Returns a batched 3-D product for `strategy`: `built-in` is `tf.matMul` with its own gradient, and
 * `explicit-transpose` runs the product and its gradient on the `batchMatMul` kernel.
 */
export function createBatchMatMul(strategy: MatMulStrategy): BatchMatMul {
  if (strategy === 'built-in') {
    return (a, b, transposeB) => tf.matMul(a, b, false, transposeB);
  }
  return (a, b, transposeB) =>
    (transposeB ? kernelBatchMatMulTransposeB(a, b) : kernelBatchMatMul(a, b)) as tf.Tensor3D;
}
