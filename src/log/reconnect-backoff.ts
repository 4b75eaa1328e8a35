/** The shipper's reconnect backoff: exponential delays with equal jitter between connection attempts. */

/** Reconnect timing: the delay doubles from `initialDelayMs` after each failed attempt, up to `maxDelayMs`. */
export interface ReconnectOptions {
  initialDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RECONNECT: ReconnectOptions = { initialDelayMs: 200, maxDelayMs: 30_000 };

/**
 * Returns the wait before reconnect attempt `attempt` (0 for the first): the exponential delay capped at
 * `maxDelayMs`, then "equal jitter", a uniform value in [delay/2, delay], so restarted clients spread out.
 */
export function reconnectDelayMs(attempt: number, options: ReconnectOptions, random: () => number = Math.random): number {
  const exponent = Math.min(attempt, 30);
  const delay = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** exponent);
  return delay / 2 + random() * (delay / 2);
}
