import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, pidsInLog, runningPids } from './helpers/launch.js';

const tinyModel = [
  '--backend', 'cpu',
  '--set', 'model.contextLength=16',
  '--set', 'model.dModel=16',
  '--set', 'model.heads=2',
  '--set', 'model.layers=1',
  '--set', 'model.ffDim=32',
  '--set', 'train.globalBatchSize=16',
  '--set', 'optimizer.lr=0.01',
  '--set', 'optimizer.warmupSteps=5',
  '--set', 'train.checksumEvery=5',
];

test.serial('character model learns plain text', async (t) => {
  t.timeout(120_000);
  const directory = mkdtempSync(join(tmpdir(), 'ringtrain-charlm-'));
  t.teardown(() => rmSync(directory, { recursive: true, force: true }));
  const sentence = 'the quick brown fox jumps over the lazy dog\n';
  const trainFile = join(directory, 'train.txt');
  const evalFile = join(directory, 'eval.txt');
  writeFileSync(trainFile, sentence.repeat(300));
  writeFileSync(evalFile, sentence.repeat(20));

  const result = await launch(t, [
    '--gpus', '2',
    '--task', 'brown-charlm',
    '--set', `data.trainFile=${trainFile}`,
    '--set', `data.evalFile=${evalFile}`,
    '--set', 'taskOptions.minCharacterCount=1',
    '--max-steps', '60',
    ...tinyModel,
  ]);
  t.is(result.exitCode, 0, `${result.stderr}\n${result.stdout.slice(-2000)}`);
  const report = JSON.parse(readFileSync(join(result.runDir, 'eval-report.json'), 'utf8')) as { perplexity: number; loss: number };
  // The text has 27 distinct characters plus the unknown id, so a model that learned nothing has perplexity
  // about 28. The sentence repeats, so every character after the first few is predictable from the context;
  // 60 steps of 16 windows bring the held-out perplexity far below 28 (about 1.5 in trial runs).
  t.true(Number.isFinite(report.perplexity));
  t.true(report.perplexity < 8, `perplexity ${report.perplexity}`);
  t.true(Math.abs(report.perplexity - Math.exp(report.loss)) < 1e-9);
  t.deepEqual(runningPids(pidsInLog(result.runDir)), []);
});

test.serial('text shorter than one window is rejected', async (t) => {
  t.timeout(60_000);
  const directory = mkdtempSync(join(tmpdir(), 'ringtrain-charlm-'));
  t.teardown(() => rmSync(directory, { recursive: true, force: true }));
  const trainFile = join(directory, 'short.txt');
  writeFileSync(trainFile, 'abc\n'.repeat(3));
  const result = await launch(t, ['--gpus', '1', '--task', 'brown-charlm', '--set', `data.trainFile=${trainFile}`, '--set', 'coordinator.joinTimeoutMs=120000', ...tinyModel]);
  t.is(result.exitCode, 2);
  t.regex(result.stderr, /too (short|few lines)/);
});
