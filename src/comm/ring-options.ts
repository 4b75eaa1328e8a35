/**
 * Validation of the options of `Ring.connect` and of one collective call, with messages that name the config
 * key to change.
 */
import { endianness } from 'node:os';
import { COMPRESSIONS, type Compression } from './ring-buckets.js';
import { FRAME_HEADER_BYTES } from './ring-frame.js';
import { MAX_HANDSHAKE_BYTES } from './ring-hello.js';
import { DEFAULT_SLICE_BYTES, type RingConnectOptions } from './ring-allreduce.js';

/** Validates the options of `Ring.connect` and returns the slice size in elements. */
export function validateOptions(options: RingConnectOptions): number {
  const { rank, worldSize, runId, timeoutMs } = options;

  if (endianness() !== 'LE') {
    // NOTE: frames carry raw little-endian float32 bytes; a big-endian host would need byte swapping.
    throw new Error(`ring all-reduce needs a little-endian host (this host is ${endianness()})`);
  }
  if (!Number.isInteger(worldSize) || worldSize < 1 || worldSize > 0xffffffff) {
    throw new RangeError(`ring worldSize must be a positive integer (got ${String(worldSize)})`);
  }
  if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize) {
    throw new RangeError(`ring rank must be an integer from 0 to ${worldSize - 1} (got ${String(rank)})`);
  }
  if (typeof runId !== 'string' || runId.length === 0) {
    throw new RangeError(`ring runId must be a non-empty string (got ${describeValue(runId)})`);
  }
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw new RangeError(`ring timeoutMs must be a positive number of milliseconds (got ${String(timeoutMs)}); set allreduce.timeoutMs`);
  }

  const { connectTimeoutMs } = options;
  if (connectTimeoutMs !== undefined && !(Number.isFinite(connectTimeoutMs) && connectTimeoutMs > 0)) {
    throw new RangeError(`ring connectTimeoutMs must be a positive number of milliseconds (got ${String(connectTimeoutMs)})`);
  }

  if (options.bucketBytes !== undefined) {
    bucketElementsOf(options.bucketBytes);
  }
  if (options.compression !== undefined) {
    checkCompression(options.compression);
  }

  const sliceBytes = options.sliceBytes ?? DEFAULT_SLICE_BYTES;
  if (!Number.isInteger(sliceBytes) || sliceBytes < 4) {
    throw new RangeError(`ring sliceBytes must be an integer of at least 4 bytes (got ${String(sliceBytes)})`);
  }
  const sliceElements = Math.floor(sliceBytes / 4);
  const minPayload = Math.max(FRAME_HEADER_BYTES + sliceElements * 4, MAX_HANDSHAKE_BYTES);
  if (options.maxPayload !== undefined && !(Number.isInteger(options.maxPayload) && options.maxPayload >= minPayload)) {
    throw new RangeError(
      `ring maxPayload must be an integer of at least ${minPayload} bytes, the header plus sliceBytes and no less ` +
        `than ${MAX_HANDSHAKE_BYTES} for the handshake ` +
        `(got ${String(options.maxPayload)}); raise maxPayload or lower sliceBytes`,
    );
  }

  if (worldSize > 1) {
    for (const [name, address] of [['previous', options.previous], ['next', options.next]] as const) {
      if (typeof address?.host !== 'string' || !Number.isInteger(address.port) || address.port < 1 || address.port > 65535) {
        throw new RangeError(`ring ${name} address must have a host string and a port from 1 to 65535 (got ${JSON.stringify(address)})`);
      }
    }
  }
  return sliceElements;
}

/** Returns the bucket length in elements for `bucketBytes`; raises a RangeError below one float32 value. */
export function bucketElementsOf(bucketBytes: number): number {
  if (!Number.isInteger(bucketBytes) || bucketBytes < 4) {
    throw new RangeError(
      `ring bucketBytes must be an integer of at least 4 bytes (got ${String(bucketBytes)}); set allreduce.bucketBytes`,
    );
  }
  return Math.floor(bucketBytes / 4);
}

/** Raises a RangeError unless `compression` is one of COMPRESSIONS. */
export function checkCompression(compression: unknown): void {
  if (!COMPRESSIONS.includes(compression as Compression)) {
    throw new RangeError(
      `ring compression must be one of ${COMPRESSIONS.join(', ')} (got ${describeValue(compression)}); set allreduce.compression`,
    );
  }
}

/** Describes a value for a message: its constructor name for objects, else its type and value. */
export function describeValue(value: unknown): string {
  if (value === null) {
    return 'null';
  }
  if (typeof value === 'object') {
    return (value as object).constructor?.name ?? 'object';
  }
  return `${typeof value} ${String(value)}`;
}
