/**
 * Text classification of a JSON Lines file (`{"text": ..., "label": ...}` per line) with hashed bag-of-words
 * features and a small dense network. Also exports the hashed-text data pieces that spam-classification shares.
 */
import { denseRows, hashTexts, type HashedTexts, type HashingOptions } from '../data/hashed-features.js';
import { readJsonl } from '../data/formats/jsonl.js';
import { checkKnownLabels } from '../data/formats/labels.js';
import { RingtrainError } from '../errors.js';
import { holdOut, sortedLabels } from '../data/hold-out.js';
import { denseClassifier } from '../models/dense-classifier.js';
import { booleanOption, checkOptionNames, requireTrainFile, stringOption } from './options.js';
import type { ArrayBatch, DataContext, DatasetInfo, ModelContext, Split, TaskDefinition } from './api.js';

/** A text and its class name, as the text tasks hand them to `encodeTexts`. */
export interface LabelledText {
  text: string;
  label: string;
}

/** The hashed texts and class ids that the data threads of a text task keep. */
export interface HashedTextData {
  texts: Record<Split, HashedTexts>;
  labels: Record<Split, Int32Array>;
  classNames: string[];
  bucketCount: number;
  /** Counts and file names that the worker logs in its 'data loaded' line. */
  meta: Record<string, unknown>;
}

/**
 * Hashes both splits and maps their labels to class ids. Class names come from the training split; every
 * evaluation label must be one of them (check with checkKnownLabels first).
 */
export function encodeTexts(
  splits: Record<Split, readonly LabelledText[]>,
  hashing: HashingOptions,
  meta: Record<string, unknown>,
): HashedTextData {
  const classNames = sortedLabels(splits.train);
  const ids = new Map(classNames.map((name, id) => [name, id]));
  const labelIds = (records: readonly LabelledText[]): Int32Array =>
    Int32Array.from(records, (record) => {
      const id = ids.get(record.label);
      if (id === undefined) {
        throw new RingtrainError(
          'RINGTRAIN_ERR_DATA',
          `evaluation label ${JSON.stringify(record.label)} does not occur in the training split; filter the records with checkKnownLabels first`,
        );
      }
      return id;
    });

  return {
    texts: { train: hashTexts(splits.train.map((r) => r.text), hashing), eval: hashTexts(splits.eval.map((r) => r.text), hashing) },
    labels: { train: labelIds(splits.train), eval: labelIds(splits.eval) },
    classNames,
    bucketCount: hashing.buckets,
    meta: { ...meta, trainExamples: splits.train.length, evalExamples: splits.eval.length, classes: classNames.length },
  };
}

/** Returns the sizes, class names and logged counts of hashed text data. */
export function describeTexts(data: HashedTextData): DatasetInfo {
  return {
    trainSize: data.labels.train.length,
    evalSize: data.labels.eval.length,
    classNames: data.classNames,
    meta: { featureCount: data.bucketCount, ...data.meta },
  };
}

/** Builds a batch of dense hashed features [batch, buckets] and int32 labels [batch]. */
export function textBatch(data: HashedTextData, split: Split, indices: readonly number[]): ArrayBatch {
  const labels = Int32Array.from(indices, (index) => data.labels[split][index] ?? -1);
  return {
    features: { data: denseRows(data.texts[split], indices, data.bucketCount), shape: [indices.length, data.bucketCount] },
    labels: { data: labels, shape: [indices.length] },
  };
}

/** Options of the text-classification task. */
const OPTION_NAMES = ['textField', 'labelField', 'bigrams'] as const;

/**
 * Classifies the texts of `data.trainFile` (JSON Lines). The evaluation split is `data.evalFile`, or every
 * `data.heldOutEvery`-th training record when it is empty.
 */
/** The model half and batching that every hashed bag-of-words task shares: spam-classification uses it too. */
export const hashedTextClassifier: Pick<TaskDefinition<HashedTextData>, 'describe' | 'batch' | 'model' | 'inputs' | 'loss' | 'metrics'> = {
  describe: describeTexts,
  batch: textBatch,
  model: (context: ModelContext) => denseClassifier(context, context.config.model.hashFeatures),
  inputs: ['features'],
  loss: 'softmax-cross-entropy',
  metrics: ['classification'],
};

const textClassification: TaskDefinition<HashedTextData> = {
  name: 'text-classification',

  load({ config, options }: DataContext): HashedTextData {
    checkOptionNames('text-classification', options, OPTION_NAMES);
    const trainFile = requireTrainFile(config, 'data/train.jsonl');
    const evalFile = config.data.evalFile;
    const policy = config.data.onBadRecord;
    const readOptions = { textField: stringOption(options, 'textField'), labelField: stringOption(options, 'labelField'), onBadRecord: policy };

    const trainRead = readJsonl(trainFile, readOptions);
    let skipped = trainRead.skipped;
    const skipReasons = [...trainRead.skipReasons];
    let splits: { train: LabelledText[]; eval: LabelledText[] };
    if (evalFile === '') {
      const parts = holdOut(trainRead.records, config.data.heldOutEvery, `data file ${trainFile}`);
      const known = checkKnownLabels(parts.eval, sortedLabels(parts.train), trainFile, policy);
      skipped += known.skipped;
      skipReasons.push(...known.skipReasons);
      splits = { train: parts.train, eval: known.records };
    } else {
      const evalRead = readJsonl(evalFile, readOptions);
      const known = checkKnownLabels(evalRead.records, sortedLabels(trainRead.records), evalFile, policy);
      skipped += evalRead.skipped + known.skipped;
      skipReasons.push(...evalRead.skipReasons, ...known.skipReasons);
      splits = { train: trainRead.records, eval: known.records };
    }

    const hashing = { buckets: config.model.hashFeatures, bigrams: booleanOption(options, 'bigrams', false) };
    return encodeTexts(splits, hashing, {
      trainFile,
      evalFile: evalFile === '' ? null : evalFile,
      skippedRecords: skipped,
      skipReasons: skipReasons.slice(0, 5),
    });
  },

  ...hashedTextClassifier,
};

export default textClassification;
