/**
 * Default values for every RunConfig field. configs/brown-pos.json spells out the same values.
 */
import type { RunConfig } from './types.js';

/** Freezes `value` and every object inside it. */
function deepFreeze<T>(value: T): Readonly<T> {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) {
      deepFreeze(child);
    }
    Object.freeze(value);
  }
  return value;
}

/** The default run configuration, deeply frozen. `defaultConfig()` returns a copy that may be changed. */
export const DEFAULT_CONFIG: Readonly<RunConfig> = deepFreeze<RunConfig>({
  task: 'brown-pos',
  taskOptions: {},
  seed: 1234,
  backend: 'auto',
  data: {
    corpus: 'brown',
    heldOutEvery: 10,
    maxSentenceTokens: 64,
    minWordCount: 2,
    maxVocabulary: 30000,
    limitFiles: 0,
    trainFile: '',
    evalFile: '',
    onBadRecord: 'error',
    prefetch: 2,
    loaderThreads: 1,
    lastBatch: 'drop',
  },
  model: {
    dModel: 64,
    heads: 2,
    layers: 2,
    ffDim: 192,
    suffixBuckets: 4096,
    contextWindow: 1,
    dropout: 0,
    contextLength: 128,
    hashFeatures: 4096,
  },
  train: {
    globalBatchSize: 128,
    epochs: 2,
    maxSteps: 0,
    checksumEvery: 1,
    logEvery: 20,
    nonFinite: 'skip',
    balance: false,
  },
  optimizer: {
    lr: 0.003,
    beta1: 0.9,
    beta2: 0.999,
    eps: 1e-8,
    weightDecay: 0.01,
    warmupSteps: 100,
    minLrRatio: 0.05,
    clipNorm: 1.0,
    shardState: false,
  },
  allreduce: {
    timeoutMs: 30000,
    bucketBytes: 67108864,
    compression: 'none',
    skipZeroBlocks: true,
    localTransport: 'unix',
  },
  coordinator: {
    host: '127.0.0.1',
    port: 0,
    joinTimeoutMs: 60000,
  },
  checkpoint: {
    every: 500,
    keep: 3,
  },
  health: {
    heartbeatIntervalMs: 1000,
    heartbeatTimeoutMs: 15000,
    stallWarnMs: 30000,
  },
});

/** Returns a mutable deep copy of DEFAULT_CONFIG. */
export function defaultConfig(): RunConfig {
  return structuredClone(DEFAULT_CONFIG) as RunConfig;
}

/** Reports whether `value` is a JSON object (not null, not an array). */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Fills the keys that a partial config `value` leaves out with their defaults and returns a new value.
 * Keys of `value` that have no default are kept, so that validation can reject them by name. A value that is
 * not an object is returned unchanged for the same reason.
 */
export function fillDefaults(value: unknown, defaults: unknown = DEFAULT_CONFIG): unknown {
  if (!isPlainObject(value) || !isPlainObject(defaults)) {
    return value;
  }
  const filled: Record<string, unknown> = {};
  for (const [key, defaultValue] of Object.entries(defaults)) {
    filled[key] = Object.hasOwn(value, key) ? fillDefaults(value[key], defaultValue) : structuredClone(defaultValue);
  }
  for (const [key, given] of Object.entries(value)) {
    if (!Object.hasOwn(defaults, key)) {
      // defineProperty keeps a JSON key such as "__proto__" an ordinary property, which validation then rejects.
      Object.defineProperty(filled, key, { value: given, enumerable: true, writable: true, configurable: true });
    }
  }
  return filled;
}
