import test from 'ava';
import type { Ring } from '../src/comm/ring-allreduce.js';
import {
  allReduceEverywhere,
  bytesOf,
  connectRank,
  countReferenceViolations,
  openListeners,
  seedFor,
  seededFloats,
  silentLogger,
  startLocalRing,
} from './fixtures/ring-harness.js';

/** Buffer lengths for a ring of N ranks: empty, shorter than N, not divisible by N, and large. */
function lengthsFor(worldSize: number): number[] {
  const lengths = [0, 1, worldSize - 1, worldSize + 1, 7 * worldSize + 3, 1000, 1_000_003];
  return [...new Set(lengths)];
}

/** Runs one allReduce of seeded inputs of `length` on all ranks and checks bits and reference sum. */
async function checkOneCollective(
  t: import('ava').ExecutionContext,
  rings: Ring[],
  length: number,
  caseSeed: number,
  label: string,
): Promise<void> {
  const inputs = rings.map((_, rank) => seededFloats(seedFor(caseSeed, rank), length));
  const buffers = inputs.map((input) => input.slice());
  const settled = await allReduceEverywhere(rings, buffers);
  for (const [rank, outcome] of settled.entries()) {
    t.is(outcome.status, 'fulfilled', `${label}: rank ${rank} allReduce failed: ${String((outcome as PromiseRejectedResult).reason)}`);
  }
  for (let rank = 1; rank < rings.length; rank += 1) {
    t.true(bytesOf(buffers[rank]).equals(bytesOf(buffers[0])), `${label}: rank ${rank} bits differ from rank 0`);
  }
  const violations = countReferenceViolations(inputs, buffers[0]);
  t.is(violations.count, 0, `${label}: elements outside the float32 bound, first ${violations.first}`);
}

for (const worldSize of [1, 2, 3, 4, 5]) {
  test(`ring of ${worldSize} sums all lengths`, async (t) => {
    const { rings } = await startLocalRing(t, worldSize);
    for (const length of lengthsFor(worldSize)) {
      await checkOneCollective(t, rings, length, 100 + worldSize * 10 + length, `N=${worldSize} length=${length}`);
    }
  });

  test(`ring of ${worldSize} sums with 4 KiB slices`, async (t) => {
    const { rings } = await startLocalRing(t, worldSize, { sliceBytes: 4096 });
    for (const length of [1000, 100_003]) {
      await checkOneCollective(t, rings, length, 250 + worldSize * 10 + length, `N=${worldSize} length=${length}`);
    }
  });

  test(`ring of ${worldSize} sums with tiny slices`, async (t) => {
    // 12-byte slices make 3-element frames, so every chunk longer than 3 streams as several frames.
    const { rings } = await startLocalRing(t, worldSize, { sliceBytes: 12 });
    // All ranks share this process, so frames stay few enough here to keep the test fast.
    for (const length of [0, 1, worldSize + 1, 7 * worldSize + 3, 1000, 2003]) {
      await checkOneCollective(t, rings, length, 200 + worldSize * 10 + length, `N=${worldSize} length=${length}`);
    }
  });
}

test('ring repeats twenty collectives', async (t) => {
  const { rings } = await startLocalRing(t, 4, { sliceBytes: 4096 });
  for (let call = 0; call < 20; call += 1) {
    // Alternate lengths so staging and scratch buffers are reused at different sizes.
    const length = call % 2 === 0 ? 10_007 : 333;
    await checkOneCollective(t, rings, length, 300 + call, `call ${call}`);
  }
  t.is(rings[0].collectives, 20);
});

test('ring result bits ignore slice size', async (t) => {
  const worldSize = 3;
  const length = 5001;
  const inputs = Array.from({ length: worldSize }, (_, rank) => seededFloats(seedFor(400, rank), length));
  const results: Buffer[] = [];
  for (const sliceBytes of [16, 4096, 1024 * 1024]) {
    const { rings } = await startLocalRing(t, worldSize, { sliceBytes });
    for (let repeat = 0; repeat < 2; repeat += 1) {
      const buffers = inputs.map((input) => input.slice());
      await Promise.all(rings.map((ring, rank) => ring.allReduce(buffers[rank])));
      results.push(Buffer.from(bytesOf(buffers[0])));
    }
    await Promise.all(rings.map((ring) => ring.close()));
  }
  for (let index = 1; index < results.length; index += 1) {
    t.true(results[index].equals(results[0]), `run ${index} (slice size ${[16, 4096, 1048576][index >> 1]}) differs from run 0`);
  }
});

test('ring of one leaves buffer unchanged', async (t) => {
  const { rings } = await startLocalRing(t, 1);
  const input = seededFloats(500, 1001);
  const buffer = input.slice();
  await rings[0].allReduce(buffer);
  t.true(bytesOf(buffer).equals(bytesOf(input)));
  t.is(rings[0].collectives, 1);
});

test('ring of two forms two connections', async (t) => {
  // With two ranks previous and next are the same peer; each rank still dials one link and accepts one.
  const { rings } = await startLocalRing(t, 2);
  const buffers = [new Float32Array([1, 2, 3]), new Float32Array([10, 20, 30])];
  await Promise.all(rings.map((ring, rank) => ring.allReduce(buffers[rank])));
  // Exact: small integers are represented exactly in float32, so 1+10, 2+20, 3+30 have no rounding.
  t.deepEqual([...buffers[0]], [11, 22, 33]);
  t.deepEqual([...buffers[1]], [11, 22, 33]);
});

test('ring close right after last call', async (t) => {
  // A rank that finishes first closes at once; its neighbours must still complete the same collective.
  for (const worldSize of [2, 3]) {
    for (let repeat = 0; repeat < 5; repeat += 1) {
      const { rings } = await startLocalRing(t, worldSize, { sliceBytes: 64 * 1024 });
      const buffers = rings.map((_, rank) => seededFloats(seedFor(600 + repeat, rank), 200_003));
      const outcomes = await Promise.allSettled(
        rings.map(async (ring, rank) => {
          await ring.allReduce(buffers[rank]);
          await ring.close();
        }),
      );
      for (const [rank, outcome] of outcomes.entries()) {
        t.is(outcome.status, 'fulfilled', `N=${worldSize} repeat ${repeat} rank ${rank}: ${String((outcome as PromiseRejectedResult).reason)}`);
      }
    }
  }
});

test('ring rejects after neighbour closed', async (t) => {
  const { rings } = await startLocalRing(t, 2);
  await Promise.all(rings.map((ring) => ring.allReduce(new Float32Array(16))));
  await rings[1].close();
  // The close reaches rank 0 between collectives; give the event a moment, then the next call must fail fast.
  await new Promise((resolve) => setTimeout(resolve, 50));
  const error = await t.throwsAsync(rings[0].allReduce(new Float32Array(16)));
  t.is((error as { code?: string } | undefined)?.code, 'RINGTRAIN_ERR_PEER_CLOSED');
  t.regex(error?.message ?? '', /completed collectives: 1/);
});

test('ranks with different slice sizes', async (t) => {
  // Rank 0 cuts 64 KiB slices. Ranks 1 and 2 pool 4 KiB frames but accept larger messages, so the frames they
  // forward come from outside their pool and the add reads them through its copy path.
  const worldSize = 3;
  const logger = silentLogger();
  const listeners = await openListeners(t, worldSize, logger);
  const rings = await Promise.all(
    listeners.map((_, rank) =>
      connectRank(t, listeners, rank, { logger, sliceBytes: rank === 0 ? 64 * 1024 : 4096, maxPayload: 1 << 20 }),
    ),
  );
  const length = 300_001;
  const buffers = rings.map((_, rank) => Float32Array.from({ length }, (_, i) => (i % 97) * 0.5 + rank));
  const results = await allReduceEverywhere(rings, buffers);
  t.deepEqual(results.map((result) => result.status), ['fulfilled', 'fulfilled', 'fulfilled']);
  for (let i = 0; i < length; i += 997) {
    t.is(buffers[1]![i], (i % 97) * 1.5 + 3, `element ${i}`);
  }
  t.true(Buffer.from(buffers[0]!.buffer).equals(Buffer.from(buffers[2]!.buffer)));
});
