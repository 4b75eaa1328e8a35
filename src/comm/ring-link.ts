/**
 * One WebSocket between two neighbouring ranks after the handshake: a FIFO of received binary frames,
 * waits that end by a deadline or by the link's failure, and accounting of sends not yet written.
 */
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { RingtrainError } from '../errors.js';
import { CLOSE_NORMAL, toCloseReason } from './ring-hello.js';

/** The neighbour a link leads to. Data arrives from `previous` and leaves towards `next`. */
export type LinkRole = 'previous' | 'next';

/** Identity of a link, for messages and logs. */
export interface RingLinkInfo {
  /** Rank of the process at the other end. */
  peerRank: number;
  /** Rank of this process. */
  localRank: number;
  role: LinkRole;
  /** Remote address as host:port. */
  remote: string;
  logger: Logger;
}

/** The cause that ended a link on its own: the peer's close, a socket error, or a stray frame. */
export interface LinkFailure {
  error: RingtrainError;
  /** Close code sent by the peer, or null when the link did not end with a close. */
  closeCode: number | null;
  /** Collectives the peer had completed when it closed the ring normally, or null when its close reason has no count. */
  peerCompleted: number | null;
}

/** Called once when a link fails on its own. */
export type LinkFailureHandler = (failure: LinkFailure) => void;

/** Returns the close reason that `Ring.close()` sends; neighbours parse the count back with `parseCompleted`. */
export function normalCloseReason(rank: number, completed: number): string {
  return `rank ${rank} closed the ring; completed collectives: ${completed}`;
}

function parseCompleted(reason: string): number | null {
  const match = /; completed collectives: (\d+)$/.exec(reason);
  return match === null ? null : Number(match[1]);
}

/**
 * A link to a neighbour rank. The constructor takes over all events of `socket`. Frames and a failure that
 * arrive before `onFailure` is called are kept and delivered later.
 */
export class RingLink {
  readonly info: RingLinkInfo;
  private readonly socket: WebSocket;
  private readonly frames: Buffer[] = [];
  private frameWaiter: ((frame: Buffer) => void) | null = null;
  private readonly failureListeners = new Set<(error: Error) => void>();
  private failure: Error | null = null;
  private failureHandler: LinkFailureHandler | null = null;
  private unreportedFailure: LinkFailure | null = null;
  private socketError: Error | null = null;
  private reported = false;
  private closingLocally = false;
  private sendsInFlight = 0;
  private drainWaiters: (() => void)[] = [];
  /** Settles when the socket has closed, for any reason. */
  readonly closed: Promise<void>;

  constructor(socket: WebSocket, info: RingLinkInfo) {
    this.socket = socket;
    this.info = info;
    socket.removeAllListeners('message');
    socket.removeAllListeners('close');
    socket.removeAllListeners('error');
    socket.on('message', (data: Buffer, isBinary: boolean) => this.handleMessage(data, isBinary));
    socket.on('error', (error: Error) => {
      this.socketError = error;
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', (code: number, reason: Buffer) => {
        this.handleClose(code, reason.toString('utf8'));
        resolve();
      });
    });
  }

  /** Returns "previous neighbour rank 2 (127.0.0.1:40123)" for messages. */
  describePeer(): string {
    return `${this.info.role} neighbour rank ${this.info.peerRank} (${this.info.remote})`;
  }

  /** Sets the handler that hears of this link's own failure; a failure that happened earlier is reported now. */
  onFailure(handler: LinkFailureHandler): void {
    this.failureHandler = handler;
    if (this.unreportedFailure !== null) {
      const failure = this.unreportedFailure;
      this.unreportedFailure = null;
      handler(failure);
    }
  }

  /**
   * Returns the next received frame. Frames that arrived before a failure are still returned; once none are
   * left, the wait rejects with the failure, or with `makeTimeoutError()` after `timeoutMs`.
   */
  receive(timeoutMs: number, makeTimeoutError: () => RingtrainError): Promise<Buffer> {
    const queued = this.frames.shift();
    if (queued !== undefined) {
      return Promise.resolve(queued);
    }
    const arrival = new Promise<Buffer>((resolve) => {
      this.frameWaiter = resolve;
    });
    return this.guard(arrival, timeoutMs, makeTimeoutError).finally(() => {
      this.frameWaiter = null;
    });
  }

  /**
   * Queues `frame` as one binary WebSocket message. The promise resolves when the socket has written it, or
   * when the send failed (the failure then goes to the failure handler); it never rejects. `frame` must stay
   * unchanged until then, because ws keeps a reference instead of a copy.
   */
  send(frame: Buffer): Promise<void> {
    this.sendsInFlight += 1;
    return new Promise((resolve) => {
      this.socket.send(frame, { binary: true }, (error?: Error) => {
        this.sendsInFlight -= 1;
        // A closing socket reports its close code and reason in the close event, which is more informative.
        const closing = this.socket.readyState === this.socket.CLOSING || this.socket.readyState === this.socket.CLOSED;
        if (error !== undefined && error !== null && !closing) {
          const failure = new RingtrainError(
            'RINGTRAIN_ERR_PEER_CLOSED',
            `rank ${this.info.localRank} could not send to its ${this.describePeer()}: ${error.message}`,
            { cause: error },
          );
          this.reportFailure({ error: failure, closeCode: null, peerCompleted: null });
        }
        if (this.sendsInFlight === 0) {
          const waiters = this.drainWaiters;
          this.drainWaiters = [];
          for (const wake of waiters) {
            wake();
          }
        }
        resolve();
      });
    });
  }

  /** Waits until every send has been written, or rejects like `guard`. */
  waitForSends(timeoutMs: number, makeTimeoutError: () => RingtrainError): Promise<void> {
    if (this.sendsInFlight === 0) {
      return Promise.resolve();
    }
    const drained = new Promise<void>((resolve) => {
      this.drainWaiters.push(resolve);
    });
    return this.guard(drained, timeoutMs, makeTimeoutError);
  }

  /**
   * Returns `promise`, but rejects with the link's failure as soon as the link fails, or with
   * `makeTimeoutError()` when `promise` has not settled after `timeoutMs`.
   */
  guard<T>(promise: Promise<T>, timeoutMs: number, makeTimeoutError: () => RingtrainError): Promise<T> {
    if (this.failure !== null) {
      return Promise.reject(this.failure);
    }
    return new Promise<T>((resolve, reject) => {
      const onFailure = (error: Error): void => {
        clearTimeout(timer);
        reject(error);
      };
      const timer = setTimeout(() => {
        this.failureListeners.delete(onFailure);
        reject(makeTimeoutError());
      }, timeoutMs);
      this.failureListeners.add(onFailure);
      promise.then(
        (value) => {
          clearTimeout(timer);
          this.failureListeners.delete(onFailure);
          resolve(value);
        },
        (error: unknown) => {
          clearTimeout(timer);
          this.failureListeners.delete(onFailure);
          reject(error);
        },
      );
    });
  }

  /** Marks the link as failed with `error`: current and later waits reject once no received frame is left. */
  fail(error: Error): void {
    if (this.failure !== null) {
      return;
    }
    this.failure = error;
    const listeners = [...this.failureListeners];
    this.failureListeners.clear();
    for (const listener of listeners) {
      listener(error);
    }
  }

  /**
   * Closes the socket with `code` and `reason` and waits for it to close; after `graceMs` without the peer's
   * close frame the socket is destroyed. Never rejects.
   */
  async close(code: number, reason: string, graceMs: number): Promise<void> {
    this.closingLocally = true;
    const { CLOSED, CLOSING } = this.socket;
    if (this.socket.readyState !== CLOSED) {
      if (this.socket.readyState !== CLOSING) {
        this.socket.close(code, toCloseReason(reason));
      }
      const timer = setTimeout(() => this.socket.terminate(), graceMs);
      await this.closed;
      clearTimeout(timer);
    }
  }

  private handleMessage(data: Buffer, isBinary: boolean): void {
    if (!isBinary) {
      const error = new RingtrainError(
        'RINGTRAIN_ERR_PROTOCOL',
        `rank ${this.info.localRank} received a text frame from its ${this.describePeer()} after the handshake; ` +
          'ring links carry only binary data frames',
      );
      this.reportFailure({ error, closeCode: null, peerCompleted: null });
      return;
    }
    const waiter = this.frameWaiter;
    if (waiter !== null) {
      this.frameWaiter = null;
      waiter(data);
    } else {
      this.frames.push(data);
    }
  }

  private handleClose(code: number, reason: string): void {
    if (this.closingLocally) {
      this.info.logger.debug({ peerRank: this.info.peerRank, role: this.info.role, code }, 'ring link closed');
      return;
    }
    const error = this.describeClose(code, reason);
    const peerCompleted = code === CLOSE_NORMAL ? parseCompleted(reason) : null;
    // A next neighbour that completed its collectives needs no more frames, so waits on this link's sends
    // are left to finish. The ring decides whether the close ends the running collective.
    const keepWaits = this.info.role === 'next' && peerCompleted !== null;
    this.reportFailure({ error, closeCode: code, peerCompleted }, keepWaits);
  }

  private describeClose(code: number, reason: string): RingtrainError {
    const socketError = this.socketError;
    const errorCode = (socketError as NodeJS.ErrnoException | null)?.code;
    if (socketError !== null && typeof errorCode === 'string' && errorCode.startsWith('WS_ERR_')) {
      // ws closes the socket itself when a received frame breaks the WebSocket protocol or maxPayload.
      return new RingtrainError(
        'RINGTRAIN_ERR_PROTOCOL',
        `rank ${this.info.localRank} rejected a frame from its ${this.describePeer()}: ${socketError.message} ` +
          `(${errorCode}); every rank must use the same sliceBytes and a maxPayload of at least header plus sliceBytes`,
        { cause: socketError },
      );
    }
    const detail = reason.length > 0 ? `code ${code}: ${reason}` : `code ${code}`;
    const cause = socketError === null ? '' : ` after socket error ${socketError.message}`;
    const verb = code === CLOSE_NORMAL ? 'closed the ring' : 'closed the connection';
    return new RingtrainError(
      'RINGTRAIN_ERR_PEER_CLOSED',
      `the ${this.describePeer()} of rank ${this.info.localRank} ${verb} (${detail})${cause}`,
      socketError === null ? undefined : { cause: socketError },
    );
  }

  private reportFailure(failure: LinkFailure, keepWaits = false): void {
    if (this.failure !== null || this.reported) {
      return;
    }
    this.reported = true;
    if (!keepWaits) {
      this.fail(failure.error);
    }
    if (this.failureHandler !== null) {
      this.failureHandler(failure);
    } else {
      this.unreportedFailure = failure;
    }
  }
}
