/**
 * The client side of the log aggregator: a pino destination that ships every line over one WebSocket to
 * `npm run aggregator`. Lines wait in a bounded queue and leave several per frame. While the aggregator is
 * unreachable, the shipper reconnects with exponential backoff and drops the oldest lines once the queue is
 * full, so a lost aggregator never stops or slows the process that logs. Wire format: docs/log-aggregator.md.
 */
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import WebSocket from 'ws';
import { LineQueue } from './line-queue.js';
import type { LineDestination } from './logger.js';
import { DEFAULT_RECONNECT, reconnectDelayMs, type ReconnectOptions } from './reconnect-backoff.js';
import {
  DEFAULT_HANDSHAKE_TIMEOUT_MS,
  DEFAULT_LOG_INTERVAL_MS,
  DEFAULT_MAX_FRAME_BYTES,
  DEFAULT_MAX_QUEUE_LINES,
  type LogShipperOptions,
  validatePositive,
  validateUrl,
} from './shipper-options.js';

export { reconnectDelayMs, type ReconnectOptions } from './reconnect-backoff.js';
export type { LogShipperOptions } from './shipper-options.js';

/** Maximum frames handed to the socket but not yet written to the kernel. Other lines wait in the queue, where they can be dropped. */
const MAX_FRAMES_IN_FLIGHT = 2;

/** Why lines were dropped: evicted from a full queue, longer than maxFrameBytes, or never delivered to the socket. */
type DropCause = 'queueFull' | 'tooLong' | 'notSent';

/**
 * A pino destination that ships lines to the log aggregator. `write` is synchronous, never throws and never
 * waits for the network. Every non-empty string passed to `write` is counted exactly once, in `sentLines`,
 * `droppedLines` or `queuedLines`, except the lines this shipper's own logger writes back to it.
 */
export class LogShipper implements LineDestination {
  /** Lines whose frame was written to the socket, counted even if the aggregator dies before reading them. */
  sentLines = 0;
  /** Lines lost: evicted from a full queue, longer than `maxFrameBytes`, in a frame the socket failed to write, or written after `close`. */
  droppedLines = 0;

  private readonly url: string;
  private readonly token: string | undefined;
  private readonly logger: Logger | undefined;
  private readonly queue: LineQueue;
  private readonly reconnect: ReconnectOptions;
  private readonly maxFrameBytes: number;
  private readonly logIntervalMs: number;
  private readonly handshakeTimeoutMs: number;

  private socket: WebSocket | null = null;
  private isOpen = false;
  private closing = false;
  private closed = false;
  private inFlightLines = 0;
  private framesInFlight = 0;
  private flushScheduled = false;
  private reconnectTimer: NodeJS.Timeout | null = null;
  /** Failed attempts since the last open connection, which set the next backoff delay. */
  private failedAttempts = 0;
  private failuresSinceReport = 0;
  private lastFailureReportMs = -Infinity;
  private lossesSinceReport = 0;
  private connectsSinceReport = 0;
  private lastConnectReportMs = -Infinity;
  private lastLossReportMs = -Infinity;
  /** Lines dropped since the last report, by cause. */
  private dropsSinceReport: Record<DropCause, number> = { queueFull: 0, tooLong: 0, notSent: 0 };
  private dropReportTimer: NodeJS.Timeout | null = null;
  private lastDropReportMs = -Infinity;
  /** True while this shipper calls its own logger, so lines that logger writes back here are skipped instead of queued. */
  private reporting = false;
  private closeWaiters: (() => void)[] = [];

  constructor(options: LogShipperOptions) {
    this.url = options.url;
    this.token = options.token;
    this.logger = options.logger;
    this.reconnect = options.reconnect ?? DEFAULT_RECONNECT;
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.logIntervalMs = options.logIntervalMs ?? DEFAULT_LOG_INTERVAL_MS;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    const maxQueueLines = options.maxQueueLines ?? DEFAULT_MAX_QUEUE_LINES;
    validatePositive('maxQueueLines', maxQueueLines);
    validatePositive('reconnect.initialDelayMs', this.reconnect.initialDelayMs);
    validatePositive('reconnect.maxDelayMs', this.reconnect.maxDelayMs);
    validatePositive('maxFrameBytes', this.maxFrameBytes);
    this.queue = new LineQueue(Math.floor(maxQueueLines));
    validateUrl(this.url);
    this.connect();
  }

  /** Lines accepted but neither sent nor dropped yet: waiting in the queue or in a frame being written. */
  get queuedLines(): number {
    return this.queue.size + this.inFlightLines;
  }

  /** True while a connection to the aggregator is open. */
  get connected(): boolean {
    return this.isOpen;
  }

  /** Queues one line (pino passes one JSON line per call) and schedules a send without waiting for it. */
  write(line: string): void {
    if (this.reporting) return;
    if (typeof line !== 'string' || line.length === 0) return;
    if (this.closed) {
      this.recordDrop('notSent', 1);
      return;
    }
    // The frame carries the line plus '\n' when it lacks one. A UTF-16 unit takes at most 3 UTF-8 bytes, so the
    // exact byte count is needed only for long lines.
    const newlineBytes = line.endsWith('\n') ? 0 : 1;
    if ((line.length + newlineBytes) * 3 > this.maxFrameBytes && Buffer.byteLength(line) + newlineBytes > this.maxFrameBytes) {
      this.recordDrop('tooLong', 1);
      return;
    }
    if (this.queue.push(line)) this.recordDrop('queueFull', 1);
    this.scheduleFlush();
  }

  /**
   * Sends what it can within `timeoutMs`, closes the connection and stops reconnecting. Lines still queued at the
   * deadline are dropped. Resolves once the aggregator acknowledged the close, so it has read every sent frame.
   */
  async close(timeoutMs = 2_000): Promise<void> {
    if (this.closed) return;
    this.closing = true;
    if (this.reconnectTimer !== null) {
      // One last immediate attempt, so lines queued during an outage still get a chance within the deadline.
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
      this.connect();
    }
    const finished = new Promise<void>((resolve) => this.closeWaiters.push(resolve));
    this.tryFinishClose();
    let deadline: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => {
      deadline = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([finished, timedOut]);
    clearTimeout(deadline);
    this.shutDown();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || !this.isOpen) return;
    this.flushScheduled = true;
    // setImmediate lets one burst of synchronous writes share a frame.
    setImmediate(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /** Sends queued lines in frames of at most maxFrameBytes while few enough frames are waiting on the socket. */
  private flush(): void {
    const socket = this.socket;
    if (socket === null || !this.isOpen) return;
    while (this.queue.size > 0 && this.framesInFlight < MAX_FRAMES_IN_FLIGHT) {
      const parts: string[] = [];
      let characters = 0;
      // Counting UTF-16 units against a third of the byte limit keeps the UTF-8 payload within it.
      const characterBudget = this.maxFrameBytes / 3;
      for (let next = this.queue.peek(); next !== undefined; next = this.queue.peek()) {
        if (parts.length > 0 && characters + next.length + 1 > characterBudget) break;
        this.queue.shift();
        parts.push(next.endsWith('\n') ? next : next + '\n');
        characters += next.length + 1;
      }
      const lineCount = parts.length;
      this.framesInFlight++;
      this.inFlightLines += lineCount;
      socket.send(parts.join(''), { binary: false }, (error) => {
        this.framesInFlight--;
        this.inFlightLines -= lineCount;
        if (error) this.recordDrop('notSent', lineCount);
        else this.sentLines += lineCount;
        this.flush();
        this.tryFinishClose();
      });
    }
  }

  private connect(): void {
    if (this.closed || this.socket !== null) return;
    const headers: Record<string, string> = {};
    if (this.token !== undefined) headers.Authorization = `Bearer ${this.token}`;
    let socket: WebSocket;
    try {
      socket = new WebSocket(this.url, { headers, handshakeTimeout: this.handshakeTimeoutMs, perMessageDeflate: false, maxPayload: 64 * 1024 });
    } catch (error) {
      this.connectFailed(error as Error);
      return;
    }
    this.socket = socket;
    let failure: Error | null = null;

    socket.on('upgrade', (response: IncomingMessage) => {
      // An idle connection to the aggregator must not keep the logging process alive. close() flushes before exit.
      response.socket.unref();
    });
    socket.on('open', () => {
      this.isOpen = true;
      const attempts = this.failedAttempts;
      this.failedAttempts = 0;
      this.failuresSinceReport = 0;
      this.connectsSinceReport++;
      const nowMs = Date.now();
      if (nowMs - this.lastConnectReportMs >= this.logIntervalMs) {
        const fields = { url: this.url, failedAttempts: attempts, connects: this.connectsSinceReport, queuedLines: this.queue.size };
        this.report('info', fields, 'log shipper connected to the aggregator');
        this.lastConnectReportMs = nowMs;
        this.connectsSinceReport = 0;
      }
      this.flush();
      this.tryFinishClose();
    });
    // The aggregator sends no data frames, so any message is ignored rather than trusted.
    socket.on('message', () => undefined);
    socket.on('error', (error) => {
      failure = error;
    });
    socket.on('close', (code, reason) => {
      const wasOpen = this.isOpen;
      this.isOpen = false;
      this.socket = null;
      if (wasOpen && !this.closing) {
        this.connectionLost(code, reason.toString(), failure);
      } else if (!wasOpen) {
        this.connectFailed(failure ?? new Error(`connection closed with code ${code}`));
      }
      this.tryFinishClose();
    });
  }

  private connectionLost(code: number, reason: string, error: Error | null): void {
    this.lossesSinceReport++;
    const nowMs = Date.now();
    if (nowMs - this.lastLossReportMs >= this.logIntervalMs) {
      this.report(
        'warn',
        { url: this.url, code, reason, error: error?.message, losses: this.lossesSinceReport, queuedLines: this.queue.size },
        'log shipper lost the aggregator connection; reconnecting',
      );
      this.lastLossReportMs = nowMs;
      this.lossesSinceReport = 0;
    }
    this.scheduleReconnect();
  }

  private connectFailed(error: Error): void {
    this.socket = null;
    this.failuresSinceReport++;
    const nowMs = Date.now();
    if (!this.closing && nowMs - this.lastFailureReportMs >= this.logIntervalMs) {
      const rejected = /: 401$/.test(error.message);
      this.report(
        'warn',
        { url: this.url, error: error.message, failedAttempts: this.failuresSinceReport, queuedLines: this.queue.size, droppedLines: this.droppedLines },
        rejected
          ? 'log aggregator rejected the token (HTTP 401); check RINGTRAIN_TOKEN on both sides'
          : 'log shipper cannot reach the aggregator; retrying with backoff',
      );
      this.lastFailureReportMs = nowMs;
      this.failuresSinceReport = 0;
    }
    this.failedAttempts++;
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.closing || this.closed || this.reconnectTimer !== null) return;
    const delay = reconnectDelayMs(this.failedAttempts, this.reconnect);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
    this.reconnectTimer.unref();
  }

  /** Resolves close() once every queued line was sent, or at once when there is nothing left to try. */
  private tryFinishClose(): void {
    if (!this.closing || this.closeWaiters.length === 0) return;
    const socket = this.socket;
    if (socket === null) {
      // Neither connected nor connecting: the last attempt failed, so waiting longer cannot send anything.
      if (this.reconnectTimer === null) this.resolveClose();
      return;
    }
    if (!this.isOpen) return;
    if (this.queue.size > 0 || this.framesInFlight > 0) return;
    if (socket.readyState === WebSocket.OPEN) {
      socket.once('close', () => this.resolveClose());
      socket.close(1000, 'log shipper closed');
    }
  }

  private resolveClose(): void {
    for (const resolve of this.closeWaiters.splice(0)) resolve();
  }

  /** Ends everything at close(): the socket, timers, and the lines that could not be sent. */
  private shutDown(): void {
    this.closed = true;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.socket?.terminate();
    this.socket = null;
    this.isOpen = false;
    const left = this.queue.size;
    while (this.queue.size > 0) this.queue.shift();
    if (left > 0) this.recordDrop('notSent', left);
    if (this.dropReportTimer !== null) clearTimeout(this.dropReportTimer);
    this.dropReportTimer = null;
    if (Object.values(this.dropsSinceReport).some((count) => count > 0)) this.reportDrops();
  }

  private recordDrop(cause: DropCause, count: number): void {
    this.droppedLines += count;
    this.dropsSinceReport[cause] += count;
    if (this.dropReportTimer !== null || this.logger === undefined) return;
    // Drops happen inside write(), so the report waits for a timer and logging never runs inside write().
    const waitMs = Math.max(0, this.lastDropReportMs + this.logIntervalMs - Date.now());
    this.dropReportTimer = setTimeout(() => {
      this.dropReportTimer = null;
      this.reportDrops();
    }, waitMs);
    this.dropReportTimer.unref();
  }

  private reportDrops(): void {
    const causes = this.dropsSinceReport;
    this.dropsSinceReport = { queueFull: 0, tooLong: 0, notSent: 0 };
    this.lastDropReportMs = Date.now();
    const dropped = causes.queueFull + causes.tooLong + causes.notSent;
    this.report(
      'warn',
      { url: this.url, dropped, ...causes, droppedLines: this.droppedLines, maxQueueLines: this.queue.capacity, maxFrameBytes: this.maxFrameBytes, connected: this.isOpen },
      `log shipper dropped ${dropped} log lines`,
    );
  }

  private report(level: 'info' | 'warn', fields: Record<string, unknown>, message: string): void {
    if (this.logger === undefined) return;
    this.reporting = true;
    try {
      this.logger[level](fields, message);
    } catch {
      // A failing diagnostic logger must not break shipping. The counters still record what happened.
    } finally {
      this.reporting = false;
    }
  }
}
