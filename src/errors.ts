/**
 * Errors that ringtrain raises on purpose. Each has a stable `code` (listed in docs/errors.md) so that
 * callers and tests can branch on the condition instead of parsing the message.
 */

/** Stable error codes, one per condition. */
export type ErrorCode =
  | 'RINGTRAIN_ERR_CONFIG'
  | 'RINGTRAIN_ERR_USAGE'
  | 'RINGTRAIN_ERR_BACKEND'
  | 'RINGTRAIN_ERR_DATA'
  | 'RINGTRAIN_ERR_JOIN_TIMEOUT'
  | 'RINGTRAIN_ERR_PROTOCOL'
  | 'RINGTRAIN_ERR_PEER_CLOSED'
  | 'RINGTRAIN_ERR_COLLECTIVE_TIMEOUT'
  | 'RINGTRAIN_ERR_PARAMETER_MISMATCH'
  | 'RINGTRAIN_ERR_WORKER_FAILED'
  | 'RINGTRAIN_ERR_NON_FINITE'
  | 'RINGTRAIN_ERR_HUNG'
  | 'RINGTRAIN_ERR_CHECKPOINT';

/** Base class of every error ringtrain raises on purpose. */
export class RingtrainError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RingtrainError';
    this.code = code;
  }
}

/** A config file, config value or `--set` override that is invalid; raised before any process starts. */
export class ConfigError extends RingtrainError {
  constructor(message: string) {
    super('RINGTRAIN_ERR_CONFIG', message);
    this.name = 'ConfigError';
  }
}

/**
 * Reports whether `code` names a problem in the user's config or data. Such an error recurs in every attempt, so
 * the launcher reports it once with exit code 2 and does not restart.
 */
export function isUserErrorCode(code: string): boolean {
  return code === 'RINGTRAIN_ERR_CONFIG' || code === 'RINGTRAIN_ERR_DATA';
}

/** Returns true when `error` is a RingtrainError with the given code. */
export function hasCode(error: unknown, code: ErrorCode): boolean {
  return error instanceof RingtrainError && error.code === code;
}
