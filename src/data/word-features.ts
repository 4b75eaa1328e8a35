/**
 * Spelling features that let the tagger classify words outside its vocabulary: hashed suffixes and a word
 * shape. Both depend on the word alone, so every process computes the same ids.
 */

/** Suffix lengths hashed per token; a word shorter than a length reuses its whole lower-cased form. */
export const SUFFIX_LENGTHS = [1, 2, 3] as const;

/** Number of shape ids, including id 0 for padding. */
export const SHAPE_COUNT = 21;

/** Returns the 32-bit FNV-1a hash of `text`'s UTF-16 code units, starting from `seed` mixed into the offset basis. */
export function fnv1a(text: string, seed = 0): number {
  let hash = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

/**
 * Returns the suffix bucket of each length in `SUFFIX_LENGTHS` for a word, in [1, buckets).
 *
 * The suffix length seeds the hash, so "s" as a 1-suffix and "s" as the whole of a short word's 2-suffix land
 * in different buckets. Bucket 0 is left for padding.
 */
export function suffixBuckets(word: string, buckets: number): number[] {
  const lower = word.toLowerCase();
  return SUFFIX_LENGTHS.map((length) => 1 + (fnv1a(lower.slice(-length), length) % (buckets - 1)));
}

/**
 * Returns the shape id of a word, in [1, SHAPE_COUNT).
 *
 * The id combines a letter-case class (no letters, lower case, capitalised, all capitals, mixed) with
 * whether the word contains a digit and whether it contains a hyphen: 1 + 4 * case + 2 * digit + hyphen.
 * A word of one capital letter counts as capitalised, not all capitals.
 */
export function shapeId(word: string): number {
  let upper = 0;
  let lower = 0;
  let digit = 0;
  let hyphen = 0;
  for (const char of word) {
    if (char >= '0' && char <= '9') {
      digit = 1;
    } else if (char === '-') {
      hyphen = 1;
    } else if (char !== char.toLowerCase()) {
      upper++;
    } else if (char !== char.toUpperCase()) {
      lower++;
    }
  }

  let letterCase: number;
  if (upper === 0 && lower === 0) {
    letterCase = 0;
  } else if (upper === 0) {
    letterCase = 1;
  } else if (isCapitalised(word)) {
    letterCase = 2;
  } else if (lower === 0) {
    letterCase = 3;
  } else {
    letterCase = 4;
  }
  return 1 + 4 * letterCase + 2 * digit + hyphen;
}

/** Tells whether the first letter is a capital and no later letter is. */
function isCapitalised(word: string): boolean {
  let seenLetter = false;
  for (const char of word) {
    const isUpper = char !== char.toLowerCase();
    const isLetter = isUpper || char !== char.toUpperCase();
    if (!isLetter) {
      continue;
    }
    if (seenLetter && isUpper) {
      return false;
    }
    if (!seenLetter && !isUpper) {
      return false;
    }
    seenLetter = true;
  }
  return seenLetter;
}
