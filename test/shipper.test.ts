import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import pino from 'pino';
import { WebSocketServer } from 'ws';
import { LogAggregator } from '../src/log/aggregator/server.js';
import { LogShipper, reconnectDelayMs } from '../src/log/shipper.js';

const repositoryRoot = fileURLToPath(new URL('../../', import.meta.url));
const aggregatorEntry = join(repositoryRoot, 'dist', 'src', 'aggregator', 'main.js');
const shipperModule = join(repositoryRoot, 'dist', 'src', 'log', 'shipper.js');
const TOKEN = 'shipper-test-token';

function capturingLogger(): { logger: pino.Logger; records: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(line) });
  return { logger, records: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>) };
}

function temporaryDir(t: ExecutionContext): string {
  const directory = mkdtempSync(join(tmpdir(), 'ringtrain-shipper-'));
  t.teardown(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}

async function waitFor(condition: () => boolean, timeoutMs = 5_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (condition()) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return condition();
}

function readLines(path: string): string[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8').split('\n').filter((line) => line !== '');
}

/** Returns a port that was free a moment ago, by binding port 0 and releasing it. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function startAggregator(t: ExecutionContext, port: number, outDir: string): Promise<LogAggregator> {
  const aggregator = await LogAggregator.start({ port, host: '127.0.0.1', outDir, token: TOKEN, printLine: null }, pino({ level: 'silent' }));
  t.teardown(() => aggregator.stop('test finished'));
  return aggregator;
}

/** Starts `npm run aggregator`'s entry as a child process and resolves with it and the port from its start log. */
async function spawnAggregator(t: ExecutionContext, outDir: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [aggregatorEntry, '--port', '0', '--out', outDir], {
    env: { ...process.env, RINGTRAIN_TOKEN: TOKEN },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const started = await waitFor(() => /"port":\d+/.test(stderr), 10_000);
  if (!started) throw new Error(`aggregator did not report its port within 10 s; stderr: ${stderr}`);
  return { child, port: Number(/"port":(\d+)/.exec(stderr)?.[1]) };
}

function workerLine(index: number): string {
  return JSON.stringify({ level: 30, time: Date.now(), pid: process.pid, run: 'ship', node: 0, rank: 0, role: 'worker', index, msg: 'line' }) + '\n';
}

test('shipper reconnects after late start', async (t) => {
  const port = await freePort();
  const outDir = join(temporaryDir(t), 'out');
  const diagnostics = capturingLogger();
  const shipper = new LogShipper({ url: `ws://127.0.0.1:${port}`, token: TOKEN, logger: diagnostics.logger, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
  t.teardown(() => shipper.close(500));
  for (let index = 0; index < 50; index++) shipper.write(workerLine(index));

  t.true(await waitFor(() => diagnostics.records().some((record) => String(record.msg).startsWith('log shipper cannot reach'))));
  t.false(shipper.connected);
  t.is(shipper.queuedLines, 50);

  const aggregator = await startAggregator(t, port, outDir);
  // Backoff is capped at 200 ms, so the next attempt comes within 200 ms of the aggregator starting.
  t.true(await waitFor(() => shipper.sentLines === 50, 3_000));
  await shipper.close(2_000);
  // stop() flushes the files; until then the last lines may still be in the write streams' buffers.
  await aggregator.stop();
  t.is(readLines(join(outDir, 'ship.jsonl')).length, 50);
  t.true(diagnostics.records().some((record) => record.msg === 'log shipper connected to the aggregator' && Number(record.failedAttempts) >= 1));
});

test('shipper survives aggregator kill', async (t) => {
  const directory = temporaryDir(t);
  const { child, port } = await spawnAggregator(t, join(directory, 'first'));
  const maxQueueLines = 100;
  const shipper = new LogShipper({ url: `ws://127.0.0.1:${port}`, token: TOKEN, maxQueueLines, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
  t.teardown(() => shipper.close(500));

  for (let index = 0; index < 100; index++) shipper.write(workerLine(index));
  t.true(await waitFor(() => shipper.sentLines === 100));

  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
  t.true(await waitFor(() => !shipper.connected));

  const written = 1_000;
  const startedAt = process.hrtime.bigint();
  t.notThrows(() => {
    for (let index = 100; index < 100 + written; index++) shipper.write(workerLine(index));
  });
  const elapsedMs = Number(process.hrtime.bigint() - startedAt) / 1e6;
  // 1000 queue pushes take well under 1 ms each; 500 ms total means write() waited on something.
  t.true(elapsedMs < 500, `1000 writes took ${elapsedMs.toFixed(1)} ms`);
  // The queue keeps the newest 100 of the 1000 lines written while down, so 900 are dropped.
  t.is(shipper.droppedLines, written - maxQueueLines);
  t.is(shipper.queuedLines, maxQueueLines);
  t.is(shipper.sentLines + shipper.droppedLines + shipper.queuedLines, 100 + written);

  const secondDir = join(directory, 'second');
  const second = await startAggregator(t, port, secondDir);
  t.true(await waitFor(() => shipper.sentLines === 200, 5_000));
  await shipper.close(2_000);
  await second.stop();
  const delivered = readLines(join(secondDir, 'ship.jsonl')).map((line) => (JSON.parse(line) as { index: number }).index);
  t.is(delivered.length, maxQueueLines);
  // The survivors are the newest lines, indexes 1000..1099, in order.
  t.deepEqual(delivered, Array.from({ length: maxQueueLines }, (_, offset) => 1_000 + offset));
});

test('shipper batches lines per frame', async (t) => {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const frames: string[] = [];
  server.on('connection', (socket) => socket.on('message', (data) => frames.push(data.toString())));

  const shipper = new LogShipper({ url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
  t.teardown(() => shipper.close(500));
  for (let index = 0; index < 1_000; index++) shipper.write(workerLine(index));
  t.true(await waitFor(() => shipper.sentLines === 1_000));
  await waitFor(() => frames.join('').split('\n').length > 1_000);

  // All 1000 lines (about 130 characters each, 130k in total) were queued before the connection opened, and
  // the default 512 KiB frame takes up to 174762 characters, so they leave in exactly one frame.
  t.is(frames.length, 1);
  t.is(frames[0]?.split('\n').filter((line) => line !== '').length, 1_000);
});

test('shipper write never throws', async (t) => {
  const port = await freePort();
  const shipper = new LogShipper({ url: `ws://127.0.0.1:${port}`, maxFrameBytes: 1024, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
  t.notThrows(() => shipper.write(undefined as unknown as string));
  t.notThrows(() => shipper.write(12 as unknown as string));
  t.notThrows(() => shipper.write(''));
  t.is(shipper.droppedLines + shipper.queuedLines, 0, 'non-strings and empty strings are ignored');

  // With the '\n' the frame adds, 1024 ASCII characters need 1025 bytes, over maxFrameBytes=1024, and 400
  // three-byte characters need 1201. 1023 characters need exactly 1024 and fit.
  shipper.write('x'.repeat(1_024));
  shipper.write('✓'.repeat(400));
  t.is(shipper.droppedLines, 2);
  shipper.write('x'.repeat(1_023));
  t.is(shipper.queuedLines, 1);

  await shipper.close(100);
  // The queued line could not be sent before the deadline, so close() dropped it.
  t.is(shipper.droppedLines, 3);
  t.notThrows(() => shipper.write(workerLine(0)));
  t.is(shipper.droppedLines, 4);
});

test('shipper close honours its timeout', async (t) => {
  const port = await freePort();
  const shipper = new LogShipper({ url: `ws://127.0.0.1:${port}`, reconnect: { initialDelayMs: 5_000, maxDelayMs: 5_000 } });
  for (let index = 0; index < 10; index++) shipper.write(workerLine(index));
  const startedAt = Date.now();
  await shipper.close(300);
  const elapsedMs = Date.now() - startedAt;
  // Nothing listens, so the last connect attempt is refused at once and close() does not wait for its 300 ms.
  t.true(elapsedMs < 1_000, `close took ${elapsedMs} ms`);
  t.is(shipper.droppedLines, 10);
  t.is(shipper.queuedLines, 0);
});

test('shipper reports drops rate limited', async (t) => {
  const port = await freePort();
  const diagnostics = capturingLogger();
  const shipper = new LogShipper({
    url: `ws://127.0.0.1:${port}`,
    logger: diagnostics.logger,
    maxQueueLines: 10,
    logIntervalMs: 300,
    reconnect: { initialDelayMs: 20, maxDelayMs: 50 },
  });
  t.teardown(() => shipper.close(100));
  const startedAt = Date.now();
  for (let index = 0; index < 100; index++) shipper.write(workerLine(index));
  const dropReports = (): Record<string, unknown>[] => diagnostics.records().filter((record) => String(record.msg).includes('dropped'));
  t.true(await waitFor(() => dropReports().length === 1));
  // 100 writes into a 10-line queue evict 90, reported together in the first report.
  t.is(dropReports()[0]?.dropped, 90);
  t.is(dropReports()[0]?.queueFull, 90);

  for (let index = 0; index < 5; index++) shipper.write(workerLine(index));
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.is(dropReports().length, 1, 'a second report waits for logIntervalMs');
  t.true(await waitFor(() => dropReports().length === 2, 2_000));
  t.is(dropReports()[1]?.dropped, 5);

  // Connect failures come every 10-50 ms, about 20 per second, but at most one report per 300 ms is allowed.
  const elapsedMs = Date.now() - startedAt;
  const failureReports = diagnostics.records().filter((record) => String(record.msg).startsWith('log shipper cannot reach'));
  t.true(failureReports.length <= Math.floor(elapsedMs / 300) + 1, `${failureReports.length} failure reports in ${elapsedMs} ms`);
});

test('shipper skips its own reports', async (t) => {
  const outDir = join(temporaryDir(t), 'out');
  const aggregator = await startAggregator(t, 0, outDir);
  const captured: string[] = [];
  // The worst setup: the diagnostic logger also writes to the shipper it reports on.
  let shipper: LogShipper | null = null;
  const both = { write: (line: string) => (captured.push(line), shipper?.write(line)) };
  const logger = pino({ base: { run: 'self' } }, both);
  shipper = new LogShipper({ url: `ws://127.0.0.1:${aggregator.address.port}`, token: TOKEN, logger, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
  t.teardown(() => shipper?.close(500));

  t.true(await waitFor(() => shipper?.connected === true));
  logger.info('an ordinary line');
  await shipper.close(2_000);
  await aggregator.stop();
  t.true(captured.some((line) => line.includes('log shipper connected')), 'the report reached the logger');
  t.is(shipper.sentLines, 1, 'only the ordinary line was shipped');
  t.deepEqual(
    readLines(join(outDir, 'self.jsonl')).map((line) => (JSON.parse(line) as { msg: string }).msg),
    ['an ordinary line'],
  );
});

test('shipper lets process exit', async (t) => {
  const outDir = join(temporaryDir(t), 'out');
  const aggregator = await startAggregator(t, 0, outDir);
  // The child connects, ships one line, and never calls close(): an idle connection must not keep it alive.
  const script = [
    `import { LogShipper } from ${JSON.stringify(shipperModule)};`,
    `const shipper = new LogShipper({ url: 'ws://127.0.0.1:${aggregator.address.port}', token: ${JSON.stringify(TOKEN)}, reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });`,
    `shipper.write(JSON.stringify({ level: 30, run: 'exit', msg: 'before exit' }));`,
    `const timer = setInterval(() => { if (shipper.sentLines === 1) clearInterval(timer); }, 10);`,
  ].join('\n');
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: 'ignore' });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const exitCode = await Promise.race([
    new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code))),
    new Promise<string>((resolve) => setTimeout(() => resolve('still running after 10 s'), 10_000)),
  ]);
  t.is(exitCode, 0);
  t.true(await waitFor(() => readLines(join(outDir, 'exit.jsonl')).length === 1));
});

test('reconnect delay stays within bounds', (t) => {
  const options = { initialDelayMs: 100, maxDelayMs: 30_000 };
  for (let attempt = 0; attempt < 64; attempt++) {
    // Uncapped delay 100 * 2^attempt ms; the cap is reached at attempt 9 (51200 > 30000).
    const capped = Math.min(30_000, 100 * 2 ** attempt);
    t.is(reconnectDelayMs(attempt, options, () => 0), capped / 2, `attempt ${attempt} lowest`);
    const highest = reconnectDelayMs(attempt, options, () => 0.999999);
    // Tolerance: random() < 1, so the highest delay is below the cap by at most capped * 1e-6 / 2.
    t.true(highest < capped && highest > capped * 0.99999, `attempt ${attempt} highest ${highest} of ${capped}`);
  }
});
