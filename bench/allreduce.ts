/**
 * All-reduce benchmark: ringtrain's WebSocket ring against PyTorch gloo and raw loopback TCP, on this machine.
 *
 *   npm run bench:allreduce -- --world 2,4 --sizes 1M,16M,64M,256M [--iterations 10] [--json FILE]
 *     [--bucket-bytes 0,4M] [--compression none,fp16,bf16] [--transport tcp,unix]
 *
 * For each world size it starts that many ringtrain processes forming a ring on 127.0.0.1, and as many
 * gloo processes when /usr/bin/python3 can import torch. For each buffer size the two implementations
 * take turns (--rounds times), so both see the same background load. A call's time is the slowest rank's
 * time; the table shows the median over all timed calls, algbw = bytes / median and
 * busbw = algbw × 2(n − 1)/n. The TCP ceiling is measured before each world size and at the end.
 * Every combination of slice size, bucket size, compression and transport is a ring group of its own. Bytes are
 * always those of the float32 buffer, so a compressed ring's busbw is in float32-equivalent bytes.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BenchChild } from './allreduce-child.js';
import { COMPRESSIONS, type Compression } from '../src/comm/ring-buckets.js';
import type { RingPeerAddress } from '../src/comm/ring-dial.js';
import { LOCAL_TRANSPORTS, type LocalTransport } from '../src/comm/ring-unix-socket.js';
import { describeMachine, formatBytes, formatLoad, formatTable, makeRecord, median, type AllReduceRecord } from './allreduce-report.js';
import { measureTcpCeiling } from './tcp-ceiling.js';

const PYTHON = '/usr/bin/python3';
/** Bytes streamed by each TCP ceiling measurement. */
const TCP_CEILING_BYTES = 2 ** 30;
const ringWorkerScript = fileURLToPath(new URL('./allreduce-worker.js', import.meta.url));
// The Python worker is not compiled, so it is found next to the TypeScript sources: dist/bench -> bench.
const glooWorkerScript = fileURLToPath(new URL('../../bench/gloo_allreduce.py', import.meta.url));

const USAGE = `usage: npm run bench:allreduce -- [options]
  --world 2,4               world sizes (processes per ring), each at least 2
  --sizes 1M,16M,64M,256M   buffer sizes in bytes; K, M and G are binary units; multiples of 4
  --iterations 10           timed calls per round, at least 10
  --warmup 3                untimed calls before them
  --rounds 1                turns each implementation takes per size, in alternating order
  --slice-bytes 0           ringtrain slice sizes to compare, comma-separated; 0 is the ring's default
  --bucket-bytes 0          ringtrain bucket sizes to compare (float32 bytes); 0 is one bucket for the whole buffer
  --compression none        ringtrain wire formats to compare: none, fp16, bf16, comma-separated
  --transport unix          ringtrain link transports to compare: unix (Unix sockets, the default), tcp
  --json FILE               also write the records as a JSON array to FILE
  --no-gloo, --no-tcp       skip the gloo comparison or the TCP ceiling
  --timeout-ms MS           limit on each wait for a worker; default one minute plus the calls at 10 MB/s
  --profile DIR             write --cpu-prof profiles of the ringtrain ranks to DIR`;

interface BenchOptions {
  worlds: number[];
  sizes: number[];
  iterations: number;
  warmup: number;
  rounds: number;
  /** Ring slice sizes in bytes to compare; 0 is the ring's default. */
  sliceBytes: number[];
  /** Ring bucket sizes in float32 bytes to compare; 0 reduces the whole buffer as one bucket. */
  bucketBytes: number[];
  compressions: Compression[];
  /** Link transports to compare; every rank of a ring runs on this machine, so unix links every pair. */
  transports: LocalTransport[];
  json: string | null;
  gloo: boolean;
  tcp: boolean;
  /** Limit on each wait for a worker line; null derives it from the buffer size. */
  timeoutMs: number | null;
  /** Directory for --cpu-prof profiles of the ringtrain workers, or null. */
  profileDir: string | null;
}

/** A set of worker processes of one implementation that run the same command together. */
interface WorkerGroup {
  implementation: string;
  children: BenchChild[];
}

function parseSize(text: string): number {
  const match = /^(\d+)([KMG]?)$/i.exec(text.trim());
  if (match === null) {
    throw new Error(`--sizes entry ${JSON.stringify(text)} is not a size; write bytes or a number with K, M or G (binary units), e.g. 16M`);
  }
  const scale = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 }[match[2].toUpperCase() as '' | 'K' | 'M' | 'G'];
  const bytes = Number(match[1]) * scale;
  if (bytes % 4 !== 0 || bytes === 0) {
    throw new Error(`--sizes entry ${text} is ${bytes} bytes; it must be a positive multiple of 4 (whole float32 values)`);
  }
  return bytes;
}

function parseCompression(text: string): Compression {
  if (!(COMPRESSIONS as readonly string[]).includes(text)) {
    throw new Error(`--compression entry ${JSON.stringify(text)} is not one of ${COMPRESSIONS.join(', ')}`);
  }
  return text as Compression;
}

function parseTransport(text: string): LocalTransport {
  if (!(LOCAL_TRANSPORTS as readonly string[]).includes(text)) {
    throw new Error(`--transport entry ${JSON.stringify(text)} is not one of ${LOCAL_TRANSPORTS.join(', ')}`);
  }
  return text as LocalTransport;
}

function parseCount(name: string, text: string, minimum: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < minimum) {
    throw new Error(`--${name} must be an integer of at least ${minimum} (got ${JSON.stringify(text)})`);
  }
  return value;
}

function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      world: { type: 'string', default: '2,4' },
      sizes: { type: 'string', default: '1M,16M,64M,256M' },
      iterations: { type: 'string', default: '10' },
      warmup: { type: 'string', default: '3' },
      rounds: { type: 'string', default: '1' },
      'slice-bytes': { type: 'string', default: '0' },
      'bucket-bytes': { type: 'string', default: '0' },
      compression: { type: 'string', default: 'none' },
      transport: { type: 'string', default: 'unix' },
      json: { type: 'string' },
      'no-gloo': { type: 'boolean', default: false },
      'no-tcp': { type: 'boolean', default: false },
      'timeout-ms': { type: 'string' },
      profile: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  return {
    worlds: values.world.split(',').map((text) => parseCount('world', text, 2)),
    sizes: values.sizes.split(',').map(parseSize),
    iterations: parseCount('iterations', values.iterations, 10),
    warmup: parseCount('warmup', values.warmup, 1),
    rounds: parseCount('rounds', values.rounds, 1),
    sliceBytes: values['slice-bytes'].split(',').map((text) => (text === '0' ? 0 : parseSize(text))),
    bucketBytes: values['bucket-bytes'].split(',').map((text) => (text === '0' ? 0 : parseSize(text))),
    compressions: values.compression.split(',').map(parseCompression),
    transports: values.transport.split(',').map(parseTransport),
    json: values.json ?? null,
    gloo: !values['no-gloo'],
    tcp: !values['no-tcp'],
    timeoutMs: values['timeout-ms'] === undefined ? null : parseCount('timeout-ms', values['timeout-ms'], 1000),
    profileDir: values.profile ?? null,
  };
}

/** Returns the limit for one run command: a minute plus the calls at 10 MB/s, unless --timeout-ms is set. */
function runTimeoutMs(options: BenchOptions, bytes: number): number {
  const calls = options.warmup + options.iterations;
  return options.timeoutMs ?? 60_000 + Math.ceil((calls * bytes) / 10e6) * 1000;
}

/** A ringtrain configuration under test: one value of each of --slice-bytes, --bucket-bytes, --compression and --transport. */
interface RingVariant {
  sliceBytes: number;
  bucketBytes: number;
  compression: Compression;
  transport: LocalTransport;
}

/** Returns every combination of the ring settings in the options. */
function ringVariants(options: BenchOptions): RingVariant[] {
  return options.sliceBytes.flatMap((sliceBytes) =>
    options.bucketBytes.flatMap((bucketBytes) =>
      options.compressions.flatMap((compression) =>
        options.transports.map((transport) => ({ sliceBytes, bucketBytes, compression, transport })),
      ),
    ),
  );
}

/** Names a variant by the settings that the command line varies, e.g. "ringtrain bucket=4MiB fp16". */
function ringLabel(variant: RingVariant, options: BenchOptions): string {
  const size = (bytes: number, zero: string): string => (bytes === 0 ? zero : formatBytes(bytes).replace(' ', ''));
  const parts = ['ringtrain'];
  if (options.sliceBytes.length > 1 || variant.sliceBytes !== 0) {
    parts.push(`slice=${size(variant.sliceBytes, 'default')}`);
  }
  if (options.bucketBytes.length > 1 || variant.bucketBytes !== 0) {
    parts.push(`bucket=${size(variant.bucketBytes, 'whole')}`);
  }
  if (options.compressions.length > 1 || variant.compression !== 'none') {
    parts.push(variant.compression);
  }
  if (options.transports.length > 1 || variant.transport !== 'unix') {
    parts.push(variant.transport);
  }
  return parts.join(' ');
}

async function startRingGroup(world: number, variant: RingVariant, options: BenchOptions, all: BenchChild[]): Promise<WorkerGroup> {
  const implementation = ringLabel(variant, options);
  const profileArgs = options.profileDir === null ? [] : ['--cpu-prof', '--cpu-prof-dir', options.profileDir];
  const children = Array.from({ length: world }, (_, rank) =>
    BenchChild.start(`${implementation} rank ${rank}`, process.execPath, [...profileArgs, ringWorkerScript, variant.transport]),
  );
  all.push(...children);
  const setupMs = options.timeoutMs ?? 60_000;
  const addresses = await Promise.all(children.map(async (child) => (await child.next('ready', setupMs)).address as RingPeerAddress));
  for (const [rank, child] of children.entries()) {
    child.send({ type: 'connect', rank, addresses, ...variant, timeoutMs: 120_000 });
  }
  const connected = await Promise.all(children.map((child) => child.next('connected', setupMs)));
  // A Unix socket that could not be opened falls back to TCP, which would make the comparison meaningless.
  for (const [rank, message] of connected.entries()) {
    if (message.previousTransport !== variant.transport || message.nextTransport !== variant.transport) {
      throw new Error(
        `${implementation} rank ${rank} linked with ${String(message.previousTransport)} from its previous and ` +
          `${String(message.nextTransport)} to its next rank (expected ${variant.transport}); see its warnings above`,
      );
    }
  }
  return { implementation, children };
}

async function startGlooGroup(world: number, options: BenchOptions, all: BenchChild[]): Promise<WorkerGroup> {
  const port = await freePort();
  const children = Array.from({ length: world }, (_, rank) =>
    BenchChild.start(`gloo rank ${rank}`, PYTHON, [glooWorkerScript, String(rank), String(world), String(port), '600'], {
      // Gloo picks its interface from the host name unless GLOO_SOCKET_IFNAME names one; lo keeps traffic on 127.0.0.1.
      GLOO_SOCKET_IFNAME: 'lo',
      OMP_NUM_THREADS: '1',
    }),
  );
  all.push(...children);
  await Promise.all(children.map((child) => child.next('ready', options.timeoutMs ?? 120_000)));
  return { implementation: 'gloo', children };
}

/**
 * Runs one size on every process of `group`. Returns, per timed call, the slowest rank's time, and the CPU
 * time that all ranks together spent per call.
 */
async function runGroup(group: WorkerGroup, bytes: number, options: BenchOptions): Promise<{ calls: number[]; cpuMs: number; systemMs: number }> {
  for (const child of group.children) {
    child.send({ type: 'run', bytes, warmup: options.warmup, iterations: options.iterations });
  }
  const timeoutMs = runTimeoutMs(options, bytes);
  const results = await Promise.all(group.children.map((child) => child.next('result', timeoutMs)));
  const perRank = results.map((result) => result.times as number[]);
  const cpuMs = results.reduce((total, result) => total + Number(result.cpuMs), 0);
  const systemMs = results.reduce((total, result) => total + Number(result.systemMs), 0);
  return { calls: perRank[0].map((_, call) => Math.max(...perRank.map((times) => times[call]))), cpuMs, systemMs };
}

function freePort(): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

function torchAvailable(): boolean {
  const probe = spawnSync(PYTHON, ['-c', 'import torch, torch.distributed as d; assert d.is_gloo_available()'], {
    timeout: 120_000,
    stdio: 'ignore',
  });
  return probe.status === 0;
}

async function measureCeiling(ceilings: number[]): Promise<void> {
  const bytes = TCP_CEILING_BYTES;
  const result = await measureTcpCeiling({ bytes, writeBytes: 4 * 1024 * 1024, timeoutMs: 60_000 });
  ceilings.push(result.MBps);
  console.log(`tcp ceiling: ${formatBytes(bytes)} in 4 MiB writes, ${result.ms.toFixed(0)} ms, ${result.MBps.toFixed(0)} MB/s (load ${formatLoad()})`);
}

async function benchmarkWorld(world: number, options: BenchOptions, useGloo: boolean, records: AllReduceRecord[], all: BenchChild[]): Promise<void> {
  const groups: WorkerGroup[] = [];
  for (const variant of ringVariants(options)) {
    groups.push(await startRingGroup(world, variant, options, all));
  }
  if (useGloo) {
    groups.push(await startGlooGroup(world, options, all));
  }
  for (const bytes of options.sizes) {
    const times = new Map<string, number[]>(groups.map((group) => [group.implementation, []]));
    const cpuTimes = new Map<string, number[]>(groups.map((group) => [group.implementation, []]));
    for (let round = 0; round < options.rounds; round += 1) {
      // Alternate the order between rounds, so neither implementation always runs right after the other.
      const order = round % 2 === 0 ? groups : [...groups].reverse();
      for (const group of order) {
        const { calls, cpuMs, systemMs } = await runGroup(group, bytes, options);
        times.get(group.implementation)!.push(...calls);
        cpuTimes.get(group.implementation)!.push(cpuMs);
        console.log(
          `world ${world}  ${formatBytes(bytes).padStart(8)}  ${group.implementation.padEnd(32)} round ${round + 1}: ` +
            `median ${median(calls).toFixed(1)} ms, CPU of all ranks ${cpuMs.toFixed(1)} ms per call ` +
            `(system ${systemMs.toFixed(1)} ms), load ${formatLoad()}`,
        );
      }
    }
    for (const group of groups) {
      records.push(makeRecord(group.implementation, world, bytes, times.get(group.implementation)!, cpuTimes.get(group.implementation)!));
    }
  }
  await Promise.all(groups.flatMap((group) => group.children.map((child) => child.stop())));
}

async function main(): Promise<void> {
  let options: BenchOptions;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  const machine = describeMachine();
  console.log(`all-reduce benchmark on ${machine.nproc} CPUs (${machine.cpuModel}), Node ${machine.node}, ${machine.date}`);
  console.log(`load average at start: ${machine.loadAverage}`);

  let useGloo = false;
  if (options.gloo) {
    useGloo = torchAvailable();
    if (!useGloo) {
      console.log(`gloo: skipped, because ${PYTHON} cannot import torch with gloo; install it with apt-get install -y python3-torch`);
    }
  }

  const all: BenchChild[] = [];
  const killAll = (): void => all.forEach((child) => child.kill());
  process.once('SIGINT', () => {
    killAll();
    process.exit(130);
  });
  const records: AllReduceRecord[] = [];
  const ceilings: number[] = [];
  try {
    for (const world of options.worlds) {
      if (options.tcp) {
        await measureCeiling(ceilings);
      }
      await benchmarkWorld(world, options, useGloo, records, all);
    }
    if (options.tcp) {
      await measureCeiling(ceilings);
    }
  } finally {
    killAll();
  }

  const tcpMBps = ceilings.length > 0 ? median(ceilings) : null;
  console.log(`\nload average at end: ${formatLoad()}`);
  console.log(formatTable(records, tcpMBps).join('\n'));
  if (options.json !== null) {
    const tcpRecords: AllReduceRecord[] = [];
    if (tcpMBps !== null) {
      const bytes = TCP_CEILING_BYTES;
      const medianMs = bytes / tcpMBps / 1e3;
      tcpRecords.push({
        implementation: 'tcp-ceiling',
        world: 2,
        bytes,
        medianMs,
        algbwMBps: tcpMBps,
        busbwMBps: tcpMBps,
        calls: ceilings.length,
        cpuMsPerCall: null,
      });
    }
    writeFileSync(options.json, `${JSON.stringify([...records, ...tcpRecords], null, 2)}\n`);
    console.log(`wrote ${records.length + tcpRecords.length} records to ${options.json}`);
  }
}

await main();
