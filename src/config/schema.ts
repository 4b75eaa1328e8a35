/**
 * The shape and allowed range of every RunConfig key, shared by validation, --set overrides and flag parsing.
 */
import type { BackendName, RunConfig } from './types.js';

/** The allowed values of one config key. */
export type LeafRule =
  | { readonly kind: 'integer'; readonly min: number; readonly max?: number }
  | {
      readonly kind: 'number';
      readonly min: number;
      readonly minExclusive?: boolean;
      readonly max?: number;
      readonly maxExclusive?: boolean;
    }
  | { readonly kind: 'string'; readonly allowEmpty?: boolean }
  | { readonly kind: 'enum'; readonly values: readonly string[] }
  | { readonly kind: 'boolean' }
  | { readonly kind: 'object' };

/** A rule for every leaf of `T` and a nested schema for every object inside it, so the compiler checks both. */
export type ConfigSchema<T> = {
  readonly [K in keyof T]-?: T[K] extends string | number | boolean ? LeafRule : K extends 'taskOptions' ? LeafRule : ConfigSchema<T[K]>;
};

/** A schema node below the root: a rule for one key, or the schema of a section. */
export type SchemaNode = LeafRule | { readonly [key: string]: SchemaNode };

/** Task names that the launcher can build without a task module. */
export const TASK_NAMES: readonly string[] = Object.freeze([
  'brown-pos',
  'brown-charlm',
  'conll-tagging',
  'text-classification',
  'spam-classification',
  'tabular-classification',
]);

/** Backend names in the order `auto` tries them, after `auto` itself. */
export const BACKEND_NAMES: readonly BackendName[] = Object.freeze(['auto', 'tensorflow', 'wasm', 'cpu'] as const);

// Node clamps setTimeout delays above 2^31 - 1 ms to 1 ms, so timeouts above it would fire at once.
const MAX_TIMER_MS = 2 ** 31 - 1;

const positiveInteger: LeafRule = { kind: 'integer', min: 1 };
const nonNegativeInteger: LeafRule = { kind: 'integer', min: 0 };
const timeoutMs: LeafRule = { kind: 'integer', min: 1, max: MAX_TIMER_MS };
const openUnitInterval: LeafRule = { kind: 'number', min: 0, minExclusive: true, max: 1, maxExclusive: true };

/** The rules for every RunConfig key. */
export const CONFIG_SCHEMA: ConfigSchema<RunConfig> = {
  // A built-in name or a module path, which checkConfigRelations distinguishes.
  task: { kind: 'string' },
  taskOptions: { kind: 'object' },
  // Limited to uint32 because parameter initialisation reduces the seed with `seed >>> 0`, so larger seeds would alias.
  seed: { kind: 'integer', min: 0, max: 2 ** 32 - 1 },
  backend: { kind: 'enum', values: BACKEND_NAMES },
  data: {
    corpus: { kind: 'string' },
    // 1 would put every file into the evaluation split and leave nothing to train on.
    heldOutEvery: { kind: 'integer', min: 2 },
    // Sentence lengths are stored in a Uint16Array.
    maxSentenceTokens: { kind: 'integer', min: 1, max: 65535 },
    minWordCount: positiveInteger,
    maxVocabulary: positiveInteger,
    limitFiles: nonNegativeInteger,
    trainFile: { kind: 'string', allowEmpty: true },
    evalFile: { kind: 'string', allowEmpty: true },
    onBadRecord: { kind: 'enum', values: ['error', 'skip'] },
    prefetch: { kind: 'integer', min: 0, max: 64 },
    loaderThreads: { kind: 'integer', min: 1, max: 64 },
    lastBatch: { kind: 'enum', values: ['drop', 'partial', 'pad'] },
  },
  model: {
    dModel: positiveInteger,
    heads: positiveInteger,
    layers: positiveInteger,
    ffDim: positiveInteger,
    suffixBuckets: positiveInteger,
    contextWindow: { kind: 'integer', min: 0, max: 8 },
    dropout: { kind: 'number', min: 0, max: 1, maxExclusive: true },
    contextLength: { kind: 'integer', min: 2, max: 4096 },
    hashFeatures: positiveInteger,
  },
  train: {
    globalBatchSize: positiveInteger,
    epochs: positiveInteger,
    maxSteps: nonNegativeInteger,
    checksumEvery: nonNegativeInteger,
    logEvery: positiveInteger,
    nonFinite: { kind: 'enum', values: ['skip', 'error'] },
    balance: { kind: 'boolean' },
  },
  optimizer: {
    lr: { kind: 'number', min: 0, minExclusive: true },
    beta1: openUnitInterval,
    beta2: openUnitInterval,
    eps: { kind: 'number', min: 0, minExclusive: true },
    weightDecay: { kind: 'number', min: 0 },
    warmupSteps: nonNegativeInteger,
    minLrRatio: { kind: 'number', min: 0, max: 1 },
    clipNorm: { kind: 'number', min: 0 },
    shardState: { kind: 'boolean' },
  },
  allreduce: {
    timeoutMs,
    // At least one float32 value; the ring rounds down to whole values.
    bucketBytes: { kind: 'integer', min: 4 },
    compression: { kind: 'enum', values: ['none', 'fp16', 'bf16'] },
    skipZeroBlocks: { kind: 'boolean' },
    localTransport: { kind: 'enum', values: ['unix', 'tcp'] },
  },
  coordinator: {
    host: { kind: 'string' },
    port: { kind: 'integer', min: 0, max: 65535 },
    joinTimeoutMs: timeoutMs,
  },
  checkpoint: {
    every: nonNegativeInteger,
    keep: positiveInteger,
  },
  health: {
    heartbeatIntervalMs: timeoutMs,
    heartbeatTimeoutMs: timeoutMs,
    stallWarnMs: timeoutMs,
  },
};

/** Reports whether a schema node is a rule for one key rather than a section. */
export function isLeafRule(node: SchemaNode): node is LeafRule {
  return typeof node.kind === 'string';
}

/** Returns the schema node of a dotted key such as `optimizer.lr`, or undefined when no such key exists. */
export function schemaNodeAt(key: string): SchemaNode | undefined {
  let node: SchemaNode = CONFIG_SCHEMA as unknown as SchemaNode;
  for (const part of key.split('.')) {
    if (isLeafRule(node) || !Object.hasOwn(node, part)) {
      return undefined;
    }
    node = (node as { readonly [key: string]: SchemaNode })[part];
  }
  return node;
}

/** Lists the dotted names of every config key (leaves only), in schema order. */
export function configKeys(node: SchemaNode = CONFIG_SCHEMA as unknown as SchemaNode, prefix = ''): string[] {
  if (isLeafRule(node)) {
    return [prefix];
  }
  return Object.entries(node).flatMap(([key, child]) => configKeys(child, prefix === '' ? key : `${prefix}.${key}`));
}

/** Describes the values a rule allows, e.g. "an integer from 0 to 65535", to complete "must be ...". */
export function describeRule(rule: LeafRule): string {
  switch (rule.kind) {
    case 'integer':
      return rule.max === undefined ? `an integer of at least ${rule.min}` : `an integer from ${rule.min} to ${rule.max}`;
    case 'number': {
      if (rule.max !== undefined && !rule.minExclusive && !rule.maxExclusive) {
        return `a number from ${rule.min} to ${rule.max}`;
      }
      const lower = rule.minExclusive ? `greater than ${rule.min}` : `of at least ${rule.min}`;
      if (rule.max === undefined) {
        return `a number ${lower}`;
      }
      const upper = rule.maxExclusive ? `less than ${rule.max}` : `at most ${rule.max}`;
      return `a number ${lower} and ${upper}`;
    }
    case 'string':
      return rule.allowEmpty === true ? 'a string' : 'a non-empty string';
    case 'enum':
      return `one of ${rule.values.join(', ')}`;
    case 'boolean':
      return 'true or false';
    case 'object':
      return 'a JSON object';
  }
}

/** Reports whether `value` satisfies `rule`. Numbers must also be finite, and integers safe. */
export function ruleAllows(rule: LeafRule, value: unknown): boolean {
  switch (rule.kind) {
    case 'integer':
      return Number.isSafeInteger(value) && inRange(value as number, rule.min, false, rule.max, false);
    case 'number':
      return (
        typeof value === 'number' &&
        Number.isFinite(value) &&
        inRange(value, rule.min, rule.minExclusive ?? false, rule.max, rule.maxExclusive ?? false)
      );
    case 'string':
      return typeof value === 'string' && (value.length > 0 || rule.allowEmpty === true);
    case 'enum':
      return typeof value === 'string' && rule.values.includes(value);
    case 'boolean':
      return typeof value === 'boolean';
    case 'object':
      return typeof value === 'object' && value !== null && !Array.isArray(value);
  }
}

function inRange(value: number, min: number, minExclusive: boolean, max: number | undefined, maxExclusive: boolean): boolean {
  const aboveMin = minExclusive ? value > min : value >= min;
  const belowMax = max === undefined || (maxExclusive ? value < max : value <= max);
  return aboveMin && belowMax;
}
