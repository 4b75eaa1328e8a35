/** The settings of a LogShipper, their defaults and the checks that run when a shipper is constructed. */
import type { Logger } from 'pino';
import type { ReconnectOptions } from './reconnect-backoff.js';

/** Settings of a LogShipper. */
export interface LogShipperOptions {
  /** Aggregator address, e.g. `ws://127.0.0.1:9400`. */
  url: string;
  /** Shared secret sent as `Authorization: Bearer <token>`. Omit it for an aggregator started without a token. */
  token?: string;
  /** Logger for the shipper's own reports (connects, failures, drops). It should write somewhere else than this shipper. */
  logger?: Logger;
  /** Maximum lines kept while the aggregator is slow or unreachable. Beyond it the oldest are dropped (default 10000). */
  maxQueueLines?: number;
  reconnect?: ReconnectOptions;
  /** Maximum payload of one frame, below the aggregator's 1 MiB limit (default 512 KiB). */
  maxFrameBytes?: number;
  /** Minimum time between two reports of the same kind to `logger` (default 30000 ms). */
  logIntervalMs?: number;
  /** Time allowed for the TCP connect and the WebSocket handshake (default 5000 ms). */
  handshakeTimeoutMs?: number;
}

export const DEFAULT_MAX_QUEUE_LINES = 10_000;
export const DEFAULT_MAX_FRAME_BYTES = 512 * 1024;
export const DEFAULT_LOG_INTERVAL_MS = 30_000;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;

export function validatePositive(name: string, value: number): void {
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`LogShipper ${name} must be a positive number (got ${value}); pass a value such as 1000`);
  }
}

/** Checks the URL at construction, so a typo fails once instead of on every reconnect. */
export function validateUrl(url: string): void {
  let protocol: string;
  try {
    protocol = new URL(url).protocol;
  } catch {
    throw new TypeError(`LogShipper url is not a valid URL (got '${url}'); pass one such as ws://127.0.0.1:9400`);
  }
  if (protocol !== 'ws:' && protocol !== 'wss:') {
    throw new TypeError(`LogShipper url must start with ws:// or wss:// (got '${url}'); pass one such as ws://127.0.0.1:9400`);
  }
}
