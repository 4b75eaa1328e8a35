/**
 * Conversion between float32 and the two 16-bit formats that compressed all-reduce frames carry:
 * IEEE 754 binary16 (fp16: 1 sign, 5 exponent, 10 fraction bits) and bfloat16 (bf16: the upper half of a
 * float32, 1 sign, 8 exponent, 7 fraction bits).
 *
 * Encoding rounds to nearest, ties to even. Finite values too large for the format become infinity of the
 * same sign, as IEEE 754 rounding does, instead of saturating at the largest finite value: a gradient that
 * overflows then shows up in the trainer's non-finite check instead of being clipped without notice.
 * fp16 keeps subnormals (down to 2^-24); values of at most 2^-25 in magnitude become a zero of the same
 * sign. NaN stays NaN: the sign and the top fraction bits are kept and the quiet bit is set.
 *
 * The functions work on the integer bits of float32 values (a Uint32Array over the float32 memory), so
 * NaN payloads survive unchanged, and write into arrays that the caller owns. They allocate nothing.
 */

/** Largest finite fp16 value, 65504 = (2 - 2^-10) × 2^15. */
export const FLOAT16_MAX = 65504;

/** Lazily built table from every fp16 bit pattern to the bits of the equal float32 value. */
let float16Table: { bits: Uint32Array; values: Float32Array } | null = null;
/** Lazily built table from every bf16 bit pattern to the equal float32 value. */
let bfloat16Values: Float32Array | null = null;

/** Returns the fp16-to-float32 table, 256 KiB, built on first use. */
function float16Lookup(): { bits: Uint32Array; values: Float32Array } {
  if (float16Table === null) {
    const bits = new Uint32Array(65536);
    const values = new Float32Array(bits.buffer);
    for (let half = 0; half < 65536; half += 1) {
      const sign = (half & 0x8000) << 16;
      const exponent = (half >>> 10) & 0x1f;
      const fraction = half & 0x3ff;
      if (exponent === 0) {
        // Subnormal or zero: fraction × 2^-24 is exact in float32.
        values[half] = fraction * 2 ** -24;
        bits[half] |= sign;
      } else if (exponent === 31) {
        bits[half] = (sign | 0x7f800000 | (fraction << 13)) >>> 0;
      } else {
        // Rebias the exponent from 15 to 127 and widen the fraction from 10 to 23 bits.
        bits[half] = (sign | ((exponent + 112) << 23) | (fraction << 13)) >>> 0;
      }
    }
    float16Table = { bits, values };
  }
  return float16Table;
}

/** Returns the bf16-to-float32 table, 256 KiB, built on first use. */
function bfloat16Lookup(): Float32Array {
  if (bfloat16Values === null) {
    const bits = new Uint32Array(65536);
    for (let half = 0; half < 65536; half += 1) {
      bits[half] = (half << 16) >>> 0;
    }
    bfloat16Values = new Float32Array(bits.buffer);
  }
  return bfloat16Values;
}

/** Returns the fp16 bits nearest to the float32 whose bits are `bits` (ties to even). */
function float16FromBits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  const magnitude = bits & 0x7fffffff;
  if (magnitude >= 0x38800000) {
    if (magnitude < 0x477ff000) {
      // Normal: rebias the exponent by 112 and round away the low 13 fraction bits; a carry into the
      // exponent gives the next binade, as it should. 0x477ff000 is 65520, halfway above FLOAT16_MAX.
      return sign | ((magnitude - 0x38000000 + 0xfff + ((magnitude >>> 13) & 1)) >>> 13);
    }
    if (magnitude <= 0x7f800000) {
      return sign | 0x7c00;
    }
    return sign | 0x7e00 | ((magnitude >>> 13) & 0x3ff);
  }
  if (magnitude <= 0x33000000) {
    // At most 2^-25, half the smallest subnormal: the tie at 2^-25 goes to the even neighbour, zero.
    return sign;
  }
  // Subnormal: the result is round(x / 2^-24), taken from the 24-bit significand shifted right.
  const shift = 126 - (magnitude >>> 23);
  const significand = (magnitude & 0x7fffff) | 0x800000;
  let rounded = significand >>> shift;
  const remainder = significand & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  if (remainder > half || (remainder === half && (rounded & 1) === 1)) {
    rounded += 1;
  }
  return sign | rounded;
}

/**
 * Encodes `count` float32 values, given as their bits in `source` from `sourceStart`, as fp16 into
 * `target` from `targetStart`.
 */
export function encodeFloat16(source: Uint32Array, sourceStart: number, target: Uint16Array, targetStart: number, count: number): void {
  for (let i = 0; i < count; i += 1) {
    target[targetStart + i] = float16FromBits(source[sourceStart + i]);
  }
}

/** Decodes `count` fp16 values from `source` into float32 bits in `target`; every fp16 value is exact in float32. */
export function decodeFloat16(source: Uint16Array, sourceStart: number, target: Uint32Array, targetStart: number, count: number): void {
  const table = float16Lookup().bits;
  for (let i = 0; i < count; i += 1) {
    target[targetStart + i] = table[source[sourceStart + i]];
  }
}

/** Encodes `count` float32 values, given as their bits, as bf16 (ties to even; NaN stays a quiet NaN). */
export function encodeBFloat16(source: Uint32Array, sourceStart: number, target: Uint16Array, targetStart: number, count: number): void {
  for (let i = 0; i < count; i += 1) {
    const bits = source[sourceStart + i];
    if ((bits & 0x7fffffff) > 0x7f800000) {
      target[targetStart + i] = (bits >>> 16) | 0x0040;
    } else {
      // Adding 0x7fff plus the lowest kept bit rounds ties to even; the sum stays below 2^32.
      target[targetStart + i] = (bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16;
    }
  }
}

/** Decodes `count` bf16 values from `source` into float32 bits in `target`. */
export function decodeBFloat16(source: Uint16Array, sourceStart: number, target: Uint32Array, targetStart: number, count: number): void {
  for (let i = 0; i < count; i += 1) {
    target[targetStart + i] = source[sourceStart + i] << 16;
  }
}

/**
 * Stores `decode(received[i]) + local[localStart + i]` in `local[localStart + i]` for i in [0, count), with
 * float32 rounding; `bfloat16` selects the format of `received`. The received value is the first operand,
 * as in addInto, so the same NaN payload survives as in an uncompressed sum.
 */
export function addDecodedInto(
  received: Uint16Array,
  receivedStart: number,
  local: Float32Array,
  localStart: number,
  count: number,
  bfloat16: boolean,
): void {
  const table = bfloat16 ? bfloat16Lookup() : float16Lookup().values;
  for (let i = 0; i < count; i += 1) {
    local[localStart + i] = table[received[receivedStart + i]] + local[localStart + i];
  }
}

/** Scratch for the single-value helpers below; reused, so those helpers allocate nothing. */
const scratchValue = new Float32Array(1);
const scratchBits = new Uint32Array(scratchValue.buffer);
const scratchHalf = new Uint16Array(1);

/** Returns the fp16 bits nearest to `value` after rounding it to float32. */
export function toFloat16Bits(value: number): number {
  scratchValue[0] = value;
  encodeFloat16(scratchBits, 0, scratchHalf, 0, 1);
  return scratchHalf[0];
}

/** Returns the float32 value of the fp16 bits `bits` (0 to 65535). */
export function fromFloat16Bits(bits: number): number {
  return float16Lookup().values[bits & 0xffff];
}

/** Returns the bf16 bits nearest to `value` after rounding it to float32. */
export function toBFloat16Bits(value: number): number {
  scratchValue[0] = value;
  encodeBFloat16(scratchBits, 0, scratchHalf, 0, 1);
  return scratchHalf[0];
}

/** Returns the float32 value of the bf16 bits `bits` (0 to 65535). */
export function fromBFloat16Bits(bits: number): number {
  return bfloat16Lookup()[bits & 0xffff];
}
