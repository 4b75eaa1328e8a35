/**
 * Part-of-speech tagging of the Brown corpus with a transformer tagger.
 */
import type { DataConfig, RunConfig } from '../config/types.js';
import { readCorpus, resolveCorpusFolder, splitCorpus, type TaggedSentence } from '../data/brown-corpus.js';
import { encodeSentences, makeTaggerBatch, sentenceLengths, type EncodedSplit } from '../data/brown-dataset.js';
import { buildTagList, Vocabulary } from '../data/vocabulary.js';
import { SHAPE_COUNT, SUFFIX_LENGTHS } from '../data/word-features.js';
import { ConfigError } from '../errors.js';
import { TransformerTagger } from '../models/tagger.js';
import type { TaggerBatch } from '../models/tagger-batch.js';
import type { DataContext, DatasetInfo, ModelContext, NativeTaskDefinition, Split } from './api.js';

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

/** The loaded, encoded corpus that the data threads keep. */
export interface BrownPosData {
  encoded: Record<Split, EncodedSplit>;
  classNames: string[];
  vocabularySize: number;
  counts: Record<string, number | string>;
}

/**
 * Builds the vocabulary (from the training split) and the tag list (from both splits), and encodes both splits
 * for the transformer tagger; the held-out sentences are put in `evaluationOrder`.
 */
export function encodeTaggingSplits(
  splits: Record<Split, readonly TaggedSentence[]>,
  config: RunConfig,
): Pick<BrownPosData, 'encoded' | 'classNames' | 'vocabularySize'> {
  const data = config.data;
  const evalSentences = evaluationOrder(splits.eval);
  const vocabulary = Vocabulary.build(splits.train, data.minWordCount, data.maxVocabulary);
  // Tags come from both splits so a tag seen only in held-out files still has a class id (it is never predicted).
  const classNames = buildTagList([...splits.train, ...evalSentences]);
  const buckets = config.model.suffixBuckets;
  const encoded: Record<Split, EncodedSplit> = {
    train: encodeSentences(splits.train, vocabulary, classNames, buckets),
    eval: encodeSentences(evalSentences, vocabulary, classNames, buckets),
  };
  return { encoded, classNames, vocabularySize: vocabulary.size };
}

/**
 * Part-of-speech tagging of the Brown corpus (or a folder of Brown-format files) with the transformer tagger.
 * The data half reads the corpus named by `config.data`, builds the vocabulary and tag list, and encodes both
 * splits; the model half creates the tagger from `config.seed`.
 */
const brownPos: NativeTaskDefinition<BrownPosData, TaggerBatch> = {
  name: 'brown-pos',

  load({ config }: DataContext): BrownPosData {
    const data = config.data;
    validateDataConfig(data);
    const folder = resolveCorpusFolder(data.corpus);
    const files = readCorpus(folder, data.limitFiles);
    const splits = splitCorpus(files, data.heldOutEvery, data.maxSentenceTokens);

    const { encoded, classNames, vocabularySize } = encodeTaggingSplits(splits, config);
    const counts = {
      folder,
      trainFiles: splits.trainFiles.length,
      evalFiles: splits.evalFiles.length,
      trainSentences: splits.train.length,
      evalSentences: splits.eval.length,
      trainTokens: encoded.train.labels.length,
      evalTokens: encoded.eval.labels.length,
      vocabulary: vocabularySize,
      tags: classNames.length,
    };
    return { encoded, classNames, vocabularySize, counts };
  },

  describe(data: BrownPosData): DatasetInfo {
    return {
      trainSize: data.encoded.train.offsets.length - 1,
      evalSize: data.encoded.eval.offsets.length - 1,
      trainLengths: sentenceLengths(data.encoded.train),
      classNames: data.classNames,
      meta: { vocabularySize: data.vocabularySize, ...data.counts },
    };
  },

  batch: (data: BrownPosData, split: Split, indices: readonly number[]) => makeTaggerBatch(data.encoded[split], indices),

  nativeModel({ config, info }: ModelContext): TransformerTagger {
    return new TransformerTagger({
      vocabularySize: info.meta?.vocabularySize as number,
      suffixBuckets: config.model.suffixBuckets,
      suffixCount: SUFFIX_LENGTHS.length,
      shapeCount: SHAPE_COUNT,
      maxLength: config.data.maxSentenceTokens,
      classCount: (info.classNames ?? []).length,
      dModel: config.model.dModel,
      heads: config.model.heads,
      layers: config.model.layers,
      ffDim: config.model.ffDim,
      contextWindow: config.model.contextWindow,
      seed: config.seed,
    });
  },

  labelsOf: (batch: TaggerBatch) => batch.labels,
};

export default brownPos;
