/** Options of a ShardBalancer; shares are in units of the equal share `1 / worldSize`. */
export interface ShardBalancerOptions {
  /** Lowest share a rank can get, as a multiple of the equal share; default 0.25, at most 1. */
  minShare?: number;
  /** Highest share a rank can get, as a multiple of the equal share; default 4, at least 1. */
  maxShare?: number;
  /** Weight of the newest record in the moving averages, in (0, 1]; default 0.3. */
  smoothing?: number;
}

/** Bisection steps of the clamp scale; each halves the interval, so 200 exhaust double precision. */
const SCALE_STEPS = 200;

/**
 * Shard weights that follow each rank's measured throughput, so a slower device gets fewer examples per step
 * and a synchronous step waits less for it.
 *
 * Each rank's throughput is the ratio of exponential moving averages of its examples and its busy milliseconds
 * (compute time, not time spent waiting on peers). Weights are proportional to throughput, clamped to
 * [minShare, maxShare] times the equal share, and rescaled to sum to worldSize. Before any record all weights
 * are 1. A rank without a record yet counts at the mean throughput of the measured ranks. The same records in
 * the same order give the same weights.
 *
 * Balancing changes speed only, never the update. Each worker sums its shard's losses and the all-reduced sum
 * is divided by the global count, so the gradient is the mean over the global batch whatever the shard sizes.
 */
export class ShardBalancer {
  private readonly worldSize: number;
  private readonly minShare: number;
  private readonly maxShare: number;
  private readonly smoothing: number;
  private readonly examples: number[];
  private readonly busyMs: number[];
  private readonly measured: boolean[];

  /** Creates a balancer for `worldSize` ranks; raises a RangeError on an invalid size or option. */
  constructor(worldSize: number, options: ShardBalancerOptions = {}) {
    const { minShare = 0.25, maxShare = 4, smoothing = 0.3 } = options;
    if (!Number.isSafeInteger(worldSize) || worldSize < 1) {
      throw new RangeError(`the balancer's worldSize must be an integer of at least 1 (got ${worldSize}); pass the number of ranks`);
    }
    if (!Number.isFinite(minShare) || minShare <= 0 || minShare > 1) {
      throw new RangeError(`minShare must be a number in (0, 1] (got ${minShare}); it is a multiple of the equal share, 0.25 by default`);
    }
    if (!Number.isFinite(maxShare) || maxShare < 1) {
      throw new RangeError(`maxShare must be a finite number of at least 1 (got ${maxShare}); it is a multiple of the equal share, 4 by default`);
    }
    if (!Number.isFinite(smoothing) || smoothing <= 0 || smoothing > 1) {
      throw new RangeError(`smoothing must be a number in (0, 1] (got ${smoothing}); 1 keeps only the newest record, 0.3 by default`);
    }
    this.worldSize = worldSize;
    this.minShare = minShare;
    this.maxShare = maxShare;
    this.smoothing = smoothing;
    this.examples = new Array<number>(worldSize).fill(0);
    this.busyMs = new Array<number>(worldSize).fill(0);
    this.measured = new Array<boolean>(worldSize).fill(false);
  }

  /**
   * Records that `rank` processed `examples` examples in `busyMs` milliseconds of compute. A record with no
   * examples or no measured time carries no throughput and is ignored. Raises a RangeError on an invalid argument.
   */
  record(rank: number, examples: number, busyMs: number): void {
    if (!Number.isSafeInteger(rank) || rank < 0 || rank >= this.worldSize) {
      throw new RangeError(`rank must be an integer in [0, ${this.worldSize - 1}] (got ${rank}); record only ranks of this run`);
    }
    if (!Number.isSafeInteger(examples) || examples < 0) {
      throw new RangeError(`examples must be an integer of at least 0 (got ${examples}) for rank ${rank}; pass the shard size of the step`);
    }
    if (!Number.isFinite(busyMs) || busyMs < 0) {
      throw new RangeError(`busyMs must be a finite number of at least 0 (got ${busyMs}) for rank ${rank}; pass the step's compute time`);
    }
    if (examples === 0 || busyMs === 0) return;

    if (!this.measured[rank]) {
      this.examples[rank] = examples;
      this.busyMs[rank] = busyMs;
      this.measured[rank] = true;
      return;
    }
    const keep = 1 - this.smoothing;
    this.examples[rank] = keep * (this.examples[rank] as number) + this.smoothing * examples;
    this.busyMs[rank] = keep * (this.busyMs[rank] as number) + this.smoothing * busyMs;
  }

  /**
   * Returns one weight per rank, proportional to measured throughput within the clamp, summing to worldSize
   * up to rounding. A weight of 1 is the equal share.
   */
  weights(): number[] {
    const rates = this.rates();
    if (rates === null) return new Array<number>(this.worldSize).fill(1);

    // Finds the scale c with sum(clamp(c * rate)) == worldSize. The sum grows with c. It equals
    // worldSize * minShare <= worldSize at c = low and worldSize * maxShare >= worldSize at c = high.
    let low = this.minShare / Math.max(...rates);
    let high = this.maxShare / Math.min(...rates);
    for (let i = 0; i < SCALE_STEPS && low < high; i++) {
      const middle = (low + high) / 2;
      if (middle === low || middle === high) break;
      if (this.clampedSum(rates, middle) < this.worldSize) low = middle;
      else high = middle;
    }
    return rates.map((rate) => this.clamp(high * rate));
  }

  /** Returns each rank's examples per busy millisecond, or null before the first record. */
  private rates(): number[] | null {
    const known: number[] = [];
    for (let rank = 0; rank < this.worldSize; rank++) {
      if (this.measured[rank]) known.push((this.examples[rank] as number) / (this.busyMs[rank] as number));
    }
    if (known.length === 0) return null;
    const mean = known.reduce((sum, rate) => sum + rate, 0) / known.length;
    return this.measured.map((measured, rank) => (measured ? (this.examples[rank] as number) / (this.busyMs[rank] as number) : mean));
  }

  private clampedSum(rates: readonly number[], scale: number): number {
    return rates.reduce((sum, rate) => sum + this.clamp(scale * rate), 0);
  }

  private clamp(share: number): number {
    return Math.min(this.maxShare, Math.max(this.minShare, share));
  }
}
