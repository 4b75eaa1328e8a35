/**
 * ringtrain's library API: what a task module imports to describe its data and model. The launcher trains the
 * task data-parallel (`npm run launch -- --gpus 2 --task ./my-task.js`); docs/tasks.md shows a complete module.
 */
export { defineTask } from './tasks/api.js';
export type {
  ArrayBatch,
  BatchArray,
  DataContext,
  DatasetInfo,
  LossFunction,
  LossName,
  LossResult,
  MetricName,
  ModelContext,
  NamedVariable,
  Split,
  TaskDefinition,
  VariableModel,
} from './tasks/api.js';
export type { RunConfig, TaskOptions } from './config/types.js';
export { readConll } from './data/formats/conll.js';
export { readCsv } from './data/formats/csv.js';
export { readJsonl } from './data/formats/jsonl.js';
export { readText } from './data/formats/text.js';
export { checkKnownLabels } from './data/formats/labels.js';
export { DataFileError, type BadRecordPolicy, type ReadResult } from './data/formats/records.js';
export { RingtrainError, ConfigError } from './errors.js';
