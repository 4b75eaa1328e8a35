/**
 * The public task API: what a user's task module supplies so that ringtrain can train its model data-parallel.
 * docs/tasks.md explains it with an example, and examples/ contains tasks written against it.
 *
 * A task has two halves that run in different threads. The data half (`load`, `describe`, `batch`) runs in each
 * worker's data-loading threads and returns plain typed arrays. The model half (`model`, `loss`) runs on the
 * training thread. Both halves come from the same module, which every thread imports by path.
 */
import type * as tf from '@tensorflow/tfjs';
import type { RunConfig, TaskOptions } from '../config/types.js';
import type { Model } from '../models/model.js';
import { ConfigError } from '../errors.js';
import { closestMatches } from '../config/suggest.js';

/** Part of the data that an example index refers to. */
export type Split = 'train' | 'eval';

/** One array of a batch: values in row-major order and the tensor shape they form. */
export interface BatchArray {
  data: Float32Array | Int32Array;
  shape: number[];
}

/** A batch as the data threads build it: named arrays that move to the training thread without copying. */
export type ArrayBatch = Record<string, BatchArray>;

/** Sizes and facts that the data half reports to the training thread and the coordinator. */
export interface DatasetInfo {
  trainSize: number;
  evalSize: number;
  /** Length of each training example (tokens, characters); when given, batches group examples of similar length. */
  trainLengths?: Uint16Array;
  /** Class names in class-id order; when given, evaluation reports accuracy, precision, recall and F1. */
  classNames?: string[];
  /** Anything else the model factory needs, e.g. a vocabulary size; must survive structured cloning. */
  meta?: Record<string, unknown>;
}

/** The argument of `load`: the resolved run config and the task's own options (`taskOptions`). */
export interface DataContext {
  config: RunConfig;
  options: TaskOptions;
  seed: number;
}

/** The argument of `model` on the training thread. */
export interface ModelContext extends DataContext {
  info: DatasetInfo;
  /** The TensorFlow.js instance ringtrain trains with; build the model with this one. */
  tf: typeof tf;
}

/** A trainable tensor of a model written as plain variables. */
export interface NamedVariable {
  name: string;
  variable: tf.Variable;
  /** False for biases and normalisation gains; defaults to true for tensors of rank 2 and more. */
  decay?: boolean;
}

/**
 * A model written as named variables and a forward pass, for models that tfjs-layers cannot express.
 * `forward` must build the whole differentiable path from the batch tensors to the outputs.
 */
export interface VariableModel {
  variables: NamedVariable[];
  forward(inputs: Record<string, tf.Tensor>, training: boolean): tf.Tensor;
  dispose?(): void;
}

/** The result of a custom loss: the summed loss of the batch and the number of terms in the sum. */
export interface LossResult {
  sum: tf.Scalar;
  count: number;
}

/**
 * A custom loss. It must return the SUM over the batch, not the mean: ringtrain divides by the global count
 * after the all-reduce, which keeps the gradient exact when shards differ in size.
 */
export type LossFunction = (outputs: tf.Tensor, batch: Record<string, tf.Tensor>, arrays: ArrayBatch) => LossResult;

/**
 * Built-in losses. `softmax-cross-entropy` takes logits [..., classes] and int32 labels [...] where -1 marks
 * padding. `sparse-categorical-crossentropy` is the same on probabilities (a softmax output layer).
 * `mean-squared-error` takes float labels of the output's shape.
 */
export type LossName = 'softmax-cross-entropy' | 'sparse-categorical-crossentropy' | 'mean-squared-error';

/** Evaluation metrics: `classification` needs `classNames`; `perplexity` is exp of the mean evaluation loss. */
export type MetricName = 'classification' | 'perplexity';

/** The description a task module exports by default. `Data` is whatever `load` returns. */
export interface TaskDefinition<Data = unknown> {
  name: string;
  /** Loads and prepares the dataset once per data-loading thread. */
  load(context: DataContext): Data | Promise<Data>;
  /** Returns the sizes of the loaded data and the facts the model factory needs. */
  describe(data: Data): DatasetInfo;
  /** Builds one batch from example indices of `split`. */
  batch(data: Data, split: Split, indices: readonly number[]): ArrayBatch;
  /**
   * Builds the model. Every rank calls it with the same seed, and rank 0's initial values are then copied to
   * every rank, so a factory with its own randomness still starts identical everywhere.
   */
  model(context: ModelContext): tf.LayersModel | VariableModel | Promise<tf.LayersModel | VariableModel>;
  /** Batch arrays fed to the model, in a LayersModel's input order; default every array except `labels`. */
  inputs?: string[];
  /** Name of the labels array; default `labels`. */
  labels?: string;
  /** Default `softmax-cross-entropy`. */
  loss?: LossName | LossFunction;
  /** Default `['classification']` when the data has class names, else none. */
  metrics?: MetricName[];
}

/**
 * A built-in task that brings its own low-level model (computeGradients and predict on its own batch type).
 * User modules use TaskDefinition; this form exists for models tuned by hand for the WASM backend.
 */
export interface NativeTaskDefinition<Data, Batch> {
  name: string;
  load(context: DataContext): Data | Promise<Data>;
  describe(data: Data): DatasetInfo;
  batch(data: Data, split: Split, indices: readonly number[]): Batch;
  nativeModel(context: ModelContext): Model<Batch> | Promise<Model<Batch>>;
  /** Gold class per position of `batch`, -1 at padding. */
  labelsOf(batch: Batch): Int32Array;
  metrics?: MetricName[];
}

/** Either form of task, as the runtime handles it. */
export type AnyTaskDefinition = TaskDefinition<unknown> | NativeTaskDefinition<unknown, unknown>;

const lossNames: readonly string[] = ['softmax-cross-entropy', 'sparse-categorical-crossentropy', 'mean-squared-error'];
const metricNames: readonly string[] = ['classification', 'perplexity'];

/**
 * Checks a task definition and returns it unchanged, so a task module can `export default defineTask({...})`
 * and get type checking and an early, named error for a missing or misspelt field.
 */
export function defineTask<Data>(definition: TaskDefinition<Data>): TaskDefinition<Data> {
  checkTaskDefinition(definition, 'defineTask');
  return definition;
}

/** Throws a ConfigError naming the first field of `value` that is not a valid task definition. */
export function checkTaskDefinition(value: unknown, source: string): asserts value is AnyTaskDefinition {
  if (typeof value !== 'object' || value === null) {
    throw new ConfigError(`${source}: a task must be an object built with defineTask({...}) (got ${typeof value})`);
  }
  const task = value as Record<string, unknown>;
  const problem = (field: string, expected: string): never => {
    throw new ConfigError(`${source}: task field '${field}' must be ${expected} (got ${describe(task[field])}); see docs/tasks.md`);
  };
  if (typeof task.name !== 'string' || task.name === '') problem('name', 'a non-empty string');
  for (const field of ['load', 'describe', 'batch']) {
    if (typeof task[field] !== 'function') problem(field, 'a function');
  }
  if (typeof task.model !== 'function' && typeof task.nativeModel !== 'function') problem('model', 'a function');
  if (task.loss !== undefined && typeof task.loss !== 'function' && !lossNames.includes(task.loss as string)) {
    problem('loss', `a function or one of ${lossNames.join(', ')}`);
  }
  if (task.metrics !== undefined) {
    if (!Array.isArray(task.metrics) || task.metrics.some((metric) => !metricNames.includes(metric as string))) {
      problem('metrics', `an array of ${metricNames.join(', ')}`);
    }
  }
  for (const field of ['inputs']) {
    if (task[field] !== undefined && (!Array.isArray(task[field]) || (task[field] as unknown[]).some((name) => typeof name !== 'string'))) {
      problem(field, 'an array of batch array names');
    }
  }
  if (task.labels !== undefined && typeof task.labels !== 'string') problem('labels', 'the name of a batch array');
  for (const field of Object.keys(task)) {
    if (!knownFields.includes(field)) {
      const close = closestMatches(field, knownFields);
      const hint = close.length > 0 ? ` (did you mean ${close.join(' or ')}?)` : '';
      throw new ConfigError(`${source}: unknown task field '${field}'${hint}; the fields are ${knownFields.join(', ')} (docs/tasks.md)`);
    }
  }
}

/**
 * Throws a ConfigError naming the task and the field when `describe()` returned something that is not a
 * DatasetInfo: sizes that are not whole numbers, lengths of the wrong count, or an unknown field.
 */
export function checkDatasetInfo(info: unknown, task: string): asserts info is DatasetInfo {
  const fail = (problem: string): never => {
    throw new ConfigError(`task ${task}: describe() ${problem}; it must return { trainSize, evalSize, classNames?, trainLengths?, meta? } (docs/tasks.md)`);
  };
  if (typeof info !== 'object' || info === null) fail(`returned ${info === null ? 'null' : typeof info}`);
  const value = info as Record<string, unknown>;
  for (const field of Object.keys(value)) {
    if (!infoFields.includes(field)) {
      const close = closestMatches(field, infoFields);
      fail(`returned an unknown field '${field}'${close.length > 0 ? ` (did you mean ${close.join(' or ')}?)` : ''}`);
    }
  }
  for (const field of ['trainSize', 'evalSize']) {
    if (!Number.isSafeInteger(value[field]) || (value[field] as number) < 0) fail(`returned ${field}=${String(value[field])}, not a whole number`);
  }
  if (value.trainLengths !== undefined && (!(value.trainLengths instanceof Uint16Array) || value.trainLengths.length !== value.trainSize)) {
    fail(`returned trainLengths that is not a Uint16Array of trainSize (${String(value.trainSize)}) lengths`);
  }
  if (value.classNames !== undefined && (!Array.isArray(value.classNames) || value.classNames.some((name) => typeof name !== 'string'))) {
    fail('returned classNames that is not an array of strings');
  }
}

const knownFields: readonly string[] = ['name', 'load', 'describe', 'batch', 'model', 'nativeModel', 'labelsOf', 'inputs', 'labels', 'loss', 'metrics'];
const infoFields: readonly string[] = ['trainSize', 'evalSize', 'trainLengths', 'classNames', 'meta'];

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'string') return JSON.stringify(value);
  return Array.isArray(value) ? 'an array' : typeof value;
}
