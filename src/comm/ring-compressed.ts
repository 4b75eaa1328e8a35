/**
 * The payload steps of a compressed (fp16 or bf16) ring collective: encoding buffer values into a frame,
 * and applying a received frame to the buffer. Sums are float32; only the wire values have 16 bits.
 */
import { addDecodedInto, decodeBFloat16, decodeFloat16, encodeBFloat16, encodeFloat16 } from './half-float.js';
import { ElementType, FRAME_HEADER_BYTES } from './ring-frame.js';

/** The step that a received 16-bit frame belongs to, which decides how it changes the buffer. */
export type HalfFrameRole =
  /** An intermediate reduce-scatter step: add, and send the partial sum on in the same frame. */
  | 'partial-sum'
  /** The last reduce-scatter step: add, round the complete sum through 16 bits, and keep the rounded value. */
  | 'final-sum'
  /** All-gather: copy the decoded values into the buffer; the frame travels on unchanged. */
  | 'gather';

/** Returns a view of the `count` 16-bit payload values of `frame`, a pool frame at an even byte offset. */
function payloadOf(frame: Buffer, count: number): Uint16Array {
  return new Uint16Array(frame.buffer, frame.byteOffset + FRAME_HEADER_BYTES, count);
}

/** Encodes the buffer values [offset, offset + count), given as float32 bits, into the payload of `frame`. */
export function encodeIntoFrame(frame: Buffer, bufferBits: Uint32Array, offset: number, count: number, type: ElementType): void {
  const encode = type === ElementType.BFloat16 ? encodeBFloat16 : encodeFloat16;
  encode(bufferBits, offset, payloadOf(frame, count), 0, count);
}

/**
 * Applies the `count` received values in `frame` to the buffer from `offset` for the step `role`. Afterwards
 * the frame's payload is what the next rank must receive. `buffer` and `bufferBits` view the same memory.
 */
export function applyHalfFrame(
  frame: Buffer,
  count: number,
  buffer: Float32Array,
  bufferBits: Uint32Array,
  offset: number,
  type: ElementType,
  role: HalfFrameRole,
): void {
  const halves = payloadOf(frame, count);
  const bfloat16 = type === ElementType.BFloat16;
  const decode = bfloat16 ? decodeBFloat16 : decodeFloat16;
  if (role === 'gather') {
    decode(halves, 0, bufferBits, offset, count);
    return;
  }
  // The buffer region is scratch until all-gather overwrites it, or receives the final sum at the last step.
  addDecodedInto(halves, 0, buffer, offset, count, bfloat16);
  (bfloat16 ? encodeBFloat16 : encodeFloat16)(bufferBits, offset, halves, 0, count);
  if (role === 'final-sum') {
    // This rank owns the complete sum: it keeps the rounded value that the other ranks will decode.
    decode(halves, 0, bufferBits, offset, count);
  }
}
