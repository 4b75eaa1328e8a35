/**
 * Blocks of a flat gradient buffer that are zero on every rank, and how to leave them out of an exchange.
 * The buffer is cut into blocks of BLOCK_ELEMENTS values. Each rank writes 1 into a flag array for every
 * block that holds a nonzero bit pattern (-0 included), and the flags are summed across ranks. `gatherBlocks`
 * packs the blocks whose sum is above 0 into a short buffer, with the same layout on every rank. After that
 * buffer is all-reduced, `scatterBlocks` puts the sums back. Every unmarked block holds +0 in all its values on
 * every rank, which is also what the full all-reduce leaves there, so the result equals the full exchange.
 *
 * Embedding tables make such gradients: a step reads a few rows of a large table, and every other row's
 * gradient is exactly zero.
 */
import { kernelMemory } from '../kernels/kernel-memory.js';
import type { ElementRange } from '../optim/clip.js';

/** Values per block: 256 bytes, one row of a 64-wide embedding. */
export const BLOCK_ELEMENTS = 64;

/** Returns the number of blocks of a buffer of `length` values. The last block may be short. */
export function blockCount(length: number): number {
  return Math.ceil(length / BLOCK_ELEMENTS);
}

/**
 * Sets `flags[b]` to 1 when block b of `values[0, length)` holds any nonzero bit pattern (-0 counts), else to
 * 0. `flags` needs blockCount(length) entries.
 */
export function markNonzeroBlocks(values: Float32Array, length: number, flags: Float32Array): void {
  const fullBlocks = Math.floor(length / BLOCK_ELEMENTS);
  const memory = kernelMemory();
  const valuesAddress = memory.addressOf(values);
  const flagsAddress = memory.addressOf(flags);
  let first = 0;
  if (valuesAddress >= 0 && flagsAddress >= 0) {
    memory.kernels.nonzeroBlocks(valuesAddress, fullBlocks, flagsAddress);
    first = fullBlocks;
  }
  const bits = new Uint32Array(values.buffer, values.byteOffset, length);
  for (let block = first; block < blockCount(length); block++) {
    const end = Math.min(length, (block + 1) * BLOCK_ELEMENTS);
    let any = 0;
    for (let i = block * BLOCK_ELEMENTS; i < end; i++) any |= bits[i] as number;
    flags[block] = any === 0 ? 0 : 1;
  }
}

/** Counts the blocks whose summed flag is above 0. */
export function countMarked(flags: Float32Array): number {
  let count = 0;
  for (let block = 0; block < flags.length; block++) if ((flags[block] as number) > 0) count++;
  return count;
}

/**
 * Copies the marked blocks of `values[0, length)` (summed flag above 0) to the start of `packed`, in block
 * order, and returns the number of values copied.
 */
export function gatherBlocks(values: Float32Array, length: number, flags: Float32Array, packed: Float32Array): number {
  return moveBlocks(values, length, flags, packed, false);
}

/**
 * Copies the packed blocks back into `values`, the inverse of gatherBlocks. Unmarked blocks stay as they are,
 * because with flags summed over all ranks they contain only +0 already.
 */
export function scatterBlocks(packed: Float32Array, length: number, flags: Float32Array, values: Float32Array): void {
  moveBlocks(values, length, flags, packed, true);
}

/**
 * Packs (or with `unpack`, unpacks) the marked blocks and returns the number of values moved. When all three
 * arrays lie in the kernel memory, whole blocks go through the `packBlocks` kernel. Otherwise runs of blocks
 * are copied one by one.
 */
function moveBlocks(values: Float32Array, length: number, flags: Float32Array, packed: Float32Array, unpack: boolean): number {
  const memory = kernelMemory();
  const addresses = [values, flags, packed].map((array) => memory.addressOf(array));
  const move = (from: number, end: number, moved: number): void => {
    if (unpack) values.set(packed.subarray(moved, moved + end - from), from);
    else packed.set(values.subarray(from, end), moved);
  };
  let moved = 0;
  if (addresses.every((address) => address >= 0)) {
    const wholeBlocks = Math.floor(length / BLOCK_ELEMENTS);
    const [valuesAddress, flagsAddress, packedAddress] = addresses as [number, number, number];
    moved = memory.kernels.packBlocks(valuesAddress, flagsAddress, wholeBlocks, packedAddress, unpack ? 1 : 0);
    // The short last block, if any.
    if (wholeBlocks < blockCount(length) && (flags[wholeBlocks] as number) > 0) {
      move(wholeBlocks * BLOCK_ELEMENTS, length, moved);
      moved += length - wholeBlocks * BLOCK_ELEMENTS;
    }
    return moved;
  }
  forEachRun(length, flags, (start, end, marked) => {
    if (marked) {
      move(start, end, moved);
      moved += end - start;
    }
  });
  return moved;
}

/**
 * Returns the parts of `within` (sorted, disjoint ranges of `values[0, length)`) that lie in marked blocks, in
 * order. Outside them the summed gradients are +0, so a sum over the gradients can skip them.
 */
export function markedRanges(length: number, flags: Float32Array, within: readonly ElementRange[]): ElementRange[] {
  const marked: ElementRange[] = [];
  forEachRun(length, flags, (start, end, isMarked) => {
    if (isMarked) marked.push({ start, end });
  });
  const result: ElementRange[] = [];
  let m = 0;
  for (const range of within) {
    while (m < marked.length && (marked[m] as ElementRange).end <= range.start) m++;
    for (let k = m; k < marked.length && (marked[k] as ElementRange).start < range.end; k++) {
      const start = Math.max(range.start, (marked[k] as ElementRange).start);
      const end = Math.min(range.end, (marked[k] as ElementRange).end);
      if (start < end) result.push({ start, end });
    }
  }
  return result;
}

/** Calls `visit` for each maximal run of blocks that are all marked or all unmarked, in order. */
function forEachRun(length: number, flags: Float32Array, visit: (start: number, end: number, marked: boolean) => void): void {
  const blocks = blockCount(length);
  let runStart = 0;
  for (let block = 1; block <= blocks; block++) {
    const marked = (flags[runStart] as number) > 0;
    if (block === blocks || ((flags[block] as number) > 0) !== marked) {
      visit(runStart * BLOCK_ELEMENTS, Math.min(length, block * BLOCK_ELEMENTS), marked);
      runStart = block;
    }
  }
}
