/**
 * One ring all-reduce of one bucket (a contiguous region of the caller's buffer) over two connected
 * links: N-1 reduce-scatter steps, then N-1 all-gather steps. A standalone reduce-scatter runs only the
 * first N-1 steps and a standalone all-gather only the last N-1, on the same chunks.
 *
 * Rank r first sends its own chunk r. Every later frame is one just received from the previous rank,
 * forwarded to the next rank as soon as it is applied, so slices of a step stream through the ring
 * (pipelining) instead of waiting for whole chunks. In reduce-scatter the received values are added to
 * the local chunk. The partial sums travel on in the received frame, and the complete sums of the last
 * step are stored in the buffer. In all-gather the received values land in the buffer unchanged.
 *
 * The run is event driven. The receive link reads each payload straight into a frame from a reusable
 * pool (reduce-scatter) or into the caller's buffer (all-gather), and the frame is applied as soon as it
 * is complete. Frames whose payload is in the buffer are sent from there without a copy. The whole own
 * chunk is handed to the socket at the start, so forwarded frames follow it in step order.
 *
 * With fp16 or bf16 compression every payload travels in pool frames as 16-bit values and every sum is a
 * float32 sum of the decoded value and the local value. The rank that completes a chunk's sum rounds its
 * own copy through the 16-bit format before sending it, so all ranks end with the same bits.
 */
import { RingtrainError } from '../errors.js';
import {
  ChunkLayout,
  ElementType,
  FRAME_HEADER_BYTES,
  RingPhase,
  collectiveKindOf,
  collectiveMethodName,
  elementBytes,
  elementTypeName,
  phaseName,
  wirePhaseOf,
  writeFrameHeader,
  type CollectiveKind,
  type FrameHeader,
} from './ring-frame.js';
import type { CollectiveBuffers } from './ring-frame-pool.js';
import { applyHalfFrame, encodeIntoFrame, type HalfFrameRole } from './ring-compressed.js';
import type { SendLink } from './ring-link.js';
import type { FrameConsumer, ReceiveLink } from './ring-receive-link.js';
import { addInto } from './ring-reduce.js';

/** Everything one collective needs besides the buffer. */
export interface CollectiveContext {
  rank: number;
  worldSize: number;
  previous: ReceiveLink;
  next: SendLink;
  /** Limit on the time without a received frame, or without a finished write while sends are pending. */
  timeoutMs: number;
  /** Largest payload of a frame this rank originates, in elements. */
  sliceElements: number;
  buffers: CollectiveBuffers;
}

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
interface StepPosition {
  phase: RingPhase;
  step: number;
}

/**
 * Sums the elements of `buffer` in `region` across all ranks, in place, or runs only one half of that sum
 * (see `region.kind` and `ownedChunk`). `sequence` is the collective's number; every rank must pass the same
 * sequence and region. Rejects with RINGTRAIN_ERR_PROTOCOL, _PEER_CLOSED or _COLLECTIVE_TIMEOUT.
 */
export function runRingAllReduce(context: CollectiveContext, buffer: Float32Array, sequence: number, region: BucketRegion): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    new CollectiveRun(context, buffer, sequence, region, resolve, reject).start();
  });
}

/** The state of one collective on one rank: where the next received frame belongs and what is left to send. */
class CollectiveRun implements FrameConsumer {
  private readonly context: CollectiveContext;
  private readonly buffer: Float32Array;
  private readonly bufferBytes: Uint8Array;
  /** The buffer's float32 values as integer bits, for the 16-bit conversions. */
  private readonly bufferBits: Uint32Array;
  private readonly sequence: number;
  private readonly region: BucketRegion;
  /** Bytes per payload value: 4, or 2 with compression. */
  private readonly valueBytes: number;
  private readonly layout: ChunkLayout;
  /** The steps this run takes are firstStep to endStep - 1 of the 2(N - 1) steps of an all-reduce. */
  private readonly firstStep: number;
  private readonly endStep: number;
  private readonly resolve: () => void;
  private readonly reject: (error: Error) => void;
  private readonly previousRank: number;
  private readonly nextRank: number;

  /** Index of the step whose frames arrive now, firstStep to endStep - 1; endStep once all arrived. */
  private step = 0;
  private position: StepPosition = { phase: RingPhase.ReduceScatter, step: 0 };
  private chunkEnd = 0;
  /** Element index where the next received frame must start. */
  private offset = 0;
  /** The frame whose payload is arriving, and the pool frame it is read into (null: read into the buffer). */
  private current: FrameHeader | null = null;
  private currentFrame: Buffer | null = null;

  private ownStart = 0;
  private ownEnd = 0;

  private lastFrameAt = performance.now();
  private lastWriteAt = performance.now();
  private watchdog: NodeJS.Timeout | null = null;
  private readonly removeListeners: (() => void)[] = [];
  private settled = false;

  constructor(
    context: CollectiveContext,
    buffer: Float32Array,
    sequence: number,
    region: BucketRegion,
    resolve: () => void,
    reject: (error: Error) => void,
  ) {
    this.context = context;
    this.buffer = buffer;
    this.bufferBytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    this.bufferBits = new Uint32Array(buffer.buffer, buffer.byteOffset, buffer.length);
    this.sequence = sequence;
    this.region = region;
    this.valueBytes = elementBytes(region.elementType);
    this.layout = new ChunkLayout(region.length, context.worldSize);
    const halfSteps = context.worldSize - 1;
    this.firstStep = region.kind === 'all-gather' ? halfSteps : 0;
    this.endStep = region.kind === 'reduce-scatter' ? halfSteps : 2 * halfSteps;
    this.resolve = resolve;
    this.reject = reject;
    this.previousRank = context.previous.info.peerRank;
    this.nextRank = context.next.info.peerRank;
  }

  start(): void {
    const { previous, next, rank } = this.context;
    if (next.failedWith !== null) {
      this.finish(next.failedWith);
      return;
    }
    this.removeListeners.push(
      next.addFailureListener((error) => this.finish(error)),
      previous.addFailureListener((error) => {
        // Once every frame has arrived, only the sends to the next rank are left, so the collective can finish.
        if (this.step < this.endStep) {
          this.finish(error);
        }
      }),
    );
    this.watchdog = setTimeout(() => this.checkProgress(), this.context.timeoutMs);
    const ownChunk = this.region.kind === 'all-gather' ? ownedChunk(rank, this.context.worldSize) : rank;
    this.ownStart = this.region.start + this.layout.start(ownChunk);
    this.ownEnd = this.ownStart + this.layout.chunkLength(ownChunk);
    this.enterStep(this.firstStep);
    this.sendOwnChunk();
    previous.setConsumer(this);
    if (!this.settled && this.step < this.endStep && previous.failedWith !== null) {
      this.finish(previous.failedWith);
    }
  }

  private enterStep(step: number): void {
    const { rank, worldSize } = this.context;
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

  /**
   * Checks the header of a frame from the previous rank and returns where its payload goes: a pool frame in
   * reduce-scatter, where the values are added first, and the caller's buffer in an uncompressed all-gather.
   */
  beginFrame(header: FrameHeader): Uint8Array | null {
    if (this.settled) {
      return null;
    }
    try {
      this.lastFrameAt = performance.now();
      this.checkHeader(header);
    } catch (error) {
      this.finish(error as Error);
      return null;
    }
    this.current = header;
    if (this.position.phase === RingPhase.AllGather && this.valueBytes === 4) {
      this.currentFrame = null;
      return this.bufferBytes.subarray(header.offset * 4, (header.offset + header.count) * 4);
    }
    const payloadBytes = header.count * this.valueBytes;
    this.currentFrame = this.context.buffers.takeFrame(payloadBytes);
    return this.currentFrame.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + payloadBytes);
  }

  /** Applies the frame whose payload has just arrived, forwards it, and moves on to the next position. */
  endFrame(): void {
    const header = this.current;
    if (this.settled || header === null) {
      return;
    }
    this.lastFrameAt = performance.now();
    const frame = this.currentFrame;
    this.current = null;
    this.currentFrame = null;
    const { rank } = this.context;
    const forward = this.step + 1 < this.endStep ? { ...header, ...this.headerPosition(this.step + 1), senderRank: rank } : null;
    if (this.valueBytes === 4) {
      this.applyFloat32(header, frame, forward);
    } else {
      this.applyHalf(header, frame!, forward);
    }
    this.offset += header.count;
    if (this.offset >= this.chunkEnd) {
      this.enterStep(this.step + 1);
      if (this.step === this.endStep) {
        // Frames of the next collective wait in the socket until that collective starts.
        this.context.previous.setConsumer(null);
        this.finishIfDone();
      }
    }
  }

  /** Applies a float32 frame: `frame` is its pool frame in reduce-scatter and null in all-gather. */
  private applyFloat32(header: FrameHeader, frame: Buffer | null, forward: FrameHeader | null): void {
    const local = this.buffer.subarray(header.offset, header.offset + header.count);
    if (frame !== null) {
      const received = new Float32Array(frame.buffer, frame.byteOffset + FRAME_HEADER_BYTES, header.count);
      if (this.position.step < this.context.worldSize - 2) {
        // A partial sum travels on in the received frame; all-gather overwrites this chunk of the buffer later.
        addInto(received, received, local, header.count);
        writeFrameHeader(frame, forward!);
        this.sendFrame(frame.subarray(0, FRAME_HEADER_BYTES + header.count * 4), frame);
      } else {
        // The last reduce-scatter step completes the sum: it stays in the buffer and leaves from there,
        // unless this is a standalone reduce-scatter, which ends here.
        addInto(local, received, local, header.count);
        this.context.buffers.releaseFrame(frame);
        if (forward !== null) this.sendFromBuffer(forward);
      }
    } else if (forward !== null) {
      this.sendFromBuffer(forward);
    }
  }

  /**
   * Applies a 16-bit frame, always received into the pool frame `frame`, and forwards that frame. All-gather
   * forwards it unchanged, so the final values are rounded to 16 bits only once.
   */
  private applyHalf(header: FrameHeader, frame: Buffer, forward: FrameHeader | null): void {
    const { phase, step } = this.position;
    let role: HalfFrameRole = 'gather';
    if (phase === RingPhase.ReduceScatter) {
      role = step === this.context.worldSize - 2 ? 'final-sum' : 'partial-sum';
    }
    applyHalfFrame(frame, header.count, this.buffer, this.bufferBits, header.offset, this.region.elementType, role);
    if (forward === null) {
      this.context.buffers.releaseFrame(frame);
      return;
    }
    writeFrameHeader(frame, forward);
    this.sendFrame(frame.subarray(0, FRAME_HEADER_BYTES + header.count * 2), frame);
  }

  /**
   * Sends the own chunk in slices of at most sliceElements: straight from the buffer for float32, else
   * encoded into pool frames. In an all-reduce its region of the buffer changes again only in all-gather
   * step 0. By then every byte sent from it has reached the kernel, because its final sums depend on all of
   * them having passed through the next rank. A standalone all-gather starts with the chunk this rank owns,
   * which no received frame overwrites.
   */
  private sendOwnChunk(): void {
    const { sliceElements, rank } = this.context;
    const position = this.headerPosition(this.firstStep);
    let offset = this.ownStart;
    do {
      const count = Math.min(sliceElements, this.ownEnd - offset);
      const header: FrameHeader = {
        ...position,
        elementType: this.region.elementType,
        sequence: this.sequence,
        senderRank: rank,
        totalLength: this.buffer.length,
        bucket: this.region.index,
        bucketElements: this.region.maxElements,
        offset,
        count,
      };
      if (this.valueBytes === 4) {
        this.sendFromBuffer(header);
      } else {
        this.sendEncoded(header);
      }
      offset += count;
      // An empty own chunk still sends its one empty frame.
    } while (offset < this.ownEnd);
  }

  /** Sends the frame `header` with its payload encoded from the buffer into a pool frame. */
  private sendEncoded(header: FrameHeader): void {
    const frame = this.context.buffers.takeFrame(header.count * 2);
    encodeIntoFrame(frame, this.bufferBits, header.offset, header.count, this.region.elementType);
    writeFrameHeader(frame, header);
    this.sendFrame(frame.subarray(0, FRAME_HEADER_BYTES + header.count * 2), frame);
  }

  /**
   * Sends the frame `header` with its payload read from the buffer; that region must not change until
   * the collective ends, which is true of the own chunk (see sendOwnChunk) and of every chunk that
   * all-gather has written.
   */
  private sendFromBuffer(header: FrameHeader): void {
    const headerBytes = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
    writeFrameHeader(headerBytes, header);
    const payload = Buffer.from(this.bufferBytes.buffer, this.bufferBytes.byteOffset + header.offset * 4, header.count * 4);
    this.noteSendStart();
    this.context.next.sendWithHeader(headerBytes, payload, () => this.handleWritten(null));
  }

  /** Sends `message`, a view of the pool frame `frame`, and returns the frame to the pool once written. */
  private sendFrame(message: Buffer, frame: Buffer): void {
    this.noteSendStart();
    this.context.next.send(message, () => this.handleWritten(frame));
  }

  private noteSendStart(): void {
    if (this.context.next.pendingSends === 0) {
      this.lastWriteAt = performance.now();
    }
  }

  private handleWritten(frame: Buffer | null): void {
    this.lastWriteAt = performance.now();
    if (this.settled) {
      return;
    }
    if (frame !== null) {
      this.context.buffers.releaseFrame(frame);
    }
    this.finishIfDone();
  }

  private finishIfDone(): void {
    if (this.step === this.endStep && this.context.next.pendingSends === 0) {
      this.finish(null);
    }
  }

  /** Fails the run when no frame arrived, or no pending write finished, for timeoutMs; else checks again later. */
  private checkProgress(): void {
    if (this.settled) {
      return;
    }
    const { timeoutMs, next } = this.context;
    const now = performance.now();
    const receiveDeadline = this.step < this.endStep ? this.lastFrameAt + timeoutMs : Infinity;
    const writeDeadline = next.pendingSends > 0 ? this.lastWriteAt + timeoutMs : Infinity;
    if (now >= receiveDeadline) {
      this.finish(this.timeoutError(this.position, `a frame from rank ${this.previousRank}`, this.previousRank));
    } else if (now >= writeDeadline) {
      const last = stepPosition(this.endStep - 1, this.context.worldSize);
      this.finish(this.timeoutError(last, `rank ${this.nextRank} to accept data`, this.nextRank));
    } else {
      const wait = Math.min(receiveDeadline, writeDeadline, now + timeoutMs) - now;
      this.watchdog = setTimeout(() => this.checkProgress(), Math.max(1, wait));
    }
  }

  private finish(error: Error | null): void {
    if (this.settled) {
      return;
    }
    this.settled = true;
    if (this.watchdog !== null) {
      clearTimeout(this.watchdog);
    }
    for (const remove of this.removeListeners) {
      remove();
    }
    this.context.previous.setConsumer(null);
    if (error === null) {
      this.resolve();
    } else {
      this.reject(error);
    }
  }

  /** Returns the phase byte and step within the phase that frames of step `t` carry. */
  private headerPosition(t: number): Pick<FrameHeader, 'phase' | 'step'> {
    const position = stepPosition(t, this.context.worldSize);
    return { phase: wirePhaseOf(this.region.kind, position.phase), step: position.step };
  }

  private checkHeader(header: FrameHeader): void {
    const { rank } = this.context;
    const peer = this.previousRank;
    const { position, sequence, region } = this;
    const where = `${phaseName(position.phase)} step ${position.step} of bucket ${region.index} of collective ${sequence}`;
    const peerKind = collectiveKindOf(header.phase);
    if (peerKind !== null && peerKind !== region.kind) {
      throw protocolError(
        `rank ${rank} runs ${collectiveMethodName(region.kind)} but rank ${peer} sent a frame of ` +
          `${collectiveMethodName(peerKind)} in ${where}; every rank must call the same collectives in the same order ` +
          '(in training: set the same optimizer.shardState and allreduce.skipZeroBlocks on every node)',
      );
    }
    if (header.totalLength !== this.buffer.length) {
      throw protocolError(
        `rank ${rank} called allReduce with ${this.buffer.length} elements, but rank ${peer} sent a frame for ` +
          `${header.totalLength} elements in ${where}; every rank must call allReduce with buffers of the same length ` +
          '(in training: set the same optimizer.shardState and allreduce.skipZeroBlocks on every node)',
      );
    }
    if (header.sequence !== sequence >>> 0) {
      throw protocolError(
        `rank ${rank} is in collective ${sequence} but rank ${peer} sent a frame of collective ` +
          `${header.sequence}; every rank must call allReduce the same number of times in the same order`,
      );
    }
    if (header.elementType !== region.elementType) {
      throw protocolError(
        `rank ${rank} reduces ${elementTypeName(region.elementType)} values but rank ${peer} sent ` +
          `${elementTypeName(header.elementType)} values in ${where}; set the same allreduce.compression on every rank`,
      );
    }
    if (header.bucketElements !== region.maxElements || header.bucket !== region.index) {
      throw protocolError(
        `rank ${rank} expected bucket ${region.index} of at most ${region.maxElements} elements but rank ${peer} ` +
          `sent bucket ${header.bucket} of at most ${header.bucketElements} elements in ${where}; ` +
          'set the same allreduce.bucketBytes on every rank',
      );
    }
    if (header.senderRank !== peer || header.phase !== wirePhaseOf(region.kind, position.phase) || header.step !== position.step) {
      throw protocolError(
        `rank ${rank} expected a frame from rank ${peer} for ${where} but got one from rank ` +
          `${header.senderRank} for phase ${header.phase} step ${header.step}; the ring order of the ranks disagrees`,
      );
    }
    const remaining = this.chunkEnd - this.offset;
    if (header.offset !== this.offset || header.count > remaining || (header.count === 0 && remaining > 0)) {
      throw protocolError(
        `rank ${rank} expected elements from offset ${this.offset} (${remaining} left in the chunk) from rank ` +
          `${peer} in ${where}, but the frame covers offset ${header.offset} with ${header.count} elements`,
      );
    }
  }

  /** Builds the error of a wait that timed out; `awaited` is "a frame from rank 2" or "rank 3 to accept data". */
  private timeoutError(position: StepPosition, awaited: string, peerRank: number): RingtrainError {
    return new RingtrainError(
      'RINGTRAIN_ERR_COLLECTIVE_TIMEOUT',
      `rank ${this.context.rank} timed out after ${this.context.timeoutMs} ms waiting for ${awaited} in ` +
        `${phaseName(position.phase)} step ${position.step} of bucket ${this.region.index} of collective ${this.sequence}; ` +
        `check that rank ${peerRank} ` +
        'is running and calls allReduce as often as the others, or raise allreduce.timeoutMs',
    );
  }
}

/**
 * Returns the chunk of a bucket whose complete sums `rank` has after reduce-scatter, chunk (rank + 1) mod
 * N: the chunk that the last reduce-scatter step delivers to it.
 */
export function ownedChunk(rank: number, worldSize: number): number {
  return (rank + 1) % worldSize;
}

function stepPosition(t: number, worldSize: number): StepPosition {
  return t < worldSize - 1
    ? { phase: RingPhase.ReduceScatter, step: t }
    : { phase: RingPhase.AllGather, step: t - (worldSize - 1) };
}

function protocolError(message: string): RingtrainError {
  return new RingtrainError('RINGTRAIN_ERR_PROTOCOL', message);
}

function modulo(value: number, divisor: number): number {
  return ((value % divisor) + divisor) % divisor;
}
