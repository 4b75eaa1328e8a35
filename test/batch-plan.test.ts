import test from 'ava';
import { batchesPerEpoch, planEpoch, shardSizes, splitIntoShards, splitRange, type LastBatchPolicy } from '../src/data/batch-plan.js';
import { hasCode } from '../src/errors.js';

const SIZES = [1, 7, 97, 100, 101, 1000];
const BATCH_SIZES = [1, 3, 10, 64, 128];
const WORLD_SIZES = [1, 2, 3, 5, 8];

function lengthsOf(count: number): Uint16Array {
  // Lengths 1..37 repeating, so sorting by length has many ties to break.
  return Uint16Array.from({ length: count }, (_, i) => 1 + ((i * 7) % 37));
}

/** Counts how often each example index occurs in `batches`. */
function occurrences(batches: readonly number[][], size: number): number[] {
  const counts = new Array<number>(size).fill(0);
  for (const index of batches.flat()) counts[index] = (counts[index] as number) + 1;
  return counts;
}

/** Lists every (size, globalBatchSize, lengths) case, with and without lengths. */
function planCases(): { size: number; globalBatchSize: number; lengths: Uint16Array | undefined; label: string }[] {
  const cases = [];
  for (const size of SIZES) {
    for (const globalBatchSize of BATCH_SIZES) {
      for (const lengths of [undefined, lengthsOf(size)]) {
        cases.push({ size, globalBatchSize, lengths, label: `size ${size} batch ${globalBatchSize} ${lengths ? 'with' : 'without'} lengths` });
      }
    }
  }
  return cases;
}

test('planEpoch partial covers each example once', (t) => {
  for (const { size, globalBatchSize, lengths, label } of planCases()) {
    const batches = planEpoch({ size, globalBatchSize, seed: 42, epoch: 1, lastBatch: 'partial', lengths });
    t.is(batches.length, batchesPerEpoch(size, globalBatchSize, 'partial'), label);
    t.true(
      occurrences(batches, size).every((count) => count === 1),
      label,
    );
    t.true(
      batches.slice(0, -1).every((batch) => batch.length === globalBatchSize),
      label,
    );
    // The last batch contains the remainder, or a full batch when globalBatchSize divides size.
    t.is((batches.at(-1) as number[]).length, size % globalBatchSize || globalBatchSize, label);
  }
});

test('planEpoch drop covers at most once', (t) => {
  for (const { size, globalBatchSize, lengths, label } of planCases()) {
    const options = { size, globalBatchSize, seed: 42, epoch: 1, lastBatch: 'drop' as const, lengths };
    if (size < globalBatchSize) {
      const error = t.throws(() => planEpoch(options), undefined, label);
      t.true(hasCode(error, 'RINGTRAIN_ERR_DATA'), label);
      continue;
    }
    const batches = planEpoch(options);
    const seen = batches.flat();
    t.is(batches.length, batchesPerEpoch(size, globalBatchSize, 'drop'), label);
    t.is(seen.length, batchesPerEpoch(size, globalBatchSize, 'drop') * globalBatchSize, label);
    t.is(new Set(seen).size, seen.length, label);
    t.true(
      seen.every((index) => Number.isInteger(index) && index >= 0 && index < size),
      label,
    );
    t.true(
      batches.every((batch) => batch.length === globalBatchSize),
      label,
    );
  }
});

test('planEpoch pad covers each example', (t) => {
  for (const { size, globalBatchSize, lengths, label } of planCases()) {
    const batches = planEpoch({ size, globalBatchSize, seed: 42, epoch: 1, lastBatch: 'pad', lengths });
    const counts = occurrences(batches, size);
    const total = batchesPerEpoch(size, globalBatchSize, 'pad') * globalBatchSize;
    t.true(
      batches.every((batch) => batch.length === globalBatchSize),
      label,
    );
    t.true(
      counts.every((count) => count >= 1),
      label,
    );
    // Only the padding repeats, so the repeats beyond the first occurrence number total - size.
    t.is(
      counts.reduce((sum, count) => sum + count - 1, 0),
      total - size,
      label,
    );
  }
});

test('planEpoch pad repeats epoch start', (t) => {
  for (const size of SIZES) {
    for (const globalBatchSize of BATCH_SIZES) {
      // Without lengths the partial plan lists the epoch order itself, so the padding must repeat its start.
      const order = planEpoch({ size, globalBatchSize, seed: 5, epoch: 2, lastBatch: 'partial' }).flat();
      const padded = planEpoch({ size, globalBatchSize, seed: 5, epoch: 2, lastBatch: 'pad' }).flat();
      const expected = [...order];
      for (let i = 0; expected.length % globalBatchSize !== 0; i++) expected.push(order[i % size] as number);
      t.deepEqual(padded, expected, `size ${size} batch ${globalBatchSize}`);
    }
  }
});

test('planEpoch partial keeps smaller batch last', (t) => {
  const lengths = lengthsOf(1000);
  const batches = planEpoch({ size: 1000, globalBatchSize: 64, seed: 3, epoch: 0, lastBatch: 'partial', lengths });
  // 1000 = 15 * 64 + 40, so only the 16th and last batch is short.
  t.is(batches.length, 16);
  t.is((batches[15] as number[]).length, 40);
});

test('planEpoch drop skips different examples', (t) => {
  const planned = (epoch: number): Set<number> => new Set(planEpoch({ size: 101, globalBatchSize: 10, seed: 9, epoch, lastBatch: 'drop' }).flat());
  const dropped = (epoch: number): number[] => Array.from({ length: 101 }, (_, i) => i).filter((i) => !planned(epoch).has(i));
  // 101 % 10 = 1 example is skipped per epoch; the chance that two seeded shuffles skip the same one is 1/101.
  t.is(dropped(0).length, 1);
  t.notDeepEqual(dropped(0), dropped(1));
});

test('planEpoch depends only on seed and epoch', (t) => {
  const policies: LastBatchPolicy[] = ['drop', 'pad', 'partial'];
  for (const lastBatch of policies) {
    for (const lengths of [undefined, lengthsOf(500)]) {
      const plan = (seed: number, epoch: number): number[][] => planEpoch({ size: 500, globalBatchSize: 8, seed, epoch, lastBatch, lengths });
      const label = `${lastBatch} ${lengths ? 'with' : 'without'} lengths`;
      t.deepEqual(plan(7, 3), plan(7, 3), label);
      t.notDeepEqual(plan(7, 3), plan(7, 4), label);
      t.notDeepEqual(plan(7, 3), plan(8, 3), label);
    }
  }
});

test('planEpoch groups similar lengths', (t) => {
  const lengths = lengthsOf(4000);
  const batches = planEpoch({ size: 4000, globalBatchSize: 20, seed: 1, epoch: 0, lastBatch: 'drop', lengths });
  // Within one sort window a batch spans a narrow slice of the sorted lengths; unsorted batches of 20 drawn
  // from lengths 1..37 would almost always span more than 30.
  const spans = batches.map((batch) => Math.max(...batch.map((i) => lengths[i] as number)) - Math.min(...batch.map((i) => lengths[i] as number)));
  const meanSpan = spans.reduce((sum, span) => sum + span, 0) / spans.length;
  t.true(meanSpan < 5, `mean length span per batch is ${meanSpan}`);
});

test('planEpoch rejects invalid options', (t) => {
  const valid = { size: 10, globalBatchSize: 4, seed: 1, epoch: 0, lastBatch: 'partial' as LastBatchPolicy };
  const cases: [string, Parameters<typeof planEpoch>[0], string][] = [
    ['size 0', { ...valid, size: 0 }, 'size 0'],
    ['fractional size', { ...valid, size: 2.5 }, 'size 2.5'],
    ['batch size 0', { ...valid, globalBatchSize: 0 }, 'got 0'],
    ['negative batch size', { ...valid, globalBatchSize: -3 }, 'got -3'],
    ['negative epoch', { ...valid, epoch: -1 }, 'got -1'],
    ['unknown policy', { ...valid, lastBatch: 'wrap' as LastBatchPolicy }, 'got wrap'],
    ['short lengths', { ...valid, lengths: lengthsOf(9) }, '9 entries'],
    ['drop without a full batch', { ...valid, size: 3, lastBatch: 'drop' }, '3 examples'],
  ];
  for (const [label, options, fragment] of cases) {
    const error = t.throws(() => planEpoch(options), undefined, label);
    t.true(hasCode(error, 'RINGTRAIN_ERR_DATA'), label);
    t.true(error?.message.includes(fragment), `${label}: ${error?.message}`);
  }
});

test('batchesPerEpoch counts each policy', (t) => {
  // 101 examples in batches of 10: 10 full batches plus one of 1 example.
  t.is(batchesPerEpoch(101, 10, 'drop'), 10);
  t.is(batchesPerEpoch(101, 10, 'partial'), 11);
  t.is(batchesPerEpoch(101, 10, 'pad'), 11);
  // 7 examples in batches of 128: no full batch.
  t.is(batchesPerEpoch(7, 128, 'drop'), 0);
  t.is(batchesPerEpoch(7, 128, 'pad'), 1);
  const error = t.throws(() => batchesPerEpoch(10, 0, 'drop'));
  t.true(hasCode(error, 'RINGTRAIN_ERR_DATA'));
});

test('splitIntoShards shard unions equal batches', (t) => {
  const policies: LastBatchPolicy[] = ['drop', 'pad', 'partial'];
  for (const { size, globalBatchSize, lengths, label } of planCases()) {
    for (const lastBatch of policies) {
      if (lastBatch === 'drop' && size < globalBatchSize) continue;
      const batches = planEpoch({ size, globalBatchSize, seed: 11, epoch: 0, lastBatch, lengths });
      for (const worldSize of WORLD_SIZES) {
        const where = `${label} ${lastBatch} world ${worldSize}`;
        const weights = new Array<number>(worldSize).fill(1);
        let unions = true;
        let disjoint = true;
        let emptyWithEnough = false;
        for (const batch of batches) {
          const shards = splitIntoShards(batch, weights, lengths);
          const sorted = (items: number[]): number[] => [...items].sort((a, b) => a - b);
          unions &&= shards.length === worldSize && sorted(shards.flat()).join() === sorted(batch).join();
          // A padded batch can contain an example twice. Shards are disjoint when the batch has no repeats.
          if (new Set(batch).size === batch.length) disjoint &&= new Set(shards.flat()).size === batch.length;
          emptyWithEnough ||= batch.length >= worldSize && shards.some((shard) => shard.length === 0);
        }
        t.true(unions, where);
        t.true(disjoint, where);
        t.false(emptyWithEnough, where);
      }
    }
  }
});

test('splitIntoShards sizes differ by at most one', (t) => {
  const lengths = lengthsOf(400);
  for (const worldSize of [1, 2, 3, 4, 5, 7, 8]) {
    for (const batchSize of [1, 2, 5, 9, 16, 128]) {
      const batch = Array.from({ length: batchSize }, (_, i) => i * 3);
      for (const withLengths of [false, true]) {
        const shards = splitIntoShards(batch, new Array<number>(worldSize).fill(1), withLengths ? lengths : undefined);
        const sizes = shards.map((shard) => shard.length);
        t.true(Math.max(...sizes) - Math.min(...sizes) <= 1, `world ${worldSize} batch ${batchSize}: ${sizes.join(',')}`);
      }
    }
  }
});

test('splitIntoShards deals lengths round-robin', (t) => {
  // With equal weights the dealing must match plain round-robin over the batch sorted by decreasing length.
  const lengths = lengthsOf(300);
  const batch = Array.from({ length: 100 }, (_, i) => i * 3);
  for (const worldSize of [2, 3, 7]) {
    const byLength = [...batch].sort((a, b) => (lengths[b] as number) - (lengths[a] as number) || a - b);
    const expected: number[][] = Array.from({ length: worldSize }, () => []);
    byLength.forEach((example, position) => (expected[position % worldSize] as number[]).push(example));
    t.deepEqual(splitIntoShards(batch, new Array<number>(worldSize).fill(1), lengths), expected, `world ${worldSize}`);
  }
});

test('splitIntoShards weighted shards mix lengths', (t) => {
  const lengths = lengthsOf(640);
  const batch = Array.from({ length: 64 }, (_, i) => i * 10);
  const mean = (items: number[]): number => items.reduce((sum, i) => sum + (lengths[i] as number), 0) / items.length;
  const shards = splitIntoShards(batch, [1, 3], lengths);
  t.deepEqual(
    shards.map((shard) => shard.length),
    [16, 48],
  );
  // Each shard takes evenly spaced slots of the sorted batch. Its mean length is then within about half a slot
  // gap times the length range (4 / 2 * 36 / 64, about 1.1) of the batch mean. Tolerance 1.5.
  for (const shard of shards) t.true(Math.abs(mean(shard) - mean(batch)) < 1.5, `shard mean ${mean(shard)} batch mean ${mean(batch)}`);
});

test('splitIntoShards places small shard mid-batch', (t) => {
  // Examples 0..3 have lengths 4, 3, 2, 1. Shard 0 has one slot, at the middle (0.5) of the length-sorted
  // batch, and ties with shard 1's second slot (1.5 / 3), so it takes the second longest example.
  const lengths = Uint16Array.from([4, 3, 2, 1]);
  t.deepEqual(splitIntoShards([0, 1, 2, 3], [1, 3], lengths), [[1], [0, 2, 3]]);
});

test('shardSizes follows weights 1 and 3', (t) => {
  // Quotas 25 and 75 are exact.
  t.deepEqual(shardSizes(100, [1, 3]), [25, 75]);
  // Quotas 2.5 and 7.5 tie on the remainder, so the extra example goes to rank 0.
  t.deepEqual(shardSizes(10, [1, 3]), [3, 7]);
});

test('shardSizes follows weights 1,1,1,5', (t) => {
  // Quotas 8, 8, 8, 40 are exact.
  t.deepEqual(shardSizes(64, [1, 1, 1, 5]), [8, 8, 8, 40]);
  // Quotas 1.25 x3 and 6.25: floors sum to 9 and the tie on 0.25 gives the extra one to rank 0.
  t.deepEqual(shardSizes(10, [1, 1, 1, 5]), [2, 1, 1, 6]);
  // Quotas 0.375 x3 and 1.875 with 3 examples for 4 ranks: rank 3 takes 2, rank 0 one, and ranks 1 and 2 none.
  t.deepEqual(shardSizes(3, [1, 1, 1, 5]), [1, 0, 0, 2]);
});

test('shardSizes stays within one of quota', (t) => {
  const weightSets = [[1, 3], [1, 1, 1, 5], [0.3, 0.7, 2.25], [1.25, 1.25, 0.25, 1.25], [4, 1, 1, 1, 1, 0.5, 2, 3]];
  for (const weights of weightSets) {
    const weightSum = weights.reduce((sum, weight) => sum + weight, 0);
    for (const total of [0, 1, 7, 10, 64, 97, 128, 1000]) {
      const sizes = shardSizes(total, weights);
      const label = `weights ${weights.join(',')} total ${total}: ${sizes.join(',')}`;
      t.is(
        sizes.reduce((sum, size) => sum + size, 0),
        total,
        label,
      );
      // Largest-remainder rounding moves each size less than 1 from its quota. Lifting an empty shard to 1
      // moves its donor one further, and in these cases each donor gives at most once, so the bound is 2.
      const lifted = total >= weights.length && weights.some((weight) => (total * weight) / weightSum < 1);
      t.true(
        sizes.every((size, rank) => Math.abs(size - (total * (weights[rank] as number)) / weightSum) < (lifted ? 2 : 1)),
        label,
      );
      t.true(
        total < weights.length || sizes.every((size) => size >= 1),
        label,
      );
    }
  }
});

test('shardSizes lifts empty shards', (t) => {
  // Quotas 10/101 and 1000/101 round to 0 and 10; rank 0 then takes one from rank 1.
  t.deepEqual(shardSizes(10, [1, 100]), [1, 9]);
});

test('shardSizes rejects invalid weights', (t) => {
  for (const weights of [[], [0, 1], [-1, 2], [Number.NaN], [Number.POSITIVE_INFINITY, 1]]) {
    const error = t.throws(() => shardSizes(10, weights), undefined, `weights ${weights.join(',')}`);
    t.true(hasCode(error, 'RINGTRAIN_ERR_DATA'), `weights ${weights.join(',')}`);
  }
  const error = t.throws(() => shardSizes(-1, [1]));
  t.true(hasCode(error, 'RINGTRAIN_ERR_DATA'));
});

test('splitRange covers every index once', (t) => {
  for (const [count, worldSize] of [
    [0, 3],
    [2, 5],
    [10, 3],
    [11, 4],
  ] as const) {
    const shards = splitRange(count, worldSize);
    t.deepEqual(shards.flat(), Array.from({ length: count }, (_, i) => i));
    const sizes = shards.map((shard) => shard.length);
    t.true(Math.max(...sizes) - Math.min(...sizes) <= 1);
  }
});
