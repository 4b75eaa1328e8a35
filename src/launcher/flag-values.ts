/**
 * Parsers for the launcher's argv. node:util parseArgs splits it into flag values, and each value is then read
 * as a number, path, run id, address or URL. Every parser throws a usage error that names the flag and value.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { describeRule, ruleAllows, type LeafRule } from '../config/schema.js';
import { closestMatches } from '../config/suggest.js';
import type { PeerAddress } from '../comm/protocol.js';
import { ALL_FLAGS, FLAG_EXAMPLES, OPTIONS, usageError, VALUE_FLAGS } from './usage.js';

/**
 * Rewrites `--flag value` as `--flag=value` for flags that take a value. node:util parseArgs rejects a
 * separate value that starts with "-" as ambiguous, which would hide the real problem in `--seed -1`.
 */
function joinFlagValues(argv: readonly string[]): string[] {
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i];
    if (token === '--') {
      joined.push(...argv.slice(i));
      break;
    }
    if (!VALUE_FLAGS.has(token)) {
      joined.push(token);
      continue;
    }
    const value = argv[i + 1];
    const looksLikeFlag = value !== undefined && value.startsWith('-') && !/^-\d/.test(value);
    if (value === undefined || looksLikeFlag) {
      throw usageError(`option ${token} requires a value, e.g. ${token} ${FLAG_EXAMPLES[token] ?? 'VALUE'}`);
    }
    joined.push(`${token}=${value}`);
    i++;
  }
  return joined;
}

/** Converts node:util parseArgs errors into usage errors that name the flag or argument. */
function toUsageError(error: unknown): unknown {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const flag = /Unknown option '([^']+)'/.exec(message)?.[1] ?? message;
    const matches = closestMatches(flag, ALL_FLAGS);
    const suggestion = matches.length > 0 ? ` (did you mean ${matches.join(' or ')}?)` : '';
    return usageError(`unknown option ${flag}${suggestion}`);
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const argument = /Unexpected argument '([^']+)'/.exec(message)?.[1] ?? message;
    return usageError(`unexpected argument ${argument}; the launcher takes only options`);
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    return usageError(message);
  }
  return error;
}

/**
 * Parses `argv` against the option table. Throws a usage error for an unknown option, a missing or invalid
 * value, or a positional argument.
 */
export function parseFlags(argv: readonly string[]) {
  try {
    return parseArgs({ args: joinFlagValues(argv), options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw toUsageError(error);
  }
}

/** Parses a decimal integer flag value and checks it against `rule`, throwing a usage error that names the flag. */
export function parseIntegerFlag(flag: string, text: string, rule: LeafRule): number {
  const value = /^-?\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!ruleAllows(rule, value)) {
    throw usageError(`${flag} must be ${describeRule(rule)} (got ${describeFlagValue(text)})`);
  }
  return value;
}

export function parsePathFlag(flag: string, text: string, cwd: string): string {
  if (text === '') {
    throw usageError(`${flag} must be a path (got an empty value)`);
  }
  return resolve(cwd, text);
}

export function describeFlagValue(text: string): string {
  return text === '' ? 'an empty value' : text;
}

/** Reports whether argv requests help before any `--` terminator. */
export function wantsHelp(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  const options = end < 0 ? argv : argv.slice(0, end);
  return options.includes('--help') || options.includes('-h');
}

export function parseRunId(text: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(text)) {
    throw usageError(`--run-id must be 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit (got ${describeFlagValue(text)})`);
  }
  return text;
}

export function parseHostPort(flag: string, text: string): PeerAddress {
  const match = /^(.+):(\d+)$/.exec(text);
  const port = match === null ? Number.NaN : Number(match[2]);
  if (match === null || !(port >= 1 && port <= 65535)) {
    throw usageError(`${flag} must be HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:29400 (got ${describeFlagValue(text)})`);
  }
  return { host: match[1] as string, port };
}

export function parseWebSocketUrl(flag: string, text: string): string {
  let url: URL | null = null;
  try {
    url = new URL(text);
  } catch {
    // Reported below with the expected form.
  }
  if (url === null || (url.protocol !== 'ws:' && url.protocol !== 'wss:')) {
    throw usageError(`${flag} must be a ws:// or wss:// URL such as ws://127.0.0.1:9400 (got ${describeFlagValue(text)})`);
  }
  return url.toString();
}
