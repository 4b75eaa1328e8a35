/**
 * Word and tag vocabularies built from the training split.
 */
import { ConfigError } from '../errors.js';
import type { TaggedSentence } from './brown-corpus.js';

/** Word id of padding positions. */
export const PADDING_ID = 0;
/** Word id of words outside the vocabulary. */
export const UNKNOWN_ID = 1;

/** Orders strings by UTF-16 code units, independent of the locale. */
function compareStrings(a: string, b: string): number {
  if (a === b) {
    return 0;
  }
  return a < b ? -1 : 1;
}

/** A lower-cased word vocabulary: id 0 is padding, id 1 the unknown word, then words by falling count. */
export class Vocabulary {
  /** Words in id order; entries 0 and 1 are the padding and unknown markers. */
  readonly words: readonly string[];
  private readonly ids: Map<string, number>;

  private constructor(words: string[]) {
    this.words = words;
    this.ids = new Map(words.map((word, id) => [word, id]));
  }

  /**
   * Builds the vocabulary from lower-cased training words seen at least `minCount` times, keeping at most
   * `maxSize` entries including the two markers. Ties in count are ordered by word, so every process builds the
   * same ids.
   */
  static build(sentences: readonly TaggedSentence[], minCount: number, maxSize: number): Vocabulary {
    if (!Number.isInteger(maxSize) || maxSize < 3) {
      throw new ConfigError(`data.maxVocabulary must be an integer of at least 3 (got ${maxSize}); set it in the config`);
    }

    const counts = new Map<string, number>();
    for (const sentence of sentences) {
      for (const word of sentence.words) {
        const lower = word.toLowerCase();
        counts.set(lower, (counts.get(lower) ?? 0) + 1);
      }
    }

    const frequentWords = [...counts.entries()].filter(([, count]) => count >= minCount);
    frequentWords.sort((a, b) => b[1] - a[1] || compareStrings(a[0], b[0]));
    const words = ['<pad>', '<unk>', ...frequentWords.slice(0, maxSize - 2).map(([word]) => word)];
    return new Vocabulary(words);
  }

  /** Number of ids, markers included. */
  get size(): number {
    return this.words.length;
  }

  /** Returns the id of a word (lower-cased first), or `UNKNOWN_ID`. */
  idOf(word: string): number {
    return this.ids.get(word.toLowerCase()) ?? UNKNOWN_ID;
  }
}

/**
 * Returns the sorted set of tags in `sentences`; the position of a tag is its class id.
 */
export function buildTagList(sentences: readonly TaggedSentence[]): string[] {
  const tags = new Set<string>();
  for (const sentence of sentences) {
    for (const tag of sentence.tags) {
      tags.add(tag);
    }
  }
  return [...tags].sort(compareStrings);
}
