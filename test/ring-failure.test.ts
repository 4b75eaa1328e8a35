import type { AddressInfo } from 'node:net';
import test, { type ExecutionContext } from 'ava';
import { WebSocket, WebSocketServer } from 'ws';
import { Ring } from '../src/comm/ring-allreduce.js';
import { RingListener } from '../src/comm/ring-listener.js';
import { RingtrainError, hasCode } from '../src/errors.js';
import {
  allReduceEverywhere,
  capturingLogger,
  connectRank,
  openListeners,
  silentLogger,
  startLocalRing,
  timeSettled,
} from './fixtures/ring-harness.js';

const RING_PATH = '/ringtrain/ring';

/** Returns the rejection reason of a settled promise, or fails the test when it was fulfilled. */
function reasonOf(t: ExecutionContext, outcome: PromiseSettledResult<unknown>, label: string): Error {
  if (outcome.status === 'fulfilled') {
    t.fail(`${label} was fulfilled, expected a rejection`);
    return new Error('fulfilled');
  }
  return outcome.reason as Error;
}

function codeOf(error: Error): string {
  return error instanceof RingtrainError ? error.code : `${error.name}: ${error.message}`;
}

test('closed neighbour rejects peer closed', async (t) => {
  const { rings } = await startLocalRing(t, 3, { timeoutMs: 10_000 });
  const buffers = [0, 1].map(() => new Float32Array(1000).fill(1));
  const pending = Promise.allSettled([0, 1].map((rank) => rings[rank].allReduce(buffers[rank])));
  await new Promise((resolve) => setTimeout(resolve, 100));
  const start = performance.now();
  await rings[2].close();
  const outcomes = await pending;
  const elapsedMs = performance.now() - start;

  for (const rank of [0, 1]) {
    const error = reasonOf(t, outcomes[rank], `rank ${rank}`);
    t.is(codeOf(error), 'RINGTRAIN_ERR_PEER_CLOSED', `rank ${rank}: ${error.message}`);
  }
  t.regex(reasonOf(t, outcomes[0], 'rank 0').message, /previous neighbour rank 2/);
  t.true(elapsedMs < 2000, `ranks took ${elapsedMs} ms to notice the close`);
});

test('silent neighbour rejects collective timeout', async (t) => {
  const timeoutMs = 300;
  // A generous connect limit, so a loaded machine cannot fail the setup with this short collective limit.
  const { rings } = await startLocalRing(t, 3, { timeoutMs, connectTimeoutMs: 20_000 });
  const buffers = [0, 1].map(() => new Float32Array(1000).fill(1));
  const [rank0, rank1] = await Promise.all([0, 1].map((rank) => timeSettled(() => rings[rank].allReduce(buffers[rank]))));

  // Rank 0 receives from rank 2 first, so it is the rank that waits for the silent one.
  const error0 = reasonOf(t, rank0.result, 'rank 0');
  t.is(codeOf(error0), 'RINGTRAIN_ERR_COLLECTIVE_TIMEOUT');
  t.regex(error0.message, /waiting for a frame from rank 2 in reduce-scatter step 0 of bucket 0 of collective 0/);
  t.true(rank0.ms >= timeoutMs - 5, `rank 0 gave up after ${rank0.ms} ms`);
  t.true(rank0.ms < timeoutMs + 1000, `rank 0 took ${rank0.ms} ms`);
  // Rank 1 either times out too or hears rank 0 abort first; both are fine, hanging is not.
  const error1 = reasonOf(t, rank1.result, 'rank 1');
  t.true(
    hasCode(error1, 'RINGTRAIN_ERR_COLLECTIVE_TIMEOUT') || hasCode(error1, 'RINGTRAIN_ERR_PEER_CLOSED'),
    `rank 1: ${error1.message}`,
  );
  t.true(rank1.ms < timeoutMs + 1000, `rank 1 took ${rank1.ms} ms`);

  // The silent rank's neighbours closed their links, so its next call fails instead of waiting.
  const late = await timeSettled(() => rings[2].allReduce(new Float32Array(1000)));
  t.is(codeOf(reasonOf(t, late.result, 'rank 2')), 'RINGTRAIN_ERR_PEER_CLOSED');
  t.true(late.ms < timeoutMs, `rank 2 took ${late.ms} ms`);
});

test('wrong run id dial is rejected', async (t) => {
  const { logger, lines } = capturingLogger('warn');
  const listeners = await openListeners(t, 3, logger);

  // An intruder dials rank 0 as if it were rank 1, but from another run; it waits until rank 0 connects.
  const intruder = new WebSocket(`ws://127.0.0.1:${listeners[0].port}${RING_PATH}`, { perMessageDeflate: false });
  t.teardown(() => intruder.terminate());
  const intruderClose = new Promise<number>((resolve) => intruder.on('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    intruder.on('open', () => resolve());
    intruder.on('error', reject);
  });
  intruder.send(JSON.stringify({ type: 'hello', protocol: 'ringtrain-ring', version: 2, runId: 'other-run', rank: 1, worldSize: 3 }));
  const intruderPort = (intruder as unknown as { _socket: { localPort: number } })._socket.localPort;

  const rings = await Promise.all([0, 1, 2].map((rank) => connectRank(t, listeners, rank, { logger })));
  t.is(await intruderClose, 1008);

  const buffers = [1, 2, 3].map((value) => new Float32Array(5).fill(value));
  const outcomes = await allReduceEverywhere(rings, buffers);
  for (const [rank, outcome] of outcomes.entries()) {
    t.is(outcome.status, 'fulfilled', `rank ${rank}`);
  }
  // Exact: 1 + 2 + 3 = 6 has no rounding in float32.
  t.deepEqual([...buffers[0]], [6, 6, 6, 6, 6]);
  const warning = lines.find((line) => line.includes('rejected a connection'));
  t.truthy(warning, `no rejection warning among ${lines.length} log lines`);
  t.regex(warning ?? '', new RegExp(`:${intruderPort}"`));
  t.regex(warning ?? '', /other-run/);
});

test('connect with other run rejects protocol', async (t) => {
  const listeners = await openListeners(t, 2, silentLogger());
  const outcomes = await Promise.allSettled(
    [0, 1].map((rank) => connectRank(t, listeners, rank, { runId: `run-${rank}`, timeoutMs: 10_000 })),
  );
  for (const rank of [0, 1]) {
    const error = reasonOf(t, outcomes[rank], `rank ${rank}`);
    t.is(codeOf(error), 'RINGTRAIN_ERR_PROTOCOL', `rank ${rank}: ${error.message}`);
    t.regex(error.message, /run id/);
  }
});

test('unreachable neighbour times out connect', async (t) => {
  const logger = silentLogger();
  const listener = await RingListener.listen({ host: '127.0.0.1', logger });
  t.teardown(() => listener.close());
  // A port that was just free and is closed again, so dials get ECONNREFUSED.
  const closed = await RingListener.listen({ host: '127.0.0.1', logger });
  const closedPort = closed.port;
  await closed.close();

  const timeoutMs = 400;
  const attempt = await timeSettled(() =>
    Ring.connect({
      listener,
      rank: 0,
      worldSize: 2,
      runId: 'lonely-run',
      previous: { host: '127.0.0.1', port: closedPort },
      next: { host: '127.0.0.1', port: closedPort },
      timeoutMs,
      logger,
    }),
  );
  const error = reasonOf(t, attempt.result, 'connect');
  t.is(codeOf(error), 'RINGTRAIN_ERR_COLLECTIVE_TIMEOUT');
  t.regex(error.message, /could not connect to its previous neighbour rank 1/);
  t.true(attempt.ms >= timeoutMs - 5, `connect gave up after ${attempt.ms} ms`);
  t.true(attempt.ms < timeoutMs + 1500, `connect took ${attempt.ms} ms`);
});

test('length mismatch rejects protocol', async (t) => {
  const { rings } = await startLocalRing(t, 3, { timeoutMs: 10_000 });
  const lengths = [10, 10, 12];
  const buffers = lengths.map((length) => new Float32Array(length).fill(1));
  // Rank 2 starts last, so the frames of ranks 0 and 1 are already queued when it checks them.
  const early = [0, 1].map((rank) => rings[rank].allReduce(buffers[rank]));
  await new Promise((resolve) => setTimeout(resolve, 100));
  const outcomes = await Promise.allSettled([...early, rings[2].allReduce(buffers[2])]);

  for (const rank of [0, 2]) {
    const error = reasonOf(t, outcomes[rank], `rank ${rank}`);
    t.is(codeOf(error), 'RINGTRAIN_ERR_PROTOCOL', `rank ${rank}: ${error.message}`);
    t.regex(error.message, /10 elements/);
    t.regex(error.message, /12 elements/);
  }
  t.regex(reasonOf(t, outcomes[2], 'rank 2').message, /rank 2 called allReduce with 12 elements, but rank 1 sent/);
  t.true(outcomes[1].status === 'rejected', 'rank 1 must not succeed when its neighbours aborted');
});

/**
 * Starts rank 1 of a two-rank ring whose rank 0 is played by the test: a plain ws server that replies to the
 * hello by hand, and a plain ws client that dials rank 1. Returns the socket on which rank 0 sends data.
 */
async function ringWithHandmadeRank0(t: ExecutionContext, logger = silentLogger()): Promise<{ ring: Ring; sendSocket: WebSocket }> {
  const runId = 'handmade-run';
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  t.teardown(() => new Promise<void>((resolve) => {
    for (const client of server.clients) {
      client.terminate();
    }
    server.close(() => resolve());
  }));
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  const sendSocket = new Promise<WebSocket>((resolve) => {
    server.on('connection', (socket) => {
      socket.once('message', () => {
        socket.send(JSON.stringify({ type: 'welcome', protocol: 'ringtrain-ring', version: 2, runId, rank: 0, worldSize: 2 }));
        resolve(socket);
      });
    });
  });
  const listener = await RingListener.listen({ host: '127.0.0.1', logger });
  t.teardown(() => listener.close());
  const dialer = new WebSocket(`ws://127.0.0.1:${listener.port}${RING_PATH}`, { perMessageDeflate: false });
  t.teardown(() => dialer.terminate());
  dialer.on('open', () => {
    dialer.send(JSON.stringify({ type: 'hello', protocol: 'ringtrain-ring', version: 2, runId, rank: 0, worldSize: 2 }));
  });
  dialer.on('error', () => undefined);
  const serverPort = (server.address() as AddressInfo).port;
  const ring = await Ring.connect({
    listener,
    rank: 1,
    worldSize: 2,
    runId,
    previous: { host: '127.0.0.1', port: serverPort },
    next: { host: '127.0.0.1', port: serverPort },
    timeoutMs: 5000,
    logger,
    sliceBytes: 4096,
  });
  t.teardown(() => ring.close());
  return { ring, sendSocket: await sendSocket };
}

/**
 * Builds a frame with a valid 40-byte header (layout in docs/ring-wire.md) and `count` zeros of
 * `elementType` (1 float32, 2 fp16); the single bucket covers `bucketElements` elements.
 */
function handmadeFrame(totalLength: number, offset: number, count: number, elementType = 1, bucketElements = totalLength): Buffer {
  const frame = Buffer.alloc(40 + count * (elementType === 1 ? 4 : 2));
  frame.write('RTAR', 0, 'latin1');
  frame.writeUInt16LE(2, 4); // version
  frame.writeUInt8(1, 6); // reduce-scatter
  frame.writeUInt8(elementType, 7);
  frame.writeUInt32LE(0, 8); // step
  frame.writeUInt32LE(0, 12); // collective
  frame.writeUInt32LE(0, 16); // sender rank
  frame.writeUInt32LE(totalLength, 20);
  frame.writeUInt32LE(0, 24); // bucket
  frame.writeUInt32LE(bucketElements, 28);
  frame.writeUInt32LE(offset, 32);
  frame.writeUInt32LE(count, 36);
  return frame;
}

const badFrames: { name: string; data: Buffer | string; pattern: RegExp }[] = [
  { name: 'short frame', data: Buffer.from('garbage'), pattern: /fewer than the 40-byte header/ },
  { name: 'wrong magic', data: Buffer.alloc(48), pattern: /magic 0x0 version 0/ },
  { name: 'text frame', data: 'not binary', pattern: /text frame/ },
  { name: 'truncated payload', data: handmadeFrame(8, 0, 4).subarray(0, 48), pattern: /announces 4 float32 elements/ },
  // 40 + 8192 = 8232 bytes against the default maxPayload of rank 1: 40-byte header + 4096-byte slices = 4136.
  { name: 'oversized frame', data: Buffer.alloc(40 + 8192), pattern: /message of at least 8232 bytes, above the maximum payload of 4136 bytes/ },
  { name: 'unknown element type', data: handmadeFrame(8, 0, 4, 9), pattern: /element type 9/ },
  { name: 'compression mismatch', data: handmadeFrame(8, 0, 4, 2), pattern: /rank 1 reduces float32 values but rank 0 sent fp16 values/ },
  { name: 'bucket size mismatch', data: handmadeFrame(8, 0, 4, 1, 4), pattern: /bucket 0 of at most 8 elements .* at most 4 elements/ },
  { name: 'length mismatch', data: handmadeFrame(9, 0, 5), pattern: /rank 1 called allReduce with 8 elements, but rank 0 sent a frame for 9 elements/ },
  { name: 'wrong offset', data: handmadeFrame(8, 1, 3), pattern: /expected elements from offset 0 .* covers offset 1 with 3 elements/ },
];

for (const bad of badFrames) {
  test(`bad frame rejects protocol: ${bad.name}`, async (t) => {
    const { logger, lines } = capturingLogger('warn');
    const { ring, sendSocket } = await ringWithHandmadeRank0(t, logger);
    const pending = timeSettled(() => ring.allReduce(new Float32Array(8)));
    sendSocket.send(bad.data);
    const { result } = await pending;
    const error = reasonOf(t, result, 'allReduce');
    t.is(codeOf(error), 'RINGTRAIN_ERR_PROTOCOL', error.message);
    t.regex(error.message, bad.pattern);
    t.true(lines.some((line) => line.includes('ring all-reduce failed')), 'the failure was not logged');
  });
}

test('allReduce after close rejects', async (t) => {
  const { rings } = await startLocalRing(t, 2);
  await rings[0].close();
  await t.throwsAsync(rings[0].allReduce(new Float32Array(4)), { message: /after ring.close\(\)/ });
});

test('concurrent allReduce rejects', async (t) => {
  const { rings } = await startLocalRing(t, 2);
  const first = rings[0].allReduce(new Float32Array(4));
  await t.throwsAsync(rings[0].allReduce(new Float32Array(4)), { message: /while another allReduce runs/ });
  await rings[1].allReduce(new Float32Array(4));
  await t.notThrowsAsync(first);
});

test('close during allReduce rejects pending', async (t) => {
  const { rings } = await startLocalRing(t, 2);
  const pending = rings[0].allReduce(new Float32Array(4));
  await new Promise((resolve) => setTimeout(resolve, 50));
  await rings[0].close();
  await t.throwsAsync(pending, { message: /closed while allReduce was running/ });
});
