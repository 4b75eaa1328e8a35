import { readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { defaultConfig } from '../src/config/defaults.js';
import { countBuckets, denseRows, hashTexts, tokenize } from '../src/data/hashed-features.js';
import type { FeatureRecord } from '../src/data/formats/csv.js';
import { SPAM_ASSASSIN_INSTALL, SPAM_ASSASSIN_PACKAGE } from '../src/data/spam-assassin.js';
import { stripHeaders } from '../src/tasks/spam-classification.js';
import { columnStatistics } from '../src/tasks/tabular-classification.js';
import textClassification from '../src/tasks/text-classification.js';
import { temporaryDirectory } from './helpers/files.js';
import { launch, runningPids, pidsInLog } from './helpers/launch.js';

// ---------------------------------------------------------------------------------------------------------
// Small data files. Every generator is deterministic, so a failure repeats.

/** 48 reviews that alternate pos and neg; each contains two words only its class uses. */
function reviewLines(): string[] {
  const positive = ['great', 'superb', 'loved', 'brilliant'];
  const negative = ['awful', 'boring', 'hated', 'dull'];
  const filler = ['the', 'film', 'plot', 'was', 'and', 'cast'];
  const lines: string[] = [];
  for (let i = 0; i < 48; i++) {
    const label = i % 2 === 0 ? 'pos' : 'neg';
    const cue = label === 'pos' ? positive : negative;
    const words = [filler[i % 6], cue[i % 4], filler[(i + 2) % 6], cue[(i + 1) % 4], filler[(i + 4) % 6]];
    lines.push(JSON.stringify({ text: words.join(' '), label }));
  }
  return lines;
}

/** 45 rows of two features whose class (x, y, z) cycles; the columns have very different scales. */
function tableLines(): string[] {
  const lines = ['width,height,label'];
  const centres: Record<string, [number, number]> = { x: [0, 100], y: [3, 100], z: [0, 400] };
  for (let i = 0; i < 45; i++) {
    const label = ['x', 'y', 'z'][i % 3] as string;
    const [width, height] = centres[label] as [number, number];
    lines.push(`${width + ((i * 7) % 5) / 10},${height + ((i * 11) % 13)},${label}`);
  }
  return lines;
}

/** 24 sentences of a four-tag toy language, one token per line and a blank line after each sentence. */
function conllLines(): string[] {
  const lexicon: [string, string][] = [['the', 'DET'], ['big', 'ADJ'], ['dog', 'NOUN'], ['runs', 'VERB'], ['a', 'DET'], ['cat', 'NOUN'], ['sleeps', 'VERB']];
  const lines: string[] = [];
  for (let i = 0; i < 24; i++) {
    const length = 3 + (i % 4);
    for (let j = 0; j < length; j++) {
      const [word, tag] = lexicon[(i + 2 * j) % lexicon.length] as [string, string];
      lines.push(`${word}\t${tag}`);
    }
    lines.push('');
  }
  return lines;
}

/** Writes `lines` to `name` in `directory` and returns the path. */
function writeLines(directory: string, name: string, lines: readonly string[]): string {
  const path = join(directory, name);
  writeFileSync(path, lines.join('\n') + '\n');
  return path;
}

// ---------------------------------------------------------------------------------------------------------
// Launch helpers.

/** Settings that keep every launch at a few seconds on the cpu backend. */
const smallModel = [
  '--backend', 'cpu',
  '--max-steps', '3',
  '--set', 'train.globalBatchSize=8',
  '--set', 'train.logEvery=1',
  '--set', 'data.heldOutEvery=4',
  '--set', 'data.minWordCount=1',
  '--set', 'model.hashFeatures=128',
  '--set', 'model.ffDim=16',
  '--set', 'model.dModel=16',
  '--set', 'model.layers=1',
  '--set', 'model.suffixBuckets=64',
  '--set', 'optimizer.warmupSteps=1',
  '--set', 'checkpoint.every=0',
];

/**
 * A worker whose data fails to load exits before it joins. The join timeout is longer than the launch timeout,
 * so a run that did not end at once would be killed and fail the exit-code check.
 */
const failingLaunch = ['--gpus', '1', '--set', 'coordinator.joinTimeoutMs=120000', ...smallModel];

/** Returns the class names of a run's eval-report.json. */
function reportedClasses(runDir: string): string[] {
  const report = JSON.parse(readFileSync(join(runDir, 'eval-report.json'), 'utf8')) as { classes: { name: string }[] };
  return report.classes.map((entry) => entry.name);
}

/** Returns the first 'data loaded' record of a run's merged log. */
function dataLoadedRecord(runDir: string): Record<string, unknown> | undefined {
  return readFileSync(join(runDir, 'logs.jsonl'), 'utf8')
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .find((record) => record.msg === 'data loaded');
}

/** Launches `task` on two workers and checks that it exits 0, reports `classes` and leaves no process behind. */
async function assertTrains(t: ExecutionContext, task: string, args: string[], classes: string[]): Promise<void> {
  const result = await launch(t, ['--gpus', '2', '--task', task, ...smallModel, ...args], { timeoutMs: 60_000 });
  t.is(result.exitCode, 0, `${result.stderr}\n${result.stdout.slice(-2000)}`);
  t.deepEqual(reportedClasses(result.runDir), classes);
  t.deepEqual(runningPids(pidsInLog(result.runDir)), []);
}

/** Launches a run that must fail, and checks that its output names `mentions`. */
async function assertFails(t: ExecutionContext, args: string[], mentions: string[]): Promise<void> {
  const result = await launch(t, [...failingLaunch, ...args], { timeoutMs: 60_000 });
  // Bad config values and data files end the run with exit code 2 and one line, without restarts.
  t.is(result.exitCode, 2);
  const output = result.stdout + result.stderr;
  for (const text of mentions) {
    t.true(output.includes(text), `output does not mention ${JSON.stringify(text)}:\n${output.slice(-3000)}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Real launches that train. Serial, because each starts a coordinator and two workers on 2 cores.

test.serial('text task trains and reports', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-text-');
  const trainFile = writeLines(directory, 'train.jsonl', reviewLines());
  await assertTrains(t, 'text-classification', ['--set', `data.trainFile=${trainFile}`, '--set', 'taskOptions.bigrams=true'], ['neg', 'pos']);
});

test.serial('text task reads eval file', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-text-');
  const lines = reviewLines();
  const trainFile = writeLines(directory, 'train.jsonl', lines.slice(0, 40));
  const evalFile = writeLines(directory, 'eval.jsonl', lines.slice(40));
  await assertTrains(t, 'text-classification', ['--set', `data.trainFile=${trainFile}`, '--set', `data.evalFile=${evalFile}`], ['neg', 'pos']);
});

test.serial('tabular task trains and reports', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-table-');
  const trainFile = writeLines(directory, 'train.csv', tableLines());
  await assertTrains(t, 'tabular-classification', ['--set', `data.trainFile=${trainFile}`], ['x', 'y', 'z']);
});

test.serial('conll task trains and reports', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-conll-');
  const trainFile = writeLines(directory, 'train.conll', conllLines());
  await assertTrains(t, 'conll-tagging', ['--set', `data.trainFile=${trainFile}`], ['ADJ', 'DET', 'NOUN', 'VERB']);
});

test.serial('skipped records are counted', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-text-');
  const lines = reviewLines();
  lines.splice(5, 0, '{"text": "no label here"}', 'not json at all');
  const trainFile = writeLines(directory, 'train.jsonl', lines);
  const result = await launch(
    t,
    ['--gpus', '2', '--task', 'text-classification', ...smallModel, '--set', `data.trainFile=${trainFile}`, '--set', 'data.onBadRecord=skip'],
    { timeoutMs: 60_000 },
  );
  t.is(result.exitCode, 0, result.stderr);
  const loaded = dataLoadedRecord(result.runDir);
  t.is(loaded?.skippedRecords, 2);
  t.true(String(loaded?.skipReasons).includes(`${trainFile}:6`));
});

// ---------------------------------------------------------------------------------------------------------
// Real launches with malformed data: non-zero exit and a message naming the file and line.

test('bad JSON line names its line', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-bad-');
  const lines = reviewLines();
  lines.splice(3, 0, '{"text": "cut off", "label": ');
  const trainFile = writeLines(directory, 'train.jsonl', lines);
  await assertFails(t, ['--task', 'text-classification', '--set', `data.trainFile=${trainFile}`], [`data file ${trainFile}, line 4: not valid JSON`]);
});

test('missing label names its line', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-bad-');
  const lines = reviewLines();
  lines.splice(7, 0, '{"text": "no label"}');
  const trainFile = writeLines(directory, 'train.jsonl', lines);
  await assertFails(t, ['--task', 'text-classification', '--set', `data.trainFile=${trainFile}`], [`data file ${trainFile}, line 8: has no field "label"`]);
});

test('ragged CSV row names its line', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-bad-');
  const lines = tableLines();
  lines.splice(10, 0, '1.5,x');
  const trainFile = writeLines(directory, 'train.csv', lines);
  await assertFails(t, ['--task', 'tabular-classification', '--set', `data.trainFile=${trainFile}`], [`data file ${trainFile}, line 11: has 2 columns, expected 3`]);
});

test('empty CoNLL file is rejected', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-bad-');
  const trainFile = writeLines(directory, 'train.conll', []);
  await assertFails(t, ['--task', 'conll-tagging', '--set', `data.trainFile=${trainFile}`], [`data file ${trainFile}: contains no records`]);
});

test('unknown eval label names its line', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-bad-');
  const trainFile = writeLines(directory, 'train.jsonl', reviewLines());
  const evalFile = writeLines(directory, 'eval.jsonl', [reviewLines()[0] as string, JSON.stringify({ text: 'so so', label: 'meh' })]);
  await assertFails(
    t,
    ['--task', 'text-classification', '--set', `data.trainFile=${trainFile}`, '--set', `data.evalFile=${evalFile}`],
    [`data file ${evalFile}, line 2: label "meh" does not occur in the training data`],
  );
});

test('empty trainFile names the key', async (t) => {
  await assertFails(t, ['--task', 'tabular-classification'], ['data.trainFile is empty', '--set data.trainFile=data/train.csv']);
});

/** Reports whether the optional corpus package resolves from the compiled spam loader. */
function spamPackageInstalled(): boolean {
  try {
    createRequire(new URL('../src/data/spam-assassin.js', import.meta.url)).resolve(SPAM_ASSASSIN_PACKAGE);
    return true;
  } catch {
    return false;
  }
}

(spamPackageInstalled() ? test.skip : test)('spam task without corpus package', async (t) => {
  await assertFails(t, ['--task', 'spam-classification'], [SPAM_ASSASSIN_INSTALL]);
});

// ---------------------------------------------------------------------------------------------------------
// Hashed features and the data halves, in this process.

test('hashed features repeat across calls', (t) => {
  const texts = ['The cat sat on the mat.', 'Free money!!! Click now', ''];
  const first = hashTexts(texts, { buckets: 64, bigrams: true });
  const second = hashTexts(texts, { buckets: 64, bigrams: true });
  t.deepEqual(first.offsets, second.offsets);
  t.deepEqual(first.buckets, second.buckets);
  t.deepEqual(first.values, second.values);
});

test('hashed features use log counts', (t) => {
  const options = { buckets: 1 << 20, bigrams: false };
  const counts = countBuckets('Spam spam SPAM ham', options);
  // With 2^20 buckets the two words are expected in different buckets; if they collide the test reports it.
  t.is(counts.size, 2);
  const hashed = hashTexts(['Spam spam SPAM ham'], options);
  const values = [...hashed.values].sort();
  // log1p(1) = 0.693147..., log1p(3) = 1.386294...; float32 keeps about 7 digits, so 1e-6 is enough.
  t.true(Math.abs((values[0] as number) - Math.log1p(1)) < 1e-6);
  t.true(Math.abs((values[1] as number) - Math.log1p(3)) < 1e-6);
});

test('bigrams add one entry per pair', (t) => {
  const unigrams = countBuckets('a b c d', { buckets: 1 << 20, bigrams: false });
  const withPairs = countBuckets('a b c d', { buckets: 1 << 20, bigrams: true });
  const total = (counts: Map<number, number>): number => [...counts.values()].reduce((sum, count) => sum + count, 0);
  // 4 tokens give 4 unigrams and 3 adjacent pairs.
  t.is(total(unigrams), 4);
  t.is(total(withPairs), 7);
});

test('tokenizer lower-cases words', (t) => {
  t.deepEqual(tokenize("Don't STOP, 42x!"), ["don't", 'stop', '42x']);
});

test('dense rows place hashed values', (t) => {
  const hashed = hashTexts(['alpha beta', 'gamma'], { buckets: 32, bigrams: false });
  const matrix = denseRows(hashed, [1, 0], 32);
  t.is(matrix.length, 64);
  const row = (index: number): number => matrix.subarray(index * 32, index * 32 + 32).reduce((sum, value) => sum + value, 0);
  // Row 0 is 'gamma' (one token), row 1 'alpha beta' (two): each token adds log1p(1) unless two share a bucket.
  t.true(Math.abs(row(0) - Math.log1p(1)) < 1e-6);
  t.true(row(1) >= Math.log1p(2) - 1e-6);
  t.throws(() => denseRows(hashed, [2], 32), { message: /example index 2 is outside the split/ });
});

test('mail headers are stripped', (t) => {
  t.is(stripHeaders('From: a@example.com\nSubject: hi\n\nbody text\n'), 'body text\n');
  t.is(stripHeaders('From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n'), 'body\r\n');
  t.is(stripHeaders('From: a@example.com\nSubject: only headers'), '');
});

test('column statistics guard constant columns', (t) => {
  const rows: FeatureRecord[] = [
    { features: [1, 5], label: 'a', line: 2 },
    { features: [3, 5], label: 'b', line: 3 },
  ];
  const { mean, std } = columnStatistics(rows, 2);
  // Column 0: mean 2, population std sqrt(((1-2)^2 + (3-2)^2) / 2) = 1. Column 1 is constant, so std is 1.
  t.deepEqual([...mean], [2, 5]);
  t.deepEqual([...std], [1, 1]);
});

test('text split holds out every third', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-text-');
  const config = defaultConfig();
  config.task = 'text-classification';
  config.data.trainFile = writeLines(directory, 'train.jsonl', reviewLines());
  config.data.heldOutEvery = 3;
  config.model.hashFeatures = 64;
  const data = textClassification.load({ config, options: {}, seed: config.seed }) as Awaited<ReturnType<typeof textClassification.load>>;
  const info = textClassification.describe(data);
  // 48 records, records 3, 6, ..., 48 held out: 16 evaluation and 32 training examples.
  t.is(info.evalSize, 16);
  t.is(info.trainSize, 32);
  t.deepEqual(info.classNames, ['neg', 'pos']);
});
