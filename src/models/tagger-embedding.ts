/**
 * The tagger's input layer computed in plain JavaScript: summed embedding lookups, the context window of
 * neighbouring tokens, and the reverse of both for the gradient.
 *
 * The WASM backend of tfjs 4.22 has no gradient for `tf.gather`. Its gather kernel also took about 2 ms for 672
 * rows of 96 values on a 2-vCPU VM, whatever the table size. Summing rows of table copies in JavaScript is
 * therefore the route that works on WASM, and the faster one.
 */
import type { TaggerBatch } from './tagger-batch.js';

/** Embedding tables as flat row-major arrays of `width` columns. */
export interface EmbeddingTables {
  word: Float32Array;
  suffix: Float32Array;
  shape: Float32Array;
  position: Float32Array;
}

/** Start of each embedding table in the flat gradient buffer. */
export type EmbeddingOffsets = Record<keyof EmbeddingTables, number>;

/** Calls `visit(table, row)` for every table row that position `i` of the batch looks up. */
function forEachLookup(batch: TaggerBatch, i: number, visit: (table: keyof EmbeddingTables, row: number) => void): void {
  visit('word', batch.wordIds[i]);
  visit('shape', batch.shapeIds[i]);
  visit('position', i % batch.length);
  for (let s = 0; s < batch.suffixCount; s++) {
    visit('suffix', batch.suffixIds[i * batch.suffixCount + s]);
  }
}

/** Returns the summed embeddings [positions, width] of every real token, with all-zero rows at padding. */
export function sumEmbeddings(batch: TaggerBatch, tables: EmbeddingTables, width: number): Float32Array {
  const positions = batch.size * batch.length;
  const sum = new Float32Array(positions * width);
  for (let i = 0; i < positions; i++) {
    if (batch.labels[i] < 0) {
      continue;
    }
    const target = i * width;
    forEachLookup(batch, i, (table, row) => {
      const values = tables[table];
      const source = row * width;
      for (let j = 0; j < width; j++) {
        sum[target + j] += values[source + j];
      }
    });
  }
  return sum;
}

/**
 * Adds each real token's embedding gradient row into every table row it looked up, after zeroing the table
 * ranges of `gradients`. Padding rows are skipped: they are masked as attention keys and excluded from the
 * loss, so their gradient is exactly zero.
 */
export function scatterEmbeddingGradient(
  batch: TaggerBatch,
  embeddedGradient: Float32Array,
  gradients: Float32Array,
  offsets: EmbeddingOffsets,
  tableSizes: EmbeddingOffsets,
  width: number,
): void {
  for (const table of Object.keys(offsets) as Array<keyof EmbeddingTables>) {
    gradients.fill(0, offsets[table], offsets[table] + tableSizes[table]);
  }

  const positions = batch.size * batch.length;
  for (let i = 0; i < positions; i++) {
    if (batch.labels[i] < 0) {
      continue;
    }
    const source = i * width;
    forEachLookup(batch, i, (table, row) => {
      const target = offsets[table] + row * width;
      for (let j = 0; j < width; j++) {
        gradients[target + j] += embeddedGradient[source + j];
      }
    });
  }
}

/** Returns the position `offset` places from position `i` in the same sentence, or -1 outside the sentence. */
export function neighbourPosition(batch: TaggerBatch, i: number, offset: number): number {
  const t = (i % batch.length) + offset;
  if (t < 0 || t >= batch.length || batch.labels[i + offset] < 0) {
    return -1;
  }
  return i + offset;
}

/**
 * Returns the window input [positions, (2 * window + 1) * width]: for every real token the summed embeddings of
 * the tokens from `window` places before it to `window` places after it, zeros beyond the sentence and at
 * padding.
 */
export function windowInput(batch: TaggerBatch, embedded: Float32Array, width: number, window: number): Float32Array {
  const span = 2 * window + 1;
  const positions = batch.size * batch.length;
  const input = new Float32Array(positions * span * width);
  for (let i = 0; i < positions; i++) {
    if (batch.labels[i] < 0) {
      continue;
    }
    for (let offset = -window; offset <= window; offset++) {
      const source = neighbourPosition(batch, i, offset);
      if (source >= 0) {
        input.set(embedded.subarray(source * width, (source + 1) * width), (i * span + offset + window) * width);
      }
    }
  }
  return input;
}

/** Returns the gradient of every token's summed embedding from the gradient of the window input. */
export function windowGradient(batch: TaggerBatch, inputGradient: Float32Array, width: number, window: number): Float32Array {
  const span = 2 * window + 1;
  const positions = batch.size * batch.length;
  const embeddedGradient = new Float32Array(positions * width);
  for (let i = 0; i < positions; i++) {
    if (batch.labels[i] < 0) {
      continue;
    }
    for (let offset = -window; offset <= window; offset++) {
      const source = neighbourPosition(batch, i, offset);
      if (source < 0) {
        continue;
      }
      // Token `source` fills block `offset + window` of token i's window.
      const from = (i * span + offset + window) * width;
      const to = source * width;
      for (let j = 0; j < width; j++) {
        embeddedGradient[to + j] += inputGradient[from + j];
      }
    }
  }
  return embeddedGradient;
}
