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

/**
 * Returns the sum of x * x over the elements of `ranges`, where x is the element multiplied by `factor` and
 * rounded to float32, without changing `values`. Each range is summed in float64 as two partial sums: one of
 * its even-numbered and one of its odd-numbered elements, counted from the range start. They are added when
 * the range ends, and the ranges are then added in order. The SIMD kernel `sumScaledSquares` adds in exactly this
 * order, so the result has the same bits whether or not `values` lies in the kernel memory.
 */
export function sumOfScaledSquares(values: Float32Array, ranges: readonly ElementRange[], factor: number): number {
  const memory = kernelMemory();
  const address = memory.addressOf(values);
  let total = 0;
  for (const { start, end } of ranges) {
    const pairEnd = start + 2 * Math.floor((end - start) / 2);
    let rangeSum: number;
    if (address >= 0 && pairEnd > start) {
      rangeSum = memory.kernels.sumScaledSquares(address + start * 4, pairEnd - start, factor);
    } else {
      let evenSum = 0;
      let oddSum = 0;
      for (let i = start; i < pairEnd; i += 2) {
        const even = Math.fround((values[i] as number) * factor);
        const odd = Math.fround((values[i + 1] as number) * factor);
        evenSum += even * even;
        oddSum += odd * odd;
      }
      rangeSum = evenSum + oddSum;
    }
    if (pairEnd < end) {
      const last = Math.fround((values[pairEnd] as number) * factor);
      rangeSum += last * last;
    }
    total += rangeSum;
  }
  return total;
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
