import test from 'ava';
import {
  FLOAT16_MAX,
  addDecodedInto,
  decodeBFloat16,
  decodeFloat16,
  encodeBFloat16,
  encodeFloat16,
  fromBFloat16Bits,
  fromFloat16Bits,
  toBFloat16Bits,
  toFloat16Bits,
} from '../src/comm/half-float.js';

/** A 16-bit format under test, with its largest finite positive bit pattern. */
interface Format {
  name: string;
  encode: (value: number) => number;
  decode: (bits: number) => number;
  /** Bit pattern of the largest finite positive value; positive patterns up to it increase with their value. */
  maxFinite: number;
  infinity: number;
}

const FP16: Format = { name: 'fp16', encode: toFloat16Bits, decode: fromFloat16Bits, maxFinite: 0x7bff, infinity: 0x7c00 };
const BF16: Format = { name: 'bf16', encode: toBFloat16Bits, decode: fromBFloat16Bits, maxFinite: 0x7f7f, infinity: 0x7f80 };

function isNaNBits(format: Format, bits: number): boolean {
  return (bits & 0x7fff) > format.infinity;
}

/**
 * Returns the bits nearest to the non-negative float32 `value` by a method independent of the encoder: a
 * binary search over the format's positive values, ties to the even pattern, and infinity from the
 * halfway point above the largest finite value.
 */
function referenceBits(format: Format, value: number): number {
  const top = format.decode(format.maxFinite);
  // The next power of two above the largest finite value is where the first infinite binade would start.
  const halfwayToInfinity = (top + 2 ** Math.ceil(Math.log2(top + 1))) / 2;
  if (value >= halfwayToInfinity) {
    return format.infinity;
  }
  let low = 0;
  let high = format.maxFinite;
  while (low < high) {
    const middle = (low + high + 1) >> 1;
    if (format.decode(middle) <= value) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  if (low === format.maxFinite) {
    return low;
  }
  const below = value - format.decode(low);
  const above = format.decode(low + 1) - value;
  if (below < above) {
    return low;
  }
  if (above < below) {
    return low + 1;
  }
  return low % 2 === 0 ? low : low + 1;
}

/** Returns `count` float32 values with seeded random bit patterns, excluding NaN. */
function randomFloats(seed: number, count: number): Float32Array {
  const bits = new Uint32Array(count);
  let state = seed >>> 0;
  for (let i = 0; i < count; i += 1) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    let z = Math.imul(state ^ (state >>> 15), 0x2c1b3c6d);
    z = Math.imul(z ^ (z >>> 12), 0x297a2d39) ^ (z >>> 15);
    bits[i] = (z & 0x7fffffff) > 0x7f800000 ? z & 0xff800000 : z >>> 0;
  }
  return new Float32Array(bits.buffer);
}

for (const format of [FP16, BF16]) {
  test(`${format.name} round trip is exact`, (t) => {
    // Every non-NaN pattern decodes to a float32 that encodes back to the same pattern.
    let mismatches = 0;
    let first = 'none';
    for (let bits = 0; bits < 65536; bits += 1) {
      if (isNaNBits(format, bits)) {
        continue;
      }
      const back = format.encode(format.decode(bits));
      if (back !== bits) {
        mismatches += 1;
        first = mismatches === 1 ? `0x${bits.toString(16)} came back as 0x${back.toString(16)}` : first;
      }
    }
    t.is(mismatches, 0, first);
  });

  test(`${format.name} ties round to even`, (t) => {
    // Halfway between neighbours the even pattern wins; midpoints have one bit more than the format and
    // are exact in float32 (fp16 has 11 significant bits, bf16 8, float32 24).
    let mismatches = 0;
    let first = 'none';
    for (let bits = 0; bits < format.maxFinite; bits += 1) {
      const middle = (format.decode(bits) + format.decode(bits + 1)) / 2;
      const expected = bits % 2 === 0 ? bits : bits + 1;
      for (const [value, want] of [
        [middle, expected],
        [-middle, expected | 0x8000],
      ]) {
        const got = format.encode(value);
        if (got !== want) {
          mismatches += 1;
          first = mismatches === 1 ? `${value} gave 0x${got.toString(16)}, expected 0x${want.toString(16)}` : first;
        }
      }
    }
    t.is(mismatches, 0, first);
  });

  test(`${format.name} random floats round nearest`, (t) => {
    const values = randomFloats(format === FP16 ? 11 : 12, 200_000);
    let mismatches = 0;
    let first = 'none';
    for (const value of values) {
      const expected = referenceBits(format, Math.abs(value)) | (value < 0 || Object.is(value, -0) ? 0x8000 : 0);
      const got = format.encode(value);
      if (got !== expected) {
        mismatches += 1;
        first = mismatches === 1 ? `${value} gave 0x${got.toString(16)}, expected 0x${expected.toString(16)}` : first;
      }
    }
    t.is(mismatches, 0, first);
  });

  test(`${format.name} keeps NaN and infinities`, (t) => {
    t.true(isNaNBits(format, format.encode(Number.NaN)), 'NaN must encode as NaN');
    t.true(Number.isNaN(format.decode(format.infinity | 1)), 'a NaN pattern must decode to NaN');
    t.is(format.encode(Number.POSITIVE_INFINITY), format.infinity);
    t.is(format.encode(Number.NEGATIVE_INFINITY), format.infinity | 0x8000);
    t.is(format.decode(format.infinity), Number.POSITIVE_INFINITY);
    t.is(format.encode(-0), 0x8000);
    t.true(Object.is(format.decode(0x8000), -0));
  });
}

test('fp16 overflow maps to infinity', (t) => {
  // 65520 is halfway between FLOAT16_MAX (odd fraction 0x3ff) and 2^16, so the even choice is infinity.
  t.is(toFloat16Bits(FLOAT16_MAX), 0x7bff);
  t.is(toFloat16Bits(65519.99), 0x7bff);
  t.is(toFloat16Bits(65520), 0x7c00);
  t.is(toFloat16Bits(-1e6), 0xfc00);
  t.is(toFloat16Bits(3.4e38), 0x7c00);
});

test('fp16 subnormals round correctly', (t) => {
  // The smallest fp16 subnormal is 2^-24; 2^-25 is a tie between 0 and it, so it rounds to even 0.
  t.is(toFloat16Bits(2 ** -24), 0x0001);
  t.is(toFloat16Bits(2 ** -25), 0x0000);
  t.is(toFloat16Bits(2 ** -25 * (1 + 2 ** -23)), 0x0001);
  t.is(toFloat16Bits(3 * 2 ** -25), 0x0002);
  t.is(toFloat16Bits(-(2 ** -30)), 0x8000);
  t.is(toFloat16Bits(2 ** -149), 0x0000);
  // 2^-14 - 2^-25 lies halfway between the largest subnormal 1023 × 2^-24 and 2^-14; 2^-14 is even.
  t.is(toFloat16Bits(2 ** -14 - 2 ** -25), 0x0400);
  t.is(fromFloat16Bits(0x03ff), 1023 * 2 ** -24);
});

test('bf16 overflow maps to infinity', (t) => {
  // The largest float32 lies above the halfway point between bf16's largest value and 2^128.
  t.is(toBFloat16Bits(3.4028234663852886e38), 0x7f80);
  t.is(toBFloat16Bits(-3.4028234663852886e38), 0xff80);
});

test('array conversions honour offsets', (t) => {
  const values = new Float32Array([1, 0.1, -2.5, 65504, 1e-6, 7]);
  const bits = new Uint32Array(values.buffer);
  for (const [name, encode, decode, scalar] of [
    ['fp16', encodeFloat16, decodeFloat16, toFloat16Bits],
    ['bf16', encodeBFloat16, decodeBFloat16, toBFloat16Bits],
  ] as const) {
    const halves = new Uint16Array(8).fill(0xabcd);
    encode(bits, 1, halves, 2, 4);
    t.deepEqual([...halves], [0xabcd, 0xabcd, ...[0.1, -2.5, 65504, 1e-6].map(scalar), 0xabcd, 0xabcd], name);
    const back = new Float32Array(6).fill(9);
    decode(halves, 2, new Uint32Array(back.buffer), 1, 4);
    t.is(back[0], 9, `${name}: element before the range changed`);
    t.is(back[5], 9, `${name}: element after the range changed`);
  }
});

test('decoded add uses float32 sums', (t) => {
  // 1 + 2^-24 is not a float32, so a float32 sum rounds it back to 1; the halves decode exactly.
  const received = new Uint16Array([toFloat16Bits(1), toFloat16Bits(0.5), toFloat16Bits(-3)]);
  const local = new Float32Array([0, 2 ** -24, 0.25, 1, 0]);
  addDecodedInto(received, 0, local, 1, 3, false);
  t.deepEqual([...local], [0, 1, 0.75, -2, 0]);
  const bfloat = new Uint16Array([toBFloat16Bits(2)]);
  const target = new Float32Array([0.5]);
  addDecodedInto(bfloat, 0, target, 0, 1, true);
  t.is(target[0], 2.5);
});
