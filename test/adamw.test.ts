import test from 'ava';
import type { ExecutionContext } from 'ava';

import type { OptimizerConfig } from '../src/config/types.js';
import type { ParameterSpec } from '../src/models/model.js';
import { AdamW, countParameters } from '../src/optim/adamw.js';
import { clipByGlobalNorm, globalNorm } from '../src/optim/clip.js';

/** Constant learning rate: no warm-up, and a cosine from lr to lr * 1 is flat. */
function constantConfig(lr: number, weightDecay: number, clipNorm = 0): OptimizerConfig {
  return { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay, warmupSteps: 0, minLrRatio: 1, clipNorm, shardState: false };
}

function assertNear(t: ExecutionContext, actual: number, expected: number, tolerance: number, label: string): void {
  t.true(Math.abs(actual - expected) <= tolerance, `${label}: expected ${expected} ± ${tolerance}, got ${actual}`);
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.compare(Buffer.from(a.buffer, a.byteOffset, a.byteLength), Buffer.from(b.buffer, b.byteOffset, b.byteLength)) === 0;
}

/** Deterministic gradients in roughly [-1, 1], times 20 on every fourth step so that clipping engages. */
function syntheticGradients(count: number, step: number): Float32Array {
  const gradients = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    gradients[i] = Math.sin(12.9898 * (i + 1) + 78.233 * step) * (step % 4 === 0 ? 20 : 1);
  }
  return gradients;
}

const threeElements: ParameterSpec[] = [
  { name: 'dense/kernel', shape: [2], decay: true },
  { name: 'dense/bias', shape: [1], decay: false },
];

test('countParameters sums shape products', (t) => {
  // 2*3 + 4 + 1 (scalar shape []) = 11.
  const specs: ParameterSpec[] = [
    { name: 'a', shape: [2, 3], decay: true },
    { name: 'b', shape: [4], decay: false },
    { name: 'c', shape: [], decay: false },
  ];
  t.is(countParameters(specs), 11);
});

test('two steps match hand computation', (t) => {
  // lr 0.1 constant, beta1 0.9, beta2 0.999, weightDecay 0.1 on the kernel only (factor 1 - 0.1*0.1 = 0.99).
  // Step 1, g = [0.5, -1, 2]: m = 0.1g, v = 0.001g², bias corrections 0.1 and 0.001 give m̂ = g, v̂ = g²,
  //   so each update is lr * g / |g| = ±0.1 (eps 1e-8 shifts it by < 3e-9).
  //   p = [1*0.99 - 0.1, -2*0.99 + 0.1, 0.5 - 0.1] = [0.89, -1.88, 0.4].
  // Step 2, g = [0.5, 1, -2]: m = 0.9*m + 0.1g = [0.095, 0.01, -0.02]; v = 0.999*v + 0.001g² =
  //   [0.00049975, 0.001999, 0.007996]. Corrections 1 - 0.81 = 0.19 and 1 - 0.998001 = 0.001999 give
  //   m̂ = [0.5, 0.0526316, -0.1052632], v̂ = [0.25, 1, 4], sqrt(v̂) = [0.5, 1, 2],
  //   update = 0.1 * m̂ / sqrt(v̂) = [0.1, 0.00526316, -0.00526316].
  //   p = [0.89*0.99 - 0.1, -1.88*0.99 - 0.00526316, 0.4 + 0.00526316] = [0.7811, -1.86646316, 0.40526316].
  // Tolerance 1e-6: float32 storage of p, m and v (relative 6e-8) plus the 8-digit rounding above.
  const optimizer = new AdamW(threeElements, constantConfig(0.1, 0.1), 10);
  const parameters = new Float32Array([1, -2, 0.5]);

  optimizer.step(parameters, new Float32Array([0.5, -1, 2]));
  assertNear(t, parameters[0], 0.89, 1e-6, 'step 1 kernel[0]');
  assertNear(t, parameters[1], -1.88, 1e-6, 'step 1 kernel[1]');
  assertNear(t, parameters[2], 0.4, 1e-6, 'step 1 bias');

  optimizer.step(parameters, new Float32Array([0.5, 1, -2]));
  assertNear(t, parameters[0], 0.7811, 1e-6, 'step 2 kernel[0]');
  assertNear(t, parameters[1], -1.86646316, 1e-6, 'step 2 kernel[1]');
  assertNear(t, parameters[2], 0.40526316, 1e-6, 'step 2 bias');
  t.is(optimizer.stepCount, 2);
});

test('step one moves by lr', (t) => {
  // Bias correction makes the first update lr * g / (|g| + eps) whatever the gradient's scale.
  // For |g| = 1e-3 eps changes it by a relative 1e-5, so the tolerance is lr * 2e-5 = 2e-7.
  const specs: ParameterSpec[] = [{ name: 'w', shape: [3], decay: false }];
  const optimizer = new AdamW(specs, constantConfig(0.01, 0), 10);
  const parameters = new Float32Array(3);
  optimizer.step(parameters, new Float32Array([1e-3, 5, -200]));
  assertNear(t, parameters[0], -0.01, 2e-7, 'small gradient');
  assertNear(t, parameters[1], -0.01, 2e-7, 'medium gradient');
  assertNear(t, parameters[2], 0.01, 2e-7, 'large gradient');
});

test('weight decay only decay specs', (t) => {
  // Zero gradients leave m = v = 0, so the Adam term is 0 / (0 + eps) = 0 and only decay moves p:
  // decayed p = 2 * (1 - 0.1 * 0.5) = 1.9; undecayed p stays exactly 2.
  const specs: ParameterSpec[] = [
    { name: 'kernel', shape: [1], decay: true },
    { name: 'gain', shape: [1], decay: false },
    { name: 'bias', shape: [1], decay: false },
  ];
  const optimizer = new AdamW(specs, constantConfig(0.1, 0.5), 10);
  const parameters = new Float32Array([2, 2, 2]);
  optimizer.step(parameters, new Float32Array(3));
  assertNear(t, parameters[0], 1.9, 1e-7, 'kernel');
  t.is(parameters[1], 2);
  t.is(parameters[2], 2);
});

test('clipping scales to maxNorm', (t) => {
  // [3, 4] has norm 5; maxNorm 1 gives scale 0.2 (rounded to float32) and [0.6, 0.8], whose norm is 1 within
  // float32 rounding (1e-6).
  const gradients = new Float32Array([3, 4]);
  const result = clipByGlobalNorm(gradients, 1);
  t.is(result.norm, 5);
  t.is(result.scale, Math.fround(0.2));
  assertNear(t, gradients[0], 0.6, 1e-7, 'first');
  assertNear(t, gradients[1], 0.8, 1e-7, 'second');
  assertNear(t, globalNorm(gradients), 1, 1e-6, 'norm after clipping');
});

test('clipping leaves small gradients', (t) => {
  const gradients = new Float32Array([0.3, 0.4]);
  const before = gradients.slice();
  const result = clipByGlobalNorm(gradients, 1);
  t.is(result.scale, 1);
  assertNear(t, result.norm, 0.5, 1e-7, 'norm');
  t.true(sameBits(gradients, before));
});

test('clipping disabled by zero', (t) => {
  const gradients = new Float32Array([30, 40]);
  const before = gradients.slice();
  const result = clipByGlobalNorm(gradients, 0);
  t.is(result.norm, 50);
  t.is(result.scale, 1);
  t.true(sameBits(gradients, before));
});

test('clipping keeps non-finite gradients', (t) => {
  const gradients = new Float32Array([Number.NaN, 1]);
  const result = clipByGlobalNorm(gradients, 1);
  t.true(Number.isNaN(result.norm));
  t.is(result.scale, 1);
  t.is(gradients[1], 1);
});

test('clipping negative maxNorm rejected', (t) => {
  const error = t.throws(() => clipByGlobalNorm(new Float32Array(2), -1), { instanceOf: RangeError });
  t.regex(error?.message ?? '', /got -1/);
});

test('step reports clipping', (t) => {
  // Gradient [3, 4, 0] has norm 5 > clipNorm 1: the step reports norm 5, clipped, and leaves g scaled by 0.2.
  const optimizer = new AdamW(threeElements, constantConfig(0.1, 0, 1), 10);
  const gradients = new Float32Array([3, 4, 0]);
  const result = optimizer.step(new Float32Array(3), gradients);
  t.is(result.gradNorm, 5);
  t.true(result.clipped);
  t.is(result.lr, 0.1);
  assertNear(t, gradients[0], 0.6, 1e-7, 'clipped gradient');
});

test('step reports no clipping', (t) => {
  const optimizer = new AdamW(threeElements, constantConfig(0.1, 0, 10), 10);
  const result = optimizer.step(new Float32Array(3), new Float32Array([3, 4, 0]));
  t.false(result.clipped);
});

/**
 * Runs an independent float64 AdamW: plain number arrays, bias-corrected moments computed explicitly, Math.hypot
 * for the norm, and its own schedule. It never rounds to float32.
 */
function referenceRun(
  specs: readonly ParameterSpec[],
  config: OptimizerConfig,
  totalSteps: number,
  initial: readonly number[],
  steps: number,
): { parameters: number[]; rates: number[] } {
  const decayMask = specs.flatMap((spec) => Array<boolean>(spec.shape.reduce((a, b) => a * b, 1)).fill(spec.decay));
  let p = [...initial];
  let m = p.map(() => 0);
  let v = p.map(() => 0);
  const rates: number[] = [];

  for (let t = 1; t <= steps; t++) {
    let g = Array.from(syntheticGradients(p.length, t));
    const norm = Math.hypot(...g);
    if (config.clipNorm > 0 && norm > config.clipNorm) {
      g = g.map((x) => Math.fround(x * (config.clipNorm / norm)));
    }

    let lr: number;
    if (t <= config.warmupSteps) {
      lr = config.lr * (t / config.warmupSteps);
    } else if (t >= totalSteps) {
      lr = config.lr * config.minLrRatio;
    } else {
      const fraction = (t - config.warmupSteps) / (totalSteps - config.warmupSteps);
      const cosine = 0.5 * (1 + Math.cos(Math.PI * fraction));
      lr = config.lr * (config.minLrRatio + (1 - config.minLrRatio) * cosine);
    }
    rates.push(lr);

    m = m.map((mi, i) => config.beta1 * mi + (1 - config.beta1) * g[i]);
    v = v.map((vi, i) => config.beta2 * vi + (1 - config.beta2) * g[i] ** 2);
    const mHat = m.map((mi) => mi / (1 - config.beta1 ** t));
    const vHat = v.map((vi) => vi / (1 - config.beta2 ** t));
    p = p.map((pi, i) => {
      const decayed = decayMask[i] ? pi - lr * config.weightDecay * pi : pi;
      return decayed - (lr * mHat[i]) / (Math.sqrt(vHat[i]) + config.eps);
    });
  }
  return { parameters: p, rates };
}

const mixedSpecs: ParameterSpec[] = [
  { name: 'embedding', shape: [4, 3], decay: true },
  { name: 'norm/gain', shape: [3], decay: false },
  { name: 'dense/kernel', shape: [3, 2], decay: true },
  { name: 'dense/bias', shape: [2], decay: false },
];
const scheduledConfig: OptimizerConfig = {
  lr: 0.01,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0.05,
  warmupSteps: 5,
  minLrRatio: 0.1,
  clipNorm: 1,
  shardState: false,
};

test('matches float64 reference', (t) => {
  // 25 steps of 23 parameters with warm-up, cosine decay, clipping on every fourth step and mixed decay.
  // Tolerance 1e-6: each step stores p, m and v as float32 (relative 6e-8 on values of size about 1),
  // so 25 steps drift by at most about 25 * 6e-8 = 1.5e-6 in the worst case and far less on average.
  // Learning rates are float64 in both and agree to 1e-15 relative.
  const count = countParameters(mixedSpecs);
  const initial = Array.from({ length: count }, (_, i) => Math.fround(Math.cos(i * 0.7)));
  const totalSteps = 30;
  const steps = 25;
  const reference = referenceRun(mixedSpecs, scheduledConfig, totalSteps, initial, steps);

  const optimizer = new AdamW(mixedSpecs, scheduledConfig, totalSteps);
  const parameters = Float32Array.from(initial);
  for (let step = 1; step <= steps; step++) {
    const { lr } = optimizer.step(parameters, syntheticGradients(count, step));
    const expected = reference.rates[step - 1];
    t.true(Math.abs(lr - expected) <= 1e-15 * expected, `step ${step} lr ${lr} vs ${expected}`);
  }

  let maxDifference = 0;
  for (let i = 0; i < count; i++) {
    maxDifference = Math.max(maxDifference, Math.abs(parameters[i] - reference.parameters[i]));
  }
  t.log(`max |float32 - float64 reference| after ${steps} steps: ${maxDifference}`);
  t.true(maxDifference <= 1e-6, `max difference ${maxDifference}`);
});

test('identical inputs give identical bits', (t) => {
  const count = countParameters(mixedSpecs);
  const first = new AdamW(mixedSpecs, scheduledConfig, 40);
  const second = new AdamW(mixedSpecs, scheduledConfig, 40);
  const firstParameters = Float32Array.from({ length: count }, (_, i) => Math.sin(i));
  const secondParameters = firstParameters.slice();

  for (let step = 1; step <= 40; step++) {
    first.step(firstParameters, syntheticGradients(count, step));
    second.step(secondParameters, syntheticGradients(count, step));
  }

  t.true(sameBits(firstParameters, secondParameters), 'parameters');
  const firstState = first.exportState();
  const secondState = second.exportState();
  t.true(sameBits(firstState.firstMoment, secondState.firstMoment), 'first moment');
  t.true(sameBits(firstState.secondMoment, secondState.secondMoment), 'second moment');
});

test('resumed state continues bit for bit', (t) => {
  const count = countParameters(mixedSpecs);
  const start = Float32Array.from({ length: count }, (_, i) => Math.cos(i));

  const uninterrupted = new AdamW(mixedSpecs, scheduledConfig, 20);
  const straightParameters = start.slice();
  for (let step = 1; step <= 20; step++) {
    uninterrupted.step(straightParameters, syntheticGradients(count, step));
  }

  const before = new AdamW(mixedSpecs, scheduledConfig, 20);
  const resumedParameters = start.slice();
  for (let step = 1; step <= 8; step++) {
    before.step(resumedParameters, syntheticGradients(count, step));
  }
  const after = new AdamW(mixedSpecs, scheduledConfig, 20);
  after.loadState(before.exportState());
  t.is(after.stepCount, 8);
  for (let step = 9; step <= 20; step++) {
    after.step(resumedParameters, syntheticGradients(count, step));
  }

  t.true(sameBits(straightParameters, resumedParameters));
});

test('exported state is a copy', (t) => {
  const optimizer = new AdamW(threeElements, constantConfig(0.1, 0), 10);
  optimizer.step(new Float32Array(3), new Float32Array([1, 1, 1]));
  const state = optimizer.exportState();
  state.firstMoment.fill(42);
  t.not(optimizer.exportState().firstMoment[0], 42);
});

test('gradient length mismatch rejected', (t) => {
  const optimizer = new AdamW(threeElements, constantConfig(0.1, 0), 10);
  const error = t.throws(() => optimizer.step(new Float32Array(3), new Float32Array(5)), { instanceOf: RangeError });
  t.regex(error?.message ?? '', /gradients has 5 elements/);
  t.regex(error?.message ?? '', /model has 3 parameters/);
});

test('parameter length mismatch rejected', (t) => {
  const optimizer = new AdamW(threeElements, constantConfig(0.1, 0), 10);
  const error = t.throws(() => optimizer.step(new Float32Array(2), new Float32Array(3)), { instanceOf: RangeError });
  t.regex(error?.message ?? '', /parameters has 2 elements/);
  t.regex(error?.message ?? '', /model has 3 parameters/);
});

test('non-finite gradient leaves parameters', (t) => {
  const optimizer = new AdamW(threeElements, constantConfig(0.1, 0, 1), 10);
  const parameters = new Float32Array([1, 2, 3]);
  const error = t.throws(() => optimizer.step(parameters, new Float32Array([Number.POSITIVE_INFINITY, 0, 0])), {
    instanceOf: RangeError,
  });
  t.regex(error?.message ?? '', /norm is Infinity at optimizer step 1/);
  t.true(sameBits(parameters, new Float32Array([1, 2, 3])));
  t.is(optimizer.stepCount, 0);
});

test('loadState wrong length rejected', (t) => {
  const optimizer = new AdamW(threeElements, constantConfig(0.1, 0), 10);
  const state = { step: 1, firstMoment: new Float32Array(4), secondMoment: new Float32Array(3) };
  const error = t.throws(() => optimizer.loadState(state), { instanceOf: RangeError });
  t.regex(error?.message ?? '', /state\.firstMoment has 4 elements/);
});

test('zero total steps rejected', (t) => {
  const error = t.throws(() => new AdamW(threeElements, constantConfig(0.1, 0), 0), { instanceOf: RangeError });
  t.regex(error?.message ?? '', /got 0/);
});
