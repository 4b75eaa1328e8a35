/**
 * Parameter layout of the character transformer: option checks, names, shapes, weight-decay flags and seeded
 * initial values.
 */
import { ConfigError } from '../errors.js';
import type { ParameterSpec } from './model.js';
import { constantArray, glorotUniform, normalArray, parameterRandom } from './init.js';

/** Sizes and regularisation of a decoder-only character transformer. */
export interface CharTransformerOptions {
  /** Number of distinct character ids, so token ids lie in [0, vocabularySize). */
  vocabularySize: number;
  /** Rows of the learned position table, the longest sequence `forward` accepts. */
  contextLength: number;
  dModel: number;
  /** Attention heads per block, a divisor of dModel. */
  heads: number;
  layers: number;
  /** Hidden width of each feed-forward block. */
  ffDim: number;
  /** Probability of zeroing an activation during training, in [0, 1). */
  dropout: number;
  /** Seed of the initial parameter values and of the dropout masks. */
  seed: number;
}

/** Standard deviation of the initial token and position embeddings. */
const EMBEDDING_STD = 0.02;

/** Names of the parameters outside the transformer blocks. */
export const CHAR_PARAMETER_NAMES = {
  token: 'embedding/token',
  position: 'embedding/position',
  finalGain: 'final/norm/gain',
  finalBias: 'final/norm/bias',
  outputKernel: 'output/kernel',
  outputBias: 'output/bias',
} as const;

/** A parameter with the rule that fills its initial values. */
export interface CharParameterEntry {
  spec: ParameterSpec;
  initialise: () => Float32Array;
}

/** Throws a ConfigError unless `options` describe a valid model, naming the option and the fix. */
export function validateCharTransformerOptions(options: CharTransformerOptions): void {
  const positive: Array<[string, number, number]> = [
    ['vocabularySize', options.vocabularySize, 2],
    ['contextLength', options.contextLength, 1],
    ['dModel', options.dModel, 1],
    ['heads', options.heads, 1],
    ['layers', options.layers, 1],
    ['ffDim', options.ffDim, 1],
  ];
  for (const [key, value, minimum] of positive) {
    if (!Number.isInteger(value) || value < minimum) {
      throw new ConfigError(
        `char transformer option ${key} must be an integer of at least ${minimum} (got ${value}); set it in the config`,
      );
    }
  }
  if (options.dModel % options.heads !== 0) {
    throw new ConfigError(
      `char transformer option heads (${options.heads}) must divide dModel (${options.dModel}); ` +
        'choose heads such as 2, 4 or 8 that divide dModel',
    );
  }
  if (!(options.dropout >= 0 && options.dropout < 1)) {
    throw new ConfigError(
      `char transformer option dropout must be in [0, 1) (got ${options.dropout}); use 0 to disable dropout`,
    );
  }
  if (!Number.isInteger(options.seed)) {
    throw new ConfigError(`char transformer option seed must be an integer (got ${options.seed}); set it in the config`);
  }
}

/**
 * Lists every parameter in a fixed order: token and position embeddings, then per block the attention norm,
 * query, key, value and output projections, the feed-forward norm and its two dense layers, and last the final
 * norm and the output projection. Kernels are decayed. Embeddings, biases and norm gains are not.
 *
 * Each attention projection is one [dModel, dModel] kernel shared by all heads. Head h reads dModel / heads
 * columns (query, key, value) or rows (output) of it, starting at h * dModel / heads.
 */
export function charTransformerParameters(options: CharTransformerOptions): CharParameterEntry[] {
  validateCharTransformerOptions(options);
  const { dModel, ffDim, seed, vocabularySize } = options;
  const entries: CharParameterEntry[] = [];

  const embedding = (name: string, rows: number) => {
    entries.push({
      spec: { name, shape: [rows, dModel], decay: false },
      initialise: () => normalArray(rows * dModel, EMBEDDING_STD, parameterRandom(seed, name)),
    });
  };
  const kernel = (name: string, rows: number, columns: number) => {
    entries.push({
      spec: { name, shape: [rows, columns], decay: true },
      initialise: () => glorotUniform(rows * columns, rows, columns, parameterRandom(seed, name)),
    });
  };
  const constant = (name: string, size: number, value: number) => {
    entries.push({ spec: { name, shape: [size], decay: false }, initialise: () => constantArray(size, value) });
  };
  const dense = (prefix: string, rows: number, columns: number) => {
    kernel(`${prefix}/kernel`, rows, columns);
    constant(`${prefix}/bias`, columns, 0);
  };
  const norm = (prefix: string) => {
    constant(`${prefix}/gain`, dModel, 1);
    constant(`${prefix}/bias`, dModel, 0);
  };

  embedding(CHAR_PARAMETER_NAMES.token, vocabularySize);
  embedding(CHAR_PARAMETER_NAMES.position, options.contextLength);

  for (let block = 0; block < options.layers; block++) {
    const prefix = `block${block}`;
    norm(`${prefix}/attention/norm`);
    for (const projection of ['query', 'key', 'value', 'output']) {
      dense(`${prefix}/attention/${projection}`, dModel, dModel);
    }
    norm(`${prefix}/feedforward/norm`);
    dense(`${prefix}/feedforward/hidden`, dModel, ffDim);
    dense(`${prefix}/feedforward/output`, ffDim, dModel);
  }

  norm('final/norm');
  dense('output', dModel, vocabularySize);
  return entries;
}
