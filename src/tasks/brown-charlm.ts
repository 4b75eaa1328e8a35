/**
 * A character-level language model: a small decoder-only transformer predicts every next character of the
 * Brown corpus text (or of a plain text file), and the evaluation reports perplexity per character.
 */
import type { RunConfig } from '../config/types.js';
import { readCorpus, resolveCorpusFolder, splitCorpus, type TaggedSentence } from '../data/brown-corpus.js';
import { readText } from '../data/formats/text.js';
import { ConfigError } from '../errors.js';
import { CharTransformer } from '../models/char-transformer.js';
import type { DataContext, DatasetInfo, ModelContext, Split } from './api.js';
import { defineTask } from './api.js';

/** Character id of characters not seen in the training text. */
const UNKNOWN = 0;

/** The encoded text of both splits and the character table. */
export interface CharData {
  ids: Record<Split, Int32Array>;
  /** Character of every id; id 0 is the unknown character. */
  characters: string[];
  /** Characters per example; each example predicts `window` characters from the `window` before them. */
  window: number;
  /** First character of every evaluation example, spread evenly over the evaluation text. */
  evalStarts: Int32Array;
  source: string;
}

/** Returns the training and evaluation text named by the config: data files when given, else the Brown corpus. */
function readTexts(config: RunConfig): { train: string; eval: string; source: string } {
  const data = config.data;
  if (data.trainFile !== '') {
    const train = readText(data.trainFile);
    if (data.evalFile !== '') return { train, eval: readText(data.evalFile), source: data.trainFile };
    // Without an evaluation file, every heldOutEvery-th block of lines is held out.
    const lines = train.split('\n');
    const block = Math.max(1, Math.ceil(lines.length / 100));
    const trainLines: string[] = [];
    const evalLines: string[] = [];
    lines.forEach((line, index) => (Math.floor(index / block) % data.heldOutEvery === data.heldOutEvery - 1 ? evalLines : trainLines).push(line));
    if (evalLines.length === 0) {
      throw new ConfigError(`${data.trainFile} has too few lines to hold any out; set data.evalFile or lower data.heldOutEvery`);
    }
    return { train: trainLines.join('\n'), eval: evalLines.join('\n'), source: data.trainFile };
  }
  const folder = resolveCorpusFolder(data.corpus);
  const splits = splitCorpus(readCorpus(folder, data.limitFiles), data.heldOutEvery, Number.MAX_SAFE_INTEGER);
  const join = (sentences: readonly TaggedSentence[]): string => sentences.map((sentence) => sentence.words.join(' ')).join('\n');
  return { train: join(splits.train), eval: join(splits.eval), source: folder };
}

/** Maps every character of `text` to its id in `table`, or to UNKNOWN. */
function encode(text: string, table: Map<string, number>): Int32Array {
  const characters = Array.from(text);
  const ids = new Int32Array(characters.length);
  characters.forEach((character, index) => (ids[index] = table.get(character) ?? UNKNOWN));
  return ids;
}

/** Returns the number of whole examples of `window + 1` characters in `length` characters. */
function exampleCount(length: number, window: number): number {
  return Math.max(0, Math.floor((length - 1) / window));
}

export default defineTask<CharData>({
  name: 'brown-charlm',

  load({ config, options }: DataContext): CharData {
    const texts = readTexts(config);
    const counts = new Map<string, number>();
    for (const character of texts.train) counts.set(character, (counts.get(character) ?? 0) + 1);
    // Characters seen fewer than minCount times in training share the unknown id, like rare words.
    const minCount = Number(options.minCharacterCount ?? 5);
    const characters = ['\u0000', ...[...counts].filter(([, count]) => count >= minCount).map(([character]) => character).sort()];
    const table = new Map(characters.map((character, id) => [character, id]));
    const window = config.model.contextLength;
    const ids = { train: encode(texts.train, table), eval: encode(texts.eval, table) };

    const available = exampleCount(ids.eval.length, window);
    const evalWindows = Math.min(available, Number(options.evalWindows ?? 2000));
    const stride = evalWindows > 0 ? Math.floor(available / evalWindows) : 1;
    const evalStarts = Int32Array.from({ length: evalWindows }, (_, index) => index * stride * window);
    if (exampleCount(ids.train.length, window) === 0 || evalWindows === 0) {
      throw new ConfigError(
        `the text of ${texts.source} is too short for model.contextLength=${window} (${ids.train.length} training and ` +
          `${ids.eval.length} evaluation characters); use more text or a shorter model.contextLength`,
      );
    }
    return { ids, characters, window, evalStarts, source: texts.source };
  },

  describe(data: CharData): DatasetInfo {
    return {
      trainSize: exampleCount(data.ids.train.length, data.window),
      evalSize: data.evalStarts.length,
      meta: {
        vocabularySize: data.characters.length,
        source: data.source,
        trainCharacters: data.ids.train.length,
        evalCharacters: data.ids.eval.length,
      },
    };
  },

  batch(data: CharData, split: Split, indices: readonly number[]) {
    const window = data.window;
    const text = data.ids[split];
    const tokens = new Int32Array(indices.length * window);
    const labels = new Int32Array(indices.length * window);
    indices.forEach((index, row) => {
      const start = split === 'train' ? index * window : (data.evalStarts[index] as number);
      tokens.set(text.subarray(start, start + window), row * window);
      labels.set(text.subarray(start + 1, start + 1 + window), row * window);
    });
    return { tokens: { data: tokens, shape: [indices.length, window] }, labels: { data: labels, shape: [indices.length, window] } };
  },

  model({ config, info }: ModelContext) {
    return new CharTransformer({
      vocabularySize: info.meta?.vocabularySize as number,
      contextLength: config.model.contextLength,
      dModel: config.model.dModel,
      heads: config.model.heads,
      layers: config.model.layers,
      ffDim: config.model.ffDim,
      dropout: config.model.dropout,
      seed: config.seed,
    });
  },

  loss: 'softmax-cross-entropy',
  metrics: ['perplexity'],
});
