import test from 'ava';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { WebSocket } from 'ws';
import { MAX_CONTROL_FRAME_BYTES } from '../src/comm/protocol.js';
import { LogAggregator } from '../src/log/aggregator/server.js';
import { launch, pidsInLog, readSafetensors, ringTransportsByRank, runningPids, temporaryRunDir, tinyRunFlags, waitForLogRecord } from './helpers/launch.js';

/** Returns a port that was free a moment ago on 127.0.0.1. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function lines(path: string): string[] {
  return readFileSync(path, 'utf8').split('\n').filter((line) => line.trim() !== '');
}

test.serial('two nodes match one node of four', async (t) => {
  t.timeout(180_000);
  const outDir = mkdtempSync(join(tmpdir(), 'ringtrain-multinode-logs-'));
  t.teardown(() => rmSync(outDir, { recursive: true, force: true }));
  const aggregator = await LogAggregator.start({ port: 0, host: '127.0.0.1', outDir, token: null, printLine: null }, pino({ level: 'silent' }));
  t.teardown(() => aggregator.stop());
  const logTo = ['--log-to', `ws://127.0.0.1:${aggregator.address.port}`];

  const steps = ['--max-steps', '5', '--seed', '11'];
  const single = await launch(t, ['--gpus', '4', ...steps, ...tinyRunFlags]);
  t.is(single.exitCode, 0, single.stdout.slice(-2000));

  // Node 0 on 127.0.0.1 runs the coordinator; node 1's workers bind and advertise 127.0.0.2.
  const coordinator = `127.0.0.1:${await freePort()}`;
  const multiNode = ['--nnodes', '2', '--coordinator', coordinator, '--gpus', '2', ...steps, ...logTo, ...tinyRunFlags];
  const env = { RINGTRAIN_TOKEN: 'two-node-secret' };
  const [node0, node1] = await Promise.all([
    launch(t, ['--node-rank', '0', ...multiNode], { env }),
    launch(t, ['--node-rank', '1', '--bind', '127.0.0.2', ...multiNode], { env }),
  ]);
  t.is(node0.exitCode, 0, node0.stdout.slice(-2000));
  t.is(node1.exitCode, 0, node1.stdout.slice(-2000));
  t.regex(node0.stdout, /rendezvous complete worldSize=4 ring=\["127\.0\.0\.1:\d+","127\.0\.0\.1:\d+","127\.0\.0\.2:\d+","127\.0\.0\.2:\d+"\]/);
  // Neighbours on one node link over Unix sockets, and the links between the nodes (1 to 2 and 3 to 0) over TCP.
  t.deepEqual(
    ringTransportsByRank([node0.runDir, node1.runDir]),
    [
      [0, ['tcp', 'unix']],
      [1, ['unix', 'tcp']],
      [2, ['tcp', 'unix']],
      [3, ['unix', 'tcp']],
    ],
  );

  // Same ring order, same shards and the same summation order, so the parameters match bit for bit.
  const expected = readSafetensors(join(single.runDir, 'weights.safetensors'));
  const actual = readSafetensors(join(node0.runDir, 'weights.safetensors'));
  t.deepEqual([...actual.keys()], [...expected.keys()]);
  for (const [name, values] of expected) {
    const other = actual.get(name) as Float32Array;
    t.true(Buffer.from(values.buffer).equals(Buffer.from(other.buffer)), `parameter ${name} differs`);
  }

  // The aggregator has every line that either node logged, except the shippers' reports about themselves.
  await aggregator.stop();
  const local = [...lines(join(node0.runDir, 'logs.jsonl')), ...lines(join(node1.runDir, 'logs.jsonl'))].filter(
    (line) => !(JSON.parse(line) as { msg: string }).msg.startsWith('log shipper'),
  );
  const files = readdirSync(outDir).filter((name) => name.endsWith('.jsonl'));
  t.deepEqual(files, [`run-127.0.0.1-${coordinator.split(':')[1]}.jsonl`]);
  const streamed = lines(join(outDir, files[0] as string));
  const perRank = (all: string[]): Record<string, number> => {
    const counts: Record<string, number> = {};
    for (const line of all) {
      const record = JSON.parse(line) as { node: number; role: string; rank?: number | null };
      const key = `${record.node}/${record.role}/${record.rank ?? '-'}`;
      counts[key] = (counts[key] ?? 0) + 1;
    }
    return counts;
  };
  t.deepEqual(perRank(streamed), perRank(local));
  for (const rank of [0, 1, 2, 3]) t.true(streamed.some((line) => (JSON.parse(line) as { rank?: number }).rank === rank), `no line from rank ${rank}`);

  t.deepEqual(runningPids([...pidsInLog(node0.runDir), ...pidsInLog(node1.runDir)]), []);
});

test.serial('nodes may differ in worker count', async (t) => {
  t.timeout(180_000);
  const steps = ['--max-steps', '4', '--seed', '5'];
  const single = await launch(t, ['--gpus', '3', ...steps, ...tinyRunFlags]);
  t.is(single.exitCode, 0, single.stdout.slice(-2000));

  const coordinator = `127.0.0.1:${await freePort()}`;
  const multiNode = ['--nnodes', '2', '--coordinator', coordinator, '--insecure', ...steps, ...tinyRunFlags];
  const [node0, node1] = await Promise.all([
    launch(t, ['--node-rank', '0', '--gpus', '1', ...multiNode]),
    launch(t, ['--node-rank', '1', '--gpus', '2', '--bind', '127.0.0.3', ...multiNode]),
  ]);
  t.is(node0.exitCode, 0, node0.stdout.slice(-2000));
  t.is(node1.exitCode, 0, node1.stdout.slice(-2000));
  t.regex(node0.stdout, /rendezvous complete worldSize=3 ring=\["127\.0\.0\.1:\d+","127\.0\.0\.3:\d+","127\.0\.0\.3:\d+"\]/);
  const expected = readSafetensors(join(single.runDir, 'weights.safetensors'));
  const actual = readSafetensors(join(node0.runDir, 'weights.safetensors'));
  for (const [name, values] of expected) {
    t.true(Buffer.from(values.buffer).equals(Buffer.from((actual.get(name) as Float32Array).buffer)), `parameter ${name} differs`);
  }
});

test('multi-node run requires a token', async (t) => {
  const result = await launch(t, ['--nnodes', '2', '--coordinator', '127.0.0.1:29999', ...tinyRunFlags], { env: { RINGTRAIN_TOKEN: '' }, timeoutMs: 30_000 });
  t.is(result.exitCode, 2);
  t.regex(result.stderr, /^ringtrain: --nnodes 2 needs a run token/);
});

test.serial('intruders are rejected and the run completes', async (t) => {
  t.timeout(120_000);
  const runDir = temporaryRunDir(t);
  const running = launch(t, ['--gpus', '2', '--max-steps', '400', ...tinyRunFlags], { runDir, env: { RINGTRAIN_TOKEN: 'right-token' } });
  const coordinatorUrl = await waitForLogRecord(runDir, (record) => record.msg === 'coordinator listening', (record) => record.url as string);
  const ringPort = await waitForLogRecord(runDir, (record) => record.msg === 'ring listener open', (record) => record.port as number);
  await waitForLogRecord(runDir, (record) => record.msg === 'progress' && (record.step as number) >= 2, () => true);

  const coordinatorPort = Number(new URL(coordinatorUrl).port);
  t.is(await upgradeStatus(coordinatorPort, '/', 'wrong-token'), 401);
  t.is(await upgradeStatus(ringPort, '/ringtrain/ring', 'wrong-token'), 401);
  t.is(await upgradeStatus(coordinatorPort, '/', null), 401);
  await sendRaw(coordinatorPort, Buffer.from('\x00\xffnot http at all\r\n\r\n'));
  await sendRaw(ringPort, Buffer.from('GARBAGE'.repeat(1000)));

  // With the right token, an oversized frame and a frame that is not msgpack are rejected too.
  t.is(await oversizedFrame(coordinatorUrl, 'right-token', MAX_CONTROL_FRAME_BYTES + 1024), 1009);
  // The ring listener closes with 1008 at the first frame, because a dialer must start with its hello.
  t.is(await oversizedFrame(`ws://127.0.0.1:${ringPort}/ringtrain/ring`, 'right-token', 64 * 1024), 1008);

  const result = await running;
  t.is(result.exitCode, 0, result.stdout.slice(-3000));
  t.regex(result.stdout, /coordinator rejected a connection without a valid run token peer=127\.0\.0\.1:\d+/);
  t.regex(result.stdout, /ring listener rejected a connection without a valid run token .*peer=127\.0\.0\.1:\d+/);
  t.deepEqual(runningPids(pidsInLog(runDir)), []);
});

/** Sends a WebSocket upgrade request with an optional bearer token and returns the HTTP status of the reply. */
async function upgradeStatus(port: number, path: string, token: string | null): Promise<number> {
  const socket = new WebSocket(`ws://127.0.0.1:${port}${path}`, token === null ? {} : { headers: { Authorization: `Bearer ${token}` } });
  return new Promise((resolve) => {
    socket.once('unexpected-response', (_request, response) => {
      resolve(response.statusCode ?? 0);
      socket.terminate();
    });
    socket.once('open', () => {
      resolve(101);
      socket.terminate();
    });
    socket.once('error', () => resolve(0));
  });
}

/** Writes raw bytes to a TCP port and waits (at most 2 s) for the peer to close the connection. */
async function sendRaw(port: number, bytes: Buffer): Promise<void> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  socket.write(bytes);
  await new Promise((resolve) => {
    socket.once('close', resolve);
    setTimeout(resolve, 2000).unref();
  });
  socket.destroy();
}

/** Connects with `token`, sends a garbage frame and then one of `bytes` bytes, and returns the close code. */
async function oversizedFrame(url: string, token: string, bytes: number): Promise<number> {
  const socket = new WebSocket(url, { headers: { Authorization: `Bearer ${token}` } });
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  socket.send(Buffer.from([0xc1, 0xc1, 0xc1]));
  socket.send(Buffer.alloc(bytes));
  return new Promise((resolve) => {
    socket.once('close', (code) => resolve(code));
    socket.once('error', () => {});
  });
}

test.serial('nodes with different skipZeroBlocks fail naming it', async (t) => {
  t.timeout(180_000);
  const coordinator = `127.0.0.1:${await freePort()}`;
  // A 4096-row suffix table makes most gradient blocks zero, so the node with the option on packs them.
  const multiNode = ['--nnodes', '2', '--coordinator', coordinator, '--insecure', '--max-steps', '3', ...tinyRunFlags, '--set', 'model.suffixBuckets=4096'];
  const [node0, node1] = await Promise.all([
    launch(t, ['--node-rank', '0', '--gpus', '1', ...multiNode, '--set', 'allreduce.skipZeroBlocks=true']),
    launch(t, ['--node-rank', '1', '--gpus', '1', '--bind', '127.0.0.3', ...multiNode, '--set', 'allreduce.skipZeroBlocks=false']),
  ]);
  t.not(node0.exitCode, 0);
  t.not(node1.exitCode, 0);
  t.regex(node0.stdout + node1.stdout, /set the same optimizer\.shardState and allreduce\.skipZeroBlocks on every node/);
});
