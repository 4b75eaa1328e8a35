/**
 * The frames (header plus payload) that a ring reuses across collectives to receive reduce-scatter
 * frames, add to them and forward them.
 */
import { FRAME_HEADER_BYTES } from './ring-frame.js';

/** Number of free frames a ring keeps between collectives; more are left to the garbage collector. */
const RETAINED_FRAMES = 8;

/**
 * A pool of frames (header plus payload) that a ring reuses across collectives, so the hot path allocates
 * nothing once the pool has grown to the number of frames in flight.
 */
export class CollectiveBuffers {
  private readonly free: Buffer[] = [];
  /** Size of the largest frame requested so far; new frames get this size, so any free frame fits. */
  private frameBytes = 0;

  /** Returns a frame with room for `payloadBytes` bytes of payload; its first byte is 8-byte aligned. */
  takeFrame(payloadBytes: number): Buffer {
    const bytes = FRAME_HEADER_BYTES + payloadBytes;
    if (bytes > this.frameBytes) {
      this.frameBytes = bytes;
      this.free.length = 0;
    }
    // allocUnsafeSlow gives the frame its own ArrayBuffer at offset 0, so the payload is 8-byte aligned.
    return this.free.pop() ?? Buffer.allocUnsafeSlow(this.frameBytes);
  }

  /** Returns `frame`, taken with takeFrame, to the pool once nothing reads it any more. */
  releaseFrame(frame: Buffer): void {
    if (frame.length === this.frameBytes) {
      this.free.push(frame);
    }
  }

  /** Drops free frames beyond the few that the next collective will need first. */
  trim(): void {
    this.free.splice(0, Math.max(0, this.free.length - RETAINED_FRAMES));
  }
}
