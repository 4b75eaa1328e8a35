/**
 * The element loop of AdamW: one update of a run of consecutive elements that share a weight-decay factor.
 * It runs as the `adamw` kernel (kernels.wat), two elements per instruction in float64 lanes, when the
 * parameters, gradients and both moments lie in the kernel memory, and as the scalar loop below otherwise.
 * The kernel performs the scalar loop's operations in the same order with the same roundings, so both give
 * the same bits. test/kernels.test.ts checks this on random values.
 */
import { kernelMemory } from '../kernels/kernel-memory.js';

/** The per-step constants of the update, derived once per step from the config and the step number. */
export interface AdamWCoefficients {
  /** Factor applied to every gradient first, such as 1 / token count; the product is rounded to float32. */
  gradientFactor: number;
  /** Factor applied next (the clipping scale), 1 for none; that product is rounded to float32 too. */
  gradientScale: number;
  beta1: number;
  oneMinusBeta1: number;
  beta2: number;
  oneMinusBeta2: number;
  sqrtBiasCorrection2: number;
  eps: number;
  /** lr / (1 - beta1^t). */
  stepSize: number;
  /** 1 - lr * weightDecay for decayed parameters, else 1. */
  shrink: number;
}

/** The four arrays of the update, all of the model's length. */
export interface AdamWArrays {
  parameters: Float32Array;
  gradients: Float32Array;
  firstMoment: Float32Array;
  secondMoment: Float32Array;
}

/** Updates elements [start, end) of `arrays` in place. */
export function updateElements(arrays: AdamWArrays, start: number, end: number, c: AdamWCoefficients): void {
  const memory = kernelMemory();
  const addresses = [arrays.parameters, arrays.gradients, arrays.firstMoment, arrays.secondMoment].map((array) => memory.addressOf(array));
  const pairs = Math.floor((end - start) / 2);
  let scalarStart = start;
  if (pairs > 0 && addresses.every((address) => address >= 0)) {
    const [p, g, m, v] = addresses.map((address) => address + start * 4) as [number, number, number, number];
    memory.kernels.adamw(
      p,
      g,
      m,
      v,
      pairs * 2,
      c.gradientFactor,
      c.gradientScale,
      c.beta1,
      c.oneMinusBeta1,
      c.beta2,
      c.oneMinusBeta2,
      c.sqrtBiasCorrection2,
      c.eps,
      c.stepSize,
      c.shrink,
    );
    scalarStart = start + pairs * 2;
  }
  if (scalarStart < end) {
    updateElementsScalar(arrays, scalarStart, end, c);
  }
}

/** Updates elements [start, end) one at a time: the reference that the kernel matches bit for bit. */
export function updateElementsScalar(arrays: AdamWArrays, start: number, end: number, c: AdamWCoefficients): void {
  const { parameters, gradients, firstMoment: m, secondMoment: v } = arrays;
  const { gradientFactor, gradientScale, beta1, oneMinusBeta1, beta2, oneMinusBeta2, sqrtBiasCorrection2, eps, stepSize, shrink } = c;
  for (let i = start; i < end; i++) {
    // Each Math.fround is the value a float32 store of the scaled, then clipped gradient keeps. With factors
    // of 1 it is the gradient itself.
    const g = Math.fround(Math.fround((gradients[i] as number) * gradientFactor) * gradientScale);
    // Math.fround gives the value the float32 store keeps, so the update uses exactly the stored moments
    // and a run resumed from saved moments matches an uninterrupted one bit for bit.
    const mi = Math.fround(beta1 * (m[i] as number) + oneMinusBeta1 * g);
    const vi = Math.fround(beta2 * (v[i] as number) + oneMinusBeta2 * g * g);
    m[i] = mi;
    v[i] = vi;
    const denominator = Math.sqrt(vi) / sqrtBiasCorrection2 + eps;
    parameters[i] = (parameters[i] as number) * shrink - (stepSize * mi) / denominator;
  }
}
