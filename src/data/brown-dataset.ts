/**
 * Sentences encoded as integer features, and padded batches built from them.
 */
import { RingtrainError } from '../errors.js';
import type { TaggerBatch } from '../models/tagger-batch.js';
import type { TaggedSentence } from './brown-corpus.js';
import type { Vocabulary } from './vocabulary.js';
import { SUFFIX_LENGTHS, shapeId, suffixBuckets } from './word-features.js';

/** One split's sentences as flat feature arrays; sentence `i` covers tokens `offsets[i]` to `offsets[i + 1]`. */
export interface EncodedSplit {
  /** Token offsets, one more than the sentence count. */
  offsets: Int32Array;
  wordIds: Int32Array;
  /** `SUFFIX_LENGTHS.length` bucket ids per token, token-major. */
  suffixIds: Int32Array;
  shapeIds: Int32Array;
  labels: Int32Array;
}

/**
 * Encodes sentences with the given vocabulary, tag list and suffix bucket count.
 * Throws when a tag is missing from `tags`, which means the tag list was built from other sentences.
 */
export function encodeSentences(
  sentences: readonly TaggedSentence[],
  vocabulary: Vocabulary,
  tags: readonly string[],
  buckets: number,
): EncodedSplit {
  const tagIds = new Map(tags.map((tag, id) => [tag, id]));
  const suffixCount = SUFFIX_LENGTHS.length;

  const offsets = new Int32Array(sentences.length + 1);
  sentences.forEach((sentence, index) => {
    offsets[index + 1] = offsets[index] + sentence.words.length;
  });
  const tokens = offsets[sentences.length];

  const encoded: EncodedSplit = {
    offsets,
    wordIds: new Int32Array(tokens),
    suffixIds: new Int32Array(tokens * suffixCount),
    shapeIds: new Int32Array(tokens),
    labels: new Int32Array(tokens),
  };

  // Spelling features depend only on the word, so cache them per distinct word form.
  const spellingCache = new Map<string, { suffixes: number[]; shape: number }>();
  let token = 0;
  for (const sentence of sentences) {
    sentence.words.forEach((word, position) => {
      let spelling = spellingCache.get(word);
      if (spelling === undefined) {
        spelling = { suffixes: suffixBuckets(word, buckets), shape: shapeId(word) };
        spellingCache.set(word, spelling);
      }

      const label = tagIds.get(sentence.tags[position]);
      if (label === undefined) {
        throw new RingtrainError(
          'RINGTRAIN_ERR_DATA',
          `tag "${sentence.tags[position]}" of word "${word}" is not in the tag list; build the tag list from ` +
            'every split that gets encoded',
        );
      }

      encoded.wordIds[token] = vocabulary.idOf(word);
      encoded.suffixIds.set(spelling.suffixes, token * suffixCount);
      encoded.shapeIds[token] = spelling.shape;
      encoded.labels[token] = label;
      token++;
    });
  }
  return encoded;
}

/** Returns the token count of every sentence of a split. */
export function sentenceLengths(split: EncodedSplit): Uint16Array {
  const lengths = new Uint16Array(split.offsets.length - 1);
  for (let i = 0; i < lengths.length; i++) {
    lengths[i] = split.offsets[i + 1] - split.offsets[i];
  }
  return lengths;
}

/**
 * Builds a padded batch of the sentences `indices` of `split`.
 *
 * Every sentence is padded to the longest one, rounded up to a multiple of `padMultiple`. Throws on an index
 * outside the split or an empty index list.
 */
export function makeTaggerBatch(split: EncodedSplit, indices: readonly number[], padMultiple = 1): TaggerBatch {
  const sentenceCount = split.offsets.length - 1;
  if (indices.length === 0) {
    throw new RingtrainError('RINGTRAIN_ERR_DATA', 'a batch needs at least one sentence index (got none); pass a non-empty index list');
  }

  let longest = 0;
  for (const index of indices) {
    if (!Number.isInteger(index) || index < 0 || index >= sentenceCount) {
      throw new RingtrainError(
        'RINGTRAIN_ERR_DATA',
        `sentence index ${index} is outside the split; expected an integer in [0, ${sentenceCount})`,
      );
    }
    longest = Math.max(longest, split.offsets[index + 1] - split.offsets[index]);
  }
  const length = Math.ceil(longest / padMultiple) * padMultiple;

  const suffixCount = SUFFIX_LENGTHS.length;
  const positions = indices.length * length;
  const batch: TaggerBatch = {
    size: indices.length,
    length,
    wordIds: new Int32Array(positions),
    suffixIds: new Int32Array(positions * suffixCount),
    suffixCount,
    shapeIds: new Int32Array(positions),
    labels: new Int32Array(positions).fill(-1),
    tokenCount: 0,
  };

  indices.forEach((index, row) => {
    const start = split.offsets[index];
    const end = split.offsets[index + 1];
    const target = row * length;
    batch.wordIds.set(split.wordIds.subarray(start, end), target);
    batch.suffixIds.set(split.suffixIds.subarray(start * suffixCount, end * suffixCount), target * suffixCount);
    batch.shapeIds.set(split.shapeIds.subarray(start, end), target);
    batch.labels.set(split.labels.subarray(start, end), target);
    batch.tokenCount += end - start;
  });
  return batch;
}
