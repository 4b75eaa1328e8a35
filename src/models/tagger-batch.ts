/**
 * The padded batch a token tagger consumes: `size` sentences of `length` positions each, stored row-major
 * (position `t` of sentence `b` is index `b * length + t`).
 */
export interface TaggerBatch {
  /** Sentences in the batch. */
  size: number;
  /** Positions per sentence after padding. */
  length: number;
  /** Word id per position; 0 at padding. */
  wordIds: Int32Array;
  /** Suffix bucket ids, `suffixCount` per position (position-major); 0 at padding. */
  suffixIds: Int32Array;
  /** Suffix ids per position. */
  suffixCount: number;
  /** Shape id per position; 0 at padding. */
  shapeIds: Int32Array;
  /** Gold class per position; -1 at padding. */
  labels: Int32Array;
  /** Real tokens in the batch (positions whose label is not -1). */
  tokenCount: number;
}
