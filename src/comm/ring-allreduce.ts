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
import type { Logger } from 'pino';
import { hasCode } from '../errors.js';
import { BucketedRun, checkFillIndex, elementTypeOf, ownedRanges, type BucketedAllReduce, type Compression, type ElementRange } from './ring-buckets.js';
import { CollectiveBuffers } from './ring-frame-pool.js';
import { dialPrevious, type RingPeerAddress } from './ring-dial.js';
import { FRAME_HEADER_BYTES, collectiveMethodName, type CollectiveKind } from './ring-frame.js';
import { CLOSE_ABORTED, CLOSE_NORMAL, MAX_HANDSHAKE_BYTES } from './ring-hello.js';
import { normalCloseReason, type LinkFailure, type SendLink } from './ring-link.js';
import type { RingListener } from './ring-listener.js';
import type { ReceiveLink } from './ring-receive-link.js';
import type { LinkTransport } from './ring-unix-socket.js';
import { bucketElementsOf, checkCompression, describeValue, validateOptions } from './ring-options.js';

export type { RingPeerAddress } from './ring-dial.js';
export type { BucketedAllReduce, Compression, ElementRange } from './ring-buckets.js';

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

/**
 * A connected ring of `worldSize` ranks that sums Float32Arrays across all of them, whole (`allReduce`) or in
 * its two halves (`reduceScatter`, then `allGather`) for callers that work on their share in between.
 */
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
  private readonly buffers: CollectiveBuffers;
  private state: RingState = 'open';
  /** The kind of the collective that runs, or ran last; for messages. */
  private runningKind: CollectiveKind = 'all-reduce';
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
    this.buffers = new CollectiveBuffers(sliceElements * 4);
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
      localTransport: options.listener.localTransport,
      localNodeId: options.listener.nodeId,
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
        previousTransport: dialed.value.info.transport,
        nextTransport: accepted.value.info.transport,
        sliceBytes: sliceElements * 4,
        bucketBytes: options.bucketBytes ?? DEFAULT_BUCKET_BYTES,
        compression: options.compression ?? 'none',
      },
      'ring connected',
    );
    return new Ring(options, sliceElements, dialed.value, accepted.value);
  }

  /** Transports of the links from the previous and to the next rank; null for a ring of one rank. */
  get linkTransports(): { previousTransport: LinkTransport; nextTransport: LinkTransport } | null {
    if (this.previous === null || this.next === null) {
      return null;
    }
    return { previousTransport: this.previous.info.transport, nextTransport: this.next.info.transport };
  }

  /** Number of collectives (allReduce, reduceScatter and allGather calls) started on this ring. */
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
    return this.beginCollective('all-reduce', buffer, options.bucketBytes, options.compression ?? this.compression);
  }

  /**
   * Runs the reduce-scatter half of `allReduce` with the same buckets and compression. Afterwards the elements
   * of `buffer` in the returned ranges (this rank's `ownedRanges`) contain the complete sums, bitwise equal to
   * what `allReduce` would leave there. Every other element is scratch with unspecified values. Every rank
   * must call it in the same order as the other collectives. Rejects and raises like `allReduce`.
   */
  async reduceScatter(buffer: Float32Array, options: AllReduceOptions = {}): Promise<ElementRange[]> {
    const run = this.beginCollective('reduce-scatter', buffer, options.bucketBytes, options.compression ?? this.compression);
    run.markFilled(buffer.length);
    await run.done;
    return this.ownedRanges(buffer.length, options.bucketBytes);
  }

  /**
   * Runs the all-gather half of `allReduce`: copies the elements that each rank owns (its `ownedRanges` for
   * this buffer length and bucketBytes) from that rank to every other rank, bit for bit. Values always travel
   * as float32, whatever the ring's compression, so gathered parameters are never rounded. The owned elements
   * must not change until the call settles. Rejects and raises like `allReduce`.
   */
  async allGather(buffer: Float32Array, options: { bucketBytes?: number } = {}): Promise<void> {
    const run = this.beginCollective('all-gather', buffer, options.bucketBytes, 'none');
    run.markFilled(buffer.length);
    await run.done;
  }

  /**
   * Lists the elements of a buffer of `length` elements whose sums `rank` (default this rank) completes in
   * `reduceScatter` and sends in `allGather`. It depends only on the length, the bucket size and the world
   * size, so every rank can compute every other rank's ranges.
   */
  ownedRanges(length: number, bucketBytes: number = this.bucketBytes, rank: number = this.rank): ElementRange[] {
    return ownedRanges(length, bucketElementsOf(bucketBytes), this.worldSize, rank);
  }

  /**
   * Adds one float64 value per rank and returns the sum, with identical bits on every rank: the values are
   * all-gathered bit for bit and then added in rank order. A ring of one rank returns `value`.
   */
  async sumFloat64(value: number): Promise<number> {
    const { worldSize } = this;
    if (worldSize === 1) {
      return value;
    }
    // One bucket of 2N float32 values splits into N chunks of one float64 each; rank r owns chunk (r + 1) mod N.
    const values = new Float64Array(worldSize);
    const slotOf = (rank: number): number => (rank + 1) % worldSize;
    values[slotOf(this.rank)] = value;
    await this.allGather(new Float32Array(values.buffer), { bucketBytes: values.byteLength });
    let sum = 0;
    for (let rank = 0; rank < worldSize; rank++) {
      sum += values[slotOf(rank)] as number;
    }
    return sum;
  }

  /** Starts one bucketed collective of `kind`; see beginAllReduce for what raises at once. */
  private beginCollective(kind: CollectiveKind, buffer: Float32Array, bucketBytes: number | undefined, compression: Compression): BucketedAllReduce {
    const method = collectiveMethodName(kind);
    if (!(buffer instanceof Float32Array)) {
      throw new TypeError(`${method} expects a Float32Array (got ${describeValue(buffer)})`);
    }
    if (buffer.length > 0xffffffff) {
      throw new RangeError(`${method} supports at most 2^32 - 1 elements (got ${buffer.length}); split the buffer`);
    }
    const bucketElements = bucketElementsOf(bucketBytes ?? this.bucketBytes);
    checkCompression(compression);
    if (this.state === 'closed') {
      throw new Error(`${method} called on rank ${this.rank} after ring.close(); connect a new Ring`);
    }
    if (this.state === 'running') {
      const running = collectiveMethodName(this.runningKind);
      throw new Error(`${method} called on rank ${this.rank} while another ${running} runs; await the previous call first`);
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
    this.runningKind = kind;
    const context = {
      rank: this.rank,
      worldSize: this.worldSize,
      previous: this.previous,
      next: this.next,
      timeoutMs: this.timeoutMs,
      sliceElements: this.sliceElements,
      buffers: this.buffers,
    };
    const run = new BucketedRun(context, buffer, sequence, bucketElements, elementTypeOf(compression), kind);
    const done = run.done.then(
      () => {
        this.completed += 1;
        this.applyCloseAfterCollective();
        this.endRunning();
      },
      (error: Error) => {
        // close() during the collective already failed the links; the ring is gone, so nothing to abort.
        if (!this.isClosed()) {
          this.abort(error, `ring ${kind} failed in collective ${sequence}`);
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
