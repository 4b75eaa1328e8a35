import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import test from 'ava';

import { DEFAULT_CONFIG, defaultConfig, fillDefaults } from '../src/config/defaults.js';
import { applyOverrides, loadConfig, parseConfigJson } from '../src/config/load.js';
import { configKeys } from '../src/config/schema.js';
import type { RunConfig } from '../src/config/types.js';
import { validateConfig } from '../src/config/validate.js';
import { ConfigError } from '../src/errors.js';

// Compiled to dist/test, two levels below the package root.
const packageRoot = fileURLToPath(new URL('../../', import.meta.url));
const brownPosPath = join(packageRoot, 'configs', 'brown-pos.json');
const scratch = mkdtempSync(join(tmpdir(), 'ringtrain-config-test-'));

test.after.always(() => {
  rmSync(scratch, { recursive: true, force: true });
});

function writeScratch(name: string, text: string): string {
  const path = join(scratch, name);
  writeFileSync(path, text);
  return path;
}

/** Returns the defaults with one dotted key replaced, without validation. */
function withValue(key: string, value: unknown): Record<string, unknown> {
  const config = defaultConfig() as unknown as Record<string, unknown>;
  const parts = key.split('.');
  let section = config;
  for (const part of parts.slice(0, -1)) {
    section = section[part] as Record<string, unknown>;
  }
  section[parts[parts.length - 1]] = value;
  return config;
}

function messageOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    return error instanceof ConfigError ? error.message : `not a ConfigError: ${String(error)}`;
  }
  return 'no error thrown';
}

test('brown-pos file equals defaults', (t) => {
  t.deepEqual(loadConfig(brownPosPath), DEFAULT_CONFIG);
});

test('brown-pos file is complete', (t) => {
  // Strict validation without filling defaults: the shipped file spells out every key.
  const parsed = parseConfigJson(readFileSync(brownPosPath, 'utf8'), brownPosPath);
  t.deepEqual(validateConfig(parsed, brownPosPath), DEFAULT_CONFIG);
});

test('defaults deeply frozen', (t) => {
  t.true(Object.isFrozen(DEFAULT_CONFIG));
  t.true(Object.isFrozen(DEFAULT_CONFIG.optimizer));
  t.true(Object.isFrozen(DEFAULT_CONFIG.coordinator));
});

test('defaultConfig returns mutable copy', (t) => {
  const copy = defaultConfig();
  copy.optimizer.lr = 1;
  t.is(DEFAULT_CONFIG.optimizer.lr, 0.003);
  t.false(Object.isFrozen(copy.optimizer));
});

test('validated config is a copy', (t) => {
  const input = defaultConfig();
  const validated = validateConfig(input);
  validated.model.dModel = 8;
  t.is(input.model.dModel, 64);
});

test('unknown nested key rejected', (t) => {
  const config = defaultConfig() as unknown as Record<string, Record<string, unknown>>;
  config.model.dmodel = 128;
  const message = messageOf(() => validateConfig(config, 'run.json'));
  t.regex(message, /^unknown config key model\.dmodel in run\.json/);
  t.regex(message, /did you mean model\.dModel\?/);
  t.regex(message, /allowed keys in model: dModel, heads, layers, ffDim, suffixBuckets, contextWindow, dropout, contextLength, hashFeatures$/);
});

test('unknown top-level key rejected', (t) => {
  const message = messageOf(() => validateConfig({ ...defaultConfig(), optimiser: {} }));
  t.regex(message, /^unknown config key optimiser \(did you mean optimizer\?\)/);
  t.regex(message, /allowed top-level keys: task, taskOptions, seed, backend, data/);
});

test('prototype key rejected', (t) => {
  // JSON.parse makes "__proto__" an ordinary key; it must be reported, not merged into the prototype.
  const parsed = JSON.parse('{"__proto__": {"polluted": true}}') as unknown;
  const message = messageOf(() => validateConfig(fillDefaults(parsed)));
  t.regex(message, /unknown config key __proto__/);
  t.is(({} as Record<string, unknown>).polluted, undefined);
});

test('wrong type rejected', (t) => {
  const message = messageOf(() => validateConfig(withValue('optimizer.lr', '0.001')));
  t.is(
    message,
    'optimizer.lr must be a number greater than 0 (got "0.001"); fix the value or override it, e.g. --set optimizer.lr=0.003',
  );
});

test('section of wrong type rejected', (t) => {
  const message = messageOf(() => validateConfig(withValue('data', 5)));
  t.regex(message, /^data must be a JSON object with the keys corpus, heldOutEvery/);
  t.regex(message, /\(got 5\)/);
});

test('missing key rejected', (t) => {
  const config = defaultConfig() as unknown as Record<string, Record<string, unknown>>;
  delete config.optimizer.beta2;
  const message = messageOf(() => validateConfig(config));
  t.is(message, 'missing config key optimizer.beta2; it must be a number greater than 0 and less than 1');
});

test('out-of-range values rejected', (t) => {
  const cases: Array<[string, unknown, string]> = [
    ['optimizer.beta1', 1, 'a number greater than 0 and less than 1'],
    ['optimizer.beta2', 0, 'a number greater than 0 and less than 1'],
    ['optimizer.lr', -1, 'a number greater than 0'],
    ['optimizer.eps', 0, 'a number greater than 0'],
    ['optimizer.minLrRatio', 1.5, 'a number from 0 to 1'],
    ['optimizer.weightDecay', -0.1, 'a number of at least 0'],
    ['optimizer.warmupSteps', 2.5, 'an integer of at least 0'],
    ['seed', -1, 'an integer from 0 to 4294967295'],
    ['seed', 2 ** 32, 'an integer from 0 to 4294967295'],
    ['coordinator.port', 65536, 'an integer from 0 to 65535'],
    ['coordinator.port', 80.5, 'an integer from 0 to 65535'],
    ['coordinator.host', '', 'a non-empty string'],
    ['coordinator.joinTimeoutMs', 2 ** 31, 'an integer from 1 to 2147483647'],
    ['allreduce.timeoutMs', 0, 'an integer from 1 to 2147483647'],
    ['train.epochs', 0, 'an integer of at least 1'],
    ['train.globalBatchSize', null, 'an integer of at least 1'],
    ['data.heldOutEvery', 1, 'an integer of at least 2'],
    ['data.maxSentenceTokens', 70000, 'an integer from 1 to 65535'],
    ['model.layers', true, 'an integer of at least 1'],
    ['backend', 'gpu', 'one of auto, tensorflow, wasm, cpu'],
    [
      'task',
      'ner',
      'a built-in task (brown-pos, brown-charlm, conll-tagging, text-classification, spam-classification, tabular-classification) or the path of a task module ending in .js or .mjs',
    ],
  ];
  for (const [key, value, allowed] of cases) {
    const message = messageOf(() => validateConfig(withValue(key, value), 'run.json'));
    const expected = `${key} must be ${allowed} (got ${JSON.stringify(value)}) in run.json`;
    t.true(message.startsWith(expected), `${key}=${JSON.stringify(value)}: ${message}`);
  }
});

test('boundary values accepted', (t) => {
  const cases: Array<[string, unknown]> = [
    ['coordinator.port', 0],
    ['coordinator.port', 65535],
    ['optimizer.minLrRatio', 0],
    ['optimizer.minLrRatio', 1],
    ['optimizer.weightDecay', 0],
    ['optimizer.clipNorm', 0],
    ['optimizer.warmupSteps', 0],
    ['seed', 0],
    ['seed', 2 ** 32 - 1],
    ['train.maxSteps', 0],
    ['data.limitFiles', 0],
    ['backend', 'wasm'],
  ];
  for (const [key, value] of cases) {
    t.notThrows(() => validateConfig(withValue(key, value)), `${key}=${JSON.stringify(value)}`);
  }
});

test('heads must divide dModel', (t) => {
  const message = messageOf(() => validateConfig(withValue('model.heads', 5)));
  t.is(
    message,
    'model.heads (5) must divide model.dModel (64); choose model.heads from the divisors of 64: ' +
      '1, 2, 4, 8, 16, 32, 64',
  );
});

test('decay factor must stay positive', (t) => {
  // lr 0.5 * weightDecay 2 = 1 would multiply decayed parameters by 1 - 1 = 0.
  const config = withValue('optimizer.lr', 0.5) as unknown as RunConfig;
  config.optimizer.weightDecay = 2;
  const message = messageOf(() => validateConfig(config));
  t.regex(message, /^optimizer\.lr \* optimizer\.weightDecay must be less than 1 \(got 0\.5 \* 2 = 1\)/);
});

test('partial file filled with defaults', (t) => {
  const path = writeScratch('partial.json', '{ "optimizer": { "lr": 0.001 }, "train": { "maxSteps": 10 } }\n');
  const config = loadConfig(path);
  t.is(config.optimizer.lr, 0.001);
  t.is(config.train.maxSteps, 10);
  t.is(config.optimizer.beta2, DEFAULT_CONFIG.optimizer.beta2);
  t.deepEqual(config.model, DEFAULT_CONFIG.model);
});

test('bad JSON file names position', (t) => {
  // The second comma of line 3 is invalid. Line 3 is `  "task": "brown-pos",,` (22 characters before the
  // bad comma), so the error is at line 3, column 23.
  const path = writeScratch('bad.json', '{\n  "seed": 1,\n  "task": "brown-pos",,\n}\n');
  const message = messageOf(() => loadConfig(path));
  t.true(message.startsWith(`${path}:3:23: invalid JSON: `), message);
  t.regex(message, /fix the file or pass another one with --config$/);
});

test('JSON error without V8 position located', (t) => {
  // V8 reports `tru}` as "Unexpected token '}'" with no position. In line 2, `  "seed": tru}`, the `}` follows
  // 2 spaces, 6 characters of "seed", a colon, a space and "tru", so it is column 14.
  const path = writeScratch('token.json', '{\n  "seed": tru}\n');
  const message = messageOf(() => loadConfig(path));
  t.true(message.startsWith(`${path}:2:14: invalid JSON: Unexpected token '}'`), message);
});

test('truncated JSON file names end', (t) => {
  // `{"seed": 1` has 10 characters, so the input ends at line 1, column 11.
  const path = writeScratch('truncated.json', '{"seed": 1');
  const message = messageOf(() => loadConfig(path));
  t.true(message.startsWith(`${path}:1:11: invalid JSON`), message);
});

test('missing config file rejected', (t) => {
  const path = join(scratch, 'absent.json');
  const message = messageOf(() => loadConfig(path));
  t.is(message, `config file ${path} not found; pass an existing file with --config`);
});

test('unknown key in file names file', (t) => {
  const path = writeScratch('unknown.json', '{ "train": { "batchSize": 32 } }');
  const message = messageOf(() => loadConfig(path));
  t.regex(message, /^unknown config key train\.batchSize in /);
  t.true(message.includes(path), message);
});

test('byte order mark accepted', (t) => {
  const path = writeScratch('bom.json', '\uFEFF{ "seed": 7 }');
  t.is(loadConfig(path).seed, 7);
});

test('override sets number', (t) => {
  const config = applyOverrides(defaultConfig(), ['optimizer.lr=3e-4']);
  t.is(config.optimizer.lr, 3e-4);
});

test('override leaves input unchanged', (t) => {
  const input = defaultConfig();
  applyOverrides(input, ['optimizer.lr=3e-4']);
  t.is(input.optimizer.lr, 0.003);
});

test('override string keys keep text', (t) => {
  const config = applyOverrides(defaultConfig(), ['coordinator.host=localhost', 'data.corpus=2024', 'backend=wasm']);
  t.is(config.coordinator.host, 'localhost');
  t.is(config.data.corpus, '2024');
  t.is(config.backend, 'wasm');
});

test('override quoted string parsed', (t) => {
  const config = applyOverrides(defaultConfig(), ['data.corpus="my corpus"']);
  t.is(config.data.corpus, 'my corpus');
});

test('override value containing equals', (t) => {
  // Only the first "=" separates key and value.
  const config = applyOverrides(defaultConfig(), ['data.corpus=/data/a=b']);
  t.is(config.data.corpus, '/data/a=b');
});

test('override invalid value rejected', (t) => {
  const message = messageOf(() => applyOverrides(defaultConfig(), ['optimizer.lr=abc']));
  t.is(
    message,
    'optimizer.lr must be a number greater than 0 (got "abc") in --set optimizer.lr=abc; ' +
      'pass a valid value, e.g. --set optimizer.lr=0.003',
  );
});

test('override out of range rejected', (t) => {
  const message = messageOf(() => applyOverrides(defaultConfig(), ['coordinator.port=70000']));
  t.regex(message, /^coordinator\.port must be an integer from 0 to 65535 \(got 70000\) in --set coordinator\.port=70000/);
});

test('override unknown nested key suggests', (t) => {
  const message = messageOf(() => applyOverrides(defaultConfig(), ['optimizer.lrr=1']));
  t.is(message, 'unknown config key optimizer.lrr in --set optimizer.lrr=1; did you mean optimizer.lr?');
});

test('override key in wrong section', (t) => {
  const message = messageOf(() => applyOverrides(defaultConfig(), ['train.lr=1']));
  t.regex(message, /did you mean optimizer\.lr\?$/);
});

test('override unrelated key lists section', (t) => {
  const message = messageOf(() => applyOverrides(defaultConfig(), ['optimizer.amsgrad=1']));
  t.regex(message, /allowed keys in optimizer: optimizer\.lr, optimizer\.beta1, .*optimizer\.clipNorm, optimizer\.shardState$/);
});

test('override section rejected', (t) => {
  const message = messageOf(() => applyOverrides(defaultConfig(), ['allreduce=5']));
  t.is(message, 'allreduce is a config section, not a key, in --set allreduce=5; set one of allreduce.timeoutMs, allreduce.bucketBytes, allreduce.compression, allreduce.skipZeroBlocks, allreduce.localTransport');
});

test('localTransport accepts unix and tcp', (t) => {
  t.is(defaultConfig().allreduce.localTransport, 'unix');
  t.is(applyOverrides(defaultConfig(), ['allreduce.localTransport=tcp']).allreduce.localTransport, 'tcp');
  const message = messageOf(() => applyOverrides(defaultConfig(), ['allreduce.localTransport=shm']));
  t.is(
    message,
    'allreduce.localTransport must be one of unix, tcp (got "shm") in --set allreduce.localTransport=shm; ' +
      'pass a valid value, e.g. --set allreduce.localTransport=unix',
  );
  const fromFile = messageOf(() => validateConfig(withValue('allreduce.localTransport', true), 'run.json'));
  t.true(fromFile.startsWith('allreduce.localTransport must be one of unix, tcp (got true) in run.json'), fromFile);
});

test('override without equals rejected', (t) => {
  const message = messageOf(() => applyOverrides(defaultConfig(), ['optimizer.lr']));
  t.is(message, 'invalid override --set optimizer.lr; expected KEY=VALUE such as --set optimizer.lr=3e-4');
});

test('overrides checked together', (t) => {
  // heads 5 alone does not divide dModel 64, but with dModel 100 applied afterwards the pair is valid.
  const config = applyOverrides(defaultConfig(), ['model.heads=5', 'model.dModel=100']);
  t.is(config.model.heads, 5);
  t.is(config.model.dModel, 100);
});

test('overrides violating relation rejected', (t) => {
  const message = messageOf(() => applyOverrides(defaultConfig(), ['model.heads=5']));
  t.regex(message, /^model\.heads \(5\) must divide model\.dModel \(64\) in --set overrides/);
});

test('schema lists every key', (t) => {
  // 4 top-level keys + data 12 + model 9 + train 7 + optimizer 9 + allreduce 5 + coordinator 3 + checkpoint 2
  // + health 3 = 54.
  t.is(configKeys().length, 54);
});
