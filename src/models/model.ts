import type * as tf from '@tensorflow/tfjs';

/** One trainable tensor of a model, in the fixed order shared by every rank. */
export interface ParameterSpec {
  /** Stable, unique name, e.g. `layer0/attention/query/kernel`. */
  name: string;
  shape: number[];
  /** False for biases and normalisation gains, which AdamW leaves undecayed by default. */
  decay: boolean;
}

/** The result of forward and backward on one shard. */
export interface GradientResult {
  /** Sum (not mean) of the per-example losses of the shard. */
  lossSum: number;
  /** Number of loss terms in `lossSum` (tokens for a tagger); the mean loss divides by the global count. */
  count: number;
}

/**
 * A model that a worker trains data-parallel.
 *
 * Invariants: `specs` and `variables` have the same order on every rank, and the gradients written by
 * `computeGradients` are of the summed loss, so the worker can divide by the global loss-term count after
 * the all-reduce and obtain the exact gradient of the mean loss over the whole global batch.
 */
export interface Model<Batch> {
  readonly specs: readonly ParameterSpec[];
  readonly variables: readonly tf.Variable[];
  /**
   * Runs forward and backward on `batch` and writes d(lossSum)/d(parameter) into `gradients`, parameters
   * laid end to end in `specs` order (so `gradients.length` is at least the total parameter count).
   */
  computeGradients(batch: Batch, gradients: Float32Array): GradientResult;
  /**
   * Optional. Receives the flat parameter values, in `specs` order, equal to the variables at the time of the
   * call. The caller keeps the array current from then on, updating it in place, so a model may read
   * parameters from views of it instead of downloading the variables, such as embedding tables that it reads
   * in JavaScript. Returns the indices (in `specs` order) of the parameters that the model reads only from
   * the array: the caller may stop assigning their variables, which then keep older values.
   */
  useHostValues?(values: Float32Array): readonly number[];
  /** Returns the predicted class for every position of `batch`, -1 where the position is padding. */
  predict(batch: Batch): Int32Array;
  dispose(): void;
}
