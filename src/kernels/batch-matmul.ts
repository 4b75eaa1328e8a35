/**
 * Batched float32 matrix products of small matrices, such as the attention scores and contexts of a tagger:
 * c[t] = op(a[t]) @ op(b[t]) for every t of the batch, where op transposes its matrix when asked to.
 *
 * The `batchMatMul` kernel (kernels.wat) computes them with four-lane SIMD on the kernel memory. The operands
 * are copied into a work area of that memory first, and the products are returned as a view of it, valid
 * until the next call. tfjs 4.22's WASM backend reaches only about 1.6 GFLOP/s on such shapes (64 products of
 * 24 x 24 by 24 x 32), so the copies pay for themselves many times over (`npm run bench:kernels`).
 *
 * Every output is the float32 sum over p = 0, 1, ..., k - 1 of the float32 products, added in that order from
 * +0 with one rounding per operation. `batchMatMulScalar` does the same in a JavaScript loop and gives the same
 * bits; it also serves when the kernel memory has reached its limit.
 */
import { kernelMemory } from './kernel-memory.js';

/** Sizes of a batched product: `a` stores batch matrices of m x k (k x m when transposeA), `b` of k x n (n x k). */
export interface BatchMatMulShape {
  batch: number;
  m: number;
  k: number;
  n: number;
  transposeA: boolean;
  transposeB: boolean;
}

/** The work area: operands, products and the transposed right-hand matrix, grown by doubling. */
let work: Float32Array | null = null;

/** Returns the floats each operand of `shape` holds, after checking that the sizes are positive integers. */
function operandSizes(shape: BatchMatMulShape): { a: number; b: number; c: number } {
  const { batch, m, k, n } = shape;
  for (const [name, value] of Object.entries({ batch, m, k, n })) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(
        `batched product size ${name} must be a positive integer (got ${value}); pass the sizes of non-empty matrices`,
      );
    }
  }
  return { a: batch * m * k, b: batch * k * n, c: batch * m * n };
}

/**
 * Returns the products of `a` and `b` for `shape` as a view of the kernel memory. The next call overwrites it,
 * so copy it first, or hand it to a tfjs backend that copies.
 */
export function batchMatMul(a: Float32Array, b: Float32Array, shape: BatchMatMulShape): Float32Array {
  const sizes = operandSizes(shape);
  checkLengths(a, b, sizes);
  const { k, n } = shape;
  const needed = sizes.a + sizes.b + sizes.c + k * n;
  const memory = kernelMemory();
  if (work === null || work.length < needed) {
    let capacity = work === null ? 1 << 16 : work.length;
    while (capacity < needed) capacity *= 2;
    // NOTE: the kernel memory never frees, so the previous, smaller work area stays allocated.
    work = memory.allocateFloats(capacity);
  }

  const base = memory.addressOf(work);
  if (base < 0) {
    return batchMatMulScalar(a, b, shape);
  }
  work.set(a.subarray(0, sizes.a), 0);
  work.set(b.subarray(0, sizes.b), sizes.a);
  const cOffset = sizes.a + sizes.b;
  const scratchOffset = cOffset + sizes.c;
  memory.kernels.batchMatMul(
    base,
    base + sizes.a * 4,
    base + cOffset * 4,
    base + scratchOffset * 4,
    shape.batch,
    shape.m,
    k,
    n,
    shape.transposeA ? 1 : 0,
    shape.transposeB ? 1 : 0,
  );
  return work.subarray(cOffset, cOffset + sizes.c);
}

/** Computes the products in a JavaScript loop with the kernel's order of operations and roundings, into a new array. */
export function batchMatMulScalar(a: Float32Array, b: Float32Array, shape: BatchMatMulShape): Float32Array {
  const sizes = operandSizes(shape);
  checkLengths(a, b, sizes);
  const { batch, m, k, n, transposeA, transposeB } = shape;
  const c = new Float32Array(sizes.c);
  for (let t = 0; t < batch; t++) {
    const aBase = t * m * k;
    const bBase = t * k * n;
    const cBase = t * m * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let p = 0; p < k; p++) {
          const left = a[aBase + (transposeA ? p * m + i : i * k + p)] as number;
          const right = b[bBase + (transposeB ? j * k + p : p * n + j)] as number;
          sum = Math.fround(sum + Math.fround(left * right));
        }
        c[cBase + i * n + j] = sum;
      }
    }
  }
  return c;
}

function checkLengths(a: Float32Array, b: Float32Array, sizes: { a: number; b: number }): void {
  if (a.length < sizes.a || b.length < sizes.b) {
    throw new RangeError(
      `batched product operands hold ${a.length} and ${b.length} floats but the shape needs ${sizes.a} and ${sizes.b}; ` +
        'pass arrays that match batch, m, k and n',
    );
  }
}
