/**
 * AdamW over flat Float32Array buffers. ringtrain computes the update itself instead of with tfjs ops: a
 * WebAssembly kernel, or plain JavaScript for arrays outside the kernel memory. So every rank computes
 * bit-identical parameters from the same reduced gradients, whatever tfjs backend it runs.
 */
import type { OptimizerConfig } from '../config/types.js';
import type { ParameterSpec } from '../models/model.js';
import { clipByGlobalNorm, clipScaleFor, type ElementRange } from './clip.js';
import { allocateKernelFloats } from '../kernels/kernel-memory.js';
import { updateElements, type AdamWCoefficients } from './adamw-update.js';
import { learningRateAt } from './schedule.js';

/** The optimizer settings that shape the update; `shardState` only decides which rank computes which part. */
export type AdamWConfig = Omit<OptimizerConfig, 'shardState'>;

/** Optimizer state that a checkpoint needs to resume a run bit for bit. */
export interface AdamWState {
  /** Optimizer steps completed so far. */
  step: number;
  /** Exponential moving average of the gradients (m), one entry per parameter element. */
  firstMoment: Float32Array;
  /** Exponential moving average of the squared gradients (v), one entry per parameter element. */
  secondMoment: Float32Array;
}

/** Result of one AdamW step, for logging. */
export interface AdamWStepResult {
  /** Learning rate used by this step. */
  lr: number;
  /** Global L2 norm of the gradients before clipping. */
  gradNorm: number;
  /** Whether the gradients were scaled down to `clipNorm`. */
  clipped: boolean;
}

/** A run of consecutive parameter elements that share the weight-decay flag. */
interface DecaySegment {
  start: number;
  end: number;
  decay: boolean;
}

/** Counts the elements of every parameter in `specs`. A shape of `[]` is a scalar with one element. */
export function countParameters(specs: readonly ParameterSpec[]): number {
  let total = 0;
  for (const spec of specs) {
    total += elementCount(spec);
  }
  return total;
}

function elementCount(spec: ParameterSpec): number {
  let count = 1;
  for (const dimension of spec.shape) {
    if (!Number.isSafeInteger(dimension) || dimension < 0) {
      throw new RangeError(
        `parameter ${spec.name} has an invalid shape [${spec.shape.join(', ')}]; dimensions must be integers of at least 0`,
      );
    }
    count *= dimension;
  }
  return count;
}

/** Merges neighbouring specs with the same decay flag so that the update loop branches once per segment. */
function buildSegments(specs: readonly ParameterSpec[]): DecaySegment[] {
  const segments: DecaySegment[] = [];
  let offset = 0;
  for (const spec of specs) {
    const end = offset + elementCount(spec);
    const last = segments[segments.length - 1];
    if (last !== undefined && last.decay === spec.decay) {
      last.end = end;
    } else if (end > offset) {
      segments.push({ start: offset, end, decay: spec.decay });
    }
    offset = end;
  }
  return segments;
}

/**
 * AdamW (Adam with decoupled weight decay, Loshchilov and Hutter, "Decoupled Weight Decay Regularization",
 * ICLR 2019) over parameters laid end to end in ParameterSpec order.
 *
 * Each `step` clips the gradients to `clipNorm` (when it is above 0), takes the learning rate from
 * `learningRateAt`, and then updates every element i:
 *   m = beta1 * m + (1 - beta1) * g
 *   v = beta2 * v + (1 - beta2) * g * g
 *   p = p * (1 - lr * weightDecay)   (only for specs with decay = true)
 *   p = p - (lr * c2 / (1 - beta1^t)) * m / (sqrt(v) + eps * c2)   with c2 = sqrt(1 - beta2^t)
 * The last line equals PyTorch's p - (lr / (1 - beta1^t)) * m / (sqrt(v) / c2 + eps) in exact arithmetic. It
 * saves a division per element, as the efficient form in the Adam paper (Kingma and Ba, section 2) and
 * TensorFlow's Adam do. Arithmetic is float32 per element (see adamw-update.ts). The element order is fixed, so
 * equal inputs give equal bits on every rank, and a state restored with `loadState` continues bit for bit.
 */
export class AdamW {
  /** Number of float32 elements that `parameters` and `gradients` must have. */
  readonly parameterCount: number;
  /** Length of the run, which sets the end of the cosine decay. */
  readonly totalSteps: number;

  private readonly config: Readonly<AdamWConfig>;
  private readonly segments: readonly DecaySegment[];
  private readonly firstMoment: Float32Array;
  private readonly secondMoment: Float32Array;
  private completedSteps = 0;

  /**
   * Creates an optimizer with zeroed moments for the parameters described by `specs`.
   * `config` is expected to be validated already. Throws a RangeError when `totalSteps` is not an integer of
   * at least 1 or a spec has an invalid shape.
   */
  constructor(specs: readonly ParameterSpec[], config: AdamWConfig, totalSteps: number) {
    if (!Number.isSafeInteger(totalSteps) || totalSteps < 1) {
      throw new RangeError(`AdamW totalSteps must be an integer of at least 1 (got ${totalSteps})`);
    }
    this.parameterCount = countParameters(specs);
    this.totalSteps = totalSteps;
    this.config = Object.freeze({ ...config });
    this.segments = buildSegments(specs);
    // In the kernel memory, so that the SIMD update reads them in place (see adamw-update.ts).
    this.firstMoment = allocateKernelFloats(this.parameterCount);
    this.secondMoment = allocateKernelFloats(this.parameterCount);
  }

  /** Optimizer steps completed so far. The next step uses step number `stepCount + 1`. */
  get stepCount(): number {
    return this.completedSteps;
  }

  /**
   * Applies one update to `parameters` in place. `gradients` are clipped in place first, so the caller sees the
   * clipped values afterwards.
   *
   * Throws a RangeError, before changing anything, when a buffer length differs from `parameterCount` or the
   * gradient norm is NaN or Infinity.
   */
  step(parameters: Float32Array, gradients: Float32Array): AdamWStepResult {
    this.checkLength('parameters', parameters.length);
    this.checkLength('gradients', gradients.length);

    const stepNumber = this.completedSteps + 1;

    const { norm, scale } = clipByGlobalNorm(gradients, this.config.clipNorm);
    if (!Number.isFinite(norm)) {
      throw new RangeError(
        `gradient global norm is ${norm} at optimizer step ${stepNumber}; the parameters were left unchanged. ` +
          'Lower optimizer.lr or enable clipping with optimizer.clipNorm',
      );
    }

    const lr = this.applyUpdate(parameters, gradients, [{ start: 0, end: this.parameterCount }], 1, 1);
    return { lr, gradNorm: norm, clipped: scale < 1 };
  }

  /**
   * Applies one update to the elements of `ranges` only, with the same arithmetic as `step`: for equal
   * inputs each of those elements gets the same bits as `step` would give it. `gradNorm` is the global norm
   * of the whole gradient, which the caller measures across every rank. When clipping applies, each gradient
   * is multiplied by `clipNorm / gradNorm` and rounded to float32 inside the update loop, where `step` uses a
   * separate pass. `gradientFactor` multiplies each gradient first, rounded to float32, as if the caller had
   * scaled the buffer. The trainer passes 1 / token count, and `gradNorm` is then that of the scaled gradients.
   * `gradients` is read only. The step count advances by one even when `ranges` is empty, so every rank of a
   * sharded run stays at the same step.
   *
   * Throws a RangeError, before changing anything, when a buffer length differs from `parameterCount`, a
   * range lies outside it, or `gradNorm` is NaN or Infinity.
   */
  stepRanges(
    parameters: Float32Array,
    gradients: Float32Array,
    ranges: readonly ElementRange[],
    gradNorm: number,
    gradientFactor = 1,
  ): AdamWStepResult {
    this.checkLength('parameters', parameters.length);
    this.checkLength('gradients', gradients.length);
    for (const { start, end } of ranges) {
      if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && start <= end && end <= this.parameterCount)) {
        throw new RangeError(`AdamW range [${start}, ${end}) is not within [0, ${this.parameterCount}); pass integer ranges with start <= end`);
      }
    }
    if (!Number.isFinite(gradNorm)) {
      throw new RangeError(
        `gradient global norm is ${gradNorm} at optimizer step ${this.completedSteps + 1}; the parameters were left unchanged. ` +
          'Lower optimizer.lr or enable clipping with optimizer.clipNorm',
      );
    }
    const scale = clipScaleFor(gradNorm, this.config.clipNorm);
    const lr = this.applyUpdate(parameters, gradients, ranges, gradientFactor, scale);
    return { lr, gradNorm, clipped: scale < 1 };
  }

  /**
   * Updates the elements of `ranges` with gradients multiplied by `gradientFactor` and then by `gradientScale`
   * (each product rounded to float32; 1 and 1 use them as they are), advances the step count and returns the
   * learning rate used.
   */
  private applyUpdate(
    parameters: Float32Array,
    gradients: Float32Array,
    ranges: readonly ElementRange[],
    gradientFactor: number,
    gradientScale: number,
  ): number {
    const { beta1, beta2, eps, weightDecay } = this.config;
    const stepNumber = this.completedSteps + 1;
    const lr = learningRateAt(stepNumber, this.totalSteps, this.config);
    const decayFactor = 1 - lr * weightDecay;
    const biasCorrection2 = Math.sqrt(1 - beta2 ** stepNumber);
    const coefficients: AdamWCoefficients = {
      gradientFactor,
      gradientScale,
      beta1,
      oneMinusBeta1: 1 - beta1,
      beta2,
      oneMinusBeta2: 1 - beta2,
      eps: eps * biasCorrection2,
      stepSize: (lr * biasCorrection2) / (1 - beta1 ** stepNumber),
      shrink: 1,
    };
    const arrays = { parameters, gradients, firstMoment: this.firstMoment, secondMoment: this.secondMoment };

    for (const range of ranges) {
      for (const segment of this.segments) {
        const start = Math.max(segment.start, range.start);
        const end = Math.min(segment.end, range.end);
        if (start < end) {
          coefficients.shrink = segment.decay ? decayFactor : 1;
          updateElements(arrays, start, end, coefficients);
        }
      }
    }

    this.completedSteps = stepNumber;
    return lr;
  }

  /**
   * Copies the moments of every element from the rank that owns it: `allGather` must fill the elements of
   * each buffer that other ranks own, as `Ring.allGather` does for the ranges of the gradient reduce-scatter.
   * A sharded run calls this before exporting its state, because each rank updates only its own moments.
   */
  async gatherMoments(allGather: (values: Float32Array) => Promise<void>): Promise<void> {
    await allGather(this.firstMoment);
    await allGather(this.secondMoment);
  }

  /** Returns a copy of the optimizer state for a checkpoint. */
  exportState(): AdamWState {
    return {
      step: this.completedSteps,
      firstMoment: this.firstMoment.slice(),
      secondMoment: this.secondMoment.slice(),
    };
  }

  /**
   * Replaces the optimizer state with a copy of `state`, e.g. from a checkpoint.
   * Throws a RangeError when the moment lengths differ from `parameterCount` or the step is not an integer
   * of at least 0.
   */
  loadState(state: AdamWState): void {
    if (!Number.isSafeInteger(state.step) || state.step < 0) {
      throw new RangeError(`AdamW state step must be an integer of at least 0 (got ${state.step})`);
    }
    this.checkLength('state.firstMoment', state.firstMoment.length);
    this.checkLength('state.secondMoment', state.secondMoment.length);
    this.firstMoment.set(state.firstMoment);
    this.secondMoment.set(state.secondMoment);
    this.completedSteps = state.step;
  }

  private checkLength(what: string, length: number): void {
    if (length !== this.parameterCount) {
      throw new RangeError(
        `AdamW ${what} has ${length} elements but the model has ${this.parameterCount} parameters; ` +
          'pass a buffer laid out in ParameterSpec order (use subarray to drop extra slots)',
      );
    }
  }
}
