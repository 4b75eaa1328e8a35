/**
 * Reading a config file and applying `--set key=value` overrides.
 */
import { readFileSync } from 'node:fs';

import { ConfigError } from '../errors.js';
import { fillDefaults, isPlainObject } from './defaults.js';
import { configKeys, isLeafRule, schemaNodeAt, type LeafRule } from './schema.js';
import { closestMatches, editDistance } from './suggest.js';
import type { RunConfig } from './types.js';
import { checkConfigValue, validateConfig } from './validate.js';

/** Converts a character offset of `text` into a 1-based line and column. */
function lineAndColumn(text: string, offset: number): { line: number; column: number } {
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - (before.lastIndexOf('\n') + 1) + 1;
  return { line, column };
}

/** Returns the offset that a JSON.parse error message reports, the text length for "Unexpected end", or undefined. */
function reportedOffset(message: string, text: string): number | undefined {
  if (message.includes('Unexpected end of JSON input')) {
    return text.length;
  }
  const match = /in JSON at position (\d+)/.exec(message);
  return match === null ? undefined : Number(match[1]);
}

/**
 * Finds the offset of the first character that makes `text` invalid JSON. V8 omits the position from some
 * messages ("Unexpected token '}', ... is not valid JSON"), so this searches for the shortest prefix that fails
 * before its own end: every shorter prefix is the start of some valid JSON text, so the last character of that
 * prefix is the culprit. The binary search parses at most about log2(length) + 1 prefixes.
 */
function locateJsonError(text: string): number {
  let good = 0;
  let bad = text.length;
  while (good < bad) {
    const length = Math.floor((good + bad) / 2);
    const prefix = text.slice(0, length);
    let failsEarly = false;
    try {
      JSON.parse(prefix);
    } catch (error) {
      const offset = reportedOffset(error instanceof Error ? error.message : String(error), prefix);
      failsEarly = offset === undefined || offset < length;
    }
    if (failsEarly) {
      bad = length;
    } else {
      good = length + 1;
    }
  }
  return Math.max(0, good - 1);
}

/** Shortens a JSON.parse message to its reason, without the position or the copy of the text that V8 adds. */
function jsonErrorReason(message: string): string {
  const firstLine = message.split('\n')[0];
  const token = /^Unexpected token '.*?'(?=, )/.exec(firstLine);
  if (token !== null) {
    return token[0];
  }
  return firstLine.replace(/\s*in JSON at position \d+.*$/, '');
}

/**
 * Parses JSON text read from `source` (a file path) and returns the value.
 * Throws a ConfigError of the form `FILE:LINE:COLUMN: invalid JSON: REASON` when the text is not JSON.
 */
export function parseConfigJson(text: string, source: string): unknown {
  // Editors on some systems save a byte-order mark, which JSON.parse rejects.
  const body = text.startsWith('\uFEFF') ? text.slice(1) : text;
  try {
    return JSON.parse(body);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const offset = reportedOffset(message, body) ?? locateJsonError(body);
    const { line, column } = lineAndColumn(body, offset);
    throw new ConfigError(
      `${source}:${line}:${column}: invalid JSON: ${jsonErrorReason(message)}; fix the file or pass another one with --config`,
    );
  }
}

/**
 * Reads the JSON config file at `path`, fills keys it leaves out from DEFAULT_CONFIG and validates the result.
 * Throws a ConfigError when the file cannot be read, is not JSON, or contains an unknown key or invalid value.
 */
export function loadConfig(path: string): RunConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new ConfigError(`config file ${path} not found; pass an existing file with --config`);
    }
    const reason = error instanceof Error ? error.message : String(error);
    throw new ConfigError(`cannot read config file ${path}: ${reason}; pass a readable file with --config`);
  }
  return validateConfig(fillDefaults(parseConfigJson(text, path)), path);
}

/** One parsed `--set` argument. */
export interface ConfigOverride {
  /** Dotted config key, e.g. `optimizer.lr`. */
  key: string;
  /** Text after the first `=`, not yet converted. */
  rawValue: string;
}

/** Splits `key=value` at the first `=`. Throws a ConfigError when there is no `=` or the key is empty. */
export function parseOverride(text: string): ConfigOverride {
  const separator = text.indexOf('=');
  const key = separator < 0 ? '' : text.slice(0, separator).trim();
  if (separator < 0 || key === '') {
    throw new ConfigError(`invalid override --set ${text}; expected KEY=VALUE such as --set optimizer.lr=3e-4`);
  }
  return { key, rawValue: text.slice(separator + 1) };
}

/**
 * Converts the text of an override into a value: JSON when it parses (numbers, true, null, quoted strings),
 * otherwise the text itself. For keys that take a string the text is kept as typed unless it starts with a
 * double quote, so `--set data.corpus=2024` names a folder "2024" instead of the number 2024.
 */
export function parseOverrideValue(rawValue: string, rule: LeafRule): unknown {
  const takesString = rule.kind === 'string' || rule.kind === 'enum';
  if (takesString && !rawValue.startsWith('"')) {
    return rawValue;
  }
  try {
    return JSON.parse(rawValue);
  } catch {
    return rawValue;
  }
}

/** Builds the "did you mean" or "allowed keys" part of an unknown-key message. */
function describeAlternatives(key: string): string {
  const keys = configKeys();
  const sections = [...new Set(keys.filter((k) => k.includes('.')).map((k) => k.split('.')[0]))];
  const lastPart = lastSegment(key).toLowerCase();
  // Full-key matches catch typos, and last-segment matches catch a key put in the wrong section (train.lr).
  const typos = closestMatches(key, [...keys, ...sections]);
  const moved = keys.filter((k) => editDistance(lastSegment(k).toLowerCase(), lastPart) <= 1);
  const matches = [...new Set([...typos, ...moved])].slice(0, 4);
  if (matches.length > 0) {
    return `did you mean ${matches.join(' or ')}?`;
  }

  const section = key.split('.')[0];
  if (sections.includes(section)) {
    return `allowed keys in ${section}: ${keys.filter((k) => k.startsWith(`${section}.`)).join(', ')}`;
  }
  const topLevel = [...new Set(keys.map((k) => k.split('.')[0]))];
  return `allowed top-level keys: ${topLevel.join(', ')}`;
}

function lastSegment(key: string): string {
  return key.slice(key.lastIndexOf('.') + 1);
}

/**
 * Returns a copy of `config` with each `key=value` of `overrides` applied in order, then validated again.
 * Values are converted by parseOverrideValue. Throws a ConfigError naming the override for a malformed
 * argument, an unknown key (with close alternatives), a section instead of a key, or an invalid value.
 */
export function applyOverrides(config: RunConfig, overrides: readonly string[]): RunConfig {
  const result = structuredClone(config) as unknown as Record<string, unknown>;

  for (const text of overrides) {
    const { key, rawValue } = parseOverride(text);
    if (key.startsWith('taskOptions.') && key.length > 'taskOptions.'.length) {
      // A task module defines its own options, so any name below taskOptions is accepted; the module checks it.
      const options = isPlainObject(result.taskOptions) ? result.taskOptions : {};
      options[key.slice('taskOptions.'.length)] = parseOverrideValue(rawValue, { kind: 'number', min: 0 });
      result.taskOptions = options;
      continue;
    }
    const node = schemaNodeAt(key);
    if (node === undefined) {
      throw new ConfigError(`unknown config key ${key} in --set ${text}; ${describeAlternatives(key)}`);
    }
    if (!isLeafRule(node)) {
      const children = configKeys(node, key);
      throw new ConfigError(`${key} is a config section, not a key, in --set ${text}; set one of ${children.join(', ')}`);
    }

    const value = parseOverrideValue(rawValue, node);
    checkConfigValue(key, value, `--set ${text}`);

    const parts = key.split('.');
    let section = result;
    for (const part of parts.slice(0, -1)) {
      const child = section[part];
      if (!isPlainObject(child)) {
        throw new ConfigError(`${part} must be a JSON object before --set ${text} can change it`);
      }
      section = child;
    }
    section[parts[parts.length - 1]] = value;
  }

  // Checks the relations between keys, e.g. model.heads dividing model.dModel, once every override is in.
  return validateConfig(result, overrides.length > 0 ? '--set overrides' : undefined);
}
