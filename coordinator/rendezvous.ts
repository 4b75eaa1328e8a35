import type { Logger } from 'pino';
import { PROTOCOL_VERSION, type JoinMessage, type WelcomeMessage } from '../src/comm/protocol.js';
import { RingtrainError } from '../src/errors.js';
import { describeWorker, type WorkerConnection, type WorkerHub } from './worker-hub.js';

/**
 * The workers a coordinator waits for: every local rank of nodes 0..nodeCount-1, where each node's worker count
 * is what its workers report in `join.nodeWorkers`.
 */
export interface ExpectedWorkers {
  runId: string;
  nodeCount: number;
}

/**
 * Waits until every expected worker has joined, then checks that they agree and assigns ranks. Raises
 * RINGTRAIN_ERR_JOIN_TIMEOUT naming the missing workers when `timeoutMs` passes first, and
 * RINGTRAIN_ERR_PROTOCOL or RINGTRAIN_ERR_PARAMETER_MISMATCH when a worker does not fit the run.
 */
export async function rendezvous(hub: WorkerHub, expected: ExpectedWorkers, timeoutMs: number, logger: Logger): Promise<WorkerConnection[]> {
  const joined = await new Promise<WorkerConnection[]>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(
        new RingtrainError(
          'RINGTRAIN_ERR_JOIN_TIMEOUT',
          `only ${hub.connections.length} of ${describeExpectedTotal(hub.connections, expected)} workers joined within ${timeoutMs} ms; missing: ` +
            `${missingWorkers(hub.connections, expected).join(', ')}. Check the worker logs above, or raise ` +
            `coordinator.joinTimeoutMs`,
        ),
      );
    }, timeoutMs);

    const check = (connection: WorkerConnection | null): void => {
      if (connection !== null) {
        // workerNode and workerPid, because `node` and `pid` are the coordinator's own log bindings.
        const { node, localRank, nodeWorkers, pid, backend } = connection.join;
        logger.info({ workerNode: node, localRank, nodeWorkers, workerPid: pid, backend }, 'worker joined');
        const problem = joinProblem(connection.join, expected, hub.connections);
        if (problem !== null) {
          clearTimeout(timer);
          reject(new RingtrainError('RINGTRAIN_ERR_PROTOCOL', `${describeWorker(connection)} cannot join: ${problem}`));
          return;
        }
      }
      if (missingWorkers(hub.connections, expected).length === 0) {
        clearTimeout(timer);
        resolve([...hub.connections]);
      }
    };
    hub.onJoin(check);
    // A worker process that exits before joining (a broken task module, unreadable data) ends the wait at once.
    hub.onFailure((error) => {
      clearTimeout(timer);
      reject(error);
    });
    check(null);
  });

  const ordered = assignRanks(joined);
  checkAgreement(ordered);
  logger.info(
    { worldSize: ordered.length, ring: ordered.map((connection) => `${connection.join.ring.host}:${connection.join.ring.port}`) },
    'rendezvous complete',
  );
  return ordered;
}

function joinProblem(join: JoinMessage, expected: ExpectedWorkers, connections: readonly WorkerConnection[]): string | null {
  if (join.protocolVersion !== PROTOCOL_VERSION) {
    return `protocol version ${join.protocolVersion}, expected ${PROTOCOL_VERSION}; run the same ringtrain version everywhere`;
  }
  if (join.runId !== expected.runId) return `run id '${join.runId}', expected '${expected.runId}'`;
  if (!(Number.isInteger(join.node) && join.node >= 0 && join.node < expected.nodeCount)) {
    return `node ${join.node} is not part of this run (nodes 0..${expected.nodeCount - 1}); check --node-rank and --nnodes`;
  }
  if (!(join.localRank >= 0 && join.localRank < join.nodeWorkers)) {
    return `local rank ${join.localRank} is outside 0..${join.nodeWorkers - 1} for node ${join.node}`;
  }
  const sameNode = connections.find((other) => other.join.node === join.node && other.join.nodeWorkers !== join.nodeWorkers);
  if (sameNode !== undefined) {
    return `it reports ${join.nodeWorkers} workers on node ${join.node}, but pid ${sameNode.join.pid} reported ${sameNode.join.nodeWorkers}`;
  }
  return null;
}

/** Returns the expected worker count, or "at least N" while some node has not reported its count yet. */
function describeExpectedTotal(connections: readonly WorkerConnection[], expected: ExpectedWorkers): string {
  let total = 0;
  let silentNodes = 0;
  for (let node = 0; node < expected.nodeCount; node++) {
    const count = connections.find((connection) => connection.join.node === node)?.join.nodeWorkers;
    if (count === undefined) silentNodes++;
    total += count ?? 1;
  }
  return silentNodes > 0 ? `at least ${total}` : String(total);
}

function missingWorkers(connections: readonly WorkerConnection[], expected: ExpectedWorkers): string[] {
  const missing: string[] = [];
  for (let node = 0; node < expected.nodeCount; node++) {
    const count = connections.find((connection) => connection.join.node === node)?.join.nodeWorkers;
    if (count === undefined) {
      missing.push(`every worker of node ${node}`);
      continue;
    }
    for (let localRank = 0; localRank < count; localRank++) {
      if (!connections.some((connection) => connection.join.node === node && connection.join.localRank === localRank)) {
        missing.push(`node ${node} local rank ${localRank}`);
      }
    }
  }
  return missing;
}

/**
 * Orders workers by (node, local rank) and numbers them 0..N-1. The ring follows rank order, so the workers of a
 * node are neighbours and the ring crosses each node boundary once.
 */
export function assignRanks(connections: readonly WorkerConnection[]): WorkerConnection[] {
  const ordered = [...connections].sort((a, b) => a.join.node - b.join.node || a.join.localRank - b.join.localRank);
  for (let i = 1; i < ordered.length; i++) {
    const previous = (ordered[i - 1] as WorkerConnection).join;
    const current = (ordered[i] as WorkerConnection).join;
    if (previous.node === current.node && previous.localRank === current.localRank) {
      throw new RingtrainError(
        'RINGTRAIN_ERR_PROTOCOL',
        `two workers joined as node ${current.node} local rank ${current.localRank} (pids ${previous.pid} and ${current.pid}); ` +
          'each worker of a node needs its own LOCAL_RANK',
      );
    }
  }
  ordered.forEach((connection, rank) => {
    connection.rank = rank;
  });
  return ordered;
}

/** Fields every rank must report identically, with what a difference means to the user. */
const agreedFields: { field: keyof JoinMessage; meaning: string }[] = [
  { field: 'trainSize', meaning: 'the ranks loaded different training data' },
  { field: 'evalSize', meaning: 'the ranks loaded different evaluation data' },
  { field: 'parameterCount', meaning: 'the ranks built models of different sizes' },
  { field: 'parameterLayoutHash', meaning: 'the ranks built models whose parameter names, shapes or order differ' },
];

/**
 * Returns the first difference between two parameter lists (name, shape or position), or null when they are
 * equal. Initial values may differ: rank 0's are copied to every rank before the first step.
 */
export function firstSpecDifference(
  reference: readonly { name: string; shape: number[] }[],
  other: readonly { name: string; shape: number[] }[],
  rank: number,
): string | null {
  const length = Math.max(reference.length, other.length);
  for (let index = 0; index < length; index++) {
    const expected = reference[index];
    const actual = other[index];
    if (expected === undefined || actual === undefined) {
      const missing = expected === undefined ? `rank 0 has no parameter ${index}` : `rank ${rank} has no parameter ${index}`;
      const present = expected ?? actual;
      return `parameter ${index}: ${missing}, the other has '${present?.name}' [${present?.shape.join(', ')}] (rank 0 has ${reference.length} parameters, rank ${rank} has ${other.length})`;
    }
    if (expected.name !== actual.name || expected.shape.join(',') !== actual.shape.join(',')) {
      return `parameter ${index}: rank 0 has '${expected.name}' [${expected.shape.join(', ')}], rank ${rank} has '${actual.name}' [${actual.shape.join(', ')}]`;
    }
  }
  return null;
}

/** Raises RINGTRAIN_ERR_PARAMETER_MISMATCH naming both ranks and values when a worker disagrees with rank 0. */
export function checkAgreement(ordered: readonly WorkerConnection[]): void {
  const reference = ordered[0];
  if (reference === undefined) return;
  for (const connection of ordered.slice(1)) {
    const difference = firstSpecDifference(reference.join.parameterSpecs, connection.join.parameterSpecs, connection.rank ?? -1);
    if (difference !== null) {
      throw new RingtrainError(
        'RINGTRAIN_ERR_PARAMETER_MISMATCH',
        `the ranks built different models; first difference at ${difference}. Every rank must build the same ` +
          'parameters in the same order: make the model factory depend only on its context, not on the rank or on chance',
      );
    }
    for (const { field, meaning } of agreedFields) {
      const expected = reference.join[field];
      const actual = connection.join[field];
      if (expected !== actual) {
        throw new RingtrainError(
          'RINGTRAIN_ERR_PARAMETER_MISMATCH',
          `${field} differs: rank 0 has ${String(expected)}, rank ${connection.rank} has ${String(actual)}; ${meaning}`,
        );
      }
    }
  }
}

/** Builds each rank's welcome: its rank, the world size and its ring neighbours' addresses. */
export function welcomeMessages(ordered: readonly WorkerConnection[], totalSteps: number): WelcomeMessage[] {
  const worldSize = ordered.length;
  return ordered.map((_, rank) => ({
    type: 'welcome',
    rank,
    worldSize,
    previous: (ordered[(rank - 1 + worldSize) % worldSize] as WorkerConnection).join.ring,
    next: (ordered[(rank + 1) % worldSize] as WorkerConnection).join.ring,
    totalSteps,
  }));
}
