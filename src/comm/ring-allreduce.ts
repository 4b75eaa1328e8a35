/**
 * The ring all-reduce that workers use to sum gradients. Ranks 0..N-1 form a ring in rank order. Each rank
 * dials its previous neighbour and accepts its next neighbour on its RingListener, and data flows from
 * each rank to the next. docs/ring-wire.md describes the wire format.
 *
 * Results are deterministic. Each chunk of the buffer is summed along one path around the ring, in a fixed
 * order that starts at the rank owning the chunk. The final sums are then copied bit for bit to every rank.
 * Every rank therefore ends with identical bits, and a rerun with the same inputs and the same rank
 * assignment gives the same bits. The slice size does not change the result, because slicing never
 * changes which values are added in which order.
 */
import { endianness } from 'node:os';
import type { Logger } from 'pino';
import { hasCode } from '../errors.js';
import { BucketedRun, COMPRESSIONS, checkFillIndex, elementTypeOf, type BucketedAllReduce, type Compression } from './ring-buckets.js';
import { CollectiveBuffers } from './ring-frame-pool.js';
import { dialPrevious, type RingPeerAddress } from './ring-dial.js';
import { FRAME_HEADER_BYTES } from './ring-frame.js';
import { CLOSE_ABORTED, CLOSE_NORMAL, MAX_HANDSHAKE_BYTES } from './ring-hello.js';
import { normalCloseReason, type LinkFailure, type SendLink } from './ring-link.js';
import type { RingListener } from './ring-listener.js';
import type { ReceiveLink } from './ring-receive-link.js';

export type { RingPeerAddress } from './ring-dial.js';
export type { BucketedAllReduce, Compression } from './ring-buckets.js';

/**
 * Default size of the slices that a rank cuts its own chunk into; 1 MiB. With 2 and 4 ranks on a 2-vCPU
 * machine, 256 KiB slices used up to a third more CPU time and 4 MiB slices about the same (the
 * benchmark's ranks at 16 and 64 MiB), so the smaller of the two good sizes keeps frames small.
 */
export const DEFAULT_SLICE_BYTES = 1024 * 1024;

/**
 * Default largest bucket of a bucketed all-reduce, in float32 bytes; 1 MiB. In one benchmark run with 2 and
 * 4 ranks at 16 and 64 MiB on a 2-vCPU machine, 1 MiB was the fastest of whole, 1, 4 and 16 MiB buckets
 * at every size (docs/benchmarks.md). NOTE: that run had heavy other load (load average 4 to 15), so the
 * differences are not firmly established.
 */
export const DEFAULT_BUCKET_BYTES = 1024 * 1024;

/** Options of one `Ring.beginAllReduce` call; both default to the ring's connect options. */
export interface AllReduceOptions {
  /** Largest bucket in float32 bytes (rounded down to whole values); every rank must pass the same. */
  bucketBytes?: number;
  /** Wire format of the values; every rank must pass the same. */
  compression?: Compression;
}

/** Time that `close()` waits for a neighbour's close frame before destroying the socket. */
const CLOSE_GRACE_MS = 2000;

/** Options of `Ring.connect`. */
export interface RingConnectOptions {
  /** This worker's listener, opened before it joined the coordinator. */
  listener: RingListener;
  rank: number;
  worldSize: number;
  /** Run id; links from another run are rejected. */
  runId: string;
  /** Listener address of rank (rank - 1) mod worldSize. */
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
   * Largest WebSocket message accepted from the previous neighbour, in bytes. It must fit the 32-byte
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

type RingState = 'open' | 'running' | 'closed';

/** A connected ring of `worldSize` ranks that sums Float32Arrays across all of them. */
export class Ring {
  readonly rank: number;
  readonly worldSize: number;
  readonly runId: string;
  private readonly logger: Logger;
  private readonly timeoutMs: number;
  private readonly sliceElements: number;
  private readonly bucketBytes: number;
  private readonly compression: Compression;
  private readonly previous: ReceiveLink | null;
  private readonly next: SendLink | null;
  private readonly buffers = new CollectiveBuffers();
  private state: RingState = 'open';
  private failure: Error | null = null;
  /** A neighbour's normal close that arrived after it completed the running collective; applied when it ends. */
  private closeAfterCollective: Error | null = null;
  private sequence = 0;
  private completed = 0;

  private constructor(options: RingConnectOptions, sliceElements: number, previous: ReceiveLink | null, next: SendLink | null) {
    this.rank = options.rank;
    this.worldSize = options.worldSize;
    this.runId = options.runId;
    this.logger = options.logger;
    this.timeoutMs = options.timeoutMs;
    this.sliceElements = sliceElements;
    this.bucketBytes = options.bucketBytes ?? DEFAULT_BUCKET_BYTES;
    this.compression = options.compression ?? 'none';
    this.previous = previous;
    this.next = next;
    previous?.onFailure((failure) => this.handleLinkFailure(failure));
    next?.onFailure((failure) => this.handleLinkFailure(failure));
  }

  /**
   * Connects this rank to its ring neighbours: dials `previous` and accepts `next` on `listener`, both within
   * `connectTimeoutMs` (default `timeoutMs`). World size 1 opens no sockets. Raises RINGTRAIN_ERR_COLLECTIVE_TIMEOUT when a neighbour does
   * not connect in time and RINGTRAIN_ERR_PROTOCOL when a neighbour belongs to another run, rank or world size.
   */
  static async connect(options: RingConnectOptions): Promise<Ring> {
    const sliceElements = validateOptions(options);
    const { rank, worldSize, runId, logger } = options;
    if (worldSize === 1) {
      logger.info({ rank, worldSize, runId }, 'ring connected (single rank, no links)');
      return new Ring(options, sliceElements, null, null);
    }
    const previousRank = (rank - 1 + worldSize) % worldSize;
    const nextRank = (rank + 1) % worldSize;
    const maxPayload = options.maxPayload ?? Math.max(FRAME_HEADER_BYTES + sliceElements * 4, MAX_HANDSHAKE_BYTES);
    const connectTimeoutMs = options.connectTimeoutMs ?? options.timeoutMs;
    const aborter = new AbortController();
    const pendingAccept = options.listener.accept({ runId, rank: nextRank, worldSize }, rank, connectTimeoutMs);
    const dial = dialPrevious({
      address: options.previous,
      runId,
      localRank: rank,
      previousRank,
      worldSize,
      timeoutMs: connectTimeoutMs,
      maxPayload,
      logger,
      signal: aborter.signal,
      token: options.token ?? null,
    });
    const [dialed, accepted] = await Promise.allSettled([
      dial.catch((error: unknown) => {
        pendingAccept.cancel(error as Error);
        throw error;
      }),
      pendingAccept.link.catch((error: unknown) => {
        // The dial has the same deadline; letting it finish reports the more useful of two timeouts.
        if (!hasCode(error, 'RINGTRAIN_ERR_COLLECTIVE_TIMEOUT')) {
          aborter.abort(error);
        }
        throw error;
      }),
    ]);
    if (dialed.status === 'rejected' || accepted.status === 'rejected') {
      const links = [dialed, accepted].flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
      await Promise.all(links.map((link) => link.close(CLOSE_ABORTED, `rank ${rank} failed to connect the ring`, 0)));
      const reason = dialed.status === 'rejected' ? dialed.reason : (accepted as PromiseRejectedResult).reason;
      logger.error({ err: reason, rank, worldSize, runId }, 'ring connect failed');
      throw reason;
    }
    logger.info(
      {
        rank,
        worldSize,
        runId,
        previous: options.previous,
        next: options.next,
        sliceBytes: sliceElements * 4,
        bucketBytes: options.bucketBytes ?? DEFAULT_BUCKET_BYTES,
        compression: options.compression ?? 'none',
      },
      'ring connected',
    );
    return new Ring(options, sliceElements, dialed.value, accepted.value);
  }

  /** Number of allReduce calls started on this ring. */
  get collectives(): number {
    return this.sequence;
  }

  /**
   * Sums `buffer` element-wise across all ranks, in place: reduce-scatter, then all-gather, bucket by bucket
   * with the ring's bucketBytes and compression. Every rank must call it in the same order with a buffer of
   * the same length. Rejects with RINGTRAIN_ERR_PROTOCOL (length, order or setting mismatch, malformed
   * frame), RINGTRAIN_ERR_PEER_CLOSED (a neighbour disconnected) or RINGTRAIN_ERR_COLLECTIVE_TIMEOUT (no
   * progress for timeoutMs). After a rejection the ring is unusable and its links are closed, so every
   * later call rejects with the same error, and the buffer's contents are unspecified. Frames are sent
   * straight from `buffer`, so it must not change until the call settles.
   */
  async allReduce(buffer: Float32Array): Promise<void> {
    const reduction = this.beginAllReduce(buffer);
    reduction.markFilled(buffer.length);
    await reduction.done;
  }

  /**
   * Starts a bucketed all-reduce of `buffer`; bucket k is sent once markFilled() has covered it. The caller
   * may keep writing elements beyond the last markFilled index, and must call markFilled(buffer.length)
   * before `done` can settle. `done` rejects like `allReduce`. Raises at once (TypeError, RangeError or
   * Error) for an invalid buffer or option, a call while another all-reduce runs or after `close()`, and
   * the ring's earlier failure.
   */
  beginAllReduce(buffer: Float32Array, options: AllReduceOptions = {}): BucketedAllReduce {
    if (!(buffer instanceof Float32Array)) {
      throw new TypeError(`allReduce expects a Float32Array (got ${describeValue(buffer)})`);
    }
    if (buffer.length > 0xffffffff) {
      throw new RangeError(`allReduce supports at most 2^32 - 1 elements (got ${buffer.length}); split the buffer`);
    }
    const bucketElements = bucketElementsOf(options.bucketBytes ?? this.bucketBytes);
    const compression = options.compression ?? this.compression;
    checkCompression(compression);
    if (this.state === 'closed') {
      throw new Error(`allReduce called on rank ${this.rank} after ring.close(); connect a new Ring`);
    }
    if (this.state === 'running') {
      throw new Error(`allReduce called on rank ${this.rank} while another allReduce runs; await the previous call first`);
    }
    if (this.failure !== null) {
      throw this.failure;
    }
    const sequence = this.sequence;
    this.sequence = (this.sequence + 1) % 0x1_0000_0000;
    if (this.previous === null || this.next === null) {
      return {
        markFilled: (endIndex) => checkFillIndex(endIndex, buffer.length),
        done: Promise.resolve(),
      };
    }
    this.state = 'running';
    const context = {
      rank: this.rank,
      worldSize: this.worldSize,
      previous: this.previous,
      next: this.next,
      timeoutMs: this.timeoutMs,
      sliceElements: this.sliceElements,
      buffers: this.buffers,
    };
    const run = new BucketedRun(context, buffer, sequence, bucketElements, elementTypeOf(compression));
    const done = run.done.then(
      () => {
        this.completed += 1;
        this.applyCloseAfterCollective();
        this.endRunning();
      },
      (error: Error) => {
        // close() during the collective already failed the links; the ring is gone, so nothing to abort.
        if (!this.isClosed()) {
          this.abort(error, `ring all-reduce failed in collective ${sequence}`);
        }
        this.endRunning();
        throw error;
      },
    );
    // The failure is logged by abort(), so a caller that drops `done` must not crash the process.
    done.catch(() => undefined);
    return { markFilled: (endIndex) => run.markFilled(endIndex), done };
  }

  private endRunning(): void {
    if (this.state === 'running') {
      this.state = 'open';
    }
  }

  /** Closes both links with a normal close; a pending allReduce rejects. Safe to call more than once. */
  async close(): Promise<void> {
    if (this.state === 'closed') {
      return;
    }
    const wasRunning = this.state === 'running';
    this.state = 'closed';
    const closedError = new Error(`ring of rank ${this.rank} was closed while allReduce was running`);
    for (const link of [this.previous, this.next]) {
      link?.fail(closedError);
    }
    await Promise.all(
      [this.previous, this.next].map((link) => link?.close(CLOSE_NORMAL, normalCloseReason(this.rank, this.completed), CLOSE_GRACE_MS)),
    );
    this.logger.info({ rank: this.rank, collectives: this.sequence, wasRunning }, 'ring closed');
  }

  private applyCloseAfterCollective(): void {
    if (this.closeAfterCollective !== null && this.failure === null) {
      this.failure = this.closeAfterCollective;
      this.logger.info({ rank: this.rank, reason: this.failure.message }, 'ring neighbour closed the ring');
    }
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  /** Records `error`, rejects every wait and closes both links so the neighbours fail fast as well. */
  private abort(error: Error, logMessage: string): void {
    if (this.failure === null) {
      this.failure = error;
      this.logger.error({ err: error, rank: this.rank }, logMessage);
    }
    const reason = `rank ${this.rank} aborted: ${error.message}`;
    for (const link of [this.previous, this.next]) {
      if (link !== null) {
        link.fail(error);
        void link.close(CLOSE_ABORTED, reason, CLOSE_GRACE_MS);
      }
    }
  }

  private handleLinkFailure({ error, closeCode, peerCompleted }: LinkFailure): void {
    if (this.state === 'closed' || this.failure !== null) {
      return;
    }
    if (this.state === 'open' && closeCode === CLOSE_NORMAL) {
      // A neighbour that closed between collectives is shutting down, so later calls fail without an abort.
      this.failure = error;
      this.logger.info({ rank: this.rank, reason: error.message }, 'ring neighbour closed the ring');
      return;
    }
    if (this.state === 'running' && peerCompleted !== null && peerCompleted >= this.completed + 1) {
      // The neighbour completed the running collective before closing, so every frame it sent for it is
      // already on its way and it needs nothing more from this rank: let the collective finish.
      this.closeAfterCollective ??= error;
      return;
    }
    if (this.state === 'open') {
      this.abort(error, 'ring link failed between collectives');
      return;
    }
    // During a collective the waiting loop rejects with this error and aborts the ring itself.
    this.previous?.fail(error);
    this.next?.fail(error);
  }
}

/** Validates the options of `Ring.connect` and returns the slice size in elements. */
function validateOptions(options: RingConnectOptions): number {
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
function bucketElementsOf(bucketBytes: number): number {
  if (!Number.isInteger(bucketBytes) || bucketBytes < 4) {
    throw new RangeError(
      `ring bucketBytes must be an integer of at least 4 bytes (got ${String(bucketBytes)}); set allreduce.bucketBytes`,
    );
  }
  return Math.floor(bucketBytes / 4);
}

function checkCompression(compression: unknown): void {
  if (!COMPRESSIONS.includes(compression as Compression)) {
    throw new RangeError(
      `ring compression must be one of ${COMPRESSIONS.join(', ')} (got ${describeValue(compression)}); set allreduce.compression`,
    );
  }
}

function describeValue(value: unknown): string {
  if (value === null) {
    return 'null';
  }
  if (typeof value === 'object') {
    return (value as object).constructor?.name ?? 'object';
  }
  return `${typeof value} ${String(value)}`;
}
