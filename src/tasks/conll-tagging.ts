/**
 * Token tagging of CoNLL-style files (one token per line, a blank line after each sentence) with the
 * transformer tagger of brown-pos.
 */
import type { TaskOptions } from '../config/types.js';
import { splitLongSentence, type TaggedSentence } from '../data/brown-corpus.js';
import { readConll, type ConllSentence } from '../data/formats/conll.js';
import { ConfigError } from '../errors.js';
import type { TaggerBatch } from '../models/tagger-batch.js';
import type { DataContext, NativeTaskDefinition } from './api.js';
import brownPos, { encodeTaggingSplits, type BrownPosData } from './brown-pos.js';
import { holdOut } from '../data/hold-out.js';
import { checkOptionNames, requireTrainFile } from './options.js';

/** Options of the conll-tagging task. */
const OPTION_NAMES = ['tokenColumn', 'tagColumn'] as const;

/** Returns the 0-based column index `taskOptions[name]`, or undefined when it is absent. */
function columnOption(options: TaskOptions, name: string): number | undefined {
  const value = options[name];
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || (value as number) < 0) {
    throw new ConfigError(`taskOptions.${name} must be a 0-based column index (got ${JSON.stringify(value)}); set it in the config's taskOptions`);
  }
  return value as number;
}

/** Returns the sentences with those longer than `maxTokens` split into pieces, as the tagger needs. */
function splitLong(sentences: readonly ConllSentence[], maxTokens: number): TaggedSentence[] {
  return sentences.flatMap((sentence) => splitLongSentence({ words: sentence.words, tags: sentence.tags }, maxTokens));
}

/**
 * Tags the tokens of `data.trainFile` (CoNLL). The token is column `taskOptions.tokenColumn` (default 0) and
 * the tag column `taskOptions.tagColumn` (default the last). The evaluation split is `data.evalFile`, or every
 * `data.heldOutEvery`-th training sentence when it is empty. Model settings are those of brown-pos
 * (model.dModel, heads, layers, ffDim, suffixBuckets, contextWindow; data.maxSentenceTokens, minWordCount,
 * maxVocabulary).
 */
const conllTagging: NativeTaskDefinition<BrownPosData, TaggerBatch> = {
  name: 'conll-tagging',

  load({ config, options }: DataContext): BrownPosData {
    checkOptionNames('conll-tagging', options, OPTION_NAMES);
    const trainFile = requireTrainFile(config, 'data/train.conll');
    const evalFile = config.data.evalFile;
    const readOptions = {
      tokenColumn: columnOption(options, 'tokenColumn'),
      tagColumn: columnOption(options, 'tagColumn'),
      onBadRecord: config.data.onBadRecord,
    };

    const trainRead = readConll(trainFile, readOptions);
    let skipped = trainRead.skipped;
    const skipReasons = [...trainRead.skipReasons];
    let train: readonly ConllSentence[];
    let held: readonly ConllSentence[];
    if (evalFile === '') {
      ({ train, eval: held } = holdOut(trainRead.records, config.data.heldOutEvery, `data file ${trainFile}`));
    } else {
      const evalRead = readConll(evalFile, readOptions);
      skipped += evalRead.skipped;
      skipReasons.push(...evalRead.skipReasons);
      train = trainRead.records;
      held = evalRead.records;
    }

    const maxTokens = config.data.maxSentenceTokens;
    const splits = { train: splitLong(train, maxTokens), eval: splitLong(held, maxTokens) };
    const { encoded, classNames, vocabularySize } = encodeTaggingSplits(splits, config);
    const counts = {
      trainFile,
      evalFile,
      trainSentences: splits.train.length,
      evalSentences: splits.eval.length,
      trainTokens: encoded.train.labels.length,
      evalTokens: encoded.eval.labels.length,
      vocabulary: vocabularySize,
      tags: classNames.length,
      skippedRecords: skipped,
      // BrownPosData.counts contains numbers and strings, so the reasons are joined into one string.
      skipReasons: skipReasons.slice(0, 5).join(' | '),
    };
    return { encoded, classNames, vocabularySize, counts };
  },

  describe: brownPos.describe,
  batch: brownPos.batch,
  nativeModel: brownPos.nativeModel,
  labelsOf: brownPos.labelsOf,
  metrics: ['classification'],
};

export default conllTagging;
