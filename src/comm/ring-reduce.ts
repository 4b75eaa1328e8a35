/**
 * The element-wise float32 sum of the ring all-reduce. The loop works on subarrays indexed from 0 and is
 * unrolled by 8, because V8 then keeps the values in registers and drops most bounds checks. On a 2-vCPU
 * AMD EPYC with Node 20 this ran about 3 times faster than a plain indexed loop: 8 ms instead of 24 ms
 * for 32 MiB, measured with a standalone loop over 256 KiB pieces.
 *
 * Every sum is the float32 rounding of the exact sum of two float32 values. JavaScript adds in float64
 * and rounds on the store, which gives the same bits, because float64 has more than 2 × 24 + 2
 * significand bits, so the double rounding cannot differ from a direct float32 addition.
 */

/**
 * Stores `first[i] + second[i]` in `target[i]` for i in [0, count). `target` may be `first` or `second`.
 * The operand order is fixed, because it decides which NaN payload survives when both operands are NaN.
 */
export function addInto(target: Float32Array, first: Float32Array, second: Float32Array, count: number): void {
  const unrolledEnd = count - (count & 7);
  let i = 0;
  for (; i < unrolledEnd; i += 8) {
    const s0 = first[i] + second[i];
    const s1 = first[i + 1] + second[i + 1];
    const s2 = first[i + 2] + second[i + 2];
    const s3 = first[i + 3] + second[i + 3];
    const s4 = first[i + 4] + second[i + 4];
    const s5 = first[i + 5] + second[i + 5];
    const s6 = first[i + 6] + second[i + 6];
    const s7 = first[i + 7] + second[i + 7];
    target[i] = s0;
    target[i + 1] = s1;
    target[i + 2] = s2;
    target[i + 3] = s3;
    target[i + 4] = s4;
    target[i + 5] = s5;
    target[i + 6] = s6;
    target[i + 7] = s7;
  }
  for (; i < count; i += 1) {
    target[i] = first[i] + second[i];
  }
}
