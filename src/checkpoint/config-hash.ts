/**
 * The config fingerprint that a checkpoint stores: the config keys that shape the model, the data, the batch plan
 * and the optimizer, with one SHA-256 per section and one over all of them. A run may resume from a checkpoint
 * only when its fingerprint digest is equal, because any of these keys changes what the saved state means.
 */
import { createHash } from 'node:crypto';
import type { DataConfig, ModelConfig, OptimizerConfig, RunConfig, TrainConfig } from '../config/types.js';

/** Config sections that the fingerprint covers, in hashing order. */
export const CONFIG_SECTIONS = ['task', 'taskOptions', 'seed', 'model', 'data', 'optimizer', 'train'] as const;

/** Name of one fingerprinted config section; `train` covers only the keys in TRAIN_KEYS. */
export type ConfigSection = (typeof CONFIG_SECTIONS)[number];

/** Model keys, all hashed: each one changes parameter shapes or the forward pass. */
export const MODEL_KEYS = ['dModel', 'heads', 'layers', 'ffDim', 'suffixBuckets', 'contextWindow', 'dropout', 'contextLength', 'hashFeatures'] as const;

/**
 * Data keys, all hashed: each one changes the examples of the training split, their order or the vocabulary
 * size (an embedding shape). `corpus` is hashed as written, so a corpus folder given by another path string
 * gives another digest even when the files are the same.
 */
export const DATA_KEYS = [
  'corpus',
  'heldOutEvery',
  'maxSentenceTokens',
  'minWordCount',
  'maxVocabulary',
  'limitFiles',
  'trainFile',
  'evalFile',
  'onBadRecord',
  'lastBatch',
] as const;

/** Data keys left out: they change how fast batches are prepared, never which examples they hold. */
export const UNHASHED_DATA_KEYS = ['prefetch', 'loaderThreads'] as const;

/** Optimizer keys, all hashed: each one changes the update rule or the learning-rate schedule. */
export const OPTIMIZER_KEYS = ['lr', 'beta1', 'beta2', 'eps', 'weightDecay', 'warmupSteps', 'minLrRatio', 'clipNorm'] as const;

/**
 * Optimizer keys left out: `shardState` changes which rank computes which part of the update, and a
 * checkpoint contains the complete moments either way, so either setting can resume the other's checkpoint.
 */
export const UNHASHED_OPTIMIZER_KEYS = ['shardState'] as const;

/** Train keys that are hashed: the global batch size sets the batch plan, so it gives the sampler position its meaning. */
export const TRAIN_KEYS = ['globalBatchSize'] as const;

/**
 * Train keys left out of the fingerprint. `epochs` and `maxSteps` set the run length, which the checkpoint
 * records as `totalSteps` and `checkCompatible` compares separately; the others change logging, checks and shard
 * sizes, which the gradient weighting makes irrelevant to the update.
 */
export const UNHASHED_TRAIN_KEYS = ['epochs', 'maxSteps', 'checksumEvery', 'logEvery', 'nonFinite', 'balance'] as const;

// A config key added to one of these sections without a decision here is a compile error on the line below it.
type Missing<All, Listed> = Exclude<keyof All, Listed>;
const exhaustiveKeys: [
  Missing<ModelConfig, (typeof MODEL_KEYS)[number]>,
  Missing<DataConfig, (typeof DATA_KEYS)[number] | (typeof UNHASHED_DATA_KEYS)[number]>,
  Missing<OptimizerConfig, (typeof OPTIMIZER_KEYS)[number] | (typeof UNHASHED_OPTIMIZER_KEYS)[number]>,
  Missing<TrainConfig, (typeof TRAIN_KEYS)[number] | (typeof UNHASHED_TRAIN_KEYS)[number]>,
] extends [never, never, never, never]
  ? true
  : false = true;
void exhaustiveKeys;

/** A config fingerprint as stored in a checkpoint header. */
export interface ConfigHash {
  /** SHA-256 (hex) of the canonical JSON of `values`; equal digests mean equal hashed keys. */
  digest: string;
  /** SHA-256 (hex) of the canonical JSON of each section's values, to name the section that differs. */
  sections: Record<ConfigSection, string>;
  /** The hashed values themselves, so that a mismatch error can name the key and both values. */
  values: Record<ConfigSection, unknown>;
}

/** Computes the fingerprint of the checkpoint-relevant keys of `config`. */
export function hashConfig(config: RunConfig): ConfigHash {
  const values: Record<ConfigSection, unknown> = {
    task: config.task,
    taskOptions: config.taskOptions,
    seed: config.seed,
    model: pick(config.model, MODEL_KEYS),
    data: pick(config.data, DATA_KEYS),
    optimizer: pick(config.optimizer, OPTIMIZER_KEYS),
    train: pick(config.train, TRAIN_KEYS),
  };
  return fingerprintValues(values);
}

/**
 * Computes digest and section hashes for already picked `values`. The JSON is canonical because every object
 * is built in the fixed key order above, and JSON.stringify writes numbers in their shortest round-trip form.
 */
export function fingerprintValues(values: Record<ConfigSection, unknown>): ConfigHash {
  const sections = {} as Record<ConfigSection, string>;
  for (const section of CONFIG_SECTIONS) {
    sections[section] = sha256Hex(JSON.stringify(values[section]));
  }
  const ordered = Object.fromEntries(CONFIG_SECTIONS.map((section) => [section, values[section]]));
  return { digest: sha256Hex(JSON.stringify(ordered)), sections, values };
}

/** One config key whose value differs between two fingerprints. */
export interface ConfigDifference {
  section: ConfigSection;
  /** Dotted key such as `optimizer.lr`, or the section name for `task` and `seed`. */
  key: string;
  /** Value in the first fingerprint, or undefined when it lacks the key. */
  first: unknown;
  /** Value in the second fingerprint, or undefined when it lacks the key. */
  second: unknown;
}

/**
 * Finds the first config key that differs between two fingerprints, in section order, or returns null when the
 * digests are equal. When the section hashes differ but the stored values do not show why (a hand-edited
 * header), the difference names the section with both values undefined.
 */
export function firstConfigDifference(first: ConfigHash, second: ConfigHash): ConfigDifference | null {
  if (first.digest === second.digest) {
    return null;
  }
  for (const section of CONFIG_SECTIONS) {
    if (first.sections[section] === second.sections[section]) {
      continue;
    }
    const a = first.values[section];
    const b = second.values[section];
    if (isRecord(a) && isRecord(b)) {
      const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
      const key = keys.find((name) => JSON.stringify(a[name]) !== JSON.stringify(b[name]));
      if (key !== undefined) {
        return { section, key: `${section}.${key}`, first: a[key], second: b[key] };
      }
    } else if (JSON.stringify(a) !== JSON.stringify(b)) {
      return { section, key: section, first: a, second: b };
    }
    return { section, key: section, first: undefined, second: undefined };
  }
  // Equal section hashes with different digests only happen when a digest was edited by hand.
  return { section: CONFIG_SECTIONS[0], key: 'digest', first: first.digest, second: second.digest };
}

function pick<T extends object, K extends keyof T>(source: T, keys: readonly K[]): Record<string, unknown> {
  const picked: Record<string, unknown> = {};
  for (const key of keys) {
    picked[key as string] = source[key];
  }
  return picked;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function sha256Hex(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}
