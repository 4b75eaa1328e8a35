/**
 * Quick throughput check of the ring all-reduce: N ranks in N processes on this machine, loopback sockets.
 *
 *   node dist/bench/allreduce-quick.js [--ranks 2] [--mib 16,64] [--slice-bytes 1048576] [--calls 10] [--warmup 3]
 *
 * Prints, per buffer size, the median time of `calls` allReduce calls after `warmup` calls, measured on
 * rank 0, with algbw = buffer bytes / time and busbw = algbw * 2(n-1)/n.
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { Ring, DEFAULT_SLICE_BYTES } from '../src/comm/ring-allreduce.js';
import { RingListener } from '../src/comm/ring-listener.js';

interface WorkerPlan {
  rank: number;
  ports: number[];
  sizesMiB: number[];
  sliceBytes: number;
  calls: number;
  warmup: number;
}

interface SizeResult {
  mib: number;
  medianMs: number;
}

async function runWorker(): Promise<void> {
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const listener = await RingListener.listen({ host: '127.0.0.1', logger });
  process.stdout.write(`${JSON.stringify({ port: listener.port })}\n`);

  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const plan = JSON.parse((await lines.next()).value as string) as WorkerPlan;
  const worldSize = plan.ports.length;
  const address = (rank: number): { host: string; port: number } => ({
    host: '127.0.0.1',
    port: plan.ports[(rank + worldSize) % worldSize],
  });
  const ring = await Ring.connect({
    listener,
    rank: plan.rank,
    worldSize,
    runId: 'bench',
    previous: address(plan.rank - 1),
    next: address(plan.rank + 1),
    timeoutMs: 60_000,
    logger,
    sliceBytes: plan.sliceBytes,
  });

  const results: SizeResult[] = [];
  for (const mib of plan.sizesMiB) {
    const buffer = new Float32Array((mib * 1024 * 1024) / 4).fill(1 / worldSize);
    const times: number[] = [];
    for (let call = 0; call < plan.warmup + plan.calls; call += 1) {
      const start = performance.now();
      await ring.allReduce(buffer);
      if (call >= plan.warmup) {
        times.push(performance.now() - start);
      }
    }
    times.sort((a, b) => a - b);
    results.push({ mib, medianMs: times[Math.floor(times.length / 2)] });
  }

  process.stdout.write(`${JSON.stringify({ results })}\n`);
  await ring.close();
  await listener.close();
  process.exit(0);
}

async function runParent(): Promise<void> {
  const { values } = parseArgs({
    options: {
      ranks: { type: 'string', default: '2' },
      mib: { type: 'string', default: '16,64' },
      'slice-bytes': { type: 'string', default: String(DEFAULT_SLICE_BYTES) },
      calls: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '3' },
    },
  });
  const worldSize = Number(values.ranks);
  const script = fileURLToPath(import.meta.url);
  const children = Array.from({ length: worldSize }, () =>
    spawn(process.execPath, [script, 'worker'], { stdio: ['pipe', 'pipe', 'inherit'] }),
  );
  const readers = children.map((child) => createInterface({ input: child.stdout })[Symbol.asyncIterator]());
  const ports = await Promise.all(readers.map(async (reader) => (JSON.parse((await reader.next()).value as string) as { port: number }).port));
  for (const [rank, child] of children.entries()) {
    const plan: WorkerPlan = {
      rank,
      ports,
      sizesMiB: values.mib.split(',').map(Number),
      sliceBytes: Number(values['slice-bytes']),
      calls: Number(values.calls),
      warmup: Number(values.warmup),
    };
    child.stdin.write(`${JSON.stringify(plan)}\n`);
  }
  const reports = await Promise.all(
    readers.map(async (reader) => (JSON.parse((await reader.next()).value as string) as { results: SizeResult[] }).results),
  );
  for (const { mib, medianMs } of reports[0]) {
    const algbw = (mib * 1024 * 1024) / (medianMs / 1000) / 1e9;
    const busbw = (algbw * 2 * (worldSize - 1)) / worldSize;
    console.log(
      `ranks ${worldSize}  ${String(mib).padStart(4)} MiB  slice ${values['slice-bytes']} B  median ${medianMs.toFixed(1)} ms  ` +
        `algbw ${algbw.toFixed(3)} GB/s  busbw ${busbw.toFixed(3)} GB/s`,
    );
  }
}

if (process.argv[2] === 'worker') {
  await runWorker();
} else {
  await runParent();
}
