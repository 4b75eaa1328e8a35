/**
 * Reduction of Brown corpus tags to their base part-of-speech tags.
 *
 * The Brown tagset marks a word's context with modifiers that do not change its word class: `-tl` (word in a
 * title), `-hl` (word in a headline), `-nc` (cited word) and the `fw-` prefix (foreign word). Tags such as
 * `ppss+md` ("I'll") tag contractions, and a `*` marks negation (`md*` for "can't"; `*` alone tags "not").
 */

import { RingtrainError } from '../errors.js';

const CONTEXT_SUFFIX = /-(tl|hl|nc)$/;

/**
 * Maps a raw Brown tag to its base tag.
 *
 * The tag is lower-cased, and only the part before the first `+` is kept, so `ppss+md` becomes `ppss`. Then a
 * leading `fw-` and trailing `-tl`, `-hl` and `-nc` (in any number and order) are removed. Last, a trailing `*`
 * is removed unless the tag is `*` itself. Examples: `np-tl` -> `np`, `fw-nn-tl` -> `nn`, `nns$-tl-hl` ->
 * `nns$`, `md*` -> `md`, `*-hl` -> `*`. Throws when nothing remains, as for malformed tags such as `fw-` or `-tl`.
 */
export function mapBrownTag(rawTag: string): string {
  let tag = rawTag.toLowerCase();

  // A contraction keeps the tag of its first word; the first part also carries any fw- prefix.
  const plus = tag.indexOf('+');
  if (plus > 0) {
    tag = tag.slice(0, plus);
  }

  if (tag.startsWith('fw-')) {
    tag = tag.slice(3);
  }

  // Bounded: every iteration removes three characters.
  while (CONTEXT_SUFFIX.test(tag)) {
    tag = tag.slice(0, -3);
  }

  if (tag.length > 1 && tag.endsWith('*')) {
    tag = tag.slice(0, -1);
  }

  if (tag.length === 0) {
    throw new RingtrainError(
      'RINGTRAIN_ERR_DATA',
      `Brown tag "${rawTag}" has no base tag left after removing fw-, -tl, -hl and -nc; ` +
        'expected a tag such as nn or np-tl; fix the token in the corpus file',
    );
  }
  return tag;
}
