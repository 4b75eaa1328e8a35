import test from 'ava';
import { batchesPerEpoch, planEpoch, splitIntoShards, splitRange } from '../src/data/batch-plan.js';

function lengthsOf(count: number): Uint16Array {
  // Lengths 1..37 repeating, so sorting by length has many ties to break.
  return Uint16Array.from({ length: count }, (_, i) => 1 + ((i * 7) % 37));
}

test('planEpoch covers each example at most once', (t) => {
  const lengths = lengthsOf(1003);
  const batches = planEpoch(lengths, 16, 42, 0);
  const seen = batches.flat();
  t.is(batches.length, batchesPerEpoch(1003, 16));
  t.true(batches.every((batch) => batch.length === 16));
  t.is(new Set(seen).size, seen.length);
  t.true(seen.every((index) => index >= 0 && index < 1003));
});

test('planEpoch depends only on seed and epoch', (t) => {
  const lengths = lengthsOf(500);
  t.deepEqual(planEpoch(lengths, 8, 7, 3), planEpoch(lengths, 8, 7, 3));
  t.notDeepEqual(planEpoch(lengths, 8, 7, 3), planEpoch(lengths, 8, 7, 4));
  t.notDeepEqual(planEpoch(lengths, 8, 7, 3), planEpoch(lengths, 8, 8, 3));
});

test('planEpoch groups similar lengths', (t) => {
  const lengths = lengthsOf(4000);
  const batches = planEpoch(lengths, 20, 1, 0);
  // Within one sort window a batch spans a narrow slice of the sorted lengths; unsorted batches of 20 drawn
  // from lengths 1..37 would almost always span more than 30.
  const spans = batches.map((batch) => Math.max(...batch.map((i) => lengths[i] as number)) - Math.min(...batch.map((i) => lengths[i] as number)));
  const meanSpan = spans.reduce((sum, span) => sum + span, 0) / spans.length;
  t.true(meanSpan < 5, `mean length span per batch is ${meanSpan}`);
});

test('splitIntoShards sizes differ by at most one', (t) => {
  const lengths = lengthsOf(100);
  for (const worldSize of [1, 2, 3, 4, 5, 7]) {
    for (const batchSize of [1, 2, 5, 9, 16]) {
      const batch = Array.from({ length: batchSize }, (_, i) => i * 3);
      const shards = splitIntoShards(batch, lengths, worldSize);
      const sizes = shards.map((shard) => shard.length);
      t.is(shards.length, worldSize);
      t.true(Math.max(...sizes) - Math.min(...sizes) <= 1, `world ${worldSize} batch ${batchSize}: ${sizes.join(',')}`);
      t.deepEqual(shards.flat().sort((a, b) => a - b), [...batch].sort((a, b) => a - b));
    }
  }
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
