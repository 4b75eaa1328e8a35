/**
 * The frames (header plus payload) that a ring reuses across collectives to receive reduce-scatter
 * frames, add to them and forward them.
 */
import { allocateKernelBytes } from '../kernels/kernel-memory.js';
import { FRAME_HEADER_BYTES } from './ring-frame.js';

/**
 * A pool of frames of one size, header plus the largest payload of the ring, so the hot path allocates
 * nothing once the pool has grown to the number of frames in flight. Frames live in the kernel memory,
 * where the SIMD add reads them in place. That memory is never freed, so the pool keeps every frame it made.
 */
export class CollectiveBuffers {
  private readonly free: Buffer[] = [];
  private readonly frameBytes: number;

  /** `maxPayloadBytes` is the largest payload a frame carries: the ring's slice size in bytes. */
  constructor(maxPayloadBytes: number) {
    this.frameBytes = FRAME_HEADER_BYTES + maxPayloadBytes;
  }

  /**
   * Returns a frame with room for `payloadBytes` bytes of payload; its payload is 8-byte aligned. A payload
   * above the pool's size (a peer with larger slices and a raised maxPayload) gets a frame of its own outside
   * the kernel memory, which the add then reads through its copy path.
   */
  takeFrame(payloadBytes: number): Buffer {
    if (FRAME_HEADER_BYTES + payloadBytes > this.frameBytes) {
      return Buffer.allocUnsafeSlow(FRAME_HEADER_BYTES + payloadBytes);
    }
    return this.free.pop() ?? allocateKernelBytes(this.frameBytes);
  }

  /** Returns `frame`, taken with takeFrame, to the pool once nothing reads it any more. */
  releaseFrame(frame: Buffer): void {
    if (frame.length === this.frameBytes) {
      this.free.push(frame);
    }
  }
}
