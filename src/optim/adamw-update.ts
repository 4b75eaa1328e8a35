/**
 * The element loop of AdamW: one update of a run of consecutive elements that share a weight-decay factor.
 * It runs as the `adamw` kernel (kernels.wat), four elements per instruction in float32 lanes, when the
 * parameters, gradients and both moments lie in the kernel memory, and as the scalar loop below otherwise.
 * Both compute in float32, as PyTorch's AdamW does for float32 parameters: every coefficient is rounded to
 * float32, and every operation's result too (Math.fround in the loop). A float64 operation on float32 values
 * rounded to float32 gives exactly the float32 operation's result for +, -, *, / and sqrt, so the kernel and
 * the loop give the same bits. test/kernels.test.ts checks this on random values.
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
  /** eps * sqrt(1 - beta2^t), the epsilon of the denominator sqrt(v) + eps. */
  eps: number;
  /** lr * sqrt(1 - beta2^t) / (1 - beta1^t). */
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
  const quads = Math.floor((end - start) / 4);
  let scalarStart = start;
  if (quads > 0 && addresses.every((address) => address >= 0)) {
    const [p, g, m, v] = addresses.map((address) => address + start * 4) as [number, number, number, number];
    memory.kernels.adamw(
      p,
      g,
      m,
      v,
      quads * 4,
      c.gradientFactor,
      c.gradientScale,
      c.beta1,
      c.oneMinusBeta1,
      c.beta2,
      c.oneMinusBeta2,
      c.eps,
      c.stepSize,
      c.shrink,
    );
    scalarStart = start + quads * 4;
  }
  if (scalarStart < end) {
    updateElementsScalar(arrays, scalarStart, end, c);
  }
}

/** Updates elements [start, end) one at a time: the reference that the kernel matches bit for bit. */
export function updateElementsScalar(arrays: AdamWArrays, start: number, end: number, c: AdamWCoefficients): void {
  const { parameters, gradients, firstMoment: m, secondMoment: v } = arrays;
  const f = Math.fround;
  const gradientFactor = f(c.gradientFactor);
  const gradientScale = f(c.gradientScale);
  const beta1 = f(c.beta1);
  const oneMinusBeta1 = f(c.oneMinusBeta1);
  const beta2 = f(c.beta2);
  const oneMinusBeta2 = f(c.oneMinusBeta2);
  const eps = f(c.eps);
  const stepSize = f(c.stepSize);
  const shrink = f(c.shrink);
  for (let i = start; i < end; i++) {
    const g = f(f((gradients[i] as number) * gradientFactor) * gradientScale);
    const mi = f(f(beta1 * (m[i] as number)) + f(oneMinusBeta1 * g));
    const vi = f(f(beta2 * (v[i] as number)) + f(f(oneMinusBeta2 * g) * g));
    m[i] = mi;
    v[i] = vi;
    const denominator = f(f(Math.sqrt(vi)) + eps);
    parameters[i] = f(f((parameters[i] as number) * shrink) - f(f(stepSize * mi) / denominator));
  }
}
