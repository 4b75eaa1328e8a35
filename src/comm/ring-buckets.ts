/**
 * Bucketed all-reduce: the buffer is reduced as a sequence of buckets, each a ring collective of its own,
 * so that a caller can start reducing the first buckets while it still writes values into later ones.
 *
 * Bucket k covers elements [k × B, min((k + 1) × B, L)) of a buffer of length L, with B the bucket length
 * in elements. The split depends only on L and B, never on when markFilled is called, and each bucket is
 * summed in the same fixed order as an unbucketed all-reduce of that region. Results are therefore
 * bitwise identical on every rank and from run to run, whatever the order and timing of markFilled calls.
 * Buckets run one after another on the ring, in index order. A standalone reduce-scatter or all-gather uses
 * the same buckets and runs only that half of each bucket's collective.
 */
import { ownedChunk, runRingAllReduce, type CollectiveContext } from './ring-collective.js';
import { ChunkLayout, ElementType, type CollectiveKind } from './ring-frame.js';

/** Wire format of the values: float32, or rounded to a 16-bit format with sums still done in float32. */
export type Compression = 'none' | 'fp16' | 'bf16';

/** The accepted values of Compression, for validation and help text. */
export const COMPRESSIONS: readonly Compression[] = Object.freeze(['none', 'fp16', 'bf16'] as const);

/** Returns the frame element type that carries values compressed with `compression`. */
export function elementTypeOf(compression: Compression): ElementType {
  switch (compression) {
    case 'none':
      return ElementType.Float32;
    case 'fp16':
      return ElementType.Float16;
    case 'bf16':
      return ElementType.BFloat16;
  }
}

/** A running bucketed all-reduce, returned by `Ring.beginAllReduce`. */
export interface BucketedAllReduce {
  /**
   * Declares elements [0, endIndex) of the buffer final: each bucket that lies wholly inside is reduced as
   * soon as the buckets before it are done. Calls with a smaller endIndex than before change nothing.
   * Elements declared final must not change until `done` settles.
   */
  markFilled(endIndex: number): void;
  /** Settles when every bucket is reduced, or with the first error. Resolves only once markFilled has covered the whole buffer. */
  readonly done: Promise<void>;
}

/** A run of buffer elements, [start, end). */
export interface ElementRange {
  start: number;
  end: number;
}

/**
 * Lists the elements whose complete sums `rank` has after a reduce-scatter of a buffer of `length` elements
 * in buckets of `bucketElements`: chunk (rank + 1) mod worldSize of every bucket, the chunk that the same
 * rank completes in an all-reduce. Neighbouring ranges are merged and empty ones left out, so one rank owns
 * the single range [0, length). The result depends on these four numbers only.
 */
export function ownedRanges(length: number, bucketElements: number, worldSize: number, rank: number): ElementRange[] {
  const buckets = new BucketLayout(length, bucketElements);
  const chunk = ownedChunk(rank, worldSize);
  const ranges: ElementRange[] = [];
  for (let bucket = 0; bucket < buckets.count; bucket++) {
    const chunks = new ChunkLayout(buckets.end(bucket) - buckets.start(bucket), worldSize);
    const start = buckets.start(bucket) + chunks.start(chunk);
    const end = start + chunks.chunkLength(chunk);
    const last = ranges[ranges.length - 1];
    if (end === start) {
      continue;
    }
    if (last !== undefined && last.end === start) {
      last.end = end;
    } else {
      ranges.push({ start, end });
    }
  }
  return ranges;
}

/** The split of a buffer into buckets of at most `bucketElements` elements; see the module comment. */
export class BucketLayout {
  readonly length: number;
  /** Largest bucket length, min(requested bucket length, buffer length); the frames carry it. */
  readonly bucketElements: number;
  /** Number of buckets; an empty buffer still has one empty bucket, so every rank runs one collective. */
  readonly count: number;

  constructor(length: number, bucketElements: number) {
    this.length = length;
    this.bucketElements = Math.min(bucketElements, length);
    this.count = length === 0 ? 1 : Math.ceil(length / this.bucketElements);
  }

  /** Returns the index of the first element of bucket `bucket`. */
  start(bucket: number): number {
    return bucket * this.bucketElements;
  }

  /** Returns the index one past the last element of bucket `bucket`. */
  end(bucket: number): number {
    return Math.min(this.length, (bucket + 1) * this.bucketElements);
  }
}

/**
 * The state of one bucketed all-reduce on one rank. A bucket starts when markFilled covers it and the
 * previous bucket is done. `onSettled` hears the outcome before `done` settles.
 */
export class BucketedRun implements BucketedAllReduce {
  readonly done: Promise<void>;
  private readonly context: CollectiveContext;
  private readonly buffer: Float32Array;
  private readonly sequence: number;
  private readonly layout: BucketLayout;
  private readonly elementType: ElementType;
  private readonly kind: CollectiveKind;
  private filledEnd = 0;
  private nextBucket = 0;
  private running = false;
  private settled = false;
  private resolve: () => void = () => undefined;
  private reject: (error: Error) => void = () => undefined;

  constructor(
    context: CollectiveContext,
    buffer: Float32Array,
    sequence: number,
    bucketElements: number,
    elementType: ElementType,
    kind: CollectiveKind = 'all-reduce',
  ) {
    this.context = context;
    this.kind = kind;
    this.buffer = buffer;
    this.sequence = sequence;
    this.layout = new BucketLayout(buffer.length, bucketElements);
    this.elementType = elementType;
    this.done = new Promise<void>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
    // An empty buffer has nothing to fill, so its one empty bucket may start at once.
    this.startReadyBucket();
  }

  markFilled(endIndex: number): void {
    checkFillIndex(endIndex, this.buffer.length);
    if (endIndex > this.filledEnd) {
      this.filledEnd = endIndex;
      this.startReadyBucket();
    }
  }

  private startReadyBucket(): void {
    if (this.running || this.settled || this.layout.end(this.nextBucket) > this.filledEnd) {
      return;
    }
    const bucket = this.nextBucket;
    this.running = true;
    const region = {
      index: bucket,
      start: this.layout.start(bucket),
      length: this.layout.end(bucket) - this.layout.start(bucket),
      maxElements: this.layout.bucketElements,
      elementType: this.elementType,
      kind: this.kind,
    };
    runRingAllReduce(this.context, this.buffer, this.sequence, region).then(
      () => {
        this.running = false;
        this.nextBucket += 1;
        if (this.nextBucket === this.layout.count) {
          this.settled = true;
          this.resolve();
        } else {
          this.startReadyBucket();
        }
      },
      (error: Error) => {
        this.settled = true;
        this.reject(error);
      },
    );
  }
}

/** Raises a RangeError unless `endIndex` is an integer from 0 to `length`. */
export function checkFillIndex(endIndex: number, length: number): void {
  if (!Number.isInteger(endIndex) || endIndex < 0 || endIndex > length) {
    throw new RangeError(`markFilled expects an integer from 0 to the buffer length ${length} (got ${String(endIndex)})`);
  }
}
