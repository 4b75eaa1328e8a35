import test from 'ava';
import { addIntoScalar } from '../src/comm/ring-reduce.js';
import { BLOCK_ELEMENTS, blockCount, countMarked, gatherBlocks, markNonzeroBlocks, scatterBlocks } from '../src/comm/zero-blocks.js';
import { kernelMemory } from '../src/kernels/kernel-memory.js';
import { SeededRandom } from '../src/random.js';

/** Returns a gradient-like buffer: most blocks zero, some rows of random values, a few -0 entries. */
function sparseGradient(random: SeededRandom, length: number, inKernelMemory: boolean): Float32Array {
  const values = inKernelMemory ? kernelMemory().allocateFloats(length) : new Float32Array(length);
  for (let block = 0; block < blockCount(length); block++) {
    const pick = random.next();
    const start = block * BLOCK_ELEMENTS;
    const end = Math.min(length, start + BLOCK_ELEMENTS);
    if (pick < 0.1) {
      for (let i = start; i < end; i++) values[i] = random.next() - 0.5;
    } else if (pick < 0.13) {
      // One value in the block: the whole block must still travel.
      values[start + random.nextInt(end - start)] = random.next() < 0.5 ? -0 : 1e-30;
    }
  }
  return values;
}

function bitsOf(values: Float32Array): Uint32Array {
  return new Uint32Array(values.buffer, values.byteOffset, values.length);
}

test('packed exchange equals full exchange', (t) => {
  const random = new SeededRandom(3);
  // Lengths with and without a short last block, in and out of the kernel memory (kernel scan and scalar scan).
  for (const length of [1, 63, 64, 65, 4096, 10_000]) {
    for (const inKernelMemory of [true, false]) {
      const ranks = [0, 1, 2].map(() => sparseGradient(random, length, inKernelMemory));
      const full = Float32Array.from(ranks[0] as Float32Array);
      for (const other of ranks.slice(1)) addIntoScalar(full, full, other, length);

      const blocks = blockCount(length);
      // In the kernel memory every array is there, so packing runs on the packBlocks kernel.
      const floats = (count: number): Float32Array => (inKernelMemory ? kernelMemory().allocateFloats(count) : new Float32Array(count));
      const summedFlags = floats(blocks);
      const flags = ranks.map((values) => {
        const rankFlags = floats(blocks);
        markNonzeroBlocks(values, length, rankFlags);
        addIntoScalar(summedFlags, summedFlags, rankFlags, blocks);
        return rankFlags;
      });
      // Each rank's own flags are 1 exactly where it has a nonzero bit (-0 included).
      (flags[0] as Float32Array).forEach((flag, block) => {
        const bits = bitsOf(ranks[0] as Float32Array).subarray(block * BLOCK_ELEMENTS, Math.min(length, (block + 1) * BLOCK_ELEMENTS));
        t.is(flag, bits.some((bit) => bit !== 0) ? 1 : 0, `length ${length}, block ${block}`);
      });

      const packed = ranks.map((values) => {
        const buffer = floats(length);
        return buffer.subarray(0, gatherBlocks(values, length, summedFlags, buffer));
      });
      const packedLength = (packed[0] as Float32Array).length;
      let markedValues = 0;
      summedFlags.forEach((flag, block) => {
        if (flag > 0) markedValues += Math.min(length, (block + 1) * BLOCK_ELEMENTS) - block * BLOCK_ELEMENTS;
      });
      t.is(packedLength, markedValues);
      const packedSum = floats(packedLength);
      packedSum.set(packed[0] as Float32Array);
      for (const other of packed.slice(1)) addIntoScalar(packedSum, packedSum, other, packedLength);
      for (const values of ranks) {
        scatterBlocks(packedSum, length, summedFlags, values);
        t.deepEqual(bitsOf(values), bitsOf(full), `length ${length}, kernel memory ${inKernelMemory}`);
      }
      if (length >= 4096) t.true(packedLength < length / 2, `length ${length}: only the marked blocks are packed (${packedLength})`);
    }
  }
});

test('zero buffer packs nothing', (t) => {
  const values = kernelMemory().allocateFloats(1000);
  const flags = new Float32Array(blockCount(1000)).fill(7);
  markNonzeroBlocks(values, 1000, flags);
  t.is(countMarked(flags), 0);
  t.is(gatherBlocks(values, 1000, flags, new Float32Array(1000)), 0);
});
