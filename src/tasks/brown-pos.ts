/**
 * Part-of-speech tagging of the Brown corpus with a transformer tagger.
 */
import type { Logger } from 'pino';

import type { DataConfig, RunConfig } from '../config/types.js';
import { readCorpus, resolveCorpusFolder, splitCorpus } from '../data/brown-corpus.js';
import { encodeSentences, makeTaggerBatch, sentenceLengths, type EncodedSplit } from '../data/brown-dataset.js';
import { buildTagList, Vocabulary } from '../data/vocabulary.js';
import { SHAPE_COUNT, SUFFIX_LENGTHS } from '../data/word-features.js';
import { ConfigError } from '../errors.js';
import { TransformerTagger } from '../models/tagger.js';
import type { TaggerBatch } from '../models/tagger-batch.js';
import type { Split, Task } from './task.js';

/** Throws a ConfigError naming the first data setting that cannot work. */
function validateDataConfig(data: DataConfig): void {
  const checks: Array<[string, number, number]> = [
    ['data.heldOutEvery', data.heldOutEvery, 2],
    ['data.maxSentenceTokens', data.maxSentenceTokens, 1],
    ['data.minWordCount', data.minWordCount, 1],
    ['data.maxVocabulary', data.maxVocabulary, 3],
    ['data.limitFiles', data.limitFiles, 0],
  ];
  for (const [key, value, minimum] of checks) {
    if (!Number.isSafeInteger(value) || value < minimum) {
      throw new ConfigError(
        `${key} must be an integer of at least ${minimum} (got ${value}); set it in the config or with --set ${key}=...`,
      );
    }
  }
  if (data.limitFiles > 0 && data.limitFiles < data.heldOutEvery) {
    throw new ConfigError(
      `data.limitFiles (${data.limitFiles}) is below data.heldOutEvery (${data.heldOutEvery}), so no file is held out; ` +
        'raise data.limitFiles or lower data.heldOutEvery',
    );
  }
}

/**
 * Reorders held-out sentences for fast evaluation; accuracy does not depend on the order.
 *
 * Sentences sorted by length are laid out as the even sorted positions ascending, then the odd ones descending.
 * Neighbours then differ in length by at most two sorted places, so consecutive chunks need little padding,
 * and the two halves that two ranks evaluate carry nearly the same number of tokens.
 */
export function evaluationOrder<T extends { words: readonly string[] }>(sentences: readonly T[]): T[] {
  const sorted = sentences
    .map((sentence, index) => ({ sentence, index }))
    .sort((a, b) => a.sentence.words.length - b.sentence.words.length || a.index - b.index)
    .map((entry) => entry.sentence);
  const evens = sorted.filter((_, position) => position % 2 === 0);
  const odds = sorted.filter((_, position) => position % 2 === 1).reverse();
  return [...evens, ...odds];
}

/**
 * Loads the corpus named by `config.data`, builds the vocabulary and tag list from it, and creates the tagger
 * from `config.seed` on the tfjs backend the caller has already selected. Logs the data counts.
 */
export async function createBrownPosTask(config: RunConfig, logger: Logger): Promise<Task<TaggerBatch>> {
  const data = config.data;
  validateDataConfig(data);

  const folder = resolveCorpusFolder(data.corpus);
  const files = readCorpus(folder, data.limitFiles);
  const splits = splitCorpus(files, data.heldOutEvery, data.maxSentenceTokens);

  splits.eval = evaluationOrder(splits.eval);
  const vocabulary = Vocabulary.build(splits.train, data.minWordCount, data.maxVocabulary);
  // Tags come from both splits so a tag seen only in held-out files still has a class id (it is never predicted).
  const classNames = buildTagList([...splits.train, ...splits.eval]);
  const buckets = config.model.suffixBuckets;
  const encoded: Record<Split, EncodedSplit> = {
    train: encodeSentences(splits.train, vocabulary, classNames, buckets),
    eval: encodeSentences(splits.eval, vocabulary, classNames, buckets),
  };

  const model = new TransformerTagger({
    vocabularySize: vocabulary.size,
    suffixBuckets: buckets,
    suffixCount: SUFFIX_LENGTHS.length,
    shapeCount: SHAPE_COUNT,
    maxLength: data.maxSentenceTokens,
    classCount: classNames.length,
    dModel: config.model.dModel,
    heads: config.model.heads,
    layers: config.model.layers,
    ffDim: config.model.ffDim,
    contextWindow: config.model.contextWindow,
    seed: config.seed,
  });

  logger.info(
    {
      folder,
      trainFiles: splits.trainFiles.length,
      evalFiles: splits.evalFiles.length,
      trainSentences: splits.train.length,
      evalSentences: splits.eval.length,
      trainTokens: encoded.train.labels.length,
      evalTokens: encoded.eval.labels.length,
      vocabulary: vocabulary.size,
      tags: classNames.length,
      parameters: model.parameterCount,
    },
    'brown-pos data loaded',
  );

  return {
    name: 'brown-pos',
    classNames,
    trainSize: splits.train.length,
    evalSize: splits.eval.length,
    trainLengths: sentenceLengths(encoded.train),
    model,
    makeBatch: (split: Split, indices: readonly number[]) => makeTaggerBatch(encoded[split], indices),
    labelsOf: (batch: TaggerBatch) => batch.labels,
  };
}
