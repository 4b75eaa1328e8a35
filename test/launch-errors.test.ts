import test from 'ava';
import { launch } from './helpers/launch.js';

const badInvocations: { name: string; args: string[]; mentions: RegExp }[] = [
  { name: 'zero workers', args: ['--gpus', '0'], mentions: /--gpus/ },
  { name: 'non-numeric workers', args: ['--gpus', 'two'], mentions: /two/ },
  { name: 'unknown flag', args: ['--gpu', '2'], mentions: /--gpu/ },
  { name: 'unknown config key', args: ['--set', 'optimizer.learningRate=0.1'], mentions: /optimizer\.learningRate/ },
  { name: 'negative learning rate', args: ['--set', 'optimizer.lr=-1'], mentions: /optimizer\.lr.*-1/ },
  { name: 'wrong type', args: ['--set', 'model.layers="many"'], mentions: /model\.layers/ },
  { name: 'missing config file', args: ['--config', '/nonexistent/ringtrain.json'], mentions: /\/nonexistent\/ringtrain\.json/ },
  { name: 'unknown backend', args: ['--backend', 'tpu'], mentions: /tpu/ },
];

for (const { name, args, mentions } of badInvocations) {
  test(`launcher rejects ${name}`, async (t) => {
    const result = await launch(t, args, { timeoutMs: 30_000 });
    t.not(result.exitCode, 0);
    const lines = result.stderr.trim().split('\n');
    t.is(lines.length, 1, `expected a one-line reason, got:\n${result.stderr}`);
    t.regex(result.stderr, /^ringtrain: /);
    t.regex(result.stderr, mentions);
    t.notRegex(result.stderr, /\n\s+at /, 'no stack trace');
  });
}

test('launcher help lists the flags', async (t) => {
  const result = await launch(t, ['--help'], { timeoutMs: 30_000 });
  t.is(result.exitCode, 0);
  for (const flag of ['--gpus', '--config', '--max-steps', '--epochs', '--seed', '--run-dir', '--backend', '--set']) {
    t.true(result.stdout.includes(flag), `help does not mention ${flag}`);
  }
});
