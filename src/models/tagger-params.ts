/**
 * Parameter layout of the transformer tagger: names, shapes, weight-decay flags and seeded initial values.
 */
import { ConfigError } from '../errors.js';
import type { ParameterSpec } from './model.js';
import { constantArray, glorotUniform, normalArray, parameterRandom } from './init.js';

/** Sizes of a transformer tagger. */
export interface TaggerConfig {
  /** Word ids, padding and unknown included. */
  vocabularySize: number;
  /** Suffix hash buckets (one table shared by every suffix length). */
  suffixBuckets: number;
  /** Suffix ids per token. */
  suffixCount: number;
  /** Word-shape ids, padding included. */
  shapeCount: number;
  /** Longest padded sentence the learned position table covers. */
  maxLength: number;
  /** Output classes (tags). */
  classCount: number;
  dModel: number;
  heads: number;
  layers: number;
  ffDim: number;
  /** Neighbours on each side whose embeddings feed a token's input projection; 0 uses the token's embedding alone. */
  contextWindow: number;
  /** Seed of the initial parameter values. */
  seed: number;
}

/** Standard deviation of the initial embedding rows; small, so rows of rare words stay close to zero. */
const EMBEDDING_STD = 0.02;

/** Names of the embedding tables, whose gradients are scattered in JavaScript instead of taken on the tape. */
export const EMBEDDING_NAMES = {
  word: 'embedding/word',
  suffix: 'embedding/suffix',
  shape: 'embedding/shape',
  position: 'embedding/position',
} as const;

/** A parameter with the rule that fills its initial values. */
export interface ParameterEntry {
  spec: ParameterSpec;
  initialise: () => Float32Array;
}

/**
 * Throws unless the sizes describe a valid tagger, naming the config key to change.
 */
export function validateTaggerConfig(config: TaggerConfig): void {
  const positive: Array<[string, number]> = [
    ['model.dModel', config.dModel],
    ['model.heads', config.heads],
    ['model.layers', config.layers],
    ['model.ffDim', config.ffDim],
    ['data.maxSentenceTokens', config.maxLength],
  ];
  for (const [key, value] of positive) {
    if (!Number.isInteger(value) || value < 1) {
      throw new ConfigError(`${key} must be a positive integer (got ${value}); set it in the config`);
    }
  }
  if (config.dModel % config.heads !== 0) {
    throw new ConfigError(
      `model.heads (${config.heads}) must divide model.dModel (${config.dModel}); choose heads such as 2, 4 or 8 ` +
        'that divide dModel',
    );
  }
  if (!Number.isInteger(config.suffixBuckets) || config.suffixBuckets < 2) {
    throw new ConfigError(`model.suffixBuckets must be an integer of at least 2 (got ${config.suffixBuckets}); set it in the config`);
  }
}

/**
 * Lists every parameter in the fixed order shared by all ranks.
 *
 * The order is: the four embedding tables, the window projection (when contextWindow > 0), then per layer the
 * attention norm, the per-head query, key, value and output projections, the attention output bias, the
 * feed-forward norm and the two feed-forward dense layers. The final norm and the classifier come last.
 * Kernels are decayed. Biases, norm gains and embeddings are not, because decoupled decay would shrink the rows
 * of rare words on every step although their gradient is usually zero.
 */
export function taggerParameters(config: TaggerConfig): ParameterEntry[] {
  validateTaggerConfig(config);
  const { dModel, heads, ffDim, seed } = config;
  const headDim = dModel / heads;
  const entries: ParameterEntry[] = [];

  const normal = (name: string, rows: number) => {
    entries.push({
      spec: { name, shape: [rows, dModel], decay: false },
      initialise: () => normalArray(rows * dModel, EMBEDDING_STD, parameterRandom(seed, name)),
    });
  };
  // fanIn and fanOut may differ from the shape, so a per-head slice is scaled like the whole projection.
  const kernel = (name: string, rows: number, columns: number, fanIn: number, fanOut: number) => {
    entries.push({
      spec: { name, shape: [rows, columns], decay: true },
      initialise: () => glorotUniform(rows * columns, fanIn, fanOut, parameterRandom(seed, name)),
    });
  };
  const constant = (name: string, size: number, value: number) => {
    entries.push({ spec: { name, shape: [size], decay: false }, initialise: () => constantArray(size, value) });
  };
  const norm = (prefix: string) => {
    constant(`${prefix}/gain`, dModel, 1);
    constant(`${prefix}/bias`, dModel, 0);
  };

  normal(EMBEDDING_NAMES.word, config.vocabularySize);
  normal(EMBEDDING_NAMES.suffix, config.suffixBuckets);
  normal(EMBEDDING_NAMES.shape, config.shapeCount);
  normal(EMBEDDING_NAMES.position, config.maxLength);

  if (config.contextWindow > 0) {
    const span = 2 * config.contextWindow + 1;
    kernel('input/window/kernel', span * dModel, dModel, span * dModel, dModel);
    constant('input/window/bias', dModel, 0);
  }

  for (let layer = 0; layer < config.layers; layer++) {
    const prefix = `layer${layer}`;
    norm(`${prefix}/attention/norm`);
    for (let head = 0; head < heads; head++) {
      const headPrefix = `${prefix}/attention/head${head}`;
      for (const projection of ['query', 'key', 'value']) {
        kernel(`${headPrefix}/${projection}/kernel`, dModel, headDim, dModel, dModel);
        constant(`${headPrefix}/${projection}/bias`, headDim, 0);
      }
      kernel(`${headPrefix}/output/kernel`, headDim, dModel, dModel, dModel);
    }
    constant(`${prefix}/attention/output/bias`, dModel, 0);

    norm(`${prefix}/feedforward/norm`);
    kernel(`${prefix}/feedforward/hidden/kernel`, dModel, ffDim, dModel, ffDim);
    constant(`${prefix}/feedforward/hidden/bias`, ffDim, 0);
    kernel(`${prefix}/feedforward/output/kernel`, ffDim, dModel, ffDim, dModel);
    constant(`${prefix}/feedforward/output/bias`, dModel, 0);
  }

  norm('final/norm');
  kernel('classifier/kernel', dModel, config.classCount, dModel, config.classCount);
  constant('classifier/bias', config.classCount, 0);
  return entries;
}
