/**
 * The step schedule of one ring collective on one rank: which chunk of the bucket each of the 2(N - 1)
 * steps moves, which frame the previous rank must send next, and which chunk each rank owns.
 */
import { ChunkLayout, ElementType, RingPhase, wirePhaseOf, type CollectiveKind, type FrameHeader } from './ring-frame.js';

/** The part of the buffer that one collective reduces, and how its values travel. */
export interface BucketRegion {
  /** Bucket index within the collective. */
  index: number;
  /** Index of the bucket's first element in the buffer. */
  start: number;
  /** Number of elements in the bucket. */
  length: number;
  /** Largest bucket length of the collective; every rank must use the same. */
  maxElements: number;
  elementType: ElementType;
  /** The steps that run: all of them, or only the reduce-scatter or the all-gather half. */
  kind: CollectiveKind;
}

/** Position of a frame in the collective, for the header and for messages. */
export interface StepPosition {
  phase: RingPhase;
  step: number;
}

/**
 * The frames of one collective on one rank: the fields every frame header carries, the own chunk that the
 * rank sends first, and the step, chunk and offset where the next frame from the previous rank belongs.
 * It moves on only through `enterStep` and the caller's increments of `offset`.
 */
export class CollectiveSchedule {
  readonly rank: number;
  readonly worldSize: number;
  /** Rank of the previous neighbour, the sender of every received frame. */
  readonly previousRank: number;
  readonly sequence: number;
  readonly region: BucketRegion;
  /** Length of the whole buffer, which every frame header carries. */
  readonly totalLength: number;
  private readonly layout: ChunkLayout;
  /** The steps this run takes are firstStep to endStep - 1 of the 2(N - 1) steps of an all-reduce. */
  readonly firstStep: number;
  readonly endStep: number;
  /** The elements [ownStart, ownEnd) of the buffer that this rank sends at firstStep. */
  readonly ownStart: number;
  readonly ownEnd: number;

  /** Index of the step whose frames arrive now, firstStep to endStep - 1; endStep once all arrived. */
  step = 0;
  position: StepPosition = { phase: RingPhase.ReduceScatter, step: 0 };
  chunkEnd = 0;
  /** Element index where the next received frame must start. */
  offset = 0;

  constructor(rank: number, worldSize: number, previousRank: number, sequence: number, region: BucketRegion, totalLength: number) {
    this.rank = rank;
    this.worldSize = worldSize;
    this.previousRank = previousRank;
    this.sequence = sequence;
    this.region = region;
    this.totalLength = totalLength;
    this.layout = new ChunkLayout(region.length, worldSize);
    const halfSteps = worldSize - 1;
    this.firstStep = region.kind === 'all-gather' ? halfSteps : 0;
    this.endStep = region.kind === 'reduce-scatter' ? halfSteps : 2 * halfSteps;
    const ownChunk = region.kind === 'all-gather' ? ownedChunk(rank, worldSize) : rank;
    this.ownStart = region.start + this.layout.start(ownChunk);
    this.ownEnd = this.ownStart + this.layout.chunkLength(ownChunk);
  }

  enterStep(step: number): void {
    const { rank, worldSize } = this;
    this.step = step;
    if (step >= this.endStep) {
      return;
    }
    this.position = stepPosition(step, worldSize);
    const chunk =
      this.position.phase === RingPhase.ReduceScatter ? modulo(rank - step - 1, worldSize) : modulo(rank - this.position.step, worldSize);
    this.offset = this.region.start + this.layout.start(chunk);
    this.chunkEnd = this.offset + this.layout.chunkLength(chunk);
  }

  /** Returns the phase byte and step within the phase that frames of step `t` carry. */
  headerPosition(t: number): Pick<FrameHeader, 'phase' | 'step'> {
    const position = stepPosition(t, this.worldSize);
    return { phase: wirePhaseOf(this.region.kind, position.phase), step: position.step };
  }
}

/**
 * Returns the chunk of a bucket whose complete sums `rank` has after reduce-scatter, chunk (rank + 1) mod
 * N: the chunk that the last reduce-scatter step delivers to it.
 */
export function ownedChunk(rank: number, worldSize: number): number {
  return (rank + 1) % worldSize;
}

/** Returns the phase of step `t` of the 2(N - 1) steps of an all-reduce, and the step within that phase. */
export function stepPosition(t: number, worldSize: number): StepPosition {
  return t < worldSize - 1
    ? { phase: RingPhase.ReduceScatter, step: t }
    : { phase: RingPhase.AllGather, step: t - (worldSize - 1) };
}

function modulo(value: number, divisor: number): number {
  return ((value % divisor) + divisor) % divisor;
}
