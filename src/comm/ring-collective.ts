/**
 * One ring all-reduce over two connected links: N-1 reduce-scatter steps, then N-1 all-gather steps.
 *
 * Rank r first sends its own chunk r. Every later frame is the one just received from the previous rank,
 * forwarded to the next rank as soon as it is applied, so slices of a step stream through the ring
 * (pipelining) instead of waiting for whole chunks. In reduce-scatter the received values are added into
 * the local chunk, and the sums are written back into the frame before it is forwarded. In all-gather the
 * received values are copied into the buffer unchanged.
 */
import { RingtrainError } from '../errors.js';
import {
  ChunkLayout,
  FRAME_HEADER_BYTES,
  RingPhase,
  phaseName,
  readFrameHeader,
  writeFrameHeader,
  type FrameHeader,
} from './ring-frame.js';
import type { RingLink } from './ring-link.js';

/** Buffers that a ring reuses across collectives, so the hot path allocates only what ws allocates. */
export class CollectiveBuffers {
  /** Outgoing frames of step 0, each written only after its previous send has finished. */
  readonly staging: { frame: Buffer; sent: Promise<void> }[] = [];
  /** Aligned copy of payloads that ws delivered at an offset that is not a multiple of 4. */
  scratch = new Float32Array(0);

  /** Returns staging slot `index` with room for `payloadElements` values, reallocating it when too small. */
  stagingSlot(index: number, payloadElements: number): { frame: Buffer; sent: Promise<void> } {
    const bytes = FRAME_HEADER_BYTES + payloadElements * 4;
    let slot = this.staging[index];
    if (slot === undefined || slot.frame.length < bytes) {
      // allocUnsafeSlow gives the frame its own ArrayBuffer at offset 0, so the payload is 4-byte aligned.
      slot = { frame: Buffer.allocUnsafeSlow(bytes), sent: slot?.sent ?? Promise.resolve() };
      this.staging[index] = slot;
    }
    return slot;
  }

  /** Returns the scratch array, grown to hold at least `elements` values. */
  scratchFor(elements: number): Float32Array {
    if (this.scratch.length < elements) {
      this.scratch = new Float32Array(elements);
    }
    return this.scratch;
  }
}

/** Everything one collective needs besides the buffer. */
export interface CollectiveContext {
  rank: number;
  worldSize: number;
  previous: RingLink;
  next: RingLink;
  timeoutMs: number;
  /** Largest payload of a frame this rank originates, in elements. */
  sliceElements: number;
  /** Number of staging frames for step 0; more lets more sends overlap. */
  stagingSlots: number;
  buffers: CollectiveBuffers;
}

/** Position of a frame in the collective, for the header and for messages. */
interface StepPosition {
  phase: RingPhase;
  step: number;
}

/**
 * Sums `buffer` element-wise across all ranks, in place. `sequence` is the collective's number; every rank
 * must pass the same. Rejects with RINGTRAIN_ERR_PROTOCOL, _PEER_CLOSED or _COLLECTIVE_TIMEOUT.
 */
export async function runRingAllReduce(context: CollectiveContext, buffer: Float32Array, sequence: number): Promise<void> {
  const { rank, worldSize } = context;
  const layout = new ChunkLayout(buffer.length, worldSize);
  const totalSteps = 2 * (worldSize - 1);
  const bufferBytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  const previousRank = context.previous.info.peerRank;
  const nextRank = context.next.info.peerRank;
  const lastPosition = stepPosition(totalSteps - 1, worldSize);

  await sendOwnChunk(context, buffer, layout, sequence);

  for (let t = 0; t < totalSteps; t += 1) {
    const position = stepPosition(t, worldSize);
    const forwardPosition = t + 1 < totalSteps ? stepPosition(t + 1, worldSize) : null;
    const chunk =
      position.phase === RingPhase.ReduceScatter
        ? modulo(rank - t - 1, worldSize)
        : modulo(rank - position.step, worldSize);
    const chunkStart = layout.start(chunk);
    const chunkEnd = chunkStart + layout.chunkLength(chunk);
    let offset = chunkStart;

    // An empty chunk still travels as one frame with no payload, which keeps every rank in lockstep.
    do {
      const frame = await context.previous.receive(context.timeoutMs, () =>
        timeoutError(context, position, sequence, `a frame from rank ${previousRank}`, previousRank),
      );
      const header = readFrameHeader(frame, `rank ${previousRank}`);
      checkHeader(context, header, position, sequence, buffer.length, offset, chunkEnd);

      if (position.phase === RingPhase.ReduceScatter) {
        addIntoBufferAndFrame(context.buffers, buffer, frame, header.offset, header.count);
      } else {
        frame.copy(bufferBytes, header.offset * 4, FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + header.count * 4);
      }
      if (forwardPosition !== null) {
        writeFrameHeader(frame, { ...header, ...forwardPosition, senderRank: rank });
        void context.next.send(frame);
      }
      offset += header.count;
    } while (offset < chunkEnd);
  }

  await context.next.waitForSends(context.timeoutMs, () =>
    timeoutError(context, lastPosition, sequence, `rank ${nextRank} to accept data`, nextRank),
  );
}

/** Sends chunk `rank` of the buffer as step 0 of reduce-scatter, in slices of at most `sliceElements`. */
async function sendOwnChunk(
  context: CollectiveContext,
  buffer: Float32Array,
  layout: ChunkLayout,
  sequence: number,
): Promise<void> {
  const { rank } = context;
  const nextRank = context.next.info.peerRank;
  const start = layout.start(rank);
  const end = start + layout.chunkLength(rank);
  const position: StepPosition = { phase: RingPhase.ReduceScatter, step: 0 };
  let offset = start;
  let slotIndex = 0;
  do {
    const count = Math.min(context.sliceElements, end - offset);
    const slot = context.buffers.stagingSlot(slotIndex, Math.min(context.sliceElements, layout.maxChunkLength()));
    await context.next.guard(slot.sent, context.timeoutMs, () =>
      timeoutError(context, position, sequence, `rank ${nextRank} to accept data`, nextRank),
    );
    writeFrameHeader(slot.frame, {
      ...position,
      sequence,
      senderRank: rank,
      totalLength: buffer.length,
      offset,
      count,
    });
    const payload = new Float32Array(slot.frame.buffer, slot.frame.byteOffset + FRAME_HEADER_BYTES, count);
    payload.set(buffer.subarray(offset, offset + count));
    slot.sent = context.next.send(slot.frame.subarray(0, FRAME_HEADER_BYTES + count * 4));
    slotIndex = (slotIndex + 1) % context.stagingSlots;
    offset += count;
  } while (offset < end);
}

/**
 * Adds the payload of `frame` into `buffer` at `offset`, and writes the sums back into the payload so the
 * frame can be forwarded. Each chunk is therefore summed in ring order, starting at the rank that owns it.
 */
function addIntoBufferAndFrame(
  buffers: CollectiveBuffers,
  buffer: Float32Array,
  frame: Buffer,
  offset: number,
  count: number,
): void {
  const payloadByteOffset = frame.byteOffset + FRAME_HEADER_BYTES;
  const aligned = payloadByteOffset % 4 === 0;
  const payloadBytes = count * 4;
  let received: Float32Array;
  if (aligned) {
    received = new Float32Array(frame.buffer, payloadByteOffset, count);
  } else {
    received = buffers.scratchFor(count);
    frame.copy(new Uint8Array(received.buffer, 0, payloadBytes), 0, FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + payloadBytes);
  }
  for (let i = 0; i < count; i += 1) {
    const sum = received[i] + buffer[offset + i];
    buffer[offset + i] = sum;
    received[i] = sum;
  }
  if (!aligned) {
    frame.set(new Uint8Array(received.buffer, 0, payloadBytes), FRAME_HEADER_BYTES);
  }
}

function checkHeader(
  context: CollectiveContext,
  header: FrameHeader,
  position: StepPosition,
  sequence: number,
  length: number,
  offset: number,
  chunkEnd: number,
): void {
  const peer = context.previous.info.peerRank;
  const where = `${phaseName(position.phase)} step ${position.step} of collective ${sequence}`;
  if (header.totalLength !== length) {
    throw protocolError(
      `rank ${context.rank} called allReduce with ${length} elements, but rank ${peer} sent a frame for ` +
        `${header.totalLength} elements in ${where}; every rank must call allReduce with buffers of the same length`,
    );
  }
  if (header.sequence !== sequence >>> 0) {
    throw protocolError(
      `rank ${context.rank} is in collective ${sequence} but rank ${peer} sent a frame of collective ` +
        `${header.sequence}; every rank must call allReduce the same number of times in the same order`,
    );
  }
  if (header.senderRank !== peer || header.phase !== position.phase || header.step !== position.step) {
    throw protocolError(
      `rank ${context.rank} expected a frame from rank ${peer} for ${where} but got one from rank ` +
        `${header.senderRank} for phase ${header.phase} step ${header.step}; the ring order of the ranks disagrees`,
    );
  }
  const remaining = chunkEnd - offset;
  if (header.offset !== offset || header.count > remaining || (header.count === 0 && remaining > 0)) {
    throw protocolError(
      `rank ${context.rank} expected elements from offset ${offset} (${remaining} left in the chunk) from rank ` +
        `${peer} in ${where}, but the frame covers offset ${header.offset} with ${header.count} elements`,
    );
  }
}

function stepPosition(t: number, worldSize: number): StepPosition {
  return t < worldSize - 1
    ? { phase: RingPhase.ReduceScatter, step: t }
    : { phase: RingPhase.AllGather, step: t - (worldSize - 1) };
}

/** Builds the error of a wait that timed out; `awaited` is "a frame from rank 2" or "rank 3 to accept data". */
function timeoutError(
  context: CollectiveContext,
  position: StepPosition,
  sequence: number,
  awaited: string,
  peerRank: number,
): RingtrainError {
  return new RingtrainError(
    'RINGTRAIN_ERR_COLLECTIVE_TIMEOUT',
    `rank ${context.rank} timed out after ${context.timeoutMs} ms waiting for ${awaited} in ` +
      `${phaseName(position.phase)} step ${position.step} of collective ${sequence}; check that rank ${peerRank} ` +
      'is running and calls allReduce as often as the others, or raise allreduce.timeoutMs',
  );
}

function protocolError(message: string): RingtrainError {
  return new RingtrainError('RINGTRAIN_ERR_PROTOCOL', message);
}

function modulo(value: number, divisor: number): number {
  return ((value % divisor) + divisor) % divisor;
}
