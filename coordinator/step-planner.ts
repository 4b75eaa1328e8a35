/**
 * The plan of the examples each rank trains on at each step: the epoch plans of the sampler, split into one shard per rank,
 * equally or (with `train.balance`) in proportion to each rank's measured throughput. Shards are fixed when a
 * step is first planned, which can be a few steps early because workers prefetch their batches.
 */
import type { RunConfig } from '../src/config/types.js';
import type { StepDoneMessage } from '../src/comm/protocol.js';
import { batchesPerEpoch, planEpoch, splitIntoShards } from '../src/data/batch-plan.js';
import { ShardBalancer } from './balancer.js';

export class StepPlanner {
  /** Global batches per epoch under `data.lastBatch`. */
  readonly perEpoch: number;
  private readonly epochs = new Map<number, number[][]>();
  private readonly planned = new Map<number, number[][]>();
  private readonly balancer: ShardBalancer | null;

  constructor(
    private readonly config: RunConfig,
    private readonly trainSize: number,
    private readonly lengths: Uint16Array | undefined,
    private readonly worldSize: number,
  ) {
    this.perEpoch = batchesPerEpoch(trainSize, config.train.globalBatchSize, config.data.lastBatch);
    this.balancer = config.train.balance ? new ShardBalancer(worldSize) : null;
  }

  /** Returns the shards of `step` (counted from 1), one per rank, planning them on first use. */
  shards(step: number): number[][] {
    const known = this.planned.get(step);
    if (known !== undefined) return known;
    const epoch = Math.floor((step - 1) / this.perEpoch);
    const batch = this.epochPlan(epoch)[(step - 1) % this.perEpoch] as number[];
    const weights = this.balancer?.weights() ?? new Array<number>(this.worldSize).fill(1);
    const shards = splitIntoShards(batch, weights, this.lengths);
    this.planned.set(step, shards);
    return shards;
  }

  /** Feeds the balancer each rank's shard size and compute time of a finished step. */
  record(shards: readonly number[][], results: readonly StepDoneMessage[]): void {
    if (this.balancer === null) return;
    results.forEach((result, rank) => {
      const examples = (shards[rank] as number[]).length;
      if (examples > 0) this.balancer?.record(rank, examples, result.timings.computeMs);
    });
  }

  /** Drops the plans of `step` and earlier steps, and of epochs before it. */
  forget(step: number): void {
    for (const planned of this.planned.keys()) if (planned <= step) this.planned.delete(planned);
    const epoch = Math.floor((step - 1) / this.perEpoch);
    for (const known of this.epochs.keys()) if (known < epoch) this.epochs.delete(known);
  }

  private epochPlan(epoch: number): number[][] {
    let batches = this.epochs.get(epoch);
    if (batches === undefined) {
      batches = planEpoch({
        size: this.trainSize,
        globalBatchSize: this.config.train.globalBatchSize,
        seed: this.config.seed,
        epoch,
        lastBatch: this.config.data.lastBatch,
        lengths: this.lengths,
      });
      this.epochs.set(epoch, batches);
    }
    return batches;
  }
}
