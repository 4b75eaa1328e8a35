import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import { Ring, type RingPeerAddress } from '../src/comm/ring-allreduce.js';
import { RingListener } from '../src/comm/ring-listener.js';
import { MAX_UNIX_SOCKET_PATH_BYTES, chooseDialTarget, nodeIdentity, type LocalTransport } from '../src/comm/ring-unix-socket.js';
import { capturingLogger, seedFor, seededFloats, silentLogger } from './fixtures/ring-harness.js';
import { launch, ringTransportsByRank, tinyRunFlags, type LogRecord } from './helpers/launch.js';
import { startWorkers } from './helpers/ring-processes.js';

const listenerModule = fileURLToPath(new URL('../src/comm/ring-listener.js', import.meta.url));

function temporaryDirectory(t: ExecutionContext, prefix: string): string {
  const directory = mkdtempSync(join(tmpdir(), prefix));
  t.teardown(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}

/** Returns a directory whose Unix socket path would exceed the platform limit; it is removed after the test. */
function longDirectory(t: ExecutionContext): string {
  const base = temporaryDirectory(t, 'rt-long-');
  const directory = join(base, 'd'.repeat(MAX_UNIX_SOCKET_PATH_BYTES));
  mkdirSync(directory);
  return directory;
}

function readRecords(file: string): LogRecord[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as LogRecord);
}

/** Runs `calls` all-reduces on `worldSize` processes over `transport` and returns each rank's results and link transports. */
async function runProcessRing(
  t: ExecutionContext,
  transport: LocalTransport,
  worldSize: number,
): Promise<{ outputs: Buffer[]; transports: string[][]; socketPaths: (string | null)[] }> {
  const directory = temporaryDirectory(t, 'rt-out-');
  const outputFile = (rank: number): string => join(directory, `rank-${rank}.f32`);
  let socketPaths: (string | null)[] = [];
  const workers = await startWorkers(
    t,
    worldSize,
    (rank, ports, addresses) => {
      socketPaths = addresses.map((address) => address.unixSocketPath ?? null);
      return {
        runId: `unix-${transport}`,
        rank,
        worldSize,
        ports,
        addresses,
        timeoutMs: 20_000,
        length: 300_007,
        calls: 2,
        caseSeed: 1100,
        // Small slices make each call many frames, so frames cross read boundaries on either socket.
        sliceBytes: 64 * 1024,
        outputFile: outputFile(rank),
        mode: 'run',
      };
    },
    [transport],
  );
  const connected = await Promise.all(workers.map((worker) => worker.next('connected', 20_000)));
  const finals = await Promise.all(workers.map((worker) => worker.next('done', 60_000)));
  for (const [rank, message] of finals.entries()) {
    t.is(message.type, 'done', `${transport} rank ${rank} failed: ${message.message ?? ''}`);
  }
  return {
    outputs: Array.from({ length: worldSize }, (_, rank) => readFileSync(outputFile(rank))),
    transports: connected.map((message) => [String(message.previousTransport), String(message.nextTransport)]),
    socketPaths,
  };
}

test('unix ring matches tcp ring bitwise', async (t) => {
  const worldSize = 3;
  const unix = await runProcessRing(t, 'unix', worldSize);
  const tcp = await runProcessRing(t, 'tcp', worldSize);

  t.deepEqual(unix.transports, Array.from({ length: worldSize }, () => ['unix', 'unix']));
  t.deepEqual(tcp.transports, Array.from({ length: worldSize }, () => ['tcp', 'tcp']));
  t.deepEqual(tcp.socketPaths, [null, null, null]);
  for (let rank = 0; rank < worldSize; rank += 1) {
    t.is(unix.outputs[rank].length, 2 * 300_007 * 4);
    t.true(unix.outputs[rank].equals(tcp.outputs[rank]), `rank ${rank}: unix and tcp results differ`);
    t.true(unix.outputs[rank].equals(unix.outputs[0]), `rank ${rank}: unix result differs from rank 0`);
  }

  // Each worker closed its ring and listener before printing done, which removes the socket and its directory.
  t.is(unix.socketPaths.length, worldSize);
  for (const path of unix.socketPaths) {
    t.truthy(path);
    t.false(existsSync(path as string), `${path} still exists`);
    t.false(existsSync(dirname(path as string)), `${dirname(path as string)} still exists`);
  }
});

test('listener close removes socket directory', async (t) => {
  const parent = temporaryDirectory(t, 'rt-sock-');
  const listener = await RingListener.listen({ host: '127.0.0.1', logger: silentLogger(), socketDirectory: parent });
  t.teardown(() => listener.close());
  const path = listener.unixSocketPath;
  t.truthy(path);
  t.is(dirname(dirname(path as string)), parent);
  t.true(existsSync(path as string));
  t.true(Buffer.byteLength(path as string) <= MAX_UNIX_SOCKET_PATH_BYTES);

  await listener.close();
  t.false(existsSync(path as string));
  t.deepEqual(readdirSync(parent), []);
});

test('process exit removes socket directory', async (t) => {
  const parent = temporaryDirectory(t, 'rt-exit-');
  // The child opens a listener and exits without closing it; its exit handler must remove the socket.
  const script =
    `const { RingListener } = await import(${JSON.stringify(listenerModule)});` +
    `const { pino } = await import('pino');` +
    `const listener = await RingListener.listen({ host: '127.0.0.1', logger: pino({ level: 'silent' }), socketDirectory: ${JSON.stringify(parent)} });` +
    'console.log(listener.unixSocketPath);' +
    'setTimeout(() => process.exit(0), 200);';
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: fileURLToPath(new URL('../../', import.meta.url)),
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
    }
  });
  const lines = createInterface({ input: child.stdout });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let path = '';
  for await (const line of lines) {
    path = line.trim();
    break;
  }
  t.true(path.startsWith(parent), `child printed ${JSON.stringify(path)}`);
  t.is(await exited, 0);
  t.false(existsSync(path));
  t.deepEqual(readdirSync(parent), []);
});

test('long socket directory falls back to tcp', async (t) => {
  const { logger, lines } = capturingLogger('info');
  const directory = longDirectory(t);
  const listeners = await Promise.all([
    RingListener.listen({ host: '127.0.0.1', logger, socketDirectory: directory }),
    RingListener.listen({ host: '127.0.0.1', logger }),
  ]);
  t.teardown(() => Promise.all(listeners.map((listener) => listener.close())));
  t.is(listeners[0].unixSocketPath, null);
  t.truthy(listeners[1].unixSocketPath);
  t.deepEqual(readdirSync(directory), []);
  const warnings = lines.map((line) => JSON.parse(line) as LogRecord).filter((record) => record.level === 40);
  t.is(warnings.length, 1);
  t.is(warnings[0]?.msg, 'ring listener opened no Unix socket; its links use TCP');
  t.regex(String((warnings[0]?.err as { message?: string } | undefined)?.message), new RegExp(`above the limit of ${MAX_UNIX_SOCKET_PATH_BYTES} bytes.*TMPDIR`));

  // Rank 1 dials rank 0, which has no socket, over TCP; rank 0 dials rank 1's socket.
  const addresses = listeners.map((listener) => listener.peerAddress('127.0.0.1'));
  const rings = await Promise.all(
    [0, 1].map((rank) =>
      Ring.connect({
        listener: listeners[rank] as RingListener,
        rank,
        worldSize: 2,
        runId: 'fallback-run',
        previous: addresses[1 - rank] as RingPeerAddress,
        next: addresses[1 - rank] as RingPeerAddress,
        timeoutMs: 10_000,
        logger,
      }),
    ),
  );
  t.teardown(() => Promise.all(rings.map((ring) => ring.close())));
  t.deepEqual(rings[0]?.linkTransports, { previousTransport: 'unix', nextTransport: 'tcp' });
  t.deepEqual(rings[1]?.linkTransports, { previousTransport: 'tcp', nextTransport: 'unix' });

  const buffers = [0, 1].map((rank) => seededFloats(seedFor(1200, rank), 10_001));
  const expected = buffers[0]!.map((value, index) => Math.fround(value + buffers[1]![index]!));
  await Promise.all(rings.map((ring, rank) => ring.allReduce(buffers[rank]!)));
  for (const buffer of buffers) {
    t.true(Buffer.from(buffer.buffer).equals(Buffer.from(expected.buffer)));
  }
});

test('dial target needs same node and file', (t) => {
  const parent = temporaryDirectory(t, 'rt-target-');
  const node = nodeIdentity(0);
  const existing = join(parent, 'exists.sock');
  const missing = join(parent, 'missing.sock');
  // An empty file replaces the socket here, because the choice only checks that the path exists.
  writeFileSync(existing, '');
  const address = { host: '127.0.0.1', port: 1, unixSocketPath: existing, nodeId: node };

  t.deepEqual(chooseDialTarget(address, 'unix', node), { transport: 'unix', socketPath: existing });
  t.like(chooseDialTarget(address, 'tcp', node), { transport: 'tcp', unexpected: false });
  t.like(chooseDialTarget(address, 'unix', nodeIdentity(1)), { transport: 'tcp', reason: 'the neighbour runs on another node' });
  t.like(chooseDialTarget({ ...address, unixSocketPath: null }, 'unix', node), { transport: 'tcp', unexpected: false });
  const tcpOnly: RingPeerAddress = { host: '127.0.0.1', port: 1 };
  t.like(chooseDialTarget(tcpOnly, 'unix', node), { transport: 'tcp', unexpected: false });
  t.like(chooseDialTarget({ ...address, unixSocketPath: missing }, 'unix', node), { transport: 'tcp', unexpected: true });
  t.not(nodeIdentity(0), nodeIdentity(1));
  t.is(nodeIdentity(3), nodeIdentity(3));
});

/** Returns the socket paths that the run's ring listeners logged when they opened. */
function loggedSocketPaths(logFile: string): (string | null)[] {
  return readRecords(logFile)
    .filter((record) => record.msg === 'ring listener open')
    .map((record) => record.unixSocketPath as string | null);
}

test('training run links over unix', async (t) => {
  t.timeout(120_000);
  const socketParent = temporaryDirectory(t, 'rt-run-');
  const result = await launch(t, ['--gpus', '2', '--max-steps', '2', ...tinyRunFlags], { env: { TMPDIR: socketParent } });
  t.is(result.exitCode, 0, result.stdout.slice(-2000));
  const logFile = join(result.runDir, 'logs.jsonl');
  t.deepEqual(
    ringTransportsByRank([result.runDir]),
    [
      [0, ['unix', 'unix']],
      [1, ['unix', 'unix']],
    ],
  );
  const paths = loggedSocketPaths(logFile);
  t.is(paths.length, 2);
  for (const path of paths) {
    t.true(typeof path === 'string' && path.startsWith(socketParent), `socket path ${String(path)}`);
  }
  t.deepEqual(
    readdirSync(socketParent).filter((name) => name.startsWith('ringtrain-')),
    [],
  );
});

test('localTransport tcp keeps training on tcp', async (t) => {
  t.timeout(120_000);
  const result = await launch(t, ['--gpus', '2', '--max-steps', '2', ...tinyRunFlags, '--set', 'allreduce.localTransport=tcp']);
  t.is(result.exitCode, 0, result.stdout.slice(-2000));
  const logFile = join(result.runDir, 'logs.jsonl');
  t.deepEqual(
    ringTransportsByRank([result.runDir]),
    [
      [0, ['tcp', 'tcp']],
      [1, ['tcp', 'tcp']],
    ],
  );
  t.deepEqual(loggedSocketPaths(logFile), [null, null]);
});

test('invalid localTransport stops launch', async (t) => {
  const result = await launch(t, ['--gpus', '2', '--max-steps', '2', ...tinyRunFlags, '--set', 'allreduce.localTransport=pipe'], { timeoutMs: 30_000 });
  t.is(result.exitCode, 2);
  t.regex(result.stderr, /allreduce\.localTransport must be one of unix, tcp \(got "pipe"\)/);
});
