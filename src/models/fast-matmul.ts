/**
 * Matrix products with gradients that suit the tfjs backend in use.
 *
 * tfjs's built-in matMul gradient calls matMul with `transposeA`/`transposeB` set. On the WASM backend
 * (tfjs 4.22) such a call is about ten times slower than a plain product, and its batched products of small
 * matrices (attention) are slow with or without the flags. The `kernel` strategy therefore runs every product,
 * forward and backward, on ringtrain's own `batchMatMul` kernel, which reads either operand transposed at full
 * speed. On the WASM backend it works in place on the tensors (src/kernels/tensor-kernels.ts), and column sums
 * (bias gradients) run on the `columnSums` kernel there too. On the pure-JS cpu backend, tfjs's own gradients
 * are the faster route.
 */
import * as tf from '@tensorflow/tfjs';

import { batchMatMul } from '../kernels/batch-matmul.js';
import { tensorKernels } from '../kernels/tensor-kernels.js';

/** Gradient route of matrix products: ringtrain's kernels, or tfjs's built-in ops and gradients. */
export type MatMulStrategy = 'kernel' | 'built-in';

/** Returns the faster strategy for a backend name: the kernels on `wasm`, tfjs's own gradients elsewhere. */
export function preferredStrategy(backendName: string = tf.getBackend()): MatMulStrategy {
  return backendName === 'wasm' ? 'kernel' : 'built-in';
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
  return (strategy === 'kernel' ? tensorKernels()?.columnSums(x) : null) ?? tf.sum(x, 0);
}

/**
 * Returns op(a) @ op(b) for two 2-D tensors, or for two 3-D tensors as a batch of products, computed by the
 * `batchMatMul` kernel: in place on the WASM backend, else on copies of the values in the kernel memory.
 */
function kernelProduct<T extends tf.Tensor2D | tf.Tensor3D>(a: T, b: T, transposeA: boolean, transposeB: boolean): T {
  const [batch, aRows, aColumns] = (a.rank === 3 ? a.shape : [1, ...a.shape]) as [number, number, number];
  const [bRows, bColumns] = b.shape.slice(-2) as [number, number];
  const m = transposeA ? aColumns : aRows;
  const k = transposeA ? aRows : aColumns;
  const n = transposeB ? bRows : bColumns;
  const shape = { batch, m, k, n, transposeA, transposeB };
  const outputShape = a.rank === 3 ? [batch, m, n] : [m, n];
  const inPlace = tensorKernels()?.product(a, b, shape, outputShape);
  if (inPlace) return inPlace as T;
  const products = batchMatMul(a.dataSync() as Float32Array, b.dataSync() as Float32Array, shape);
  // The products are a view of the kernel's work area, which the next product overwrites. The WASM backend
  // copies them into its own memory at once; other backends keep the array they get, so they get a copy.
  return tf.tensor(tf.getBackend() === 'wasm' ? products : products.slice(), outputShape as [number, number]) as T;
}

/** Returns the gradient rule of `a @ b`: d/da = dy @ bᵀ and d/db = aᵀ @ dy, both on the kernel. */
function productGradient(dy: tf.Tensor, saved: tf.Tensor[]): tf.Tensor[] {
  const [a, b] = saved as tf.Tensor2D[];
  const dyMatrix = dy as tf.Tensor2D;
  return [kernelProduct(dyMatrix, b as tf.Tensor2D, false, true), kernelProduct(a as tf.Tensor2D, dyMatrix, true, false)];
}

/** Computes `a @ b` of 2-D or 3-D tensors, forward and backward, on the kernel. */
const kernelMatMul = customGradient(([a, b], save) => {
  save([a, b]);
  return { value: kernelProduct(a as tf.Tensor2D, b as tf.Tensor2D, false, false), gradFunc: productGradient };
});

/** Computes the batched product `a @ bᵀ`, forward and backward, on the kernel. */
const kernelMatMulTransposeB = customGradient(([a, b], save) => {
  save([a, b]);
  return {
    value: kernelProduct(a as tf.Tensor3D, b as tf.Tensor3D, false, true),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      const [savedA, savedB] = saved as tf.Tensor3D[];
      const dyBatch = dy as tf.Tensor3D;
      // d(a @ bᵀ)/da = dy @ b and d(a @ bᵀ)/db = dyᵀ @ a.
      return [kernelProduct(dyBatch, savedB as tf.Tensor3D, false, false), kernelProduct(dyBatch, savedA as tf.Tensor3D, true, false)];
    },
  };
});

/** Returns a 2-D product for `strategy`; `built-in` is `tf.matMul` itself. */
export function createMatMul(strategy: MatMulStrategy): MatMul2D {
  return strategy === 'kernel' ? (kernelMatMul as MatMul2D) : (a, b) => tf.matMul(a, b);
}

/** Returns `x @ kernel + bias` with one custom gradient for all three inputs, computed with `strategy`. */
export function createDense(strategy: MatMulStrategy): Dense {
  const product =
    strategy === 'kernel'
      ? kernelProduct<tf.Tensor2D>
      : (a: tf.Tensor2D, b: tf.Tensor2D, transposeA: boolean, transposeB: boolean) => tf.matMul(a, b, transposeA, transposeB);
  const dense = customGradient(([x, kernel, bias], save) => {
    save([x, kernel]);
    return {
      value: tf.add(product(x as tf.Tensor2D, kernel as tf.Tensor2D, false, false), bias as tf.Tensor1D),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [savedX, savedKernel] = saved as tf.Tensor2D[];
        const dyMatrix = dy as tf.Tensor2D;
        // d/dx = dy @ kernelᵀ, d/dkernel = xᵀ @ dy, d/dbias = the column sums of dy.
        return [
          product(dyMatrix, savedKernel as tf.Tensor2D, false, true),
          product(savedX as tf.Tensor2D, dyMatrix, true, false),
          columnSums(dyMatrix, strategy),
        ];
      },
    };
  });
  return dense as Dense;
}

/**
 * Returns a batched 3-D product for `strategy`: `built-in` is `tf.matMul` with its own gradient, and `kernel`
 * runs the product and its gradient on the `batchMatMul` kernel. tfjs's own batched product on WASM took 11 to
 * 19 times as long for attention shapes (`npm run bench:kernels`).
 */
export function createBatchMatMul(strategy: MatMulStrategy): BatchMatMul {
  if (strategy === 'built-in') {
    return (a, b, transposeB) => tf.matMul(a, b, false, transposeB);
  }
  return (a, b, transposeB) => (transposeB ? kernelMatMulTransposeB(a, b) : kernelMatMul(a, b)) as tf.Tensor3D;
}
