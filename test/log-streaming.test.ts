import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { LogAggregator } from '../src/log/aggregator/server.js';
import { launch, tinyRunFlags } from './helpers/launch.js';

function readLines(path: string): string[] {
  return readFileSync(path, 'utf8').split('\n').filter((line) => line.trim() !== '');
}

test.serial('log-to streams every line to aggregator', async (t) => {
  t.timeout(120_000);
  const outDir = mkdtempSync(join(tmpdir(), 'ringtrain-aggregated-'));
  t.teardown(() => rmSync(outDir, { recursive: true, force: true }));
  const aggregator = await LogAggregator.start({ port: 0, host: '127.0.0.1', outDir, token: 'secret-1', printLine: null }, pino({ level: 'silent' }));
  t.teardown(() => aggregator.stop());

  const url = `ws://127.0.0.1:${aggregator.address.port}`;
  const result = await launch(t, ['--gpus', '2', '--max-steps', '3', '--log-to', url, ...tinyRunFlags], { env: { RINGTRAIN_TOKEN: 'secret-1' } });
  t.is(result.exitCode, 0, result.stdout.slice(-2000));
  await aggregator.stop();

  // The shipper's reports about itself stay local: shipping them would feed the shipper its own output.
  const local = readLines(join(result.runDir, 'logs.jsonl')).filter((line) => !(JSON.parse(line) as { msg: string }).msg.startsWith('log shipper'));
  const files = readdirSync(outDir).filter((name) => name.endsWith('.jsonl'));
  t.is(files.length, 1, `expected one run file, got ${files.join(', ')}`);
  const streamed = readLines(join(outDir, files[0] as string));
  const missing = local.filter((line) => !streamed.includes(line)).map((line) => (JSON.parse(line) as { role: string; msg: string }).role + ": " + (JSON.parse(line) as { msg: string }).msg);
  t.deepEqual(missing, []);
  t.is(streamed.length, local.length);
  t.deepEqual([...streamed].sort(), [...local].sort());

  const ranks = new Set(streamed.map((line) => JSON.parse(line) as { role: string; rank?: number | null }).filter((r) => r.role === 'worker').map((r) => r.rank));
  t.true(ranks.has(0));
  t.true(ranks.has(1));
});

test.serial('unreachable aggregator does not stop run', async (t) => {
  t.timeout(120_000);
  // Port 9 (discard) on loopback has no listener here, so every connection attempt is refused.
  const result = await launch(t, ['--gpus', '2', '--max-steps', '3', '--log-to', 'ws://127.0.0.1:9', ...tinyRunFlags]);
  t.is(result.exitCode, 0, result.stdout.slice(-2000));
  t.regex(result.stdout, /run complete/);
});
