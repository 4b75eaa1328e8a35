/**
 * Links between neighbouring ranks after the handshake. `RingLink` contains what both directions share: the
 * failure that ended a link, the listeners that the running collective registered, and how a close is
 * reported. `SendLink` is the listener side of a link, a `ws` server socket that sends data frames.
 * The dialing side, which receives them, is `ReceiveLink` in ring-receive-link.ts.
 */
import type { Logger } from 'pino';
import type { WebSocket } from 'ws';
import { RingtrainError } from '../errors.js';
import { CLOSE_NORMAL, toCloseReason } from './ring-hello.js';
import type { LinkTransport } from './ring-unix-socket.js';
import { ClientSocketError } from './ring-ws-client.js';

/** The neighbour a link leads to. Data arrives from `previous` and leaves towards `next`. */
export type LinkRole = 'previous' | 'next';

/** Identity of a link, for messages and logs. */
export interface RingLinkInfo {
  /** Rank of the process at the other end. */
  peerRank: number;
  /** Rank of this process. */
  localRank: number;
  role: LinkRole;
  /** Remote address as host:port, or unix:PATH for a Unix socket. */
  remote: string;
  transport: LinkTransport;
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
 * Base class of both kinds of link. A failure that happens before `onFailure` is called is kept and
 * reported then.
 */
export abstract class RingLink {
  readonly info: RingLinkInfo;
  private readonly failureListeners = new Set<(error: Error) => void>();
  private failure: Error | null = null;
  private failureHandler: LinkFailureHandler | null = null;
  private unreportedFailure: LinkFailure | null = null;
  private reported = false;
  /** The socket error or protocol violation seen before the link closed, if any. */
  protected socketError: Error | null = null;
  protected closingLocally = false;

  protected constructor(info: RingLinkInfo) {
    this.info = info;
  }

  /**
   * Closes the link with `code` and `reason` and waits for the socket to close; after `graceMs` without the
   * peer's close frame the socket is destroyed. Never rejects.
   */
  abstract close(code: number, reason: string, graceMs: number): Promise<void>;

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

  /** The error this link failed with, or null while it works. */
  get failedWith(): Error | null {
    return this.failure;
  }

  /** Calls `listener` once when the link fails; returns a function that removes the listener again. */
  addFailureListener(listener: (error: Error) => void): () => void {
    this.failureListeners.add(listener);
    return () => {
      this.failureListeners.delete(listener);
    };
  }

  /** Marks the link as failed with `error` and calls the failure listeners; later calls are ignored. */
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

  /** Reports a close of the socket with the peer's close `code` and `reason` (1006 and '' without a close frame). */
  protected handleClose(code: number, reason: string): void {
    if (this.closingLocally) {
      this.info.logger.debug({ peerRank: this.info.peerRank, role: this.info.role, code }, 'ring link closed');
      return;
    }
    const error = this.describeClose(code, reason);
    const peerCompleted = code === CLOSE_NORMAL ? parseCompleted(reason) : null;
    // A next neighbour that completed its collectives needs no more frames, so the sends on this link are
    // left to finish. The ring decides whether the close ends the running collective.
    const keepWaits = this.info.role === 'next' && peerCompleted !== null;
    this.reportFailure({ error, closeCode: code, peerCompleted }, keepWaits);
  }

  /** Fails the link with a protocol error that this rank detected itself, such as a malformed frame. */
  protected reportProtocolError(message: string): void {
    this.reportFailure({ error: new RingtrainError('RINGTRAIN_ERR_PROTOCOL', message), closeCode: null, peerCompleted: null });
  }

  protected reportFailure(failure: LinkFailure, keepWaits = false): void {
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

  private describeClose(code: number, reason: string): RingtrainError {
    const socketError = this.socketError;
    const errorCode = (socketError as NodeJS.ErrnoException | null)?.code;
    const wsViolation = typeof errorCode === 'string' && errorCode.startsWith('WS_ERR_');
    if (socketError !== null && (wsViolation || (socketError instanceof ClientSocketError && socketError.kind === 'protocol'))) {
      // Both WebSocket ends close the socket themselves when a received frame breaks the protocol or maxPayload.
      return new RingtrainError(
        'RINGTRAIN_ERR_PROTOCOL',
        `rank ${this.info.localRank} rejected a frame from its ${this.describePeer()}: ${socketError.message}` +
          `${wsViolation ? ` (${errorCode})` : ''}; every rank must use the same sliceBytes and a maxPayload of at ` +
          'least header plus sliceBytes',
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
}

/**
 * The listener side of a link, towards the next rank: a `ws` server socket that sends data frames.
 * Server frames are not masked, so `ws` writes each frame's payload to the socket without copying it.
 * The constructor takes over all events of `socket`.
 */
export class SendLink extends RingLink {
  private readonly socket: WebSocket;
  private sendsInFlight = 0;
  /** Settles when the socket has closed, for any reason. */
  readonly closed: Promise<void>;

  constructor(socket: WebSocket, info: RingLinkInfo) {
    super(info);
    this.socket = socket;
    socket.removeAllListeners('message');
    socket.removeAllListeners('close');
    socket.removeAllListeners('error');
    socket.on('message', (data: Buffer, isBinary: boolean) => this.handleMessage(isBinary));
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

  /**
   * Queues `frame` as one binary WebSocket message and calls `onWritten` once the socket has written it,
   * or once the send failed (the failure then goes to the failure handler). `frame` must stay unchanged
   * until then, because ws keeps a reference instead of a copy.
   */
  send(frame: Buffer, onWritten: () => void): void {
    this.sendsInFlight += 1;
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
      onWritten();
    });
  }

  /**
   * Sends `header` and `payload` as one binary message of two WebSocket frames, a fragment and its
   * continuation, so the payload can be a view of the caller's memory instead of a copy. `onWritten` is
   * called like for `send`; both buffers must stay unchanged until then.
   */
  sendWithHeader(header: Buffer, payload: Buffer, onWritten: () => void): void {
    if (payload.length === 0) {
      this.send(header, onWritten);
      return;
    }
    this.socket.send(header, { binary: true, fin: false });
    this.send(payload, onWritten);
  }

  /** Number of sends whose write has not completed yet. */
  get pendingSends(): number {
    return this.sendsInFlight;
  }

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

  private handleMessage(isBinary: boolean): void {
    // Data flows from the listener side to the dialer, so the dialer sends nothing after its hello.
    this.reportProtocolError(
      `rank ${this.info.localRank} received a ${isBinary ? 'binary' : 'text'} frame from its ${this.describePeer()} ` +
        'after the handshake; the dialing side of a ring link only receives',
    );
  }
}
