import { WebSocketServer, type WebSocket } from 'ws';
import type { AddressInfo } from 'node:net';
import { tokenVerifier } from '../src/comm/token.js';
import type { Logger } from 'pino';
import {
  decodeWorkerMessage,
  encodeMessage,
  MAX_CONTROL_FRAME_BYTES,
  type CoordinatorMessage,
  type JoinMessage,
  type WorkerMessage,
} from '../src/comm/protocol.js';
import { isUserErrorCode, RingtrainError, type ErrorCode } from '../src/errors.js';

/** One worker's control connection, known by its join message and, after rendezvous, its rank. */
export interface WorkerConnection {
  socket: WebSocket;
  join: JoinMessage;
  rank: number | null;
  /** performance.now() of the last message received from this worker, heartbeats included. */
  lastSeenMs: number;
  /** Error code of the `failed` message this worker sent, if any. */
  reportedFailure?: string;
}

/** How long a closed worker connection waits before failing the run, so the launcher's exit report comes first. */
const CLOSE_REPORT_DELAY_MS = 300;

/** Failure codes that a rank reports when another rank failed first. */
const SECONDARY_FAILURE_CODES = new Set(['RINGTRAIN_ERR_PEER_CLOSED', 'RINGTRAIN_ERR_COLLECTIVE_TIMEOUT']);

type MessageOf<T extends WorkerMessage['type']> = Extract<WorkerMessage, { type: T }>;

interface PendingCollection {
  type: WorkerMessage['type'];
  ranks: number[];
  received: Map<number, WorkerMessage>;
  resolve: (messages: WorkerMessage[]) => void;
  reject: (error: Error) => void;
}

/**
 * The coordinator's WebSocket server: accepts worker connections, forwards their log lines, and lets the
 * training loop wait for one message of a given type from every rank. A worker that fails, disconnects or is
 * reported dead by the launcher rejects whatever the loop is waiting for, so no wait outlives a dead worker.
 */
export class WorkerHub {
  readonly connections: WorkerConnection[] = [];
  private readonly server: WebSocketServer;
  private pending: PendingCollection | null = null;
  private failure: RingtrainError | null = null;
  private failureListener: ((error: RingtrainError) => void) | null = null;
  private joinListener: ((connection: WorkerConnection) => void) | null = null;
  private healthTimer: NodeJS.Timeout | null = null;
  /** Waits longer than this log a warning naming the ranks not yet reported (0 disables the warning). */
  stallWarnMs = 0;
  /** Describes what the run is doing, for failure and stall messages, e.g. "step 120". */
  currentActivity = 'startup';

  private constructor(
    server: WebSocketServer,
    private readonly onLogLine: (line: string) => void,
    private readonly logger: Logger,
  ) {
    this.server = server;
    server.on('connection', (socket, request) => this.accept(socket, request.socket.remoteAddress ?? 'unknown'));
  }

  /** Starts listening on host:port (port 0 picks a free port); with a `token`, clients without it get HTTP 401. */
  static async listen(host: string, port: number, onLogLine: (line: string) => void, logger: Logger, token: string | null = null): Promise<WorkerHub> {
    const server = new WebSocketServer({
      host,
      port,
      perMessageDeflate: false,
      maxPayload: MAX_CONTROL_FRAME_BYTES,
      verifyClient: tokenVerifier(token, 'coordinator', logger),
    });
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    return new WorkerHub(server, onLogLine, logger);
  }

  get address(): AddressInfo {
    return this.server.address() as AddressInfo;
  }

  /** Calls `listener` once when the run fails, at once if it already has. */
  onFailure(listener: (error: RingtrainError) => void): void {
    if (this.failure !== null) listener(this.failure);
    else this.failureListener = listener;
  }

  /** Calls `listener` for every worker that joins from now on. */
  onJoin(listener: (connection: WorkerConnection) => void): void {
    this.joinListener = listener;
  }

  /** Sends a message to the worker with `rank`. */
  send(rank: number, message: CoordinatorMessage): void {
    const connection = this.connections.find((candidate) => candidate.rank === rank);
    if (connection === undefined) throw new Error(`no worker has rank ${rank}`);
    connection.socket.send(encodeMessage(message), { binary: true });
  }

  /** Sends a message to every joined worker. */
  broadcast(message: CoordinatorMessage): void {
    const frame = encodeMessage(message);
    for (const connection of this.connections) connection.socket.send(frame, { binary: true });
  }

  /**
   * Waits until each of `ranks` (default: every ranked worker) has sent one message of `type`, and returns them in
   * rank order. Rejects with the first failure reported during the wait (or before it).
   */
  collect<T extends WorkerMessage['type']>(type: T, ranks?: readonly number[]): Promise<MessageOf<T>[]> {
    if (this.failure !== null) return Promise.reject(this.failure);
    const expected = ranks ?? this.connections.flatMap((connection) => (connection.rank === null ? [] : [connection.rank]));
    const started = performance.now();
    let stallTimer: NodeJS.Timeout | null = null;
    const collection = new Promise<MessageOf<T>[]>((resolve, reject) => {
      this.pending = {
        type,
        ranks: [...expected],
        received: new Map(),
        resolve: (messages) => resolve(messages as MessageOf<T>[]),
        reject,
      };
    });
    if (this.stallWarnMs > 0) {
      const pending = this.pending as PendingCollection;
      stallTimer = setInterval(() => {
        const missing = pending.ranks.filter((rank) => !pending.received.has(rank));
        this.logger.warn(
          { waitingFor: type, missingRanks: missing, waitedMs: Math.round(performance.now() - started), activity: this.currentActivity },
          `still waiting for '${type}' from ranks ${missing.join(', ')} during ${this.currentActivity}; they may be stalled`,
        );
      }, this.stallWarnMs);
    }
    return collection.finally(() => {
      if (stallTimer !== null) clearInterval(stallTimer);
    });
  }

  /**
   * Fails the run with RINGTRAIN_ERR_HUNG when a ranked worker sends nothing, not even a heartbeat, for
   * `timeoutMs`. Checked every quarter of the timeout, so detection takes at most 1.25 times `timeoutMs`.
   */
  monitorHeartbeats(timeoutMs: number): void {
    this.healthTimer = setInterval(() => {
      const now = performance.now();
      for (const connection of this.connections) {
        const silentMs = now - connection.lastSeenMs;
        if (connection.rank === null || silentMs <= timeoutMs) continue;
        this.fail(
          new RingtrainError(
            'RINGTRAIN_ERR_HUNG',
            `${describeWorker(connection)} sent no heartbeat for ${Math.round(silentMs)} ms during ${this.currentActivity}; ` +
              'the process is hung or starved of CPU. Raise health.heartbeatTimeoutMs if it is only slow',
          ),
        );
        return;
      }
    }, Math.max(50, Math.floor(timeoutMs / 4)));
    this.healthTimer.unref();
  }

  /**
   * Fails the run because a worker process ended, as reported by the launcher. A worker that already sent a
   * `failed` message exits because of it, so its exit adds nothing, unless it only reported a ring neighbour's
   * disappearance: then the exit is failed late, giving the neighbour's own report time to arrive first.
   */
  failWorkerExit(node: number, localRank: number, how: string): void {
    const worker = this.connections.find((connection) => connection.join.node === node && connection.join.localRank === localRank);
    const who = worker === undefined ? `worker on node ${node} local rank ${localRank}` : describeWorker(worker);
    const error = new RingtrainError('RINGTRAIN_ERR_WORKER_FAILED', `${who} ${how} during ${this.currentActivity}`);
    const reported = worker?.reportedFailure;
    if (reported === undefined) {
      this.fail(error);
    } else if (SECONDARY_FAILURE_CODES.has(reported)) {
      setTimeout(() => this.fail(error), CLOSE_REPORT_DELAY_MS).unref();
    }
  }

  /** Marks the run as failed; the current and every later `collect` rejects with `error`. */
  fail(error: RingtrainError): void {
    if (this.failure !== null) return;
    this.failure = error;
    this.failureListener?.(error);
    const pending = this.pending;
    this.pending = null;
    pending?.reject(error);
  }

  /**
   * Closes every connection and the server. A worker that does not complete the close handshake within
   * `graceMs` (a hung process) is terminated, instead of waiting for the 30 s close timeout of ws.
   */
  async close(graceMs = 1000): Promise<void> {
    if (this.healthTimer !== null) clearInterval(this.healthTimer);
    for (const connection of this.connections) connection.socket.close(1000, 'run finished');
    const cutOff = setTimeout(() => {
      for (const connection of this.connections) connection.socket.terminate();
    }, graceMs);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    clearTimeout(cutOff);
  }

  private accept(socket: WebSocket, peer: string): void {
    let connection: WorkerConnection | null = null;
    this.logger.debug({ peer }, 'worker connected');

    socket.on('message', (data: Buffer) => {
      let message: WorkerMessage;
      try {
        message = decodeWorkerMessage(data);
      } catch (error) {
        this.logger.warn({ peer, err: error, bytes: data.length }, 'rejected an invalid frame from a worker');
        return;
      }

      if (connection !== null) connection.lastSeenMs = performance.now();
      if (message.type === 'log') {
        this.onLogLine(message.line);
        return;
      }
      if (message.type === 'heartbeat') return;
      if (message.type === 'join') {
        connection = { socket, join: message, rank: null, lastSeenMs: performance.now() };
        this.connections.push(connection);
        this.joinListener?.(connection);
        return;
      }
      if (connection === null) {
        this.logger.warn({ peer, type: message.type }, `rejected a '${message.type}' message from a worker that has not joined`);
        return;
      }
      this.deliver(connection, message);
    });

    socket.on('close', (code) => {
      if (connection === null) return;
      const who = describeWorker(connection);
      this.logger.debug({ peer, code, rank: connection.rank }, 'worker disconnected');
      const activity = this.currentActivity;
      // The launcher's report of the process exit (code or signal) is more precise than a closed socket, and it
      // usually arrives within milliseconds, so it gets a short head start.
      setTimeout(() => {
        this.fail(new RingtrainError('RINGTRAIN_ERR_WORKER_FAILED', `${who} closed its connection to the coordinator (code ${code}) during ${activity}`));
      }, CLOSE_REPORT_DELAY_MS).unref();
    });
    socket.on('error', (error) => this.logger.warn({ peer, err: error }, 'worker connection error'));
  }

  private deliver(connection: WorkerConnection, message: WorkerMessage): void {
    if (message.type === 'failed') {
      connection.reportedFailure = message.code;
      const where = message.step === null ? '' : ` at step ${message.step}`;
      // A config or data problem keeps its code, so the launcher reports it as the user's error and does not restart.
      const code = isUserErrorCode(message.code) ? (message.code as ErrorCode) : 'RINGTRAIN_ERR_WORKER_FAILED';
      const error = new RingtrainError(code, `${describeWorker(connection)} failed${where}: ${message.message} [${message.code}]`);
      // A rank whose ring neighbour vanished reports only the symptom. The neighbour's own exit or error names
      // the cause and usually arrives within milliseconds, so it gets a short head start.
      if (SECONDARY_FAILURE_CODES.has(message.code)) {
        setTimeout(() => this.fail(error), CLOSE_REPORT_DELAY_MS).unref();
      } else {
        this.fail(error);
      }
      return;
    }
    const pending = this.pending;
    if (pending === null || pending.type !== message.type || connection.rank === null || !pending.ranks.includes(connection.rank)) {
      this.logger.warn({ rank: connection.rank, type: message.type }, 'ignored an unexpected message from a worker');
      return;
    }
    pending.received.set(connection.rank, message);
    if (pending.received.size === pending.ranks.length) {
      this.pending = null;
      pending.resolve([...pending.received.entries()].sort((a, b) => a[0] - b[0]).map(([, value]) => value));
    }
  }
}

/** Returns "rank R (node N, local rank L, pid P)" for messages. */
export function describeWorker(connection: WorkerConnection): string {
  const { node, localRank, pid } = connection.join;
  const rank = connection.rank === null ? 'worker' : `rank ${connection.rank}`;
  return `${rank} (node ${node}, local rank ${localRank}, pid ${pid})`;
}
