import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import type { Logger } from 'pino';
import type { RunConfig } from '../src/config/types.js';
import type { StepTimings } from '../src/comm/protocol.js';
import type { Model, ParameterSpec } from '../src/models/model.js';
import type { Task } from '../src/tasks/task.js';
import { checksumFloats } from '../src/kernels/checksum.js';
import { allocateKernelFloats } from '../src/kernels/kernel-memory.js';
import { GradientExchange, type AllReduce, type ShardCollectives } from './gradient-exchange.js';
import { AdamW, type AdamWState } from '../src/optim/adamw.js';
import { sumOfScaledSquares } from '../src/optim/clip.js';
import { RingtrainError } from '../src/errors.js';
import { countPredictions } from '../src/metrics/classification.js';

export type { AllReduce, ShardCollectives } from './gradient-exchange.js';

/** Settings of one step on this rank. */
export interface StepOptions {
  /** Rank 0 contributes its buffer values; every other rank contributes zeros. */
  isRoot: boolean;
  /** How long the caller waited for the batch, reported in the timings. */
  dataWaitMs: number;
  /** Ranks that take part in the reduction; with one, nothing is exchanged. */
  worldSize: number;
  /** Extra busy time inside the compute phase, to imitate a slower device in tests. */
  extraComputeMs?: number;
  /**
   * Present when the optimizer state is sharded: each rank then updates only the parameters it owns and
   * all-gathers the result. Absent: every rank updates every parameter after a full all-reduce.
   */
  shard?: ShardCollectives;
}

/** Evaluation counts of one rank's share, which the coordinator adds up. */
export interface EvalCounts {
  /** Confusion matrix, classes x classes, row = gold; empty when the task does not classify. */
  confusion: Float64Array;
  lossSum: number;
  count: number;
}

/** Result of one data-parallel step on this rank (identical on every rank except the timings). */
export interface StepResult {
  loss: number;
  globalCount: number;
  gradNorm: number;
  lr: number;
  /** True when the reduced loss or gradient was not finite and `train.nonFinite` is `skip`. */
  skipped: boolean;
  timings: StepTimings;
}

/** Sentences per forward pass during evaluation; bounds memory, does not change the counts. */
const EVAL_CHUNK = 64;

/**
 * One rank's side of data-parallel training: the flat parameter and gradient buffers, the optimizer, and the
 * step that turns a shard into an update that every rank applies identically.
 *
 * Gradient weighting: each rank writes the gradient of its SUMMED loss and appends [lossSum, count] to the
 * buffer before the all-reduce. After it, dividing by the global count gives exactly the gradient of the mean
 * loss over the whole global batch, whatever the shard sizes.
 *
 * Sharded optimizer state (ZeRO stage 1): the gradients are reduce-scattered instead, and each rank scales,
 * measures and applies only the reduced gradients it owns, then all-gathers the parameters. The moments of
 * other ranks' elements go stale on this rank until `gatherOptimizerState` copies them before a checkpoint.
 */
export class DataParallelTrainer<Batch> {
  readonly parameterCount: number;
  readonly parameters: Float32Array;
  /** Float32 values of the task's buffers (non-trainable state), which travel behind the gradients. */
  private readonly bufferCount: number;
  private readonly gradients: Float32Array;
  private readonly model: Model<Batch>;
  /** Indices of the variables that the model reads from `parameters` instead; see Model.useHostValues. */
  private readonly hostOnly: Set<number>;
  private optimizer: AdamW | null = null;
  private readonly exchange: GradientExchange;

  constructor(
    private readonly task: Task<Batch>,
    private readonly config: RunConfig,
    private logger: Logger,
  ) {
    this.model = task.model;
    this.parameterCount = totalSize(this.model.specs);
    this.bufferCount = task.buffers.reduce((sum, buffer) => sum + buffer.size, 0);
    // Both live in the kernel memory, where the ring's SIMD add and the optimizer's kernel read them in place.
    this.parameters = allocateKernelFloats(this.parameterCount);
    // Layout: gradients, then rank 0's buffer values (zeros elsewhere, so the sum is rank 0's), then the summed
    // loss and the loss-term count of the shard.
    this.gradients = allocateKernelFloats(this.parameterCount + this.bufferCount + 2);
    this.exchange = new GradientExchange(this.parameterCount, this.bufferCount + 2, config.allreduce, logger);
    this.readParameters();
    // The parameters that the model reads from this array alone (a tagger's embedding tables, 7 MB) are not
    // uploaded into their variables by writeParameters.
    this.hostOnly = new Set(this.model.useHostValues?.(this.parameters) ?? []);
  }

  /**
   * Makes every rank start from rank 0's parameters and buffers: rank 0 contributes its values and every other
   * rank zeros to one all-reduce, so the sum is rank 0's values on every rank, bit for bit.
   */
  async broadcastFromRoot(allReduce: AllReduce, isRoot: boolean): Promise<void> {
    const values = new Float32Array(this.parameterCount + this.bufferCount);
    if (isRoot) {
      values.set(this.parameters);
      this.readBuffers(values.subarray(this.parameterCount));
    }
    await allReduce(values, true);
    this.parameters.set(values.subarray(0, this.parameterCount));
    this.writeParameters();
    this.writeBuffers(values.subarray(this.parameterCount));
  }

  /**
   * Creates the optimizer once rendezvous has fixed the run length, which the learning-rate schedule needs, and
   * restores its moments and step count when resuming from a checkpoint.
   */
  startSchedule(totalSteps: number, resumedState?: AdamWState): void {
    this.optimizer = new AdamW(this.model.specs, this.config.optimizer, totalSteps);
    if (resumedState !== undefined) this.optimizer.loadState(resumedState);
  }

  /** Optimizer steps in the whole run, as fixed by startSchedule. */
  get totalSteps(): number {
    if (this.optimizer === null) throw new Error('DataParallelTrainer.totalSteps read before startSchedule');
    return this.optimizer.totalSteps;
  }

  /** Replaces the parameters, e.g. with those of a checkpoint; `values` must follow the specs layout. */
  loadParameters(values: Float32Array): void {
    if (values.length !== this.parameterCount) {
      throw new RingtrainError(
        'RINGTRAIN_ERR_CHECKPOINT',
        `cannot load ${values.length} parameter values into a model with ${this.parameterCount}; the checkpoint belongs to another model`,
      );
    }
    this.parameters.set(values);
    this.writeParameters();
  }

  /**
   * Copies every rank's current moments to every rank. Every rank of a sharded run must call it, in the same
   * order relative to steps, before `exportState` on any rank, so the exported state is complete.
   */
  async gatherOptimizerState(shard: ShardCollectives): Promise<void> {
    if (this.optimizer === null) throw new Error('DataParallelTrainer.gatherOptimizerState called before startSchedule');
    await this.optimizer.gatherMoments((values) => shard.allGather(values));
  }

  /**
   * Returns copies of the parameters and optimizer state, safe to write while training goes on.
   * NOTE: the task's buffers (batch-normalisation statistics) are not part of it, so a resumed run restarts them.
   */
  exportState(): { parameters: Float32Array; optimizer: AdamWState } {
    if (this.optimizer === null) throw new Error('DataParallelTrainer.exportState called before startSchedule');
    return { parameters: this.parameters.slice(), optimizer: this.optimizer.exportState() };
  }

  /**
   * Runs forward, backward, all-reduce and the optimizer on this rank's shard of one global batch (`batch` is
   * null for an empty shard). With `options.shard` the gradients are reduce-scattered and the optimizer
   * updates only this rank's share; see the class comment.
   */
  async step(batch: Batch | null, allReduce: AllReduce, options: StepOptions): Promise<StepResult> {
    const { isRoot, dataWaitMs, shard } = options;
    if (this.optimizer === null) throw new Error('DataParallelTrainer.step called before startSchedule');
    const batchDone = performance.now();
    const lossSlot = this.parameterCount + this.bufferCount;

    this.gradients.fill(0);
    if (batch !== null) {
      const { lossSum, count } = this.model.computeGradients(batch, this.gradients);
      this.gradients[lossSlot] = lossSum;
      this.gradients[lossSlot + 1] = count;
    }
    if (isRoot && this.bufferCount > 0) this.readBuffers(this.gradients.subarray(this.parameterCount, lossSlot));
    if (options.extraComputeMs !== undefined && options.extraComputeMs > 0) busyWait(options.extraComputeMs);
    const computeDone = performance.now();

    const { owned, nonzero } = await this.exchange.reduce(this.gradients, allReduce, shard, options.worldSize);
    const allReduceDone = performance.now();
    // Time spent in collectives after the gradient reduction, counted as all-reduce time rather than optimizer time.
    let laterCollectivesMs = 0;
    if (this.bufferCount > 0) this.writeBuffers(this.gradients.subarray(this.parameterCount, lossSlot));

    const globalCount = this.gradients[lossSlot + 1] as number;
    if (!(globalCount > 0)) {
      throw new Error(`the global batch has ${globalCount} loss terms; every step needs at least one real token`);
    }
    const loss = (this.gradients[lossSlot] as number) / globalCount;
    // The reduced gradients are sums over the global batch. The optimizer divides them by the token count as it
    // reads them, so no pass writes the mean gradients. The sum of squares below is already that of the means;
    // it skips the blocks that a packed exchange found zero on every rank.
    const summedGradients = this.gradients.subarray(0, this.parameterCount);
    const meanFactor = 1 / globalCount;
    let sumOfSquares = sumOfScaledSquares(summedGradients, nonzero, meanFactor);
    if (shard !== undefined) {
      const sumStarted = performance.now();
      sumOfSquares = await shard.sumFloat64(sumOfSquares);
      laterCollectivesMs += performance.now() - sumStarted;
    }

    // Every rank has the same reduced loss and the same norm bits, so every rank takes the same branch here.
    let update = { gradNorm: Math.sqrt(sumOfSquares), lr: 0 };
    const finite = Number.isFinite(loss) && Number.isFinite(update.gradNorm);
    if (!finite && this.config.train.nonFinite === 'error') {
      throw new RingtrainError(
        'RINGTRAIN_ERR_NON_FINITE',
        `the reduced loss (${loss}) or gradient norm (${update.gradNorm}) is not finite; lower optimizer.lr, ` +
          'enable optimizer.clipNorm, or set train.nonFinite=skip to skip such steps',
      );
    }
    if (finite) {
      update = this.optimizer.stepRanges(this.parameters, summedGradients, owned, update.gradNorm, meanFactor);
      if (shard !== undefined) {
        const gatherStarted = performance.now();
        await shard.allGather(this.parameters);
        laterCollectivesMs += performance.now() - gatherStarted;
      }
      this.writeParameters();
    } else {
      this.logger.warn({ loss, gradNorm: update.gradNorm }, 'non-finite loss or gradient; update skipped on every rank');
    }
    const optimizerDone = performance.now();

    return {
      loss,
      globalCount,
      gradNorm: update.gradNorm,
      lr: update.lr,
      skipped: !finite,
      timings: {
        dataWaitMs,
        computeMs: computeDone - batchDone,
        allReduceMs: allReduceDone - computeDone + laterCollectivesMs,
        optimizerMs: optimizerDone - allReduceDone - laterCollectivesMs,
      },
    };
  }

  /**
   * Returns the evaluation counts of this rank's share of the evaluation split: the confusion matrix (for
   * classification) and the summed loss with its term count. `load` returns the batch of some indices; the next
   * chunk is requested before the current one is evaluated. Yields to the event loop between chunks so
   * heartbeats keep flowing during a long evaluation.
   */
  async evaluate(indices: readonly number[], load: (chunk: readonly number[]) => Promise<Batch>): Promise<EvalCounts> {
    const classCount = this.task.classNames.length;
    const confusion = new Float64Array(classCount * classCount);
    let lossSum = 0;
    let count = 0;
    const chunks: number[][] = [];
    for (let start = 0; start < indices.length; start += EVAL_CHUNK) chunks.push(indices.slice(start, start + EVAL_CHUNK));
    let next = chunks.length > 0 ? load(chunks[0] as number[]) : null;
    for (let index = 0; index < chunks.length; index++) {
      const batch = await (next as Promise<Batch>);
      next = index + 1 < chunks.length ? load(chunks[index + 1] as number[]) : null;
      const result = this.task.evaluateBatch(batch);
      if (classCount > 0 && result.predictions !== null && result.labels !== null) {
        const counts = countPredictions(result.labels, result.predictions, classCount);
        for (let i = 0; i < counts.length; i++) confusion[i] = (confusion[i] as number) + (counts[i] as number);
      }
      lossSum += result.lossSum;
      count += result.count;
      await new Promise((resolve) => setImmediate(resolve));
    }
    this.logger.debug({ examples: indices.length }, 'evaluation share counted');
    return { confusion, lossSum, count };
  }

  /**
   * Returns every tensor the final weights file holds: the parameters, then the buffers (such as batch
   * normalisation statistics), which inference needs too.
   */
  exportWeights(): { specs: ParameterSpec[]; values: Float32Array } {
    const buffers = new Float32Array(this.bufferCount);
    this.readBuffers(buffers);
    const values = new Float32Array(this.parameterCount + this.bufferCount);
    values.set(this.parameters);
    values.set(buffers, this.parameterCount);
    const bufferSpecs = this.task.buffers.map((buffer) => ({ name: buffer.name, shape: [...buffer.shape], decay: false }));
    return { specs: [...this.model.specs, ...bufferSpecs], values };
  }

  /** Replaces the logger, for example with one that carries the rank once rendezvous assigned it. */
  setLogger(logger: Logger): void {
    this.logger = logger;
    this.exchange.setLogger(logger);
  }

  /** Logs the packed gradient exchange's sent fractions over the run, when it ran. */
  logExchangeSummary(): void {
    this.exchange.logSummary();
  }

  /** Returns the 64-bit checksum of the parameter bits (src/kernels/checksum.ts) that ranks compare. */
  checksum(): string {
    return checksumFloats(this.parameters);
  }

  /** Returns a hash of parameter names, shapes and decay flags, in order. */
  layoutHash(): string {
    return createHash('sha256').update(JSON.stringify(this.model.specs)).digest('hex').slice(0, 16);
  }

  get specs(): readonly ParameterSpec[] {
    return this.model.specs;
  }

  private readParameters(): void {
    let offset = 0;
    this.model.variables.forEach((variable) => {
      const values = variable.dataSync() as Float32Array;
      this.parameters.set(values, offset);
      offset += values.length;
    });
  }

  private readBuffers(target: Float32Array): void {
    let offset = 0;
    for (const buffer of this.task.buffers) {
      target.set(buffer.dataSync() as Float32Array, offset);
      offset += buffer.size;
    }
  }

  private writeBuffers(source: Float32Array): void {
    let offset = 0;
    for (const buffer of this.task.buffers) {
      const values = tf.tensor(source.slice(offset, offset + buffer.size), buffer.shape, 'float32');
      buffer.assign(values);
      values.dispose();
      offset += buffer.size;
    }
  }

  private writeParameters(): void {
    // The cpu backend keeps the array it is given, so it needs a copy that the optimizer will not update in
    // place. The wasm and native backends copy into their own memory at once, so a copy here would only cost
    // time (about 6 ms for 2 M parameters).
    const backendKeepsArray = tf.getBackend() === 'cpu';
    let offset = 0;
    this.model.variables.forEach((variable, index) => {
      const size = variable.size;
      if (!this.hostOnly.has(index)) {
        const view = this.parameters.subarray(offset, offset + size);
        const values = tf.tensor(backendKeepsArray ? view.slice() : view, variable.shape, 'float32');
        variable.assign(values);
        values.dispose();
      }
      offset += size;
    });
  }
}

/** Returns the number of float32 values in all specs together. */
export function totalSize(specs: readonly ParameterSpec[]): number {
  return specs.reduce((sum, spec) => sum + spec.shape.reduce((product, size) => product * size, 1), 0);
}


/** Keeps the thread busy for `ms` milliseconds, as slower hardware would. */
function busyWait(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* busy */
  }
}
