import test from 'ava';
import type { Compression, ElementRange, Ring } from '../src/comm/ring-allreduce.js';
import { ownedRanges } from '../src/comm/ring-buckets.js';
import { bytesOf, seedFor, seededFloats, startLocalRing } from './fixtures/ring-harness.js';

/** Copies the elements of `ranges` from `source` into `target`. */
function copyRanges(target: Float32Array, source: Float32Array, ranges: readonly ElementRange[]): void {
  for (const { start, end } of ranges) target.set(source.subarray(start, end), start);
}

/** Runs `call` on every rank at once and returns the results in rank order. */
function everywhere<T>(rings: Ring[], call: (ring: Ring, rank: number) => Promise<T>): Promise<T[]> {
  return Promise.all(rings.map((ring, rank) => call(ring, rank)));
}

for (const worldSize of [1, 2, 3, 4]) {
  test(`reduceScatter and allGather match allReduce, ${worldSize} ranks`, async (t) => {
    for (const compression of ['none', 'bf16'] as Compression[]) {
      for (const bucketBytes of [12, 4096]) {
        const { rings } = await startLocalRing(t, worldSize, { bucketBytes, sliceBytes: 1024, compression });
        // Odd lengths, lengths below the world size, an empty buffer, and several buckets of several slices.
        for (const length of [0, 1, 2 * worldSize + 1, 1001, 3 * 1024 + 7]) {
          const label = `N=${worldSize} ${compression} bucketBytes=${bucketBytes} length=${length}`;
          const inputs = rings.map((_, rank) => seededFloats(seedFor(length + bucketBytes, rank), length));

          const reduced = inputs.map((input) => input.slice());
          await everywhere(rings, (ring, rank) => ring.allReduce(reduced[rank] as Float32Array));

          const scattered = inputs.map((input) => input.slice());
          const owned = await everywhere(rings, (ring, rank) => ring.reduceScatter(scattered[rank] as Float32Array));
          for (let rank = 0; rank < worldSize; rank++) {
            const ranges = owned[rank] as ElementRange[];
            t.deepEqual(ranges, ownedRanges(length, Math.floor(bucketBytes / 4), worldSize, rank), `${label}: rank ${rank} ranges`);
            const expected = new Float32Array(length);
            const actual = new Float32Array(length);
            copyRanges(expected, reduced[rank] as Float32Array, ranges);
            copyRanges(actual, scattered[rank] as Float32Array, ranges);
            t.true(bytesOf(actual).equals(bytesOf(expected)), `${label}: rank ${rank} owned sums differ from allReduce`);
          }

          // Every element is owned by exactly one rank.
          const owners = new Uint8Array(length);
          for (const ranges of owned) for (const { start, end } of ranges) owners.fill(owners[start]! + 1, start, end);
          t.true(owners.every((count) => count === 1), `${label}: ownership does not cover every element once`);

          // The all-gather must carry the owned values only, so the scratch elements are poisoned first.
          const gathered = scattered.map((values, rank) => {
            const copy = new Float32Array(length).fill(Number.NaN);
            copyRanges(copy, values, owned[rank] as ElementRange[]);
            return copy;
          });
          await everywhere(rings, (ring, rank) => ring.allGather(gathered[rank] as Float32Array));
          for (let rank = 0; rank < worldSize; rank++) {
            t.true(bytesOf(gathered[rank] as Float32Array).equals(bytesOf(reduced[rank] as Float32Array)), `${label}: rank ${rank} differs after allGather`);
          }
        }
      }
    }
  });
}

test('allGather keeps float32 with compression', async (t) => {
  const { rings } = await startLocalRing(t, 3, { compression: 'fp16', bucketBytes: 64 });
  // 1 + 2^-20 has no fp16 representation (10 fraction bits), so any 16-bit hop would change it.
  const length = 50;
  const buffers = rings.map((ring) => {
    const values = new Float32Array(length);
    for (const { start, end } of ring.ownedRanges(length)) values.fill(1 + 2 ** -20, start, end);
    return values;
  });
  await everywhere(rings, (ring, rank) => ring.allGather(buffers[rank] as Float32Array));
  for (const buffer of buffers) t.true(buffer.every((value) => value === Math.fround(1 + 2 ** -20)));
});

test('sumFloat64 is identical on every rank', async (t) => {
  const { rings } = await startLocalRing(t, 3);
  // Values that float32 cannot hold exactly; their float64 sum in rank order is the expected result.
  const values = [0.1, 1e-30, 12345.678901234];
  const sums = await everywhere(rings, (ring, rank) => ring.sumFloat64(values[rank] as number));
  const expected = ((values[0] as number) + (values[1] as number)) + (values[2] as number);
  for (const sum of sums) t.is(sum, expected);
});

test('mismatched collectives fail with protocol error', async (t) => {
  const { rings } = await startLocalRing(t, 2, { timeoutMs: 5000 });
  const [first, second] = rings as [Ring, Ring];
  const results = await Promise.allSettled([first.reduceScatter(new Float32Array(8)), second.allReduce(new Float32Array(8))]);
  const messages = results.flatMap((result) => (result.status === 'rejected' ? [(result.reason as Error).message] : []));
  t.true(messages.length > 0, 'no rank noticed the mismatch');
  t.true(
    messages.some((message) => /runs (reduceScatter|allReduce) but rank \d sent a frame of (allReduce|reduceScatter)/.test(message)),
    messages.join('\n'),
  );
});
