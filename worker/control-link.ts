import WebSocket from 'ws';
import type { Logger } from 'pino';
import {
  decodeCoordinatorMessage,
  encodeMessage,
  MAX_CONTROL_FRAME_BYTES,
  type CoordinatorMessage,
  type WorkerMessage,
} from '../src/comm/protocol.js';
import { RingtrainError } from '../src/errors.js';

/** Delay between connection attempts while the coordinator is not accepting yet. */
const RETRY_DELAY_MS = 200;

/**
 * A worker's WebSocket connection to the coordinator. Incoming messages are queued and read in order with
 * `next()`. `shutdown` messages also go to `onShutdown` at once, so a worker stuck in a step still obeys them.
 */
export class ControlLink {
  private readonly queue: CoordinatorMessage[] = [];
  private waiter: ((message: CoordinatorMessage | null) => void) | null = null;
  private closed = false;
  onShutdown: (message: CoordinatorMessage & { type: 'shutdown' }) => void = () => {};
  onClose: () => void = () => {};

  private constructor(
    private readonly socket: WebSocket,
    private readonly logger: Logger,
  ) {
    socket.on('message', (data: Buffer) => this.receive(data));
    socket.on('close', (code, reason) => {
      this.closed = true;
      this.logger.info({ code, reason: reason.toString() }, 'control link closed');
      this.waiter?.(null);
      this.waiter = null;
      this.onClose();
    });
    socket.on('error', (error) => this.logger.error({ err: error }, 'control link error'));
  }

  /** Connects to the coordinator at `url`, retrying until `timeoutMs` passes. */
  static async connect(url: string, timeoutMs: number, logger: Logger, token: string | null = null): Promise<ControlLink> {
    const deadline = Date.now() + timeoutMs;
    let attempt = 0;
    for (;;) {
      attempt++;
      try {
        const socket = await openSocket(url, token);
        logger.info({ url, attempt }, 'connected to coordinator');
        return new ControlLink(socket, logger);
      } catch (error) {
        if (/Unexpected server response: 401/.test((error as Error).message)) {
          throw new RingtrainError(
            'RINGTRAIN_ERR_PROTOCOL',
            `the coordinator at ${url} rejected this worker's run token (HTTP 401); set RINGTRAIN_TOKEN (or --token) ` +
              'to the same secret on every node',
          );
        }
        if (Date.now() + RETRY_DELAY_MS > deadline) {
          throw new RingtrainError(
            'RINGTRAIN_ERR_JOIN_TIMEOUT',
            `could not connect to the coordinator at ${url} within ${timeoutMs} ms ` +
              `(last error: ${(error as Error).message}); check that the coordinator is running and the address is right`,
          );
        }
        logger.debug({ url, attempt, err: error }, 'coordinator not reachable yet; retrying');
        await new Promise((resolve) => setTimeout(resolve, RETRY_DELAY_MS));
      }
    }
  }

  /** Sends one message; messages sent after the link closed are dropped. */
  send(message: WorkerMessage): void {
    if (this.closed || this.socket.readyState !== WebSocket.OPEN) return;
    this.socket.send(encodeMessage(message), { binary: true });
  }

  /** Returns the next message from the coordinator, or null once the link has closed. */
  next(): Promise<CoordinatorMessage | null> {
    const message = this.queue.shift();
    if (message !== undefined) return Promise.resolve(message);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  /** Closes the link once buffered frames are sent, waiting at most `timeoutMs`. */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.socket.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.socket.terminate();
        resolve();
      }, timeoutMs);
      this.socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.close(1000, 'worker exiting');
    });
  }

  private receive(data: Buffer): void {
    let message: CoordinatorMessage;
    try {
      message = decodeCoordinatorMessage(data);
    } catch (error) {
      this.logger.error({ err: error, bytes: data.length }, 'dropped an invalid frame from the coordinator');
      return;
    }
    if (message.type === 'shutdown') this.onShutdown(message);
    if (this.waiter !== null) {
      const resolve = this.waiter;
      this.waiter = null;
      resolve(message);
    } else {
      this.queue.push(message);
    }
  }
}

function openSocket(url: string, token: string | null): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const headers = token === null ? undefined : { Authorization: `Bearer ${token}` };
    const socket = new WebSocket(url, { perMessageDeflate: false, maxPayload: MAX_CONTROL_FRAME_BYTES, headers });
    socket.once('open', () => {
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (error) => {
      socket.terminate();
      reject(error);
    });
  });
}
