import { mixSeed, SeededRandom } from '../random.js';

/**
 * The coordinator's plan of which training examples form each global batch, and how a global batch is split
 * into one shard per rank. Examples of similar length go into the same batch, because a synchronous step waits
 * for the slowest rank and padding costs compute.
 */

/** Size of one sort window, in global batches of shuffled examples. */
const SORT_WINDOW_BATCHES = 50;

/** Returns the number of full global batches in one epoch; the remainder of an epoch is dropped. */
export function batchesPerEpoch(trainSize: number, globalBatchSize: number): number {
  return Math.floor(trainSize / globalBatchSize);
}

/**
 * Returns the global batches of `epoch`, each a list of example indices. Every example appears at most once per
 * epoch and the `trainSize % globalBatchSize` left over are skipped (a different set each epoch). The order
 * depends only on (seed, epoch, lengths), so a restarted coordinator plans the same batches.
 */
export function planEpoch(lengths: Uint16Array, globalBatchSize: number, seed: number, epoch: number): number[][] {
  const random = new SeededRandom(mixSeed(seed, epoch, 0x5a3d));
  const order = random.shuffle(Array.from({ length: lengths.length }, (_, i) => i));
  const batchCount = batchesPerEpoch(lengths.length, globalBatchSize);
  const used = order.slice(0, batchCount * globalBatchSize);

  const batches: number[][] = [];
  const windowSize = SORT_WINDOW_BATCHES * globalBatchSize;
  for (let start = 0; start < used.length; start += windowSize) {
    const window = used.slice(start, start + windowSize);
    window.sort((a, b) => (lengths[a] as number) - (lengths[b] as number) || a - b);
    for (let offset = 0; offset < window.length; offset += globalBatchSize) {
      batches.push(window.slice(offset, offset + globalBatchSize));
    }
  }
  return random.shuffle(batches);
}

/**
 * Splits one global batch into `worldSize` shards whose sizes differ by at most one. Examples are dealt in order
 * of decreasing length, so every shard gets a similar mix of lengths.
 */
export function splitIntoShards(batch: readonly number[], lengths: Uint16Array, worldSize: number): number[][] {
  const byLength = [...batch].sort((a, b) => (lengths[b] as number) - (lengths[a] as number) || a - b);
  const shards: number[][] = Array.from({ length: worldSize }, () => []);
  byLength.forEach((example, position) => {
    (shards[position % worldSize] as number[]).push(example);
  });
  return shards;
}

/** Splits `count` evaluation examples into `worldSize` contiguous ranges whose sizes differ by at most one. */
export function splitRange(count: number, worldSize: number): number[][] {
  const shards: number[][] = [];
  const base = Math.floor(count / worldSize);
  const extra = count % worldSize;
  let start = 0;
  for (let rank = 0; rank < worldSize; rank++) {
    const size = base + (rank < extra ? 1 : 0);
    shards.push(Array.from({ length: size }, (_, i) => start + i));
    start += size;
  }
  return shards;
}
