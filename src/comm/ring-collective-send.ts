/**
 * The sending side of one ring collective: the slices of the own chunk and the frames forwarded to the next
 * rank, sent straight from the caller's buffer where possible, and the time a write last made progress.
 */
import { encodeIntoFrame } from './ring-compressed.js';
import { FRAME_HEADER_BYTES, elementBytes, writeFrameHeader, type FrameHeader } from './ring-frame.js';
import type { CollectiveBuffers } from './ring-frame-pool.js';
import type { SendLink } from './ring-link.js';
import type { CollectiveSchedule } from './ring-schedule.js';

/** Sends the frames of one collective to the next rank and returns each pool frame to the pool once written. */
export class CollectiveSender {
  private readonly next: SendLink;
  private readonly buffers: CollectiveBuffers;
  /** Largest payload of a frame this rank originates, in elements. */
  private readonly sliceElements: number;
  private readonly bufferBytes: Uint8Array;
  /** The buffer's float32 values as integer bits, for the 16-bit conversions. */
  private readonly bufferBits: Uint32Array;
  private readonly schedule: CollectiveSchedule;
  /** Bytes per payload value: 4, or 2 with compression. */
  private readonly valueBytes: number;
  /** Called after every finished write until `stop()`. */
  private readonly onWritten: () => void;
  private stopped = false;

  /** Time of the last finished write, or of the first send while no write was pending. */
  lastWriteAt = performance.now();

  constructor(
    next: SendLink,
    buffers: CollectiveBuffers,
    sliceElements: number,
    buffer: Float32Array,
    schedule: CollectiveSchedule,
    onWritten: () => void,
  ) {
    this.next = next;
    this.buffers = buffers;
    this.sliceElements = sliceElements;
    this.bufferBytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    this.bufferBits = new Uint32Array(buffer.buffer, buffer.byteOffset, buffer.length);
    this.schedule = schedule;
    this.valueBytes = elementBytes(schedule.region.elementType);
    this.onWritten = onWritten;
  }

  /**
   * Sends the own chunk in slices of at most sliceElements: straight from the buffer for float32, else
   * encoded into pool frames. In an all-reduce its region of the buffer changes again only in all-gather
   * step 0. By then every byte sent from it has reached the kernel, because its final sums depend on all of
   * them having passed through the next rank. A standalone all-gather starts with the chunk this rank owns,
   * which no received frame overwrites.
   */
  sendOwnChunk(): void {
    const { sliceElements } = this;
    const { rank, region, sequence, totalLength, ownStart, ownEnd } = this.schedule;
    const position = this.schedule.headerPosition(this.schedule.firstStep);
    let offset = ownStart;
    do {
      const count = Math.min(sliceElements, ownEnd - offset);
      const header: FrameHeader = {
        ...position,
        elementType: region.elementType,
        sequence,
        senderRank: rank,
        totalLength,
        bucket: region.index,
        bucketElements: region.maxElements,
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
    } while (offset < ownEnd);
  }

  /** Sends the frame `header` with its payload encoded from the buffer into a pool frame. */
  private sendEncoded(header: FrameHeader): void {
    const frame = this.buffers.takeFrame(header.count * 2);
    encodeIntoFrame(frame, this.bufferBits, header.offset, header.count, this.schedule.region.elementType);
    writeFrameHeader(frame, header);
    this.sendFrame(frame.subarray(0, FRAME_HEADER_BYTES + header.count * 2), frame);
  }

  /**
   * Sends the frame `header` with its payload read from the buffer; that region must not change until
   * the collective ends, which is true of the own chunk (see sendOwnChunk) and of every chunk that
   * all-gather has written.
   */
  sendFromBuffer(header: FrameHeader): void {
    const headerBytes = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
    writeFrameHeader(headerBytes, header);
    const payload = Buffer.from(this.bufferBytes.buffer, this.bufferBytes.byteOffset + header.offset * 4, header.count * 4);
    this.noteSendStart();
    this.next.sendWithHeader(headerBytes, payload, () => this.handleWritten(null));
  }

  /** Sends `message`, a view of the pool frame `frame`, and returns the frame to the pool once written. */
  sendFrame(message: Buffer, frame: Buffer): void {
    this.noteSendStart();
    this.next.send(message, () => this.handleWritten(frame));
  }

  /** Stops calling `onWritten` and returning written frames to the pool; the run calls it when it settles. */
  stop(): void {
    this.stopped = true;
  }

  private noteSendStart(): void {
    if (this.next.pendingSends === 0) {
      this.lastWriteAt = performance.now();
    }
  }

  private handleWritten(frame: Buffer | null): void {
    this.lastWriteAt = performance.now();
    if (this.stopped) {
      return;
    }
    if (frame !== null) {
      this.buffers.releaseFrame(frame);
    }
    this.onWritten();
  }
}
