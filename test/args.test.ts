import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import test from 'ava';
import type { ExecutionContext } from 'ava';

import { DEFAULT_CONFIG } from '../src/config/defaults.js';
import { hasCode } from '../src/errors.js';
import type { ErrorCode } from '../src/errors.js';
import { helpText, makeRunId, parseLaunchArgs } from '../src/launcher/args.js';

// Compiled to dist/test, two levels below the package root.
const packageRoot = fileURLToPath(new URL('../../', import.meta.url));
const cwd = mkdtempSync(join(tmpdir(), 'ringtrain-args-test-'));
const environment = { cwd };

test.after.always(() => {
  rmSync(cwd, { recursive: true, force: true });
});

/** Runs parseLaunchArgs and returns the error's code and message, or "no error thrown". */
function failure(argv: string[]): { code: ErrorCode | 'none'; message: string } {
  try {
    parseLaunchArgs(argv, environment);
  } catch (error) {
    for (const code of ['RINGTRAIN_ERR_CONFIG', 'RINGTRAIN_ERR_USAGE'] as const) {
      if (hasCode(error, code)) {
        return { code, message: (error as Error).message };
      }
    }
    return { code: 'none', message: `unexpected error: ${String(error)}` };
  }
  return { code: 'none', message: 'no error thrown' };
}

/** Checks that each bad value of `flag` is rejected as a usage error whose message names the flag and value. */
function assertBadValues(t: ExecutionContext, flag: string, values: string[], allowed: string): void {
  for (const value of values) {
    const { code, message } = failure([`${flag}=${value}`]);
    t.is(code, 'RINGTRAIN_ERR_USAGE', `${flag}=${value}: ${message}`);
    const displayed = value === '' ? 'an empty value' : value;
    t.is(message, `${flag} must be ${allowed} (got ${displayed}); run with --help for the options`);
  }
}

/** Checks that `flag` without a value, at the end or before another flag, is a usage error. */
function assertMissingValue(t: ExecutionContext, flag: string): void {
  for (const argv of [[flag], [flag, '--gpus', '1']]) {
    const { code, message } = failure(argv);
    t.is(code, 'RINGTRAIN_ERR_USAGE', `${argv.join(' ')}: ${message}`);
    t.regex(message, new RegExp(`^option ${flag} requires a value, e\\.g\\. ${flag} \\S+; run with --help`));
  }
}

test('no flags gives defaults', (t) => {
  const options = parseLaunchArgs([], environment);
  t.is(options.workers, 1);
  t.is(options.configPath, join(packageRoot, 'configs', 'brown-pos.json'));
  t.deepEqual(options.config, DEFAULT_CONFIG);
  t.false(options.help);
  t.regex(options.runId, /^\d{8}-\d{6}-[0-9a-f]{4}$/);
  t.is(options.runDir, join(cwd, 'runs', options.runId));
});

test('run id uses UTC time', (t) => {
  t.is(makeRunId(new Date(Date.UTC(2026, 11, 4, 21, 30, 15)), 'a3f9'), '20261204-213015-a3f9');
});

test('run id from given time', (t) => {
  const options = parseLaunchArgs([], { cwd, now: new Date(Date.UTC(2025, 0, 2, 3, 4, 5)) });
  t.regex(options.runId, /^20250102-030405-[0-9a-f]{4}$/);
});

test('gpus sets workers', (t) => {
  t.is(parseLaunchArgs(['--gpus', '2'], environment).workers, 2);
});

test('gpus bad values rejected', (t) => {
  assertBadValues(t, '--gpus', ['-1', '0', 'abc', '1.5', '2e1', ''], 'an integer of at least 1');
  assertMissingValue(t, '--gpus');
});

test('gpus separate negative value', (t) => {
  // A separate "-1" is taken as the value, so the message is about the range, not a missing value.
  const { code, message } = failure(['--gpus', '-1']);
  t.is(code, 'RINGTRAIN_ERR_USAGE');
  t.is(message, '--gpus must be an integer of at least 1 (got -1); run with --help for the options');
});

test('gpus above batch size rejected', (t) => {
  const { code, message } = failure(['--gpus', '3', '--set', 'train.globalBatchSize=2']);
  t.is(code, 'RINGTRAIN_ERR_CONFIG');
  t.regex(message, /^train\.globalBatchSize \(2\) must be at least --gpus \(3\)/);
});

test('max-steps sets train.maxSteps', (t) => {
  t.is(parseLaunchArgs(['--max-steps', '5'], environment).config.train.maxSteps, 5);
  // 0 means no limit beyond the epochs, as in the config file.
  t.is(parseLaunchArgs(['--max-steps', '0'], environment).config.train.maxSteps, 0);
});

test('max-steps bad values rejected', (t) => {
  assertBadValues(t, '--max-steps', ['-1', 'abc', '2.5', ''], 'an integer of at least 0');
  assertMissingValue(t, '--max-steps');
});

test('epochs sets train.epochs', (t) => {
  t.is(parseLaunchArgs(['--epochs', '3'], environment).config.train.epochs, 3);
});

test('epochs bad values rejected', (t) => {
  assertBadValues(t, '--epochs', ['-1', '0', 'abc', ''], 'an integer of at least 1');
  assertMissingValue(t, '--epochs');
});

test('seed sets seed', (t) => {
  t.is(parseLaunchArgs(['--seed', '0'], environment).config.seed, 0);
});

test('seed bad values rejected', (t) => {
  assertBadValues(t, '--seed', ['-1', 'abc', '4294967296', '0x10'], 'an integer from 0 to 4294967295');
  assertMissingValue(t, '--seed');
});

test('backend sets backend', (t) => {
  t.is(parseLaunchArgs(['--backend', 'wasm'], environment).config.backend, 'wasm');
});

test('backend bad values rejected', (t) => {
  assertBadValues(t, '--backend', ['gpu', 'WASM', '-1', ''], 'one of auto, tensorflow, wasm, cpu');
  assertMissingValue(t, '--backend');
});

test('config relative to cwd', (t) => {
  mkdirSync(join(cwd, 'configs'), { recursive: true });
  writeFileSync(join(cwd, 'configs', 'small.json'), '{ "model": { "layers": 1 } }');
  const options = parseLaunchArgs(['--config', 'configs/small.json'], environment);
  t.is(options.configPath, join(cwd, 'configs', 'small.json'));
  t.is(options.config.model.layers, 1);
});

test('config missing file rejected', (t) => {
  const { code, message } = failure(['--config', 'nowhere.json']);
  t.is(code, 'RINGTRAIN_ERR_CONFIG');
  t.is(message, `config file ${join(cwd, 'nowhere.json')} not found; pass an existing file with --config`);
});

test('config bad JSON rejected', (t) => {
  // `{"seed": 1,}`: the "}" at offset 11 is where a property name was expected, so line 1, column 12.
  writeFileSync(join(cwd, 'trailing-comma.json'), '{"seed": 1,}');
  const { code, message } = failure(['--config', 'trailing-comma.json']);
  t.is(code, 'RINGTRAIN_ERR_CONFIG');
  t.true(message.startsWith(`${join(cwd, 'trailing-comma.json')}:1:12: invalid JSON`), message);
});

test('config empty value rejected', (t) => {
  const { code, message } = failure(['--config=']);
  t.is(code, 'RINGTRAIN_ERR_USAGE');
  t.is(message, '--config must be a path (got an empty value); run with --help for the options');
});

test('config missing value rejected', (t) => {
  assertMissingValue(t, '--config');
});

test('run-dir relative to cwd', (t) => {
  t.is(parseLaunchArgs(['--run-dir', 'runs/trial'], environment).runDir, join(cwd, 'runs', 'trial'));
});

test('run-dir empty value rejected', (t) => {
  const { code, message } = failure(['--run-dir=']);
  t.is(code, 'RINGTRAIN_ERR_USAGE');
  t.is(message, '--run-dir must be a path (got an empty value); run with --help for the options');
});

test('run-dir missing value rejected', (t) => {
  assertMissingValue(t, '--run-dir');
});

test('set applies override', (t) => {
  t.is(parseLaunchArgs(['--set', 'optimizer.lr=3e-4'], environment).config.optimizer.lr, 3e-4);
});

test('set applied after flags', (t) => {
  t.is(parseLaunchArgs(['--max-steps', '5', '--set', 'train.maxSteps=9'], environment).config.train.maxSteps, 9);
});

test('set applied left to right', (t) => {
  const argv = ['--set', 'optimizer.lr=1e-3', '--set', 'optimizer.lr=3e-4'];
  t.is(parseLaunchArgs(argv, environment).config.optimizer.lr, 3e-4);
});

test('set unknown nested key rejected', (t) => {
  const { code, message } = failure(['--set', 'model.dmodel=128']);
  t.is(code, 'RINGTRAIN_ERR_CONFIG');
  t.is(message, 'unknown config key model.dmodel in --set model.dmodel=128; did you mean model.dModel?');
});

test('set wrong type rejected', (t) => {
  const { code, message } = failure(['--set', 'train.epochs=two']);
  t.is(code, 'RINGTRAIN_ERR_CONFIG');
  t.regex(message, /^train\.epochs must be an integer of at least 1 \(got "two"\) in --set train\.epochs=two/);
});

test('set out of range rejected', (t) => {
  const { code, message } = failure(['--set', 'optimizer.beta2=1.5']);
  t.is(code, 'RINGTRAIN_ERR_CONFIG');
  t.regex(message, /^optimizer\.beta2 must be a number greater than 0 and less than 1 \(got 1\.5\)/);
});

test('set without equals rejected', (t) => {
  const { code, message } = failure(['--set', 'optimizer.lr']);
  t.is(code, 'RINGTRAIN_ERR_CONFIG');
  t.regex(message, /^invalid override --set optimizer\.lr; expected KEY=VALUE/);
});

test('set missing value rejected', (t) => {
  assertMissingValue(t, '--set');
});

test('unknown flag suggests spelling', (t) => {
  const { code, message } = failure(['--gpu', '2']);
  t.is(code, 'RINGTRAIN_ERR_USAGE');
  t.is(message, 'unknown option --gpu (did you mean --gpus?); run with --help for the options');
});

test('unknown flag without match', (t) => {
  const { code, message } = failure(['--verbose']);
  t.is(code, 'RINGTRAIN_ERR_USAGE');
  t.is(message, 'unknown option --verbose; run with --help for the options');
});

test('positional argument rejected', (t) => {
  const { code, message } = failure(['train.json']);
  t.is(code, 'RINGTRAIN_ERR_USAGE');
  t.is(message, 'unexpected argument train.json; the launcher takes only options; run with --help for the options');
});

test('help skips other flags', (t) => {
  for (const flag of ['--help', '-h']) {
    const options = parseLaunchArgs([flag, '--gpus', 'abc'], environment);
    t.true(options.help, flag);
  }
});

test('help with value rejected', (t) => {
  // --help=1 is not the --help flag itself, so parsing goes on and rejects the value.
  const { code, message } = failure(['--help=1']);
  t.is(code, 'RINGTRAIN_ERR_USAGE');
  t.regex(message, /--help' does not take an argument; run with --help/);
});

test('help text names every flag', (t) => {
  const text = helpText();
  for (const flag of ['--gpus', '--config', '--max-steps', '--epochs', '--seed', '--backend', '--run-dir', '--set', '--resume', '--max-restarts', '--task', '--balance', '--help']) {
    t.true(text.includes(flag), flag);
  }
  t.regex(text, /Examples:\n( {2}npm run launch -- .+\n){5}$/);
});
