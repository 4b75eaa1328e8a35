/**
 * The dialing side of a ring link: each rank dials its previous neighbour and receives the bulk data on
 * this client socket. Data flows from server to client because a client must mask every frame it sends,
 * and masking costs a pass over the data that unmasked server frames avoid.
 */
import type { Logger } from 'pino';
import { RingtrainError } from '../errors.js';
import {
  CLOSE_REJECTED,
  MAX_HANDSHAKE_BYTES,
  RING_PATH,
  describeMismatch,
  encodeHandshake,
  parseHandshake,
  toCloseReason,
} from './ring-hello.js';
import { ReceiveLink } from './ring-receive-link.js';
import { chooseDialTarget, type DialTarget, type LinkTransport, type LocalTransport } from './ring-unix-socket.js';
import { RingClientSocket } from './ring-ws-client.js';

/** The address of a ring listener: its TCP address, and its Unix socket for ranks on the same node. */
export interface RingPeerAddress {
  host: string;
  port: number;
  /** The listener's Unix socket; null or absent when it opened none. */
  unixSocketPath?: string | null;
  /** The listener's node identity (see `nodeIdentity`); the Unix socket is dialed only when it equals the dialer's. */
  nodeId?: string;
}

/** Options of `dialPrevious`. */
export interface DialOptions {
  address: RingPeerAddress;
  runId: string;
  localRank: number;
  previousRank: number;
  worldSize: number;
  /** Retries stop and the dial fails after this time. */
  timeoutMs: number;
  /** Largest data frame accepted from the previous neighbour, in bytes. */
  maxPayload: number;
  logger: Logger;
  /** Aborting stops retries and closes a socket that is still in its handshake. */
  signal: AbortSignal;
  /** Run token presented to the listener, or null. */
  token: string | null;
  /** With `unix`, a neighbour on the node `localNodeId` is dialed on its Unix socket. */
  localTransport: LocalTransport;
  localNodeId: string;
}

const FIRST_RETRY_DELAY_MS = 25;
const MAX_RETRY_DELAY_MS = 1000;

/** Outcome of one failed attempt: `final` failures (a rejected hello) are not retried. */
class AttemptError extends Error {
  readonly final: boolean;

  constructor(message: string, final: boolean) {
    super(message);
    this.final = final;
  }
}

/**
 * Dials the previous neighbour's listener, sends the hello and resolves with the link once the welcome
 * names the expected rank and run. It uses the listener's Unix socket when `chooseDialTarget` allows, else
 * TCP; the choice holds for every attempt. Connection failures are retried with exponential backoff from
 * 25 ms up to 1 s until `timeoutMs` has passed.
 * Raises RINGTRAIN_ERR_PROTOCOL when the listener rejects the hello or its welcome names another rank or run.
 * Raises RINGTRAIN_ERR_COLLECTIVE_TIMEOUT when no attempt succeeds in time.
 */
export async function dialPrevious(options: DialOptions): Promise<ReceiveLink> {
  const { address, logger } = options;
  const target = chooseDialTarget(address, options.localTransport, options.localNodeId);
  if (target.transport === 'tcp' && target.unexpected) {
    logger.warn({ previousRank: options.previousRank, reason: target.reason }, 'ring dial uses TCP to a neighbour on the same node');
  }
  const url =
    target.transport === 'unix'
      ? `ws+unix://${target.socketPath}:${RING_PATH}`
      : `ws://${formatHost(address.host)}:${address.port}${RING_PATH}`;
  const deadline = Date.now() + options.timeoutMs;
  let delayMs = FIRST_RETRY_DELAY_MS;
  let attempts = 0;
  for (;;) {
    attempts += 1;
    const remainingMs = deadline - Date.now();
    try {
      const link = await attempt(url, target, options, remainingMs);
      logger.debug({ url, attempts }, 'ring dial succeeded');
      return link;
    } catch (error) {
      if (options.signal.aborted) {
        throw options.signal.reason;
      }
      const failure = error as AttemptError;
      if (failure.final) {
        throw new RingtrainError(
          'RINGTRAIN_ERR_PROTOCOL',
          `rank ${options.localRank} dialed its previous neighbour rank ${options.previousRank} at ${url}, ` +
            `but the handshake failed: ${failure.message}; check that the coordinator sent the same run id and ` +
            'ring addresses to every worker',
        );
      }
      const waitMs = Math.min(delayMs, deadline - Date.now());
      if (waitMs <= 0) {
        throw new RingtrainError(
          'RINGTRAIN_ERR_COLLECTIVE_TIMEOUT',
          `rank ${options.localRank} could not connect to its previous neighbour rank ${options.previousRank} at ` +
            `${url} within ${options.timeoutMs} ms after ${attempts} attempts (last error: ${failure.message}); ` +
            `check that rank ${options.previousRank} is running and listening there, or raise allreduce.timeoutMs`,
        );
      }
      logger.debug({ url, attempts, err: failure.message, retryInMs: waitMs }, 'ring dial failed, retrying');
      await sleep(waitMs, options.signal);
      delayMs = Math.min(delayMs * 2, MAX_RETRY_DELAY_MS);
    }
  }
}

function attempt(url: string, target: DialTarget, options: DialOptions, remainingMs: number): Promise<ReceiveLink> {
  const { address } = options;
  const transport: LinkTransport = target.transport;
  return new Promise<ReceiveLink>((resolve, reject) => {
    let settled = false;
    const expected = { runId: options.runId, rank: options.previousRank, worldSize: options.worldSize };
    const { socket, opened } = RingClientSocket.connect(
      {
        host: address.host,
        port: address.port,
        socketPath: target.transport === 'unix' ? target.socketPath : null,
        path: RING_PATH,
        maxPayload: options.maxPayload,
        maxTextBytes: MAX_HANDSHAKE_BYTES,
        token: options.token,
      },
      {
        text: (text) => handleWelcome(text),
        binary: () => {
          fail(new AttemptError('the listener sent a binary frame before its welcome', true), CLOSE_REJECTED);
          return { buffer: () => Buffer.alloc(1), wrote: () => undefined, end: () => undefined };
        },
        closed: (code, reason, error) => {
          const detail = error === null ? '' : ` after ${error.message}`;
          fail(
            new AttemptError(`listener closed the connection (code ${code}${reason ? `: ${reason}` : ''})${detail}`, code === CLOSE_REJECTED),
          );
        },
      },
    );
    const fail = (error: AttemptError, closeCode?: number): void => {
      if (settled) {
        return;
      }
      settled = true;
      clearTimeout(attemptTimer);
      options.signal.removeEventListener('abort', onAbort);
      if (closeCode === undefined) {
        socket.terminate();
      } else {
        // Send the close frame so the listener logs the reason; destroy the socket if it never replies.
        socket.close(closeCode, toCloseReason(error.message));
        setTimeout(() => socket.terminate(), 1000).unref();
      }
      reject(error);
    };
    const onAbort = (): void => fail(new AttemptError('dial aborted', true));
    options.signal.addEventListener('abort', onAbort);
    // Bounds the connect, the HTTP upgrade and the wait for the welcome together.
    const attemptTimer = setTimeout(() => {
      fail(new AttemptError(`no welcome within ${Math.round(remainingMs)} ms`, false));
    }, Math.max(1, remainingMs));

    opened.then(
      () => {
        if (!settled) {
          socket.sendText(encodeHandshake('hello', options.runId, options.localRank, options.worldSize));
        }
      },
      (error: Error & { kind?: string }) => fail(new AttemptError(error.message, error.kind === 'http')),
    );

    const handleWelcome = (text: string): void => {
      if (settled) {
        return;
      }
      let mismatch: string | null;
      try {
        const welcome = parseHandshake(Buffer.from(text, 'utf8'), false, 'welcome', `listener ${url}`);
        mismatch = describeMismatch(welcome, expected);
      } catch (error) {
        mismatch = (error as Error).message;
      }
      if (mismatch !== null) {
        fail(new AttemptError(`the welcome does not match: ${mismatch}`, true), CLOSE_REJECTED);
        return;
      }
      settled = true;
      clearTimeout(attemptTimer);
      options.signal.removeEventListener('abort', onAbort);
      // The link takes over the socket inside this message event, before any data frame is read.
      resolve(
        new ReceiveLink(
          socket,
          {
            peerRank: options.previousRank,
            localRank: options.localRank,
            role: 'previous',
            remote: target.transport === 'unix' ? `unix:${target.socketPath}` : `${formatHost(address.host)}:${address.port}`,
            transport,
            logger: options.logger,
          },
          options.maxPayload,
        ),
      );
    };
  });
}

/** Brackets an IPv6 literal so it can sit in a URL. */
function formatHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
