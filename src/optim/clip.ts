/**
 * Gradient clipping by global L2 norm over one flat buffer.
 */
import { kernelMemory } from '../kernels/kernel-memory.js';

/** The outcome of clipByGlobalNorm. */
export interface ClipResult {
  /** Global L2 norm of the gradients before clipping, or NaN or Infinity when a gradient is not finite. */
  norm: number;
  /** Factor the gradients were multiplied by: `maxNorm / norm` when clipped, otherwise 1. */
  scale: number;
}

/**
 * Computes the L2 norm of `values`, summing squares in float64 from index 0 upwards.
 * The fixed order makes the result identical on every rank that has the same values.
 */
export function globalNorm(values: Float32Array): number {
  let sumOfSquares = 0;
  for (let i = 0; i < values.length; i++) {
    const value = values[i];
    sumOfSquares += value * value;
  }
  return Math.sqrt(sumOfSquares);
}

/** A run of buffer elements, [start, end). */
export interface ElementRange {
  start: number;
  end: number;
}

/** Values per block of the sum of squares, the same blocks as the packed exchange's (src/comm/zero-blocks.ts). */
const SQUARES_BLOCK = 64;

/**
 * Returns the sum of x * x over the elements of `ranges` (sorted and disjoint), where x is the element times
 * `factor`, with `factor` and the product each rounded to float32. `values` stays unchanged.
 *
 * The sum runs over blocks of 64 values counted from index 0 of `values`. Each block's part inside a range is
 * summed on its own, in float32 lanes and then in float64 (see the kernel `sumScaledSquares`). These block
 * sums are added in order in float64. A block part that is all zeros adds exactly +0, so leaving such parts out of
 * `ranges` gives the same bits: the packed exchange relies on it. Whole blocks in the kernel memory run on the
 * SIMD kernel, everything else on `blockPartSum`, which adds in the same order.
 */
export function sumOfScaledSquares(values: Float32Array, ranges: readonly ElementRange[], factor: number): number {
  const memory = kernelMemory();
  const address = memory.addressOf(values);
  const factor32 = Math.fround(factor);
  let total = 0;
  for (const { start, end } of ranges) {
    let index = start;
    while (index < end) {
      const wholeBlocks = index % SQUARES_BLOCK === 0 ? Math.floor((end - index) / SQUARES_BLOCK) : 0;
      if (address >= 0 && wholeBlocks > 0) {
        total = memory.kernels.sumScaledSquares(address + index * 4, wholeBlocks, factor32, total);
        index += wholeBlocks * SQUARES_BLOCK;
      } else {
        const partEnd = Math.min(end, (Math.floor(index / SQUARES_BLOCK) + 1) * SQUARES_BLOCK);
        total += blockPartSum(values, index, partEnd, factor32);
        index = partEnd;
      }
    }
  }
  return total;
}

/**
 * Returns the sum of squares of `values[start, end)`, a part of one block, in the kernel's order: the values
 * outside the part count as zeros, which leave every lane unchanged.
 */
function blockPartSum(values: Float32Array, start: number, end: number, factor32: number): number {
  const lanes = new Float32Array(16);
  for (let i = start; i < end; i++) {
    const x = Math.fround((values[i] as number) * factor32);
    // Value 16 * r + 4 * a + l of the block goes to lane l of accumulator a.
    const lane = i % 16;
    lanes[lane] = (lanes[lane] as number) + Math.fround(x * x);
  }
  const s = [0, 1, 2, 3].map((l) =>
    Math.fround(Math.fround((lanes[l] as number) + (lanes[4 + l] as number)) + Math.fround((lanes[8 + l] as number) + (lanes[12 + l] as number))),
  ) as [number, number, number, number];
  return s[0] + s[2] + (s[1] + s[3]);
}

/**
 * Returns the factor that clipping to `maxNorm` applies to gradients of global norm `norm`: `maxNorm / norm`
 * rounded to float32 when `maxNorm` is above 0 and the norm is finite and above it, otherwise 1 (the rule of
 * clipByGlobalNorm). The float32 rounding makes it the factor that the float32 AdamW update multiplies by.
 */
export function clipScaleFor(norm: number, maxNorm: number): number {
  return maxNorm === 0 || !Number.isFinite(norm) || norm <= maxNorm ? 1 : Math.fround(maxNorm / norm);
}

/**
 * Scales `gradients` in place so that their global L2 norm is at most `maxNorm`, and returns the norm measured
 * before scaling together with the factor applied (see clipScaleFor).
 *
 * A `maxNorm` of 0 disables clipping, but the norm is still measured. Gradients whose norm is at most
 * `maxNorm`, and gradients whose norm is NaN or Infinity, are left unchanged with scale 1: scaling cannot
 * repair a non-finite gradient, so the caller decides what to do with it.
 * Throws a RangeError when `maxNorm` is negative or not finite.
 */
export function clipByGlobalNorm(gradients: Float32Array, maxNorm: number): ClipResult {
  if (!Number.isFinite(maxNorm) || maxNorm < 0) {
    throw new RangeError(
      `maxNorm must be a finite number of at least 0 (got ${maxNorm}); 0 disables clipping, see optimizer.clipNorm`,
    );
  }

  const norm = globalNorm(gradients);
  const scale = clipScaleFor(norm, maxNorm);
  if (scale === 1) {
    return { norm, scale };
  }
  for (let i = 0; i < gradients.length; i++) {
    gradients[i] *= scale;
  }
  return { norm, scale };
}
