/** Bitwise comparison of float32 arrays, for tests of kernels that must match their JavaScript loops exactly. */

/** Returns true when both arrays have the same length and the same bits in every element (NaN payloads included). */
export function sameBits(a: Float32Array, b: Float32Array): boolean {
  const left = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const right = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return left.length === right.length && left.every((bits, index) => bits === right[index]);
}
