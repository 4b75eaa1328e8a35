/**
 * Validation of a parsed JSON value into a RunConfig, with one-line errors that name the dotted key, the
 * value received and what is allowed.
 */
import { ConfigError } from '../errors.js';
import { DEFAULT_CONFIG, isPlainObject } from './defaults.js';
import {
  CONFIG_SCHEMA,
  TASK_NAMES,
  describeRule,
  isLeafRule,
  ruleAllows,
  schemaNodeAt,
  type LeafRule,
  type SchemaNode,
} from './schema.js';
import { closestMatches } from './suggest.js';
import type { RunConfig } from './types.js';

/** Formats a received value for a message: JSON, so strings keep their quotes, cut to 60 characters. */
export function formatValue(value: unknown): string {
  if (value === undefined) {
    return 'nothing';
  }
  let text: string;
  try {
    text = JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Returns the default of a dotted key as it would be typed after `--set key=`, or undefined for a section. */
function defaultExample(key: string): string | undefined {
  let value: unknown = DEFAULT_CONFIG;
  for (const part of key.split('.')) {
    value = isPlainObject(value) ? value[part] : undefined;
  }
  if (typeof value === 'number' || typeof value === 'string') {
    return String(value);
  }
  return undefined;
}

function locationOf(source: string | undefined): string {
  return source === undefined ? '' : ` in ${source}`;
}

/**
 * Throws a ConfigError unless `value` satisfies the rule of the dotted config key `key`.
 * `source` names where the value came from (a file path or a --set argument) for the message.
 */
export function checkConfigValue(key: string, value: unknown, source?: string): void {
  const node = schemaNodeAt(key);
  if (node === undefined || !isLeafRule(node)) {
    throw new ConfigError(`${key} is not a config key${locationOf(source)}; docs/config.md lists every key`);
  }
  checkLeaf(key, node, value, source);
}

function checkLeaf(key: string, rule: LeafRule, value: unknown, source: string | undefined): void {
  if (ruleAllows(rule, value)) {
    return;
  }
  const example = defaultExample(key);
  // A bad --set value is fixed in the same flag; a bad value in a file can be fixed there or overridden.
  const fix = source?.startsWith('--set') === true ? 'pass a valid value' : 'fix the value or override it';
  const hint = example === undefined ? '' : `; ${fix}, e.g. --set ${key}=${example}`;
  throw new ConfigError(`${key} must be ${describeRule(rule)} (got ${formatValue(value)})${locationOf(source)}${hint}`);
}

/** Walks one section of the schema, copying the allowed keys of `value` into a new object. */
function validateSection(
  schema: { readonly [key: string]: SchemaNode },
  value: unknown,
  path: string,
  source: string | undefined,
): Record<string, unknown> {
  const allowed = Object.keys(schema);
  const where = path === '' ? 'top-level keys' : `keys in ${path}`;

  if (!isPlainObject(value)) {
    const name = path === '' ? 'the config' : path;
    throw new ConfigError(
      `${name} must be a JSON object with the keys ${allowed.join(', ')} (got ${formatValue(value)})${locationOf(source)}`,
    );
  }

  for (const key of Object.keys(value)) {
    if (!Object.hasOwn(schema, key)) {
      const dotted = path === '' ? key : `${path}.${key}`;
      const matches = closestMatches(key, allowed);
      const dottedMatches = matches.map((match) => (path === '' ? match : `${path}.${match}`));
      const suggestion = matches.length > 0 ? ` (did you mean ${dottedMatches.join(' or ')}?)` : '';
      throw new ConfigError(
        `unknown config key ${dotted}${locationOf(source)}${suggestion}; allowed ${where}: ${allowed.join(', ')}`,
      );
    }
  }

  const result: Record<string, unknown> = {};
  for (const key of allowed) {
    const dotted = path === '' ? key : `${path}.${key}`;
    const node = schema[key];
    if (!Object.hasOwn(value, key)) {
      const expected = isLeafRule(node) ? describeRule(node) : 'an object';
      throw new ConfigError(`missing config key ${dotted}${locationOf(source)}; it must be ${expected}`);
    }
    if (isLeafRule(node)) {
      checkLeaf(dotted, node, value[key], source);
      result[key] = value[key];
    } else {
      result[key] = validateSection(node, value[key], dotted, source);
    }
  }
  return result;
}

/** Reports whether a `task` value names a module file rather than a built-in task. */
export function isTaskModulePath(task: string): boolean {
  return /\.(m?js|cjs)$/.test(task);
}

/** Lists the divisors of `n` in increasing order (n is a validated positive integer). */
function divisorsOf(n: number): number[] {
  const divisors: number[] = [];
  for (let d = 1; d <= n; d++) {
    if (n % d === 0) {
      divisors.push(d);
    }
  }
  return divisors;
}

/** Throws a ConfigError when keys that are valid one by one contradict each other. */
export function checkConfigRelations(config: RunConfig, source?: string): void {
  if (!TASK_NAMES.includes(config.task) && !isTaskModulePath(config.task)) {
    const matches = closestMatches(config.task, [...TASK_NAMES]);
    const suggestion = matches.length > 0 ? ` (did you mean ${matches.join(' or ')}?)` : '';
    throw new ConfigError(
      `task must be a built-in task (${TASK_NAMES.join(', ')}) or the path of a task module ending in .js or .mjs ` +
        `(got ${formatValue(config.task)})${locationOf(source)}${suggestion}`,
    );
  }

  const { dModel, heads } = config.model;
  if (dModel % heads !== 0) {
    const divisors = divisorsOf(dModel);
    const listedDivisors = divisors.length > 12 ? `${divisors.slice(0, 12).join(', ')}, ...` : divisors.join(', ');
    throw new ConfigError(
      `model.heads (${heads}) must divide model.dModel (${dModel})${locationOf(source)}; ` +
        `choose model.heads from the divisors of ${dModel}: ${listedDivisors}`,
    );
  }

  // The decoupled decay multiplies parameters by 1 - lr * weightDecay, which must stay positive.
  const { lr, weightDecay } = config.optimizer;
  if (lr * weightDecay >= 1) {
    throw new ConfigError(
      `optimizer.lr * optimizer.weightDecay must be less than 1 (got ${lr} * ${weightDecay} = ${lr * weightDecay})` +
        `${locationOf(source)}; lower optimizer.weightDecay, because the decay factor 1 - lr * weightDecay must stay positive`,
    );
  }

  // A timeout shorter than two heartbeat intervals would declare a healthy worker hung after one late heartbeat.
  const { heartbeatIntervalMs, heartbeatTimeoutMs } = config.health;
  if (heartbeatTimeoutMs < 2 * heartbeatIntervalMs) {
    throw new ConfigError(
      `health.heartbeatTimeoutMs (${heartbeatTimeoutMs}) must be at least twice health.heartbeatIntervalMs ` +
        `(${heartbeatIntervalMs})${locationOf(source)}; raise the timeout or shorten the interval`,
    );
  }
}

/**
 * Validates a complete config and returns a copy typed as RunConfig.
 * Every key must be present (use fillDefaults first for a partial file), unknown keys are rejected, and each
 * value must satisfy its rule in CONFIG_SCHEMA and the relations checked by checkConfigRelations.
 * Throws a ConfigError naming the first problem found and `source` when given.
 */
export function validateConfig(value: unknown, source?: string): RunConfig {
  const schema = CONFIG_SCHEMA as unknown as { readonly [key: string]: SchemaNode };
  const config = validateSection(schema, value, '', source) as unknown as RunConfig;
  checkConfigRelations(config, source);
  return config;
}
