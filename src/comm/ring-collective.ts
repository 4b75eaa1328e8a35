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
 *
 * The step arithmetic is in ring-schedule.ts, the check of received headers in ring-frame-check.ts, and
 * the sending side in ring-collective-send.ts.
 */
import { RingtrainError } from '../errors.js';
import { FRAME_HEADER_BYTES, RingPhase, elementBytes, phaseName, writeFrameHeader, type FrameHeader } from './ring-frame.js';
import type { CollectiveBuffers } from './ring-frame-pool.js';
import { checkFrameHeader } from './ring-frame-check.js';
import { CollectiveSender } from './ring-collective-send.js';
import { applyHalfFrame, type HalfFrameRole } from './ring-compressed.js';
import type { SendLink } from './ring-link.js';
import type { FrameConsumer, ReceiveLink } from './ring-receive-link.js';
import { addInto } from './ring-reduce.js';
import { CollectiveSchedule, stepPosition, type BucketRegion, type StepPosition } from './ring-schedule.js';

export { ownedChunk, type BucketRegion } from './ring-schedule.js';

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
  private readonly region: BucketRegion;
  /** Bytes per payload value: 4, or 2 with compression. */
  private readonly valueBytes: number;
  private readonly schedule: CollectiveSchedule;
  private readonly sender: CollectiveSender;
  private readonly resolve: () => void;
  private readonly reject: (error: Error) => void;
  private readonly previousRank: number;
  private readonly nextRank: number;

  /** The frame whose payload is arriving, and the pool frame it is read into (null: read into the buffer). */
  private current: FrameHeader | null = null;
  private currentFrame: Buffer | null = null;

  private lastFrameAt = performance.now();
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
    this.region = region;
    this.valueBytes = elementBytes(region.elementType);
    this.resolve = resolve;
    this.reject = reject;
    this.previousRank = context.previous.info.peerRank;
    this.nextRank = context.next.info.peerRank;
    this.schedule = new CollectiveSchedule(context.rank, context.worldSize, this.previousRank, sequence, region, buffer.length);
    const onWritten = (): void => this.finishIfDone();
    this.sender = new CollectiveSender(context.next, context.buffers, context.sliceElements, buffer, this.schedule, onWritten);
  }

  start(): void {
    const { previous, next } = this.context;
    const { schedule } = this;
    if (next.failedWith !== null) {
      this.finish(next.failedWith);
      return;
    }
    this.removeListeners.push(
      next.addFailureListener((error) => this.finish(error)),
      previous.addFailureListener((error) => {
        // Once every frame has arrived, only the sends to the next rank are left, so the collective can finish.
        if (schedule.step < schedule.endStep) {
          this.finish(error);
        }
      }),
    );
    this.watchdog = setTimeout(() => this.checkProgress(), this.context.timeoutMs);
    schedule.enterStep(schedule.firstStep);
    this.sender.sendOwnChunk();
    previous.setConsumer(this);
    if (!this.settled && schedule.step < schedule.endStep && previous.failedWith !== null) {
      this.finish(previous.failedWith);
    }
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
      checkFrameHeader(header, this.schedule);
    } catch (error) {
      this.finish(error as Error);
      return null;
    }
    this.current = header;
    if (this.schedule.position.phase === RingPhase.AllGather && this.valueBytes === 4) {
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
    const { schedule } = this;
    const forward =
      schedule.step + 1 < schedule.endStep ? { ...header, ...schedule.headerPosition(schedule.step + 1), senderRank: rank } : null;
    if (this.valueBytes === 4) {
      this.applyFloat32(header, frame, forward);
    } else {
      this.applyHalf(header, frame!, forward);
    }
    schedule.offset += header.count;
    if (schedule.offset >= schedule.chunkEnd) {
      schedule.enterStep(schedule.step + 1);
      if (schedule.step === schedule.endStep) {
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
      if (this.schedule.position.step < this.context.worldSize - 2) {
        // A partial sum travels on in the received frame; all-gather overwrites this chunk of the buffer later.
        addInto(received, received, local, header.count);
        writeFrameHeader(frame, forward!);
        this.sender.sendFrame(frame.subarray(0, FRAME_HEADER_BYTES + header.count * 4), frame);
      } else {
        // The last reduce-scatter step completes the sum: it stays in the buffer and leaves from there,
        // unless this is a standalone reduce-scatter, which ends here.
        addInto(local, received, local, header.count);
        this.context.buffers.releaseFrame(frame);
        if (forward !== null) this.sender.sendFromBuffer(forward);
      }
    } else if (forward !== null) {
      this.sender.sendFromBuffer(forward);
    }
  }

  /**
   * Applies a 16-bit frame, always received into the pool frame `frame`, and forwards that frame. All-gather
   * forwards it unchanged, so the final values are rounded to 16 bits only once.
   */
  private applyHalf(header: FrameHeader, frame: Buffer, forward: FrameHeader | null): void {
    const { phase, step } = this.schedule.position;
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
    this.sender.sendFrame(frame.subarray(0, FRAME_HEADER_BYTES + header.count * 2), frame);
  }

  private finishIfDone(): void {
    if (this.schedule.step === this.schedule.endStep && this.context.next.pendingSends === 0) {
      this.finish(null);
    }
  }

  /** Fails the run when no frame arrived, or no pending write finished, for timeoutMs; else checks again later. */
  private checkProgress(): void {
    if (this.settled) {
      return;
    }
    const { timeoutMs, next } = this.context;
    const { schedule } = this;
    const now = performance.now();
    const receiveDeadline = schedule.step < schedule.endStep ? this.lastFrameAt + timeoutMs : Infinity;
    const writeDeadline = next.pendingSends > 0 ? this.sender.lastWriteAt + timeoutMs : Infinity;
    if (now >= receiveDeadline) {
      this.finish(this.timeoutError(schedule.position, `a frame from rank ${this.previousRank}`, this.previousRank));
    } else if (now >= writeDeadline) {
      const last = stepPosition(schedule.endStep - 1, this.context.worldSize);
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
    this.sender.stop();
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

  /** Builds the error of a wait that timed out; `awaited` is "a frame from rank 2" or "rank 3 to accept data". */
  private timeoutError(position: StepPosition, awaited: string, peerRank: number): RingtrainError {
    return new RingtrainError(
      'RINGTRAIN_ERR_COLLECTIVE_TIMEOUT',
      `rank ${this.context.rank} timed out after ${this.context.timeoutMs} ms waiting for ${awaited} in ` +
        `${phaseName(position.phase)} step ${position.step} of bucket ${this.region.index} of collective ${this.schedule.sequence}; ` +
        `check that rank ${peerRank} ` +
        'is running and calls allReduce as often as the others, or raise allreduce.timeoutMs',
    );
  }
}
