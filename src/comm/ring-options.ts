/**
 * The options of `Ring.connect` and of one collective call: their types, their defaults, and their validation,
 * with messages that name the config key to change.
 */
import { endianness } from 'node:os';
import type { Logger } from 'pino';
import { COMPRESSIONS, type Compression } from './ring-buckets.js';
import type { RingPeerAddress } from './ring-dial.js';
import { FRAME_HEADER_BYTES } from './ring-frame.js';
import { MAX_HANDSHAKE_BYTES } from './ring-hello.js';
import type { RingListener } from './ring-listener.js';

/**
 * Default size of the slices that a rank cuts its own chunk into: 4 MiB. Since the add runs as a SIMD kernel,
 * the cost per frame (system calls, wake-ups of the next rank) outweighs finer pipelining on a 2-vCPU
 * machine: 2 to 8 MiB slices used less CPU time per call than 1 MiB ones with 2 and 4 ranks at 16 and 64 MiB
 * (docs/benchmarks.md). A frame of the pool takes a slice plus its header of the kernel memory.
 */
export const DEFAULT_SLICE_BYTES = 4 * 1024 * 1024;

/**
 * Default largest bucket of a bucketed all-reduce, in float32 bytes: 64 MiB. On an idle 2-vCPU machine, 64 MiB
 * buckets beat 1 and 4 MiB ones in three of four raw all-reduce cells (2 and 4 ranks, 16 and 64 MiB) and gave the
 * shortest training step of the default job, whose 8 MB of gradients then go as one bucket (docs/benchmarks.md).
 * Smaller buckets cost CPU per call and pay off only where flattening can overlap the exchange.
 */
export const DEFAULT_BUCKET_BYTES = 64 * 1024 * 1024;

/** Options of one `Ring.beginAllReduce` call; both default to the ring's connect options. */
export interface AllReduceOptions {
  /** Largest bucket in float32 bytes (rounded down to whole values); every rank must pass the same. */
  bucketBytes?: number;
  /** Wire format of the values; every rank must pass the same. */
  compression?: Compression;
}

/** Options of `Ring.connect`. */
export interface RingConnectOptions {
  /** This worker's listener, opened before it joined the coordinator. */
  listener: RingListener;
  rank: number;
  worldSize: number;
  /** Run id; links from another run are rejected. */
  runId: string;
  /**
   * Listener address of rank (rank - 1) mod worldSize. Its Unix socket is dialed when the listener's
   * localTransport is unix and both listeners have the same nodeId, else its TCP address.
   */
  previous: RingPeerAddress;
  /** Listener address of rank (rank + 1) mod worldSize; that rank dials in, so this is used for logs only. */
  next: RingPeerAddress;
  /** Limit on every wait inside a collective, in milliseconds; also the connect limit unless connectTimeoutMs is set. */
  timeoutMs: number;
  /** Time allowed for dialing the previous rank and being dialed by the next, in milliseconds; default timeoutMs. */
  connectTimeoutMs?: number;
  logger: Logger;
  /**
   * Largest payload of a frame this rank sends, in bytes (rounded down to whole float32 values); smaller
   * slices overlap sending, receiving and adding more finely. Default DEFAULT_SLICE_BYTES.
   */
  sliceBytes?: number;
  /**
   * Largest WebSocket message accepted from the previous neighbour, in bytes. It must fit the 40-byte
   * header plus the previous neighbour's sliceBytes, and the 4096-byte handshake limit. The default is
   * the larger of the two, computed with this rank's sliceBytes.
   */
  maxPayload?: number;
  /** Run token presented when dialing the previous rank, or null for an open run. */
  token?: string | null;
  /** Default largest bucket of `allReduce` and `beginAllReduce`, in float32 bytes; default DEFAULT_BUCKET_BYTES. */
  bucketBytes?: number;
  /**
   * Default wire format of the values: 'none' (float32), 'fp16' or 'bf16' (16-bit values, float32 sums);
   * default 'none'. A ring of one rank sends nothing and leaves the buffer unchanged whatever this is.
   */
  compression?: Compression;
}

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
