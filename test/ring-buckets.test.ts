import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setImmediate as nextMacrotask, setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { fromBFloat16Bits, fromFloat16Bits, toBFloat16Bits, toFloat16Bits } from '../src/comm/half-float.js';
import type { Compression, Ring } from '../src/comm/ring-allreduce.js';
import {
  bytesOf,
  countBoundViolations,
  countReferenceViolations,
  gamma,
  seedFor,
  seededFloats,
  startLocalRing,
} from './fixtures/ring-harness.js';
import type { RingWorkerCommand } from './fixtures/ring-worker.js';

const workerScript = fileURLToPath(new URL('./fixtures/ring-worker.js', import.meta.url));

/**
 * Returns the relative and absolute error bound of a compressed all-reduce of N values against their exact
 * sum. A chunk's first value is rounded to 16 bits, then each of the N - 1 ranks after it adds in float32
 * and rounds the sum to 16 bits again: N 16-bit and N - 1 float32 roundings, so 2N - 1 roundings of unit
 * roundoff at most u (2^-11 for fp16, 2^-8 for bf16) give gamma(2N - 1, u) × sum|x|. A 16-bit rounding
 * below the normal range adds up to half a subnormal step instead (2^-25 for fp16, 2^-134 for bf16), at
 * most N times, each scaled by the later roundings. The float64 reference adds gamma(N - 1, 2^-53).
 */
function compressedBound(worldSize: number, compression: Exclude<Compression, 'none'>): { relative: number; absolute: number } {
  if (worldSize === 1) {
    // One rank sends nothing, so its buffer stays exactly as it was.
    return { relative: 0, absolute: 0 };
  }
  const unit = compression === 'fp16' ? 2 ** -11 : 2 ** -8;
  const halfSubnormal = compression === 'fp16' ? 2 ** -25 : 2 ** -134;
  const relative = gamma(2 * worldSize - 1, unit);
  return { relative: relative + gamma(worldSize - 1, 2 ** -53), absolute: worldSize * halfSubnormal * (1 + relative) };
}

/** Runs one bucketed all-reduce on every rank, each marking its buffer filled by `fill`; returns the buffers. */
async function reduceEverywhere(
  rings: Ring[],
  inputs: Float32Array[],
  fill: (rank: number, markFilled: (end: number) => void, length: number) => Promise<void>,
): Promise<Float32Array[]> {
  const buffers = inputs.map((input) => input.slice());
  await Promise.all(
    rings.map(async (ring, rank) => {
      const reduction = ring.beginAllReduce(buffers[rank]);
      await fill(rank, (end) => reduction.markFilled(end), buffers[rank].length);
      await reduction.done;
    }),
  );
  return buffers;
}

const fillAtOnce = async (_rank: number, markFilled: (end: number) => void, length: number): Promise<void> => {
  markFilled(length);
};

function checkSameBits(t: ExecutionContext, buffers: Float32Array[], label: string): void {
  for (let rank = 1; rank < buffers.length; rank += 1) {
    t.true(bytesOf(buffers[rank]).equals(bytesOf(buffers[0])), `${label}: rank ${rank} bits differ from rank 0`);
  }
}

for (const worldSize of [1, 2, 3, 4]) {
  test(`buckets of ${worldSize} ranks sum correctly`, async (t) => {
    for (const bucketBytes of [4, 12, 4096, 1 << 20]) {
      const { rings } = await startLocalRing(t, worldSize, { bucketBytes, sliceBytes: 2048 });
      // Lengths: empty, one element, not a multiple of the bucket, and several buckets of several slices.
      const lengths = bucketBytes < 4096 ? [0, 1, 2 * worldSize + 1, 50] : [0, 1, 1023, 10_007];
      for (const length of lengths) {
        const label = `N=${worldSize} bucketBytes=${bucketBytes} length=${length}`;
        const inputs = rings.map((_, rank) => seededFloats(seedFor(1000 + bucketBytes + length, rank), length));
        const buffers = await reduceEverywhere(rings, inputs, fillAtOnce);
        checkSameBits(t, buffers, label);
        const violations = countReferenceViolations(inputs, buffers[0]);
        t.is(violations.count, 0, `${label}: elements outside the float32 bound, first ${violations.first}`);
      }
    }
  });

  for (const compression of ['fp16', 'bf16'] as const) {
    test(`${compression} ring of ${worldSize} sums within bound`, async (t) => {
      const { rings } = await startLocalRing(t, worldSize, { compression, bucketBytes: 16 * 1024, sliceBytes: 4096 });
      const { relative, absolute } = compressedBound(worldSize, compression);
      for (const length of [0, 1, worldSize + 1, 20_011]) {
        const label = `N=${worldSize} ${compression} length=${length}`;
        const inputs = rings.map((_, rank) => seededFloats(seedFor(2000 + length, rank), length));
        const buffers = await reduceEverywhere(rings, inputs, fillAtOnce);
        checkSameBits(t, buffers, label);
        const violations = countBoundViolations(inputs, buffers[0], relative, absolute);
        t.is(violations.count, 0, `${label}: elements outside the ${compression} bound, first ${violations.first}`);
        if (worldSize > 1) {
          // The owner rounds each final sum through the 16-bit format, so every result is such a value.
          const [encode, decode] = compression === 'fp16' ? [toFloat16Bits, fromFloat16Bits] : [toBFloat16Bits, fromBFloat16Bits];
          const wider = buffers[0].filter((value) => decode(encode(value)) !== value).length;
          t.is(wider, 0, `${label}: results that are not ${compression} values`);
        }
      }
    });
  }
}

test('bucketed result near unbucketed result', async (t) => {
  // Buckets change which rank starts each element's sum, so bits may differ. Both results are within
  // gamma(N - 1, 2^-24) × sum|x| of the exact sum, so they differ by at most twice that.
  const worldSize = 4;
  const length = 30_001;
  const inputs = Array.from({ length: worldSize }, (_, rank) => seededFloats(seedFor(3000, rank), length));
  const whole = await startLocalRing(t, worldSize, { bucketBytes: length * 4 });
  const unbucketed = await reduceEverywhere(whole.rings, inputs, fillAtOnce);
  const split = await startLocalRing(t, worldSize, { bucketBytes: 4000 });
  const bucketed = await reduceEverywhere(split.rings, inputs, fillAtOnce);
  const factor = 2 * gamma(worldSize - 1, 2 ** -24);
  let outside = 0;
  for (let i = 0; i < length; i += 1) {
    const magnitude = inputs.reduce((total, input) => total + Math.abs(input[i]), 0);
    if (!(Math.abs(bucketed[0][i] - unbucketed[0][i]) <= factor * magnitude)) {
      outside += 1;
    }
  }
  t.is(outside, 0, 'elements where bucketed and unbucketed sums differ by more than the bound');
});

test('markFilled order keeps result bits', async (t) => {
  const worldSize = 3;
  const length = 25_003;
  const inputs = Array.from({ length: worldSize }, (_, rank) => seededFloats(seedFor(4000, rank), length));
  const { rings } = await startLocalRing(t, worldSize, { bucketBytes: 4096, sliceBytes: 1024 });
  const orders: Record<string, (rank: number, markFilled: (end: number) => void, length: number) => Promise<void>> = {
    'all at once': fillAtOnce,
    'small steps with waits': async (_rank, markFilled, total) => {
      for (let end = 777; end < total; end += 777) {
        markFilled(end);
        await nextMacrotask();
      }
      markFilled(total);
    },
    'smaller indexes ignored': async (_rank, markFilled, total) => {
      markFilled(total >> 1);
      markFilled(total >> 2);
      await sleep(5);
      markFilled(0);
      markFilled(total);
    },
    'each rank its own pace': async (rank, markFilled, total) => {
      for (let end = 0; end < total; end += 3000 * (rank + 1)) {
        markFilled(end);
        await sleep(rank);
      }
      markFilled(total);
    },
  };
  const results: [string, Buffer][] = [];
  for (const [name, fill] of Object.entries(orders)) {
    const buffers = await reduceEverywhere(rings, inputs, fill);
    checkSameBits(t, buffers, name);
    results.push([name, Buffer.from(bytesOf(buffers[0]))]);
  }
  for (const [name, bits] of results.slice(1)) {
    t.true(bits.equals(results[0][1]), `order "${name}" gave other bits than "${results[0][0]}"`);
  }
});

test('first bucket reduced before rest filled', async (t) => {
  // Small integers sum exactly in float32: rank r contributes r + 1, so every element becomes 1 + 2 + 3 = 6.
  const worldSize = 3;
  const length = 4096;
  const bucketElements = 1024;
  const { rings } = await startLocalRing(t, worldSize, { bucketBytes: bucketElements * 4 });
  const buffers = rings.map((_, rank) => new Float32Array(length).fill(rank + 1));
  const reductions = rings.map((ring, rank) => ring.beginAllReduce(buffers[rank]));
  for (const reduction of reductions) {
    reduction.markFilled(bucketElements);
  }
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline && !buffers.every((buffer) => buffer[0] === 6 && buffer[bucketElements - 1] === 6)) {
    await sleep(5);
  }
  for (const [rank, buffer] of buffers.entries()) {
    t.is(buffer[bucketElements - 1], 6, `rank ${rank}: bucket 0 was not reduced while the rest was unfilled`);
    t.is(buffer[bucketElements], rank + 1, `rank ${rank}: bucket 1 changed before it was marked filled`);
  }
  for (const reduction of reductions) {
    reduction.markFilled(length);
  }
  await Promise.all(reductions.map((reduction) => reduction.done));
  t.true(
    buffers.every((buffer) => buffer.every((value) => value === 6)),
    'every element of every rank must be 6 after done',
  );
});

test('markFilled rejects invalid index', async (t) => {
  const { rings } = await startLocalRing(t, 2);
  const buffers = [new Float32Array(10), new Float32Array(10)];
  const reductions = rings.map((ring, rank) => ring.beginAllReduce(buffers[rank]));
  for (const bad of [-1, 1.5, 11, Number.NaN]) {
    t.throws(() => reductions[0].markFilled(bad), { instanceOf: RangeError, message: /from 0 to the buffer length 10/ });
  }
  for (const reduction of reductions) {
    reduction.markFilled(10);
  }
  await Promise.all(reductions.map((reduction) => reduction.done));
  t.pass();
});

test('bucket size mismatch rejects protocol', async (t) => {
  const { rings } = await startLocalRing(t, 2, { bucketBytes: 4096 });
  const outcomes = await Promise.allSettled([
    rings[0].beginAllReduce(new Float32Array(5000), { bucketBytes: 8192 }),
    rings[1].beginAllReduce(new Float32Array(5000)),
  ].map(async (reduction) => {
    reduction.markFilled(5000);
    await reduction.done;
  }));
  for (const [rank, outcome] of outcomes.entries()) {
    t.is(outcome.status, 'rejected', `rank ${rank} must reject`);
    const error = (outcome as PromiseRejectedResult).reason as { code?: string; message?: string };
    t.is(error.code, 'RINGTRAIN_ERR_PROTOCOL', `rank ${rank}: ${error.message}`);
  }
  const messages = outcomes.map((outcome) => String((outcome as PromiseRejectedResult).reason?.message));
  t.true(messages.some((message) => /set the same allreduce.bucketBytes/.test(message)), messages.join(' | '));
});

test('compression mismatch rejects protocol', async (t) => {
  const { rings } = await startLocalRing(t, 2, { compression: 'fp16' });
  const outcomes = await Promise.allSettled([
    rings[0].allReduce(new Float32Array(100)),
    (async () => {
      const reduction = rings[1].beginAllReduce(new Float32Array(100), { compression: 'bf16' });
      reduction.markFilled(100);
      await reduction.done;
    })(),
  ]);
  const messages = outcomes.map((outcome) => String((outcome as PromiseRejectedResult).reason?.message));
  t.true(outcomes.every((outcome) => outcome.status === 'rejected'), messages.join(' | '));
  t.true(messages.some((message) => /set the same allreduce.compression/.test(message)), messages.join(' | '));
});

test('invalid bucket options reject early', async (t) => {
  const { rings } = await startLocalRing(t, 1);
  t.throws(() => rings[0].beginAllReduce(new Float32Array(4), { bucketBytes: 2 }), { message: /bucketBytes must be an integer of at least 4/ });
  t.throws(() => rings[0].beginAllReduce(new Float32Array(4), { compression: 'fp8' as Compression }), {
    message: /compression must be one of none, fp16, bf16/,
  });
});

/** Spawns ring workers with `command` and returns the bytes each wrote; every worker must report done. */
async function runWorkerProcesses(t: ExecutionContext, worldSize: number, command: (rank: number, ports: number[]) => RingWorkerCommand): Promise<Buffer[]> {
  const children = Array.from({ length: worldSize }, () => {
    const child = spawn(process.execPath, [workerScript], { stdio: ['pipe', 'pipe', 'inherit'] });
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
      }
    });
    const lines: { type: string; port?: number; message?: string; outputFile?: string }[] = [];
    const waiters: (() => void)[] = [];
    createInterface({ input: child.stdout! }).on('line', (line) => {
      lines.push(JSON.parse(line));
      waiters.splice(0).forEach((wake) => wake());
    });
    const next = async (types: string[]): Promise<{ type: string; port?: number; message?: string }> => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const index = lines.findIndex((line) => types.includes(line.type));
        if (index >= 0) {
          return lines.splice(0, index + 1)[index];
        }
        if (Date.now() > deadline) {
          throw new Error(`worker ${child.pid} printed none of ${types.join(', ')} within 60 s`);
        }
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 1000);
        });
      }
    };
    return { child, next };
  });
  const ports = (await Promise.all(children.map((child) => child.next(['listening'])))).map((line) => line.port!);
  const commands = children.map((child, rank) => {
    const workerCommand = command(rank, ports);
    child.child.stdin!.write(`${JSON.stringify(workerCommand)}\n`);
    return workerCommand;
  });
  const finals = await Promise.all(children.map((child) => child.next(['done', 'error'])));
  for (const [rank, final] of finals.entries()) {
    t.is(final.type, 'done', `rank ${rank} failed: ${final.message ?? ''}`);
  }
  return commands.map((workerCommand) => readFileSync(workerCommand.outputFile));
}

for (const compression of ['none', 'fp16'] as const) {
  test(`processes reduce ${compression} buckets identically`, async (t) => {
    const worldSize = 4;
    const length = 200_003;
    const calls = 2;
    const caseSeed = 5000;
    const directory = mkdtempSync(join(tmpdir(), 'ringtrain-buckets-'));
    t.teardown(() => rmSync(directory, { recursive: true, force: true }));
    const outputs = await runWorkerProcesses(t, worldSize, (rank, ports) => ({
      runId: 'bucket-run',
      rank,
      worldSize,
      ports,
      timeoutMs: 30_000,
      length,
      calls,
      caseSeed,
      bucketBytes: 64 * 1024,
      sliceBytes: 16 * 1024,
      compression,
      fillStep: 10_000,
      outputFile: join(directory, `rank-${rank}.f32`),
      mode: 'run',
    }));
    for (let rank = 1; rank < worldSize; rank += 1) {
      t.true(outputs[rank].equals(outputs[0]), `rank ${rank} output bits differ from rank 0`);
    }
    t.is(outputs[0].length, calls * length * 4);
    const bound =
      compression === 'none'
        ? { relative: gamma(worldSize - 1, 2 ** -24) + gamma(worldSize - 1, 2 ** -53), absolute: 0 }
        : compressedBound(worldSize, compression);
    for (let call = 0; call < calls; call += 1) {
      const inputs = Array.from({ length: worldSize }, (_, rank) => seededFloats(seedFor(caseSeed, rank, call), length));
      const result = new Float32Array(new Uint8Array(outputs[0].subarray(call * length * 4, (call + 1) * length * 4)).buffer);
      const violations = countBoundViolations(inputs, result, bound.relative, bound.absolute);
      t.is(violations.count, 0, `call ${call}: elements outside the bound, first ${violations.first}`);
    }
  });
}
