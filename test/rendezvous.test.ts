import test, { type ExecutionContext } from 'ava';
import pino from 'pino';
import { WebSocket } from 'ws';
import { assignRanks, checkAgreement, rendezvous, welcomeMessages } from '../coordinator/rendezvous.js';
import { WorkerHub, type WorkerConnection } from '../coordinator/worker-hub.js';
import { encodeMessage, PROTOCOL_VERSION, type JoinMessage } from '../src/comm/protocol.js';
import { hasCode } from '../src/errors.js';

function joinOf(node: number, localRank: number, overrides: Partial<JoinMessage> = {}): WorkerConnection {
  const join: JoinMessage = {
    type: 'join',
    protocolVersion: PROTOCOL_VERSION,
    runId: 'run-1',
    node,
    localRank,
    nodeWorkers: 2,
    pid: 1000 + 10 * node + localRank,
    ring: { host: `127.0.0.${node + 1}`, port: 5000 + localRank, unixSocketPath: null, nodeId: `node-${node}` },
    backend: 'cpu',
    trainSize: 100,
    evalSize: 10,
    trainLengths: new Uint16Array(100),
    parameterSpecs: [
      { name: 'embedding', shape: [10, 4] },
      { name: 'bias', shape: [2] },
    ],
    parameterCount: 42,
    parameterLayoutHash: 'layout-a',
    initialChecksum: 'init-a',
    ...overrides,
  };
  // Rendezvous reads only `join` and writes `rank`; the socket is never touched here.
  return { socket: null as unknown as WebSocket, join, rank: null, lastSeenMs: 0 };
}

test('assignRanks orders by node then local rank', (t) => {
  const ordered = assignRanks([joinOf(1, 1), joinOf(0, 1), joinOf(1, 0), joinOf(0, 0)]);
  t.deepEqual(
    ordered.map((connection) => [connection.join.node, connection.join.localRank, connection.rank]),
    [
      [0, 0, 0],
      [0, 1, 1],
      [1, 0, 2],
      [1, 1, 3],
    ],
  );
});

test('assignRanks rejects duplicate local ranks', (t) => {
  const error = t.throws(() => assignRanks([joinOf(0, 0), joinOf(0, 1), joinOf(0, 1)]));
  t.true(hasCode(error, 'RINGTRAIN_ERR_PROTOCOL'));
  t.regex(error?.message ?? '', /two workers joined as node 0 local rank 1 \(pids 1001 and 1001\)/);
});

test('checkAgreement names field and both ranks', (t) => {
  const ordered = assignRanks([joinOf(0, 0), joinOf(0, 1), joinOf(0, 2, { parameterLayoutHash: 'layout-b' })]);
  const error = t.throws(() => checkAgreement(ordered));
  t.true(hasCode(error, 'RINGTRAIN_ERR_PARAMETER_MISMATCH'));
  t.regex(error?.message ?? '', /^parameterLayoutHash differs: rank 0 has layout-a, rank 2 has layout-b; /);
});

test('checkAgreement reports different data sizes', (t) => {
  const ordered = assignRanks([joinOf(0, 0), joinOf(0, 1, { trainSize: 99 })]);
  const error = t.throws(() => checkAgreement(ordered));
  t.regex(error?.message ?? '', /^trainSize differs: rank 0 has 100, rank 1 has 99; the ranks loaded different training data$/);
});

test('checkAgreement accepts identical workers', (t) => {
  t.notThrows(() => checkAgreement(assignRanks([joinOf(0, 0), joinOf(0, 1), joinOf(1, 0)])));
});

test('welcomeMessages link ring neighbours', (t) => {
  const ordered = assignRanks([joinOf(0, 0), joinOf(0, 1), joinOf(1, 0)]);
  const welcomes = welcomeMessages(ordered, 17);
  t.deepEqual(
    welcomes.map((welcome) => [welcome.rank, welcome.previous.port, welcome.previous.host, welcome.next.port, welcome.next.host]),
    [
      [0, 5000, '127.0.0.2', 5001, '127.0.0.1'],
      [1, 5000, '127.0.0.1', 5000, '127.0.0.2'],
      [2, 5001, '127.0.0.1', 5000, '127.0.0.1'],
    ],
  );
  t.true(welcomes.every((welcome) => welcome.worldSize === 3 && welcome.totalSteps === 17));
});

/** Starts a real hub on loopback and sends one join message to it over a real connection. */
async function hubWithJoin(t: ExecutionContext, join: JoinMessage): Promise<WorkerHub> {
  const hub = await WorkerHub.listen('127.0.0.1', 0, () => {}, silent);
  t.teardown(() => hub.close());
  const socket = new WebSocket(`ws://127.0.0.1:${hub.address.port}`);
  t.teardown(() => socket.terminate());
  await new Promise((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  socket.send(encodeMessage(join));
  return hub;
}

const silent = pino({ level: 'silent' });

test('rendezvous timeout names missing workers', async (t) => {
  // One worker joins over a real connection; the other never does.
  const hub = await hubWithJoin(t, joinOf(0, 1).join);

  const started = Date.now();
  const error = await t.throwsAsync(rendezvous(hub, { runId: 'run-1', nodeCount: 1 }, 500, silent));
  t.true(hasCode(error, 'RINGTRAIN_ERR_JOIN_TIMEOUT'));
  t.regex(error?.message ?? '', /^only 1 of 2 workers joined within 500 ms; missing: node 0 local rank 0\. /);
  t.true(Date.now() - started < 5000);
});

test('rendezvous rejects another run id', async (t) => {
  const hub = await hubWithJoin(t, joinOf(0, 0, { runId: 'other-run' }).join);

  const error = await t.throwsAsync(rendezvous(hub, { runId: 'run-1', nodeCount: 1 }, 5000, silent));
  t.true(hasCode(error, 'RINGTRAIN_ERR_PROTOCOL'));
  t.regex(error?.message ?? '', /cannot join: run id 'other-run', expected 'run-1'$/);
});
