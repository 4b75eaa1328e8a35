/**
 * Hashed bag-of-words features for text classifiers: lower-cased word tokens (and optionally word bigrams)
 * hashed into a fixed number of buckets, with log(1 + count) values.
 *
 * The hash is FNV-1a, so every thread and process computes the same bucket for a word without sharing a
 * vocabulary. Examples are stored sparse and expanded to a dense float32 matrix per batch, because the WASM
 * backend cannot differentiate tf.gather and so an embedding layer is not an option.
 */
import { ConfigError, RingtrainError } from '../errors.js';
import { fnv1a } from './word-features.js';

/** Settings of the hashing. */
export interface HashingOptions {
  /** Number of buckets, the width of the dense feature vector. */
  buckets: number;
  /** Whether pairs of adjacent tokens are hashed as well as single tokens. */
  bigrams: boolean;
}

/** Hash seeds of unigrams and bigrams. Distinct seeds make a word and a word pair collide only by chance. */
const UNIGRAM_SEED = 1;
const BIGRAM_SEED = 2;

/** Runs of letters and digits, with apostrophes inside a word kept (so "don't" is one token). */
const WORD = /[\p{L}\p{N}]+(?:['’][\p{L}\p{N}]+)*/gu;

/** Examples of one split as sparse rows: example `i` covers entries `offsets[i]` to `offsets[i + 1]`. */
export interface HashedTexts {
  /** Entry offsets, one more than the example count. */
  offsets: Int32Array;
  /** Bucket of each entry, ascending within an example. */
  buckets: Int32Array;
  /** log(1 + count) of each entry. */
  values: Float32Array;
}

/** Returns the lower-cased word tokens of `text`. */
export function tokenize(text: string): string[] {
  return text.toLowerCase().match(WORD) ?? [];
}

/** Counts the tokens (and bigrams) of one text per bucket, and returns the counts keyed by bucket. */
export function countBuckets(text: string, options: HashingOptions): Map<number, number> {
  checkBuckets(options.buckets);
  const counts = new Map<number, number>();
  const add = (bucket: number): void => {
    counts.set(bucket, (counts.get(bucket) ?? 0) + 1);
  };

  const tokens = tokenize(text);
  for (const token of tokens) {
    add(fnv1a(token, UNIGRAM_SEED) % options.buckets);
  }
  if (options.bigrams) {
    for (let i = 1; i < tokens.length; i++) {
      // A space never occurs inside a token, so the pair text cannot equal a single token.
      add(fnv1a(`${tokens[i - 1]} ${tokens[i]}`, BIGRAM_SEED) % options.buckets);
    }
  }
  return counts;
}

/** Hashes every text into sparse rows of log(1 + count) values. */
export function hashTexts(texts: readonly string[], options: HashingOptions): HashedTexts {
  const rows = texts.map((text) => [...countBuckets(text, options)].sort((a, b) => a[0] - b[0]));
  const offsets = new Int32Array(rows.length + 1);
  rows.forEach((row, index) => {
    offsets[index + 1] = offsets[index] + row.length;
  });

  const entries = offsets[rows.length];
  const buckets = new Int32Array(entries);
  const values = new Float32Array(entries);
  let entry = 0;
  for (const row of rows) {
    for (const [bucket, count] of row) {
      buckets[entry] = bucket;
      values[entry] = Math.log1p(count);
      entry++;
    }
  }
  return { offsets, buckets, values };
}

/**
 * Expands the examples `indices` of `texts` into a dense row-major [indices.length, bucketCount] matrix.
 *
 * Throws a RingtrainError (RINGTRAIN_ERR_DATA) on an index outside the split.
 */
export function denseRows(texts: HashedTexts, indices: readonly number[], bucketCount: number): Float32Array {
  const exampleCount = texts.offsets.length - 1;
  const matrix = new Float32Array(indices.length * bucketCount);
  indices.forEach((index, row) => {
    if (!Number.isInteger(index) || index < 0 || index >= exampleCount) {
      throw new RingtrainError('RINGTRAIN_ERR_DATA', `example index ${index} is outside the split; expected an integer in [0, ${exampleCount})`);
    }
    for (let entry = texts.offsets[index]; entry < texts.offsets[index + 1]; entry++) {
      matrix[row * bucketCount + texts.buckets[entry]] = texts.values[entry];
    }
  });
  return matrix;
}

function checkBuckets(buckets: number): void {
  if (!Number.isSafeInteger(buckets) || buckets < 1) {
    throw new ConfigError(
      `model.hashFeatures must be a positive integer (got ${buckets}); set it in the config or with --set model.hashFeatures=4096`,
    );
  }
}
