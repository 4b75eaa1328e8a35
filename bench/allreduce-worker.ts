/**
 * One ringtrain rank of the all-reduce benchmark, driven by bench/allreduce.ts over JSON lines.
 *
 * argv: the listener's localTransport, `unix` or `tcp`; default unix.
 * stdout: {"type":"ready","address"} once the listener is open, {"type":"connected","previousTransport","nextTransport"}
 * after Ring.connect, then one {"type":"result","times","cpuMs","systemMs"} per run command (CPU time per timed call:
 * user plus system, and system alone), or {"type":"error","message"}.
 * stdin: {"type":"connect","rank","addresses","sliceBytes","bucketBytes","compression","timeoutMs"}, then
 * {"type":"run","bytes","warmup","iterations"} any number of times, then {"type":"exit"}.
 */
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { Ring, type Compression, type RingPeerAddress } from '../src/comm/ring-allreduce.js';
import { RingListener } from '../src/comm/ring-listener.js';
import { LOCAL_TRANSPORTS, type LocalTransport } from '../src/comm/ring-unix-socket.js';
import { allocateKernelFloats } from '../src/kernels/kernel-memory.js';

interface ConnectCommand {
  type: 'connect';
  rank: number;
  /** Listener address of every rank, as each printed it in its ready line. */
  addresses: RingPeerAddress[];
  /** Slice size in bytes, or 0 for the ring's default. */
  sliceBytes: number;
  /** Bucket size in float32 bytes, or 0 for one bucket covering the whole buffer. */
  bucketBytes: number;
  compression: Compression;
  timeoutMs: number;
}

interface RunCommand {
  type: 'run';
  bytes: number;
  warmup: number;
  iterations: number;
}

function emit(message: object): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/**
 * Runs `warmup` untimed and `iterations` timed all-reduces of a `bytes`-long buffer and returns the timed
 * durations in milliseconds. Every rank fills the buffer with rank + 1, so after the first call each
 * element must be 1 + 2 + ... + N = N(N + 1)/2, which is exact in float32 for any practical N, and in
 * fp16 and bf16 for N up to 15.
 */
async function runSize(ring: Ring, command: RunCommand, bucketBytes: number): Promise<{ times: number[]; cpuMs: number; systemMs: number }> {
  const options = { bucketBytes: bucketBytes > 0 ? bucketBytes : Math.max(4, command.bytes) };
  // The trainer keeps its gradients in the kernel memory, where the SIMD add reads them in place.
  const buffer = allocateKernelFloats(command.bytes / 4).fill(ring.rank + 1);
  const expected = (ring.worldSize * (ring.worldSize + 1)) / 2;
  const times: number[] = [];
  let cpuStart = process.cpuUsage();
  for (let call = 0; call < command.warmup + command.iterations; call += 1) {
    const start = performance.now();
    const reduction = ring.beginAllReduce(buffer, options);
    reduction.markFilled(buffer.length);
    await reduction.done;
    const elapsed = performance.now() - start;
    if (call === 0 && buffer.length > 0 && (buffer[0] !== expected || buffer[buffer.length - 1] !== expected)) {
      throw new Error(
        `rank ${ring.rank}: all-reduce of ${command.bytes} bytes returned ${buffer[0]} and ${buffer[buffer.length - 1]} ` +
          `at the ends (expected ${expected})`,
      );
    }
    if (call + 1 === command.warmup) {
      cpuStart = process.cpuUsage();
    }
    if (call >= command.warmup) {
      times.push(elapsed);
    }
  }
  const cpu = process.cpuUsage(cpuStart);
  return { times, cpuMs: (cpu.user + cpu.system) / 1000 / command.iterations, systemMs: cpu.system / 1000 / command.iterations };
}

async function main(): Promise<void> {
  // The driver sends SIGTERM to a worker that is slow to exit. Exiting through process.exit runs the exit
  // handler that removes the listener's Unix socket directory, which the default SIGTERM action would skip.
  process.once('SIGTERM', () => process.exit(143));
  const logger = pino({ level: 'warn' }, pino.destination(2));
  const localTransport = (process.argv[2] ?? 'unix') as LocalTransport;
  if (!LOCAL_TRANSPORTS.includes(localTransport)) {
    throw new Error(`local transport ${JSON.stringify(localTransport)} is not one of ${LOCAL_TRANSPORTS.join(', ')}`);
  }
  const listener = await RingListener.listen({ host: '127.0.0.1', logger, localTransport });
  emit({ type: 'ready', address: listener.peerAddress('127.0.0.1') });

  const lines = createInterface({ input: process.stdin });
  let ring: Ring | null = null;
  let bucketBytes = 0;
  try {
    for await (const line of lines) {
      const command = JSON.parse(line) as ConnectCommand | RunCommand | { type: 'exit' };
      if (command.type === 'connect') {
        const worldSize = command.addresses.length;
        const address = (rank: number): RingPeerAddress => command.addresses[(rank + worldSize) % worldSize];
        const connected = await Ring.connect({
          listener,
          rank: command.rank,
          worldSize,
          runId: 'bench-allreduce',
          previous: address(command.rank - 1),
          next: address(command.rank + 1),
          timeoutMs: command.timeoutMs,
          logger,
          sliceBytes: command.sliceBytes > 0 ? command.sliceBytes : undefined,
          compression: command.compression,
        });
        ring = connected;
        bucketBytes = command.bucketBytes;
        emit({ type: 'connected', ...connected.linkTransports });
      } else if (command.type === 'run') {
        if (ring === null) {
          throw new Error('received a run command before the connect command; send connect first');
        }
        emit({ type: 'result', ...(await runSize(ring, command, bucketBytes)) });
      } else {
        break;
      }
    }
  } finally {
    lines.close();
    await ring?.close();
    await listener.close();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    emit({ type: 'error', message: error instanceof Error ? error.message : String(error) });
    process.exit(1);
  },
);
