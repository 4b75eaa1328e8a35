import type * as tf from '@tensorflow/tfjs';
import type { Model } from '../models/model.js';
import type { BatchEvaluation } from '../models/tensor-model.js';
import type { DatasetInfo, MetricName } from './api.js';

export type { Split } from './api.js';

/**
 * A task as a worker's training thread keeps it: the model built for the loaded data, and how to evaluate a
 * batch. The data itself lives in the data-loading threads (src/data/loader-pool.ts).
 */
export interface Task<Batch> {
  readonly name: string;
  readonly info: DatasetInfo;
  readonly model: Model<Batch>;
  readonly metrics: readonly MetricName[];
  /** Class names in class-id order; empty when the task does not classify. */
  readonly classNames: readonly string[];
  /** Non-trainable state (e.g. batch-normalisation statistics) that rank 0 sends to every rank after each step. */
  readonly buffers: readonly tf.Variable[];
  /** Returns the summed loss of `batch` and, for classification, predicted and gold classes. */
  evaluateBatch(batch: Batch): BatchEvaluation;
}
