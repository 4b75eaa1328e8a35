/**
 * Classification of the rows of a CSV feature table (numeric features and one label column) with a small
 * dense network on standardised features.
 */
import type { TaskOptions } from '../config/types.js';
import { readCsv, type FeatureRecord } from '../data/formats/csv.js';
import { checkKnownLabels } from '../data/formats/labels.js';
import { DataFileError } from '../data/formats/records.js';
import { ConfigError, RingtrainError } from '../errors.js';
import type { ArrayBatch, DataContext, DatasetInfo, ModelContext, Split, TaskDefinition } from './api.js';
import { holdOut, sortedLabels } from '../data/hold-out.js';
import { denseClassifier } from '../models/dense-classifier.js';
import { booleanOption, checkOptionNames, requireTrainFile } from './options.js';

/** Standardised features and class ids of both splits, as the data threads keep them. */
export interface TabularData {
  /** Row-major [rows, featureCount] values per split, standardised with the training split's statistics. */
  features: Record<Split, Float32Array>;
  labels: Record<Split, Int32Array>;
  featureCount: number;
  classNames: string[];
  /** Per-feature mean and standard deviation of the training split, in feature order. */
  mean: Float64Array;
  std: Float64Array;
  meta: Record<string, unknown>;
}

/** Options of the tabular-classification task. */
const OPTION_NAMES = ['labelColumn', 'header'] as const;

/** Returns `taskOptions.labelColumn` (a header name or a 0-based index), default 'label'. */
function labelColumnOption(options: TaskOptions): string | number {
  const value = options.labelColumn;
  if (value === undefined) return 'label';
  if ((typeof value === 'string' && value.length > 0) || (Number.isInteger(value) && (value as number) >= 0)) {
    return value as string | number;
  }
  throw new ConfigError(
    `taskOptions.labelColumn must be a column name or a 0-based column index (got ${JSON.stringify(value)}); ` +
      'set it in the config\'s taskOptions, e.g. "labelColumn": "species"',
  );
}

/**
 * Returns the per-column mean and standard deviation (population, dividing by n) of `rows`. A constant
 * column gets std 1, so standardising it yields zeros instead of dividing by zero.
 */
export function columnStatistics(rows: readonly FeatureRecord[], featureCount: number): { mean: Float64Array; std: Float64Array } {
  const mean = new Float64Array(featureCount);
  const std = new Float64Array(featureCount);
  for (const row of rows) {
    for (let column = 0; column < featureCount; column++) mean[column] += row.features[column] / rows.length;
  }
  for (const row of rows) {
    for (let column = 0; column < featureCount; column++) std[column] += (row.features[column] - mean[column]) ** 2 / rows.length;
  }
  for (let column = 0; column < featureCount; column++) {
    std[column] = std[column] > 0 ? Math.sqrt(std[column]) : 1;
  }
  return { mean, std };
}

/** Returns the rows' features standardised with `mean` and `std`, row-major. */
function standardise(rows: readonly FeatureRecord[], mean: Float64Array, std: Float64Array): Float32Array {
  const featureCount = mean.length;
  const values = new Float32Array(rows.length * featureCount);
  rows.forEach((row, index) => {
    for (let column = 0; column < featureCount; column++) {
      values[index * featureCount + column] = (row.features[column] - mean[column]) / std[column];
    }
  });
  return values;
}

/**
 * Classifies the rows of `data.trainFile` (CSV). The label column is `taskOptions.labelColumn` (default
 * `label`), and `taskOptions.header: false` reads files without a header line. The evaluation split is
 * `data.evalFile`, or every `data.heldOutEvery`-th training row when it is empty.
 */
const tabularClassification: TaskDefinition<TabularData> = {
  name: 'tabular-classification',

  load({ config, options }: DataContext): TabularData {
    checkOptionNames('tabular-classification', options, OPTION_NAMES);
    const trainFile = requireTrainFile(config, 'data/train.csv');
    const evalFile = config.data.evalFile;
    const policy = config.data.onBadRecord;
    const readOptions = { labelColumn: labelColumnOption(options), header: booleanOption(options, 'header', true), onBadRecord: policy };

    const trainRead = readCsv(trainFile, readOptions);
    const featureNames = trainRead.featureNames;
    let skipped = trainRead.skipped;
    const skipReasons = [...trainRead.skipReasons];
    let train: FeatureRecord[];
    let held: FeatureRecord[];
    if (evalFile === '') {
      const parts = holdOut(trainRead.records, config.data.heldOutEvery, `data file ${trainFile}`);
      const known = checkKnownLabels(parts.eval, sortedLabels(parts.train), trainFile, policy);
      skipped += known.skipped;
      skipReasons.push(...known.skipReasons);
      train = parts.train;
      held = known.records;
    } else {
      const evalRead = readCsv(evalFile, readOptions);
      if (evalRead.featureNames.join(',') !== featureNames.join(',')) {
        throw new DataFileError(
          evalFile,
          null,
          `has feature columns ${evalRead.featureNames.join(', ')}, but ${trainFile} has ${featureNames.join(', ')}`,
          'give both files the same columns in the same order',
        );
      }
      const known = checkKnownLabels(evalRead.records, sortedLabels(trainRead.records), evalFile, policy);
      skipped += evalRead.skipped + known.skipped;
      skipReasons.push(...evalRead.skipReasons, ...known.skipReasons);
      train = trainRead.records;
      held = known.records;
    }

    const classNames = sortedLabels(train);
    const ids = new Map(classNames.map((name, id) => [name, id]));
    const featureCount = featureNames.length;
    const { mean, std } = columnStatistics(train, featureCount);
    return {
      features: { train: standardise(train, mean, std), eval: standardise(held, mean, std) },
      labels: { train: Int32Array.from(train, (row) => ids.get(row.label) as number), eval: Int32Array.from(held, (row) => ids.get(row.label) as number) },
      featureCount,
      classNames,
      mean,
      std,
      meta: {
        trainFile,
        evalFile: evalFile === '' ? null : evalFile,
        featureNames,
        trainExamples: train.length,
        evalExamples: held.length,
        classes: classNames.length,
        skippedRecords: skipped,
        skipReasons: skipReasons.slice(0, 5),
      },
    };
  },

  describe(data: TabularData): DatasetInfo {
    return {
      trainSize: data.labels.train.length,
      evalSize: data.labels.eval.length,
      classNames: data.classNames,
      meta: { featureCount: data.featureCount, ...data.meta },
    };
  },

  batch(data: TabularData, split: Split, indices: readonly number[]): ArrayBatch {
    const width = data.featureCount;
    const source = data.features[split];
    const rows = data.labels[split].length;
    const features = new Float32Array(indices.length * width);
    const labels = new Int32Array(indices.length);
    indices.forEach((index, row) => {
      if (!Number.isInteger(index) || index < 0 || index >= rows) {
        throw new RingtrainError('RINGTRAIN_ERR_DATA', `example index ${index} is outside the ${split} split; expected an integer in [0, ${rows})`);
      }
      features.set(source.subarray(index * width, (index + 1) * width), row * width);
      labels[row] = data.labels[split][index];
    });
    return { features: { data: features, shape: [indices.length, width] }, labels: { data: labels, shape: [indices.length] } };
  },

  model: (context: ModelContext) => denseClassifier(context, context.info.meta?.featureCount as number),
  inputs: ['features'],
  loss: 'softmax-cross-entropy',
  metrics: ['classification'],
};

export default tabularClassification;
