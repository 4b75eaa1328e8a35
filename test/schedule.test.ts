import test from 'ava';

import type { OptimizerConfig } from '../src/config/types.js';
import { learningRateAt } from '../src/optim/schedule.js';

// lr 1e-3, 10 warm-up steps, floor 1e-4 (ratio 0.1), so the cosine phase spans steps 10..110 (100 steps).
const config: OptimizerConfig = {
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  weightDecay: 0,
  warmupSteps: 10,
  minLrRatio: 0.1,
  clipNorm: 0,
  shardState: false,
};
const totalSteps = 110;
// Values are computed in float64, so only rounding in the last bits separates them from the decimal forms.
const tolerance = 1e-15;

function assertClose(t: import('ava').ExecutionContext, actual: number, expected: number): void {
  t.true(Math.abs(actual - expected) <= tolerance, `expected ${expected}, got ${actual}`);
}

test('warm-up first step', (t) => {
  // 1e-3 * 1 / 10 = 1e-4.
  assertClose(t, learningRateAt(1, totalSteps, config), 1e-4);
});

test('warm-up middle step', (t) => {
  // 1e-3 * 5 / 10 = 5e-4.
  assertClose(t, learningRateAt(5, totalSteps, config), 5e-4);
});

test('warm-up last step reaches peak', (t) => {
  // 1e-3 * 10 / 10 = 1e-3, exactly the configured peak.
  t.is(learningRateAt(10, totalSteps, config), 1e-3);
});

test('cosine quarter of decay', (t) => {
  // Step 35: progress 25/100 = 0.25, cos(pi/4) = 0.7071067811865476.
  // 1e-4 + 9e-4 * (1 + 0.7071067811865476) / 2 = 1e-4 + 9e-4 * 0.8535533905932737 = 8.681980515339464e-4.
  assertClose(t, learningRateAt(35, totalSteps, config), 8.681980515339464e-4);
});

test('cosine halfway of decay', (t) => {
  // Step 60: progress 0.5, cos(pi/2) = 0, so 1e-4 + 9e-4 / 2 = 5.5e-4.
  assertClose(t, learningRateAt(60, totalSteps, config), 5.5e-4);
});

test('cosine last step reaches floor', (t) => {
  // Step 110 = totalSteps: lr * minLrRatio = 1e-4.
  assertClose(t, learningRateAt(110, totalSteps, config), 1e-4);
});

test('steps past total keep floor', (t) => {
  assertClose(t, learningRateAt(500, totalSteps, config), 1e-4);
});

test('cosine decreases after warm-up', (t) => {
  let previous = learningRateAt(10, totalSteps, config);
  for (let step = 11; step <= totalSteps; step++) {
    const current = learningRateAt(step, totalSteps, config);
    t.true(current < previous, `step ${step}: ${current} is not below ${previous}`);
    previous = current;
  }
});

test('zero warm-up starts decay', (t) => {
  // warmupSteps 0, totalSteps 4: step 1 has progress 1/4, cos(pi/4) = 0.7071067811865476,
  // so 1e-4 + 9e-4 * 0.8535533905932737 = 8.681980515339464e-4 (the curve's peak sits at step 0).
  const noWarmup = { ...config, warmupSteps: 0 };
  assertClose(t, learningRateAt(1, 4, noWarmup), 8.681980515339464e-4);
});

test('run shorter than warm-up', (t) => {
  // totalSteps 5 <= warmupSteps 10: step 5 is still warm-up, 1e-3 * 5 / 10 = 5e-4.
  assertClose(t, learningRateAt(5, 5, config), 5e-4);
});

test('minLrRatio one keeps constant', (t) => {
  const constant = { ...config, warmupSteps: 0, minLrRatio: 1 };
  for (const step of [1, 37, 110, 111]) {
    t.is(learningRateAt(step, totalSteps, constant), 1e-3, `step ${step}`);
  }
});

test('step zero rejected', (t) => {
  const error = t.throws(() => learningRateAt(0, totalSteps, config), { instanceOf: RangeError });
  t.regex(error?.message ?? '', /got 0/);
});

test('fractional step rejected', (t) => {
  const error = t.throws(() => learningRateAt(1.5, totalSteps, config), { instanceOf: RangeError });
  t.regex(error?.message ?? '', /got 1\.5/);
});

test('zero total steps rejected', (t) => {
  const error = t.throws(() => learningRateAt(1, 0, config), { instanceOf: RangeError });
  t.regex(error?.message ?? '', /totalSteps .*got 0/);
});
