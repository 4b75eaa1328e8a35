import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import test, { type ExecutionContext } from 'ava';
import pino from 'pino';
import WebSocket from 'ws';
import { LogShipper } from '../src/log/shipper.js';

const repositoryRoot = fileURLToPath(new URL('../../', import.meta.url));
const aggregatorEntry = join(repositoryRoot, 'dist', 'src', 'aggregator', 'main.js');

interface RunningAggregator {
  child: ChildProcess;
  port: number;
  stdout: () => string;
  stderrRecords: () => Record<string, unknown>[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function temporaryDir(t: ExecutionContext): string {
  const directory = mkdtempSync(join(tmpdir(), 'ringtrain-aggregator-cli-'));
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

function parseRecords(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** Runs the aggregator entry as a user would. The test's teardown kills it if it is still running. */
async function spawnAggregator(t: ExecutionContext, args: string[], env: Record<string, string> = {}): Promise<RunningAggregator> {
  const child = spawn(process.execPath, [aggregatorEntry, '--port', '0', ...args], {
    env: { ...process.env, RINGTRAIN_TOKEN: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const started = await waitFor(() => /"port":\d+/.test(stderr), 10_000);
  if (!started) throw new Error(`aggregator did not report its port within 10 s; stderr: ${stderr}`);
  return { child, port: Number(/"port":(\d+)/.exec(stderr)?.[1]), stdout: () => stdout, stderrRecords: () => parseRecords(stderr), exited };
}

test('aggregator CLI writes then stops', async (t) => {
  const outDir = join(temporaryDir(t), 'logs');
  const aggregator = await spawnAggregator(t, ['--out', outDir, '--live'], { RINGTRAIN_TOKEN: 'cli-token' });

  const shipper = new LogShipper({ url: `ws://127.0.0.1:${aggregator.port}`, token: 'cli-token', reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
  t.teardown(() => shipper.close(200));
  const logger = pino({ base: { pid: process.pid, run: 'cli-run', node: 0, role: 'worker', rank: 1 } }, shipper);
  for (let step = 0; step < 20; step++) logger.info({ step }, 'step done');
  t.true(await waitFor(() => shipper.sentLines === 20));
  // The shipper stays connected: SIGTERM must close its connection and still flush every line it sent.
  aggregator.child.kill('SIGTERM');
  const exit = await aggregator.exited;

  t.is(exit.code, 0);
  const written = readFileSync(join(outDir, 'cli-run.jsonl'), 'utf8').split('\n').filter((line) => line !== '');
  t.is(written.length, 20);
  const liveLines = aggregator.stdout().split('\n').filter((line) => line.includes('step done'));
  t.is(liveLines.length, 20);
  t.regex(liveLines[0] as string, /^cli-run \S+ INFO  \[node 0 rank 1\] step done step=0$/);
  const stopped = aggregator.stderrRecords().find((record) => record.msg === 'log aggregator stopped');
  t.is(stopped?.linesWritten, 20);
  t.is(stopped?.reason, 'SIGTERM');
});

test('aggregator CLI logs rejected peer', async (t) => {
  const outDir = join(temporaryDir(t), 'logs');
  const aggregator = await spawnAggregator(t, ['--out', outDir], { RINGTRAIN_TOKEN: 'cli-token' });

  const socket = new WebSocket(`ws://127.0.0.1:${aggregator.port}`, { headers: { Authorization: 'Bearer nope' } });
  // terminate() on a socket whose handshake was rejected emits an error, which is expected here.
  socket.on('error', () => undefined);
  t.teardown(() => socket.terminate());
  const status = await new Promise<number | undefined>((resolve) => {
    socket.on('unexpected-response', (request, response) => {
      resolve(response.statusCode);
      request.destroy();
    });
    socket.on('open', () => resolve(undefined));
  });
  t.is(status, 401);
  t.true(await waitFor(() => aggregator.stderrRecords().some((record) => String(record.msg).startsWith('rejected a log client'))));
  const rejection = aggregator.stderrRecords().find((record) => String(record.msg).startsWith('rejected a log client'));
  t.regex(String(rejection?.peer), /^127\.0\.0\.1:\d+$/);
  t.is(aggregator.child.exitCode, null, 'the aggregator keeps running');

  aggregator.child.kill('SIGINT');
  t.is((await aggregator.exited).code, 0);
  t.false(existsSync(join(outDir, 'unknown-run.jsonl')));
});

test('aggregator CLI warns without token', async (t) => {
  const outDir = join(temporaryDir(t), 'logs');
  const aggregator = await spawnAggregator(t, ['--out', outDir]);
  t.true(aggregator.stderrRecords().some((record) => record.level === 40 && String(record.msg).startsWith('no token configured')));
  aggregator.child.kill('SIGINT');
  t.is((await aggregator.exited).code, 0);
});

test('aggregator CLI rejects bad flags', (t) => {
  const cases: { args: string[]; message: RegExp }[] = [
    { args: ['--out', 'x'], message: /--port is missing/ },
    { args: ['--port', '70000', '--out', 'x'], message: /--port must be an integer from 0 to 65535 \(got '70000'\)/ },
    { args: ['--port', '0'], message: /--out is missing/ },
    { args: ['--port', '0', '--out', 'x', '--bogus'], message: /Unknown option '--bogus'/ },
    { args: ['--port', '0', '--out', 'x', '--token', 'has space'], message: /--token must consist of printable ASCII characters without spaces/ },
  ];
  for (const { args, message } of cases) {
    const result = spawnSync(process.execPath, [aggregatorEntry, ...args], { encoding: 'utf8', timeout: 20_000 });
    t.is(result.status, 2, args.join(' '));
    t.regex(result.stderr, message);
  }
});

test('aggregator CLI reports busy port', async (t) => {
  const outDir = join(temporaryDir(t), 'logs');
  const first = await spawnAggregator(t, ['--out', outDir]);
  const result = spawnSync(process.execPath, [aggregatorEntry, '--port', String(first.port), '--out', outDir], { encoding: 'utf8', timeout: 20_000 });
  t.is(result.status, 1);
  t.regex(result.stderr, /cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/);
  first.child.kill('SIGINT');
  t.is((await first.exited).code, 0);
});
