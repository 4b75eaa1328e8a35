/**
 * Builds the training-thread side of a task (model, loss, evaluation) from a task definition and its data facts.
 */
import * as tf from '@tensorflow/tfjs';
import type { RunConfig } from '../config/types.js';
import { ConfigError } from '../errors.js';
import { TensorModel } from '../models/tensor-model.js';
import { checkDatasetInfo, type AnyTaskDefinition, type DatasetInfo, type MetricName, type TaskDefinition } from './api.js';
import { importTask, isNativeTask } from './registry.js';
import type { Task } from './task.js';

/**
 * Builds the training-thread side of a task from the data facts reported by the data threads. The tfjs backend
 * must already be selected, because the model's variables are created on it.
 */
export async function buildTask(definition: AnyTaskDefinition, info: DatasetInfo, config: RunConfig): Promise<Task<unknown>> {
  checkDatasetInfo(info, definition.name);
  const context = { config, options: config.taskOptions, seed: config.seed, info, tf };
  const classNames = info.classNames ?? [];
  const metrics: MetricName[] = definition.metrics ?? (classNames.length > 0 ? ['classification'] : []);
  if (metrics.includes('classification') && classNames.length === 0) {
    throw new ConfigError(`task ${definition.name} asks for classification metrics, but describe() returned no classNames`);
  }
  const common = { name: definition.name, info, metrics, classNames };
  if (isNativeTask(definition)) {
    const model = await definition.nativeModel(context);
    return {
      ...common,
      model,
      buffers: [],
      evaluateBatch: (batch) => ({ predictions: model.predict(batch), labels: definition.labelsOf(batch), lossSum: 0, count: 0 }),
    };
  }
  const userTask = definition as TaskDefinition<unknown>;
  const built = await userTask.model(context);
  const model = new TensorModel(built, {
    inputs: userTask.inputs,
    labels: userTask.labels ?? 'labels',
    loss: userTask.loss ?? 'softmax-cross-entropy',
    classification: metrics.includes('classification'),
  });
  return {
    ...common,
    model,
    buffers: model.buffers,
    evaluateBatch: (batch) => model.evaluate(batch as never),
  } as Task<unknown>;
}

/** A task loaded entirely in the calling thread, for tests, benchmarks and single-process evaluation. */
export interface LocalTask {
  task: Task<unknown>;
  makeBatch(split: 'train' | 'eval', indices: readonly number[]): unknown;
}

/** Loads the data and builds the model of `config.task` in this thread. */
export async function loadLocalTask(config: RunConfig): Promise<LocalTask> {
  const definition = await importTask(config.task);
  const data = await definition.load({ config, options: config.taskOptions, seed: config.seed });
  const info = definition.describe(data);
  const task = await buildTask(definition, info, config);
  return { task, makeBatch: (split, indices) => definition.batch(data, split, indices) };
}
