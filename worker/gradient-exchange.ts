/**
 * The gradient reduction of one training step. It sums the gradient buffer and the values behind it (the
 * task's buffers, the summed loss and the loss-term count) across all ranks: fully, or as a reduce-scatter
 * with a sharded optimizer. It returns the ranges whose complete sums this rank holds.
 *
 * With `allreduce.skipZeroBlocks`, a step first all-reduces one flag per block of 64 gradient values (see
 * src/comm/zero-blocks.ts) and then exchanges only the blocks that some rank has nonzero, packed together
 * with the values behind the gradients. The result is the full exchange's, bit for bit with two ranks (a
 * float32 sum of two values does not depend on their order), so the choice does not change what is learned. When more than half of the blocks are marked the step falls back to the full exchange, and after
 * DENSE_STEPS_BEFORE_OFF such steps in a row the flags are no longer sent: the model's gradients are dense.
 * Every rank decides from the same summed flags, so all ranks always take the same path.
 * NOTE: measured only on loopback, where it saves no time. The gain between real machines is untested.
 */
import type { Logger } from 'pino';
import type { AllReduceConfig } from '../src/config/types.js';
import type { ElementRange } from '../src/optim/clip.js';
import { allocateKernelFloats } from '../src/kernels/kernel-memory.js';
import { blockCount, countMarked, gatherBlocks, markedRanges, markNonzeroBlocks, scatterBlocks } from '../src/comm/zero-blocks.js';

/**
 * Sums a buffer in place across all ranks; the ring all-reduce in training, the identity for one process.
 * `exact` requests float32 on the wire even when `allreduce.compression` is on.
 */
export type AllReduce = (buffer: Float32Array, exact?: boolean) => Promise<void>;

/**
 * The collectives of a step with sharded optimizer state (`optimizer.shardState`), as `Ring` provides them.
 * Ownership of elements follows the ring's reduce-scatter, which depends only on the buffer length, the bucket
 * size and the world size, so gradients, parameters and moments of equal length share one split.
 */
export interface ShardCollectives {
  /** Reduce-scatters the gradients and returns the ranges whose complete sums this rank now holds. */
  reduceScatter(buffer: Float32Array): Promise<readonly ElementRange[]>;
  /** Copies every rank's owned ranges to every rank, bit for bit in float32. */
  allGather(buffer: Float32Array): Promise<void>;
  /** Adds one float64 per rank with identical bits on every rank. */
  sumFloat64(value: number): Promise<number>;
  /** The ranges of a buffer of `length` values that this rank owns in reduceScatter and allGather. */
  ownedRanges(length: number): readonly ElementRange[];
}

/** The result of a step's reduction, for the optimizer. */
export interface ReducedGradients {
  /** The gradient ranges whose complete sums this rank holds, and which its optimizer updates. */
  owned: readonly ElementRange[];
  /**
   * The parts of `owned` that may hold nonzero sums. After a packed exchange the rest is +0, so the gradient
   * norm sums only these. Without packing they equal `owned`.
   */
  nonzero: readonly ElementRange[];
}

/** Consecutive steps with mostly nonzero blocks after which the flags are no longer exchanged. */
export const DENSE_STEPS_BEFORE_OFF = 20;

/** Reduces one step's gradients; see the module comment. */
export class GradientExchange {
  private readonly parameterCount: number;
  private readonly tailLength: number;
  private readonly config: AllReduceConfig;
  private logger: Logger;
  private skipZeroBlocks: boolean;
  private flags: Float32Array | null = null;
  private packed: Float32Array | null = null;
  private denseSteps = 0;
  /** Steps that sent packed blocks, the sum of their sent fractions, and the smallest and largest fraction. */
  private readonly packedStats = { steps: 0, fractionSum: 0, minFraction: 1, maxFraction: 0 };
  /** Steps that exchanged full gradients because most blocks were marked, including every step after the switch-off. */
  private fullSteps = 0;
  /** True once the packed exchange has turned itself off for the rest of the run. */
  private switchedOff = false;

  /** `tailLength` values follow the `parameterCount` gradients in the buffer and are always summed exactly. */
  constructor(parameterCount: number, tailLength: number, config: AllReduceConfig, logger: Logger) {
    this.parameterCount = parameterCount;
    this.tailLength = tailLength;
    this.config = config;
    this.logger = logger;
    this.skipZeroBlocks = config.skipZeroBlocks && blockCount(parameterCount) > 1;
  }

  /** Replaces the logger, for example with one that carries the rank once rendezvous assigned it. */
  setLogger(logger: Logger): void {
    this.logger = logger;
  }

  /** Logs how much of the gradient the packed exchange sent over the run; nothing when it never ran. */
  logSummary(): void {
    const { steps, fractionSum, minFraction, maxFraction } = this.packedStats;
    if (steps === 0 && this.fullSteps === 0) return;
    this.logger.info(
      {
        packedSteps: steps,
        fullSteps: this.fullSteps,
        meanSentFraction: steps === 0 ? null : Number((fractionSum / steps).toFixed(4)),
        minSentFraction: steps === 0 ? null : Number(minFraction.toFixed(4)),
        maxSentFraction: steps === 0 ? null : Number(maxFraction.toFixed(4)),
      },
      'packed gradient exchange summary (allreduce.skipZeroBlocks)',
    );
  }

  /**
   * Sums `buffer` (gradients, then the tail) across the `worldSize` ranks and returns the gradient ranges this
   * rank may use.
   */
  async reduce(buffer: Float32Array, allReduce: AllReduce, shard: ShardCollectives | undefined, worldSize: number): Promise<ReducedGradients> {
    const count = this.parameterCount;
    if (this.switchedOff) this.fullSteps += 1;
    if (this.skipZeroBlocks && worldSize > 1 && (await this.reducePacked(buffer, allReduce))) {
      const owned = shard === undefined ? [{ start: 0, end: count }] : shard.ownedRanges(count);
      return { owned, nonzero: markedRanges(count, this.flags as Float32Array, owned) };
    }
    if (shard !== undefined) {
      const owned = await shard.reduceScatter(buffer.subarray(0, count));
      await allReduce(buffer.subarray(count, count + this.tailLength), true);
      return { owned, nonzero: owned };
    }
    await this.allReduceWithTail(buffer, count, allReduce);
    const owned = [{ start: 0, end: count }];
    return { owned, nonzero: owned };
  }

  /** Sums `gradientLength` gradient values of `values` and the tail behind them, which stays float32. */
  private async allReduceWithTail(values: Float32Array, gradientLength: number, allReduce: AllReduce): Promise<void> {
    const end = gradientLength + this.tailLength;
    if (this.config.compression === 'none') {
      await allReduce(values.subarray(0, end));
      return;
    }
    // 16-bit floats hold integers exactly only up to 2048 (fp16) or 256 (bf16), so the loss-term count and the
    // buffers travel as float32 in a second, small all-reduce.
    await allReduce(values.subarray(0, gradientLength));
    await allReduce(values.subarray(gradientLength, end), true);
  }

  /** Runs the packed exchange and returns true, or returns false when most blocks are marked. */
  private async reducePacked(buffer: Float32Array, allReduce: AllReduce): Promise<boolean> {
    const count = this.parameterCount;
    this.flags ??= allocateKernelFloats(blockCount(count));
    const flags = this.flags;
    markNonzeroBlocks(buffer, count, flags);
    await allReduce(flags, true);
    const marked = countMarked(flags);

    if (marked * 2 > flags.length) {
      this.denseSteps += 1;
      this.fullSteps += 1;
      if (this.denseSteps >= DENSE_STEPS_BEFORE_OFF) {
        this.skipZeroBlocks = false;
        this.switchedOff = true;
        this.logger.info(
          { markedBlocks: marked, blocks: flags.length, steps: this.denseSteps },
          'most gradient blocks were nonzero for many steps in a row; exchanging full gradients from now on (allreduce.skipZeroBlocks)',
        );
      }
      return false;
    }

    this.denseSteps = 0;
    this.packed ??= allocateKernelFloats(count + this.tailLength);
    const packed = this.packed;
    const packedLength = gatherBlocks(buffer, count, flags, packed);
    packed.set(buffer.subarray(count, count + this.tailLength), packedLength);
    await this.allReduceWithTail(packed, packedLength, allReduce);
    scatterBlocks(packed, count, flags, buffer);
    buffer.set(packed.subarray(packedLength, packedLength + this.tailLength), count);
    const fraction = packedLength / count;
    const stats = this.packedStats;
    stats.steps += 1;
    stats.fractionSum += fraction;
    stats.minFraction = Math.min(stats.minFraction, fraction);
    stats.maxFraction = Math.max(stats.maxFraction, fraction);

    if (stats.steps === 1) {
      this.logger.info(
        { markedBlocks: marked, blocks: flags.length, sentFraction: Number(fraction.toFixed(4)) },
        'exchanging only the gradient blocks that some worker has nonzero (allreduce.skipZeroBlocks); the summary after training gives the mean',
      );
    }
    return true;
  }
}
