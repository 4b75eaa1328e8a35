import test from 'ava';
import type { ParameterSpec } from '../src/models/model.js';
import { AdamW, type AdamWConfig } from '../src/optim/adamw.js';
import { SeededRandom } from '../src/random.js';
import { globalNorm, sumOfScaledSquares, type ElementRange } from '../src/optim/clip.js';
import { blockCount, markedRanges, markNonzeroBlocks } from '../src/comm/zero-blocks.js';
import { kernelMemory } from '../src/kernels/kernel-memory.js';

const specs: ParameterSpec[] = [
  { name: 'embedding', shape: [7, 5], decay: true },
  { name: 'norm/gain', shape: [5], decay: false },
  { name: 'dense/kernel', shape: [5, 3], decay: true },
  { name: 'dense/bias', shape: [3], decay: false },
];
const parameterCount = 35 + 5 + 15 + 3;
const config: AdamWConfig = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.05, warmupSteps: 2, minLrRatio: 0.1, clipNorm: 1 };

/** Returns deterministic gradients whose norm is above clipNorm on even steps and below it on odd steps. */
function gradientsAt(step: number): Float32Array {
  const values = new Float32Array(parameterCount);
  const size = step % 2 === 0 ? 3 : 0.01;
  for (let i = 0; i < parameterCount; i++) values[i] = size * Math.sin(1.3 * i + 0.7 * step) * (1 + (i % 4));
  return values;
}

function bytes(values: Float32Array): Buffer {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
}

// Ranges that cut through decay segments, leave gaps between ranks' ranges and include an empty range.
const shards: ElementRange[][] = [
  [{ start: 0, end: 9 }, { start: 40, end: 41 }],
  [{ start: 9, end: 9 }, { start: 9, end: 38 }, { start: 55, end: 58 }],
  [{ start: 38, end: 40 }, { start: 41, end: 55 }],
];

test('stepRanges equals step bitwise', (t) => {
  const full = new AdamW(specs, config, 10);
  const fullParameters = new Float32Array(parameterCount).map((_, i) => Math.cos(i) * 0.5);
  const ranked = shards.map(() => new AdamW(specs, config, 10));
  const rankedParameters = shards.map(() => fullParameters.slice());
  const merged = new Float32Array(parameterCount);

  for (let step = 1; step <= 6; step++) {
    const gradients = gradientsAt(step);
    const norm = globalNorm(gradients);
    const fullResult = full.step(fullParameters, gradients.slice());
    ranked.forEach((optimizer, rank) => {
      const result = optimizer.stepRanges(rankedParameters[rank] as Float32Array, gradients, shards[rank] as ElementRange[], norm);
      t.is(result.lr, fullResult.lr, `step ${step} rank ${rank} lr`);
      t.is(result.clipped, fullResult.clipped, `step ${step} rank ${rank} clipped`);
    });
    // Gather: every rank takes the owners' values, as the all-gather of a sharded run does.
    shards.forEach((ranges, rank) => {
      for (const { start, end } of ranges) merged.set((rankedParameters[rank] as Float32Array).subarray(start, end), start);
    });
    for (const parameters of rankedParameters) parameters.set(merged);
    t.true(bytes(merged).equals(bytes(fullParameters)), `step ${step}: parameters differ from step()`);
  }
  t.true(ranked.every((optimizer) => optimizer.stepCount === 6));
  t.is(full.stepCount, 6);
});

test('gathered moments equal full state', async (t) => {
  const full = new AdamW(specs, config, 10);
  const fullParameters = new Float32Array(parameterCount).fill(0.25);
  const ranked = shards.map(() => new AdamW(specs, config, 10));
  const parameters = shards.map(() => fullParameters.slice());
  for (let step = 1; step <= 3; step++) {
    const gradients = gradientsAt(step);
    full.step(fullParameters, gradients.slice());
    ranked.forEach((optimizer, rank) => optimizer.stepRanges(parameters[rank] as Float32Array, gradients, shards[rank] as ElementRange[], globalNorm(gradients)));
  }
  // A local all-gather: gatherMoments passes the first moment, then the second, and each call copies the
  // owners' values of that moment into the rank's buffer.
  const owned = ranked.map((optimizer) => optimizer.exportState());
  const gather = () => {
    let call = 0;
    return async (values: Float32Array): Promise<void> => {
      const moment = call++ === 0 ? 'firstMoment' : 'secondMoment';
      shards.forEach((ranges, owner) => {
        for (const { start, end } of ranges) values.set((owned[owner] as (typeof owned)[number])[moment].subarray(start, end), start);
      });
    };
  };
  await Promise.all(ranked.map((optimizer) => optimizer.gatherMoments(gather())));
  const expected = full.exportState();
  for (const optimizer of ranked) {
    const state = optimizer.exportState();
    t.true(bytes(state.firstMoment).equals(bytes(expected.firstMoment)));
    t.true(bytes(state.secondMoment).equals(bytes(expected.secondMoment)));
  }
});

test('sumOfScaledSquares same on both paths', (t) => {
  const raw = gradientsAt(2);
  const inKernelMemory = kernelMemory().allocateFloats(parameterCount);
  inKernelMemory.set(raw);
  const inverse = 1 / 37;
  const ranges = [...(shards[0] as ElementRange[]), ...(shards[1] as ElementRange[]), ...(shards[2] as ElementRange[])];
  const kernelSum = sumOfScaledSquares(inKernelMemory, ranges, inverse);
  t.is(kernelSum, sumOfScaledSquares(raw, ranges, inverse));
  t.true(bytes(inKernelMemory).equals(bytes(raw)), 'the values are left unchanged');
  // Each block sums its squares in float32 lanes, so the norm agrees with a float64 sum to about 1e-7.
  const separate = raw.map((value) => value * inverse);
  t.true(Math.abs(Math.sqrt(kernelSum) - globalNorm(separate)) <= 1e-6 * globalNorm(separate));
});

test('sumOfScaledSquares skips zero block parts without changing bits', (t) => {
  // 40 blocks of 64 values with every third block zero, and ranges that start and end inside blocks.
  const random = new SeededRandom(5);
  const length = 40 * 64;
  const raw = new Float32Array(length);
  for (let i = 0; i < length; i++) raw[i] = Math.floor(i / 64) % 3 === 0 ? 0 : (random.next() - 0.5) * 2 ** (random.nextInt(12) - 6);
  const inKernelMemory = kernelMemory().allocateFloats(length);
  inKernelMemory.set(raw);
  const ranges: ElementRange[] = [
    { start: 10, end: 700 },
    { start: 700, end: 1290 },
    { start: 1300, end: length },
  ];

  // The ranges without their zero blocks, as the packed exchange passes them to the gradient norm.
  const flags = new Float32Array(blockCount(length));
  markNonzeroBlocks(raw, length, flags);
  const nonzero = markedRanges(length, flags, ranges);
  t.true(nonzero.length > ranges.length, 'the zero blocks cut the ranges into more parts');
  // The ranges hold 2540 values; the zero blocks among them are 54 values of block 0 and 13 whole blocks.
  t.is(
    nonzero.reduce((sum, { start, end }) => sum + end - start, 0),
    2540 - 54 - 13 * 64,
    'every zero block is left out, and nothing else',
  );

  for (const values of [raw, inKernelMemory]) {
    const full = sumOfScaledSquares(values, ranges, 1 / 3);
    t.true(full > 0);
    t.is(sumOfScaledSquares(values, nonzero, 1 / 3), full);
  }
  t.is(sumOfScaledSquares(raw, ranges, 1 / 3), sumOfScaledSquares(inKernelMemory, ranges, 1 / 3));
});

test('stepRanges factor equals prescaled gradients', (t) => {
  for (const step of [1, 2]) {
    const raw = gradientsAt(step);
    const inverse = 1 / 37;
    // The update rounds the factor to float32 and then each product, so the prescaled gradients do the same.
    const prescaled = raw.map((value) => Math.fround(value * Math.fround(inverse)));
    const norm = globalNorm(prescaled);
    const withFactor = new AdamW(specs, config, 10);
    const withPrescaled = new AdamW(specs, config, 10);
    const left = new Float32Array(parameterCount).fill(0.5);
    const right = new Float32Array(parameterCount).fill(0.5);
    withFactor.stepRanges(left, raw, [{ start: 0, end: parameterCount }], norm, inverse);
    withPrescaled.stepRanges(right, prescaled, [{ start: 0, end: parameterCount }], norm);
    t.true(bytes(left).equals(bytes(right)), `step ${step}`);
  }
});

test('stepRanges rejects non-finite norm', (t) => {
  const optimizer = new AdamW(specs, config, 10);
  const parameters = new Float32Array(parameterCount);
  const error = t.throws(() => optimizer.stepRanges(parameters, new Float32Array(parameterCount), [{ start: 0, end: 4 }], Number.NaN), {
    instanceOf: RangeError,
  });
  t.regex(error?.message ?? '', /gradient global norm is NaN at optimizer step 1/);
  t.is(optimizer.stepCount, 0);
});

test('stepRanges rejects range outside buffer', (t) => {
  const optimizer = new AdamW(specs, config, 10);
  const error = t.throws(
    () => optimizer.stepRanges(new Float32Array(parameterCount), new Float32Array(parameterCount), [{ start: 50, end: 60 }], 1),
    { instanceOf: RangeError },
  );
  t.regex(error?.message ?? '', /range \[50, 60\) is not within \[0, 58\)/);
});
