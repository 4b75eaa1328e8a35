/**
 * The element-wise float32 sum of the ring all-reduce. It runs as the SIMD `add` kernel (kernels.wat), four
 * sums per instruction, on arrays in the kernel memory. Operands that lie elsewhere are first copied into its
 * scratch blocks: one memory copy per operand, still faster than the scalar loop. The last elements of a
 * call, fewer than 16, go through the scalar loop.
 *
 * Every sum is the float32 rounding of the exact sum of two float32 values, on both paths. JavaScript adds in
 * float64 and rounds on the store, which gives the same bits, because float64 has more than 2 × 24 + 2
 * significand bits, so the double rounding cannot differ from a direct float32 addition.
 */
import { SCRATCH_FLOATS, kernelMemory } from '../kernels/kernel-memory.js';

/** Elements per pass of the kernel's loop. The remainder of a call goes to the scalar loop. */
const KERNEL_STRIDE = 16;

/**
 * Stores `first[i] + second[i]` in `target[i]` for i in [0, count). `target` may be `first` or `second`, but
 * must not overlap either of them otherwise. The operand order is fixed, because it decides which NaN payload
 * survives when both operands are NaN.
 */
export function addInto(target: Float32Array, first: Float32Array, second: Float32Array, count: number): void {
  const vectorCount = count - (count % KERNEL_STRIDE);
  if (vectorCount > 0) {
    addWithKernel(target, first, second, vectorCount);
  }
  if (vectorCount < count) {
    addIntoScalar(target.subarray(vectorCount), first.subarray(vectorCount), second.subarray(vectorCount), count - vectorCount);
  }
}

/** Runs the add kernel on the first `count` elements, a multiple of KERNEL_STRIDE. */
function addWithKernel(target: Float32Array, first: Float32Array, second: Float32Array, count: number): void {
  const memory = kernelMemory();
  const targetAddress = memory.addressOf(target);
  const firstAddress = memory.addressOf(first);
  const secondAddress = memory.addressOf(second);
  if (targetAddress >= 0 && firstAddress >= 0 && secondAddress >= 0) {
    memory.kernels.add(targetAddress, firstAddress, secondAddress, count * 4);
    return;
  }
  // Block by block through the scratch blocks: outside operands are copied in, and a target outside the
  // memory receives its block from the first scratch block, where the kernel wrote the sums.
  const [scratchFirst, scratchSecond] = memory.scratch;
  for (let start = 0; start < count; start += SCRATCH_FLOATS) {
    const length = Math.min(SCRATCH_FLOATS, count - start);
    const heap = memory.heap;
    const a = firstAddress >= 0 ? firstAddress + start * 4 : copyIn(heap, scratchFirst, first, start, length);
    const b = secondAddress >= 0 ? secondAddress + start * 4 : copyIn(heap, scratchSecond, second, start, length);
    const sums = targetAddress >= 0 ? targetAddress + start * 4 : scratchFirst;
    memory.kernels.add(sums, a, b, length * 4);
    if (targetAddress < 0) {
      target.set(heap.subarray(scratchFirst / 4, scratchFirst / 4 + length), start);
    }
  }
}

function copyIn(heap: Float32Array, address: number, source: Float32Array, start: number, length: number): number {
  heap.set(source.subarray(start, start + length), address / 4);
  return address;
}

/**
 * Computes the same sums as `addInto`, one element at a time. The loop works on subarrays indexed from 0 and
 * is unrolled by 8, because V8 then keeps the values in registers and drops most bounds checks.
 */
export function addIntoScalar(target: Float32Array, first: Float32Array, second: Float32Array, count: number): void {
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
