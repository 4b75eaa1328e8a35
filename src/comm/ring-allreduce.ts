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
import { hasCode } from '../errors.js';
import { BucketedRun, checkFillIndex, elementTypeOf, ownedRanges, type BucketedAllReduce, type Compression, type ElementRange } from './ring-buckets.js';
import { CollectiveBuffers } from './ring-frame-pool.js';
import { dialPrevious } from './ring-dial.js';
import { FRAME_HEADER_BYTES, collectiveMethodName, type CollectiveKind } from './ring-frame.js';
import { CLOSE_ABORTED, MAX_HANDSHAKE_BYTES } from './ring-hello.js';
import { RingLifecycle } from './ring-lifecycle.js';
import type { SendLink } from './ring-link.js';
import type { ReceiveLink } from './ring-receive-link.js';
import type { LinkTransport } from './ring-unix-socket.js';
import {
  DEFAULT_BUCKET_BYTES,
  bucketElementsOf,
  checkCompression,
  describeValue,
  validateOptions,
  type AllReduceOptions,
  type RingConnectOptions,
} from './ring-options.js';

export type { RingPeerAddress } from './ring-dial.js';
export type { BucketedAllReduce, Compression, ElementRange } from './ring-buckets.js';
export { DEFAULT_BUCKET_BYTES, DEFAULT_SLICE_BYTES, type AllReduceOptions, type RingConnectOptions } from './ring-options.js';

/**
 * A connected ring of `worldSize` ranks that sums Float32Arrays across all of them, whole (`allReduce`) or in
 * its two halves (`reduceScatter`, then `allGather`) for callers that work on their share in between.
 */
export class Ring {
  readonly rank: number;
  readonly worldSize: number;
  readonly runId: string;
  private readonly timeoutMs: number;
  private readonly sliceElements: number;
  private readonly bucketBytes: number;
  private readonly compression: Compression;
  private readonly previous: ReceiveLink | null;
  private readonly next: SendLink | null;
  private readonly buffers: CollectiveBuffers;
  private readonly lifecycle: RingLifecycle;
  private sequence = 0;

  private constructor(options: RingConnectOptions, sliceElements: number, previous: ReceiveLink | null, next: SendLink | null) {
    this.rank = options.rank;
    this.worldSize = options.worldSize;
    this.runId = options.runId;
    this.timeoutMs = options.timeoutMs;
    this.sliceElements = sliceElements;
    this.buffers = new CollectiveBuffers(sliceElements * 4);
    this.bucketBytes = options.bucketBytes ?? DEFAULT_BUCKET_BYTES;
    this.compression = options.compression ?? 'none';
    this.previous = previous;
    this.next = next;
    this.lifecycle = new RingLifecycle(options.rank, options.logger, previous, next);
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
    const { lifecycle } = this;
    if (lifecycle.state === 'closed') {
      throw new Error(`${method} called on rank ${this.rank} after ring.close(); connect a new Ring`);
    }
    if (lifecycle.state === 'running') {
      const running = collectiveMethodName(lifecycle.runningKind);
      throw new Error(`${method} called on rank ${this.rank} while another ${running} runs; await the previous call first`);
    }
    if (lifecycle.failure !== null) {
      throw lifecycle.failure;
    }
    const sequence = this.sequence;
    this.sequence = (this.sequence + 1) % 0x1_0000_0000;
    if (this.previous === null || this.next === null) {
      return {
        markFilled: (endIndex) => checkFillIndex(endIndex, buffer.length),
        done: Promise.resolve(),
      };
    }
    lifecycle.state = 'running';
    lifecycle.runningKind = kind;
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
        lifecycle.completed += 1;
        lifecycle.applyCloseAfterCollective();
        lifecycle.endRunning();
      },
      (error: Error) => {
        // close() during the collective already failed the links; the ring is gone, so nothing to abort.
        if (!lifecycle.isClosed()) {
          lifecycle.abort(error, `ring ${kind} failed in collective ${sequence}`);
        }
        lifecycle.endRunning();
        throw error;
      },
    );
    // The failure is logged by abort(), so a caller that drops `done` must not crash the process.
    done.catch(() => undefined);
    return { markFilled: (endIndex) => run.markFilled(endIndex), done };
  }

  /** Closes both links with a normal close; a pending allReduce rejects. Safe to call more than once. */
  close(): Promise<void> {
    return this.lifecycle.close(this.sequence);
  }
}
