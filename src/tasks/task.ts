import type { Model } from '../models/model.js';

/** Part of the data that an example index refers to. */
export type Split = 'train' | 'eval';

/**
 * A trainable job: a dataset with a train and an evaluation split, and the model that learns it.
 * Every rank builds the same task from the same config and seed; the coordinator receives only its sizes.
 */
export interface Task<Batch> {
  readonly name: string;
  /** Class names in class-id order, used by the evaluation report. */
  readonly classNames: readonly string[];
  readonly trainSize: number;
  readonly evalSize: number;
  /** Tokens in each training example, used by the coordinator to put examples of similar length in one batch. */
  readonly trainLengths: Uint16Array;
  readonly model: Model<Batch>;
  /** Builds one padded batch from example indices of `split`. */
  makeBatch(split: Split, indices: readonly number[]): Batch;
  /** Returns the gold class for every position of `batch`, -1 where the position is padding. */
  labelsOf(batch: Batch): Int32Array;
}
