import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext, type Implementation } from 'ava';
import pino from 'pino';
import WebSocket from 'ws';
import { LogAggregator, MAX_FRAME_BYTES } from '../src/log/aggregator/server.js';
import { runFileStem } from '../src/log/aggregator/run-files.js';
import { LogShipper } from '../src/log/shipper.js';

const repositoryRoot = fileURLToPath(new URL('../../', import.meta.url));
const prettyBinary = join(repositoryRoot, 'node_modules', '.bin', 'pino-pretty');

/** Creates a pino logger whose JSON lines are kept in `lines`, to check what the aggregator or shipper reported. */
function capturingLogger(): { logger: pino.Logger; lines: string[]; records: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(line) });
  return { logger, lines, records: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>) };
}

function temporaryDir(t: ExecutionContext): string {
  const directory = mkdtempSync(join(tmpdir(), 'ringtrain-aggregator-'));
  t.teardown(() => rmSync(directory, { recursive: true, force: true }));
  return directory;
}

/** Starts an in-process aggregator on 127.0.0.1 with a free port; it is stopped after the test. */
async function startAggregator(
  t: ExecutionContext,
  options: { token?: string | null; printLine?: (text: string) => void } = {},
): Promise<{ aggregator: LogAggregator; outDir: string; url: string; logs: ReturnType<typeof capturingLogger> }> {
  const outDir = join(temporaryDir(t), 'out');
  const logs = capturingLogger();
  const aggregator = await LogAggregator.start(
    { port: 0, host: '127.0.0.1', outDir, token: options.token === undefined ? 'test-token' : options.token, printLine: options.printLine ?? null },
    logs.logger,
  );
  t.teardown(() => aggregator.stop('test finished'));
  return { aggregator, outDir, url: `ws://127.0.0.1:${aggregator.address.port}`, logs };
}

function newShipper(t: ExecutionContext, url: string, token: string | undefined, extra: { maxQueueLines?: number } = {}): LogShipper {
  const shipper = new LogShipper({ url, token, reconnect: { initialDelayMs: 50, maxDelayMs: 400 }, ...extra });
  t.teardown(() => shipper.close(500));
  return shipper;
}

/** Polls `condition` every 10 ms for at most `timeoutMs`; returns whether it became true. */
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

/** Opens a raw WebSocket client; resolves with it once open, or with the HTTP status that rejected it. */
function openRaw(t: ExecutionContext, url: string, token?: string): Promise<{ socket: WebSocket | null; status: number | null }> {
  const headers: Record<string, string> = token === undefined ? {} : { Authorization: `Bearer ${token}` };
  const socket = new WebSocket(url, { headers });
  t.teardown(() => socket.terminate());
  return new Promise((resolve) => {
    socket.on('open', () => resolve({ socket, status: null }));
    socket.on('unexpected-response', (request, response) => {
      resolve({ socket: null, status: response.statusCode ?? null });
      request.destroy();
    });
    socket.on('error', () => resolve({ socket: null, status: null }));
  });
}

function closedCode(socket: WebSocket): Promise<number> {
  return new Promise((resolve) => socket.on('close', (code) => resolve(code)));
}

test('aggregator writes lines per run', async (t) => {
  const { aggregator, outDir, url } = await startAggregator(t);
  const runs = ['20261204-213015-a3f9', '20261204-213016-b001'];
  const ranks = [0, 1, 2];
  const linesPerRank = 250;

  const shippers: LogShipper[] = [];
  for (const run of runs) {
    const coordinatorShipper = newShipper(t, url, 'test-token');
    shippers.push(coordinatorShipper);
    pino({ base: { pid: process.pid, run, node: 0, rank: null, role: 'coordinator' } }, coordinatorShipper).info('coordinator listening');
    for (const rank of ranks) {
      const shipper = newShipper(t, url, 'test-token');
      shippers.push(shipper);
      const workerLogger = pino({ base: { pid: process.pid, run, node: 0, role: 'worker', rank } }, shipper);
      for (let step = 0; step < linesPerRank; step++) workerLogger.info({ step, loss: 1 / (step + 1) }, 'step done');
    }
  }
  // A line without a run field goes to unknown-run.jsonl.
  const stray = newShipper(t, url, 'test-token');
  shippers.push(stray);
  pino({ base: { pid: process.pid } }, stray).info('no run here');
  await Promise.all(shippers.map((shipper) => shipper.close(5_000)));
  // stop() flushes the files; until then the last lines may still be in the write streams' buffers.
  await aggregator.stop();

  for (const run of runs) {
    const records = readLines(join(outDir, `${run}.jsonl`)).map((line) => JSON.parse(line) as { run: string; rank: number | null });
    for (const rank of ranks) {
      // Each worker shipper wrote exactly linesPerRank lines for this run and rank.
      t.is(records.filter((record) => record.rank === rank).length, linesPerRank, `${run} rank ${rank}`);
    }
    t.is(records.filter((record) => record.rank === null).length, 1, `${run} coordinator`);
    t.true(records.every((record) => record.run === run), `${run} holds only its own lines`);
  }
  t.is(readLines(join(outDir, 'unknown-run.jsonl')).length, 1);
  // 2 runs x (3 ranks x 250 + 1 coordinator line) + 1 stray line = 1503.
  t.is(aggregator.stats.linesWritten, 1503);
  t.deepEqual(readdirSync(outDir).sort(), [...runs.map((run) => `${run}.jsonl`), 'unknown-run.jsonl'].sort());
});

test('aggregator keeps lines byte for byte', async (t) => {
  const { aggregator, outDir, url } = await startAggregator(t);
  const shipper = newShipper(t, url, 'test-token');
  const produced: string[] = [];
  const tee = { write: (line: string) => (produced.push(line), shipper.write(line)) };
  const logger = pino({ base: { pid: process.pid, run: 'bytes', node: 0, role: 'worker', rank: 3 } }, tee);
  logger.info({ text: 'naïve café ✓ 日本 "quoted" \\ back\tslash' }, 'unicode and escapes');
  logger.error({ err: new Error('boom') }, 'an error with a stack');
  logger.warn({ nested: { a: [1, 2, { b: null }] }, big: 12345678901234 }, 'nested');
  await shipper.close(5_000);
  await aggregator.stop();

  t.is(readFileSync(join(outDir, 'bytes.jsonl'), 'utf8'), produced.join(''));
});

test('aggregator rejects wrong token', async (t) => {
  const { aggregator, outDir, url, logs } = await startAggregator(t);

  const wrong = await openRaw(t, url, 'not-the-token');
  t.is(wrong.status, 401);
  const missing = await openRaw(t, url);
  t.is(missing.status, 401);
  t.is(aggregator.stats.rejectedConnections, 2);
  const rejections = logs.records().filter((record) => record.msg === 'rejected a log client: wrong token (HTTP 401)');
  t.is(rejections.length, 1);
  t.regex(String(rejections[0]?.peer), /^127\.0\.0\.1:\d+$/);
  t.false(logs.lines.some((line) => line.includes('not-the-token')), 'the presented token is never logged');

  const shipper = newShipper(t, url, 'test-token');
  pino({ base: { run: 'after-reject' } }, shipper).info('right token');
  await shipper.close(5_000);
  await aggregator.stop();
  t.is(readLines(join(outDir, 'after-reject.jsonl')).length, 1);
});

test('aggregator without token warns', async (t) => {
  const { outDir, url, logs } = await startAggregator(t, { token: null });
  t.true(logs.records().some((record) => record.level === 40 && String(record.msg).startsWith('no token configured')));

  const client = await openRaw(t, url);
  t.not(client.socket, null);
  client.socket?.send(JSON.stringify({ level: 30, run: 'open', msg: 'hello' }) + '\n');
  client.socket?.close(1000);
  t.true(await waitFor(() => readLines(join(outDir, 'open.jsonl')).length === 1));
});

test('aggregator survives garbage frames', async (t) => {
  const { aggregator, outDir, url } = await startAggregator(t);

  const garbage = await openRaw(t, url, 'test-token');
  const socket = garbage.socket as WebSocket;
  const good = JSON.stringify({ level: 30, run: 'mixed', msg: 'kept' });
  // One frame: 2 valid lines, then 4 invalid ones (not JSON, an array, a bare number, a truncated object).
  socket.send([good, 'hello there', '[1,2,3]', '42', '{"run":"mixed"', good].join('\n'));
  socket.send(Buffer.from('{"run":"binary"}\n'), { binary: true });
  t.true(await waitFor(() => aggregator.stats.binaryFrames === 1));
  t.is(aggregator.stats.invalidLines, 4);
  t.true(await waitFor(() => readLines(join(outDir, 'mixed.jsonl')).length === 2));
  t.false(existsSync(join(outDir, 'binary.jsonl')));

  // Invalid UTF-8 in a text frame: ws closes the connection with 1007.
  const badUtf8 = (await openRaw(t, url, 'test-token')).socket as WebSocket;
  const badUtf8Closed = closedCode(badUtf8);
  badUtf8.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
  t.is(await badUtf8Closed, 1007);

  // One byte over the payload limit: ws closes the connection with 1009 before reading it.
  const oversized = (await openRaw(t, url, 'test-token')).socket as WebSocket;
  const oversizedClosed = closedCode(oversized);
  oversized.send('x'.repeat(MAX_FRAME_BYTES + 1));
  t.is(await oversizedClosed, 1009);

  const shipper = newShipper(t, url, 'test-token');
  pino({ base: { run: 'after-garbage' } }, shipper).info('still serving');
  await shipper.close(5_000);
  await aggregator.stop();
  t.is(readLines(join(outDir, 'after-garbage.jsonl')).length, 1);
});

test('aggregator sanitises run ids', async (t) => {
  const { outDir, url } = await startAggregator(t);
  const client = (await openRaw(t, url, 'test-token')).socket as WebSocket;
  const runs = ['../escape', 'a/b', 'a_b', '.hidden', 'unknown-run', 'x'.repeat(300), 7];
  client.send(runs.map((run) => JSON.stringify({ level: 30, run, msg: 'sanitise' })).join('\n'));
  client.send(JSON.stringify({ level: 30, run: '', msg: 'empty run' }));
  client.close(1000);
  await waitFor(() => readdirSync(outDir).length === runs.length + 1);

  const files = readdirSync(outDir).sort();
  const expected = [...runs.map((run) => `${runFileStem(String(run))}.jsonl`), 'unknown-run.jsonl'].sort();
  t.deepEqual(files, expected);
  t.true(files.every((file) => /^[A-Za-z0-9_-][A-Za-z0-9._-]*\.jsonl$/.test(file)), files.join(', '));
  t.not(runFileStem('a/b'), runFileStem('a_b'));
  t.is(runFileStem('20261204-213015-a3f9'), '20261204-213015-a3f9');
  t.false(existsSync(join(outDir, '..', 'escape.jsonl')));
});

test('live view prints merged lines', async (t) => {
  const printed: string[] = [];
  const { url } = await startAggregator(t, { printLine: (text) => printed.push(text) });
  const shipper = newShipper(t, url, 'test-token');
  pino({ base: { run: 'live-run', node: 1, role: 'worker', rank: 2 } }, shipper).warn({ step: 7 }, 'slow step');
  await shipper.close(5_000);

  t.is(printed.length, 1);
  t.regex(printed[0] as string, /^live-run \d\d:\d\d:\d\d\.\d{3} WARN  \[node 1 rank 2\] slow step step=7$/);
});

// pino-pretty is optional. Without it the test is skipped, and its title gives the install command.
const prettyTest: (title: string, implementation: Implementation<[]>) => void = existsSync(prettyBinary)
  ? (title, implementation) => test(title, implementation)
  : (title, implementation) => test.skip(`${title} (skipped: npm install --no-save pino-pretty)`, implementation);
prettyTest('pino-pretty reads written file', async (t) => {
  const { aggregator, outDir, url } = await startAggregator(t);
  const shipper = newShipper(t, url, 'test-token');
  pino({ base: { run: 'pretty', node: 0, role: 'worker', rank: 0 } }, shipper).info({ step: 1 }, 'pretty check');
  await shipper.close(5_000);
  await aggregator.stop();

  const result = spawnSync(prettyBinary, ['--colorize', 'false'], { input: readFileSync(join(outDir, 'pretty.jsonl')), encoding: 'utf8', timeout: 20_000 });
  t.is(result.status, 0);
  t.regex(result.stdout, /INFO.*pretty check/);
});
