import { RingtrainError } from '../errors.js';
import { mixSeed, SeededRandom } from '../random.js';

/**
 * The coordinator's plan of which training examples form each global batch, and how a global batch is split
 * into one shard per rank. The semantics follow PyTorch's DistributedSampler with a DataLoader: one reshuffle
 * per epoch from (seed, epoch), then a policy for the examples that do not fill a last global batch.
 */

/**
 * Policy for the `size % globalBatchSize` examples left after the last full global batch. `drop` skips them and
 * `partial` trains them as a smaller last batch. `pad` fills the last batch up to full size with examples
 * repeated from the start of the epoch order.
 */
export type LastBatchPolicy = 'drop' | 'pad' | 'partial';

/** Options of one epoch's plan. */
export interface EpochPlanOptions {
  /** Number of examples in the training split. */
  size: number;
  /** Examples per global batch, summed over all ranks. */
  globalBatchSize: number;
  seed: number;
  /** Epoch, counted from 0. */
  epoch: number;
  lastBatch: LastBatchPolicy;
  /** Per-example lengths; when given, each full batch groups examples of similar length. */
  lengths?: Uint16Array;
}

/** Size of one sort window, in global batches of shuffled examples. */
const SORT_WINDOW_BATCHES = 50;

const POLICIES: readonly LastBatchPolicy[] = ['drop', 'pad', 'partial'];

/**
 * Returns the number of global batches in one epoch: `floor(size / globalBatchSize)` for `drop`, and
 * `ceil(size / globalBatchSize)` for `partial` and `pad`. Raises RINGTRAIN_ERR_DATA when `size` is not a
 * positive integer or `globalBatchSize` is not an integer of at least 1.
 */
export function batchesPerEpoch(size: number, globalBatchSize: number, lastBatch: LastBatchPolicy): number {
  checkSizes(size, globalBatchSize);
  checkPolicy(lastBatch);
  return lastBatch === 'drop' ? Math.floor(size / globalBatchSize) : Math.ceil(size / globalBatchSize);
}

/**
 * Plans the global batches of one epoch, each a list of example indices, in training order.
 *
 * The epoch order is a shuffle of all `size` examples seeded from (seed, epoch), so a restarted coordinator
 * plans the same batches. The first `floor(size / globalBatchSize)` full batches come from the start of that
 * order. When `lengths` is given they are grouped by length in sort windows of 50 batches, and their order is
 * shuffled. The rest of the order forms the last batch: `drop` skips it, `partial` trains it as is, and `pad`
 * appends examples from the start of the order (cycling when the split is smaller than the padding).
 *
 * Raises RINGTRAIN_ERR_DATA on an invalid option, and for `drop` when `size < globalBatchSize`, because
 * that epoch would have no batch.
 */
export function planEpoch(options: EpochPlanOptions): number[][] {
  const { size, globalBatchSize, seed, epoch, lastBatch, lengths } = options;
  checkSizes(size, globalBatchSize);
  checkPolicy(lastBatch);
  if (!Number.isSafeInteger(epoch) || epoch < 0) {
    throw dataError(`the epoch must be an integer of at least 0 (got ${epoch}); count epochs from 0`);
  }
  if (!Number.isFinite(seed)) {
    throw dataError(`the seed must be a finite number (got ${seed}); set it in the config or with --set seed=1`);
  }
  if (lengths !== undefined && lengths.length !== size) {
    throw dataError(`lengths has ${lengths.length} entries but size is ${size}; pass one length per training example`);
  }
  const fullCount = Math.floor(size / globalBatchSize);
  if (lastBatch === 'drop' && fullCount === 0) {
    throw dataError(
      `the training split has ${size} examples, fewer than train.globalBatchSize=${globalBatchSize}, so data.lastBatch='drop' ` +
        "leaves no batch; lower the batch size, use more data or set data.lastBatch to 'partial' or 'pad'",
    );
  }

  // One random stream for the example order and then the batch order, so that `drop` with lengths plans the
  // same batches as before the other policies existed and older checkpoints resume at the same batch.
  const random = new SeededRandom(mixSeed(seed, epoch, 0x5a3d));
  const order = random.shuffle(Array.from({ length: size }, (_, i) => i));
  const full = order.slice(0, fullCount * globalBatchSize);
  const batches = lengths === undefined ? chunk(full, globalBatchSize) : random.shuffle(groupByLength(full, lengths, globalBatchSize));

  const leftover = order.slice(full.length);
  if (leftover.length === 0 || lastBatch === 'drop') return batches;
  if (lastBatch === 'pad') {
    const padding = globalBatchSize - leftover.length;
    for (let i = 0; i < padding; i++) leftover.push(order[i % size] as number);
  }
  batches.push(leftover);
  return batches;
}

/**
 * Computes shard sizes proportional to `weights` that sum to `total`, by largest-remainder rounding: each rank
 * gets the floor of its exact quota, and the remaining examples go to the largest fractional parts, ties to
 * the lower rank. With equal weights the sizes differ by at most one and the lower ranks get the extra ones.
 * When `total` is at least the number of ranks, a rank rounded to 0 takes one example from the rank that
 * exceeds its quota the most, so no shard is empty. Raises RINGTRAIN_ERR_DATA on an invalid argument.
 */
export function shardSizes(total: number, weights: readonly number[]): number[] {
  if (!Number.isSafeInteger(total) || total < 0) {
    throw dataError(`the number of examples to shard must be an integer of at least 0 (got ${total}); pass the length of the batch`);
  }
  checkWeights(weights);
  const weightSum = weights.reduce((sum, weight) => sum + weight, 0);
  const quotas = weights.map((weight) => (total * weight) / weightSum);
  const sizes = quotas.map((quota) => Math.floor(quota));

  // Remainders are compared at 1e-9 resolution so that weights equal in exact arithmetic tie and go by rank.
  const remainders = quotas.map((quota, rank) => Math.round((quota - (sizes[rank] as number)) * 1e9));
  const byRemainder = weights.map((_, rank) => rank).sort((a, b) => (remainders[b] as number) - (remainders[a] as number) || a - b);
  let missing = total - sizes.reduce((sum, size) => sum + size, 0);
  for (const rank of byRemainder) {
    if (missing <= 0) break;
    sizes[rank] = (sizes[rank] as number) + 1;
    missing--;
  }

  if (total >= weights.length) {
    for (let rank = 0; rank < sizes.length; rank++) {
      if (sizes[rank] !== 0) continue;
      // Some rank has at least 2 here, because the sizes sum to at least the number of ranks.
      let donor = -1;
      for (let other = 0; other < sizes.length; other++) {
        if ((sizes[other] as number) < 2) continue;
        const surplus = (sizes[other] as number) - (quotas[other] as number);
        if (donor < 0 || surplus > (sizes[donor] as number) - (quotas[donor] as number)) donor = other;
      }
      sizes[donor] = (sizes[donor] as number) - 1;
      sizes[rank] = 1;
    }
  }
  return sizes;
}

/**
 * Splits one global batch into one shard per entry of `weights`, with the sizes from `shardSizes`. The shards
 * are disjoint and together hold the batch. With `lengths`, examples are dealt in order of decreasing length
 * and each goes to the shard that is least full relative to its size, so every shard gets a similar mix of
 * lengths. With equal weights this is plain round-robin dealing. Without `lengths`, each shard is a contiguous
 * slice of the batch.
 */
export function splitIntoShards(batch: readonly number[], weights: readonly number[], lengths?: Uint16Array): number[][] {
  const sizes = shardSizes(batch.length, weights);
  if (lengths === undefined) {
    const shards: number[][] = [];
    let start = 0;
    for (const size of sizes) {
      shards.push(batch.slice(start, start + size));
      start += size;
    }
    return shards;
  }

  const byLength = [...batch].sort((a, b) => (lengths[b] as number) - (lengths[a] as number) || a - b);
  const shards: number[][] = sizes.map(() => []);
  for (const example of byLength) {
    (shards[leastFilledRank(shards, sizes)] as number[]).push(example);
  }
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

/**
 * Returns the rank whose next slot sits earliest in its share of the batch, ties to the lower rank. Slot k of a
 * shard of size s sits at (k + 0.5) / s, so each shard's examples spread evenly over the length-sorted batch.
 */
function leastFilledRank(shards: readonly number[][], sizes: readonly number[]): number {
  let best = -1;
  for (let rank = 0; rank < sizes.length; rank++) {
    const size = sizes[rank] as number;
    const filled = (shards[rank] as number[]).length;
    if (filled >= size) continue;
    if (best < 0) {
      best = rank;
      continue;
    }
    // Compares (2 * filled + 1) / size with the best rank's ratio by cross-multiplying, to stay in integers.
    const bestSize = sizes[best] as number;
    const bestFilled = (shards[best] as number[]).length;
    if ((2 * filled + 1) * bestSize < (2 * bestFilled + 1) * size) best = rank;
  }
  return best;
}

/** Cuts `examples` (a multiple of `batchSize` long) into batches after sorting each window by length. */
function groupByLength(examples: readonly number[], lengths: Uint16Array, batchSize: number): number[][] {
  const batches: number[][] = [];
  const windowSize = SORT_WINDOW_BATCHES * batchSize;
  for (let start = 0; start < examples.length; start += windowSize) {
    const window = examples.slice(start, start + windowSize);
    window.sort((a, b) => (lengths[a] as number) - (lengths[b] as number) || a - b);
    batches.push(...chunk(window, batchSize));
  }
  return batches;
}

function chunk(examples: readonly number[], batchSize: number): number[][] {
  const batches: number[][] = [];
  for (let start = 0; start < examples.length; start += batchSize) {
    batches.push(examples.slice(start, start + batchSize));
  }
  return batches;
}

function checkSizes(size: number, globalBatchSize: number): void {
  if (!Number.isSafeInteger(size) || size < 1) {
    throw dataError(`the training split must hold at least one example (got size ${size}); check data.corpus and data.limitFiles`);
  }
  if (!Number.isSafeInteger(globalBatchSize) || globalBatchSize < 1) {
    throw dataError(
      `train.globalBatchSize must be an integer of at least 1 (got ${globalBatchSize}); set it in the config or with --set train.globalBatchSize=32`,
    );
  }
}

function checkPolicy(lastBatch: string): void {
  if (!POLICIES.includes(lastBatch as LastBatchPolicy)) {
    throw dataError(`data.lastBatch must be one of ${POLICIES.join(', ')} (got ${String(lastBatch)}); set it in the config or with --set data.lastBatch=drop`);
  }
}

function checkWeights(weights: readonly number[]): void {
  if (weights.length === 0) {
    throw dataError('shard weights must list one weight per rank (got an empty list); pass at least one weight');
  }
  weights.forEach((weight, rank) => {
    if (!Number.isFinite(weight) || weight <= 0) {
      throw dataError(`the shard weight of rank ${rank} must be a positive finite number (got ${weight}); pass 1 for every rank to split equally`);
    }
  });
}

function dataError(message: string): RingtrainError {
  return new RingtrainError('RINGTRAIN_ERR_DATA', message);
}
