import test, { type ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { launch, pidsInLog, readSafetensors, runningPids, tinyRunFlags, type LaunchResult } from './helpers/launch.js';

const repositoryRoot = fileURLToPath(new URL('../../', import.meta.url));
// A step reads few rows of a 4096-row suffix table, so most gradient blocks are zero.
const sparseModel = ['--set', 'model.suffixBuckets=4096'];

async function run(t: ExecutionContext, args: string[]): Promise<LaunchResult> {
  const result = await launch(t, [...tinyRunFlags, ...args]);
  t.is(result.exitCode, 0, `launch ${args.join(' ')} failed:\n${result.stderr}\n${result.stdout.slice(-3000)}`);
  t.deepEqual(runningPids(pidsInLog(result.runDir)), []);
  return result;
}

function weights(result: LaunchResult): Map<string, Float32Array> {
  return readSafetensors(join(result.runDir, 'weights.safetensors'));
}

/** Returns the sent fraction that the workers logged when they first packed their gradients, or null. */
function sentFraction(result: LaunchResult): number | null {
  const match = /exchanging only the gradient blocks[^\n]*sentFraction=([\d.]+)/.exec(result.stdout);
  return match === null ? null : Number(match[1]);
}

// Every launch compares parameter checksums across ranks after each step, so a run that exits with 0 kept
// bitwise identical parameters on every rank.
test.serial('skipZeroBlocks keeps 2-worker bits', async (t) => {
  t.timeout(300_000);
  const steps = ['--gpus', '2', '--max-steps', '5', '--seed', '3', ...sparseModel];
  const packed = await run(t, [...steps, '--set', 'allreduce.skipZeroBlocks=true']);
  const full = await run(t, [...steps, '--set', 'allreduce.skipZeroBlocks=false']);
  const fraction = sentFraction(packed);
  t.not(fraction, null, 'the packed run did not log its exchange');
  t.true((fraction as number) < 0.5, `sent fraction ${fraction}`);
  t.is(sentFraction(full), null);
  t.regex(packed.stdout, /packed gradient exchange summary[^\n]*packedSteps=5 fullSteps=0 meanSentFraction=0\.\d+/);
  const left = weights(packed);
  const right = weights(full);
  t.deepEqual([...left.keys()], [...right.keys()]);
  for (const [name, values] of left) {
    const other = right.get(name) as Float32Array;
    t.true(Buffer.from(values.buffer, values.byteOffset, values.byteLength).equals(Buffer.from(other.buffer, other.byteOffset, other.byteLength)), name);
  }
});

test.serial('skipZeroBlocks with 3 workers', async (t) => {
  t.timeout(300_000);
  const steps = ['--gpus', '3', '--max-steps', '4', '--seed', '3', ...sparseModel];
  const packed = await run(t, [...steps, '--set', 'allreduce.skipZeroBlocks=true', '--set', 'optimizer.shardState=false']);
  const full = await run(t, [...steps, '--set', 'allreduce.skipZeroBlocks=false', '--set', 'optimizer.shardState=false']);
  t.not(sentFraction(packed), null);
  // With three ranks the packed layout changes which rank adds which chunk first: float32 rounding only.
  let largest = 0;
  const right = weights(full);
  for (const [name, values] of weights(packed)) {
    const other = right.get(name) as Float32Array;
    for (let i = 0; i < values.length; i++) largest = Math.max(largest, Math.abs((values[i] as number) - (other[i] as number)));
  }
  t.true(largest <= 1e-4, `largest difference ${largest}`);
});

test.serial('dense gradients turn skipping off', async (t) => {
  t.timeout(300_000);
  const result = await launch(t, [
    '--gpus', '2',
    '--config', join(repositoryRoot, 'examples', 'two-moons.json'),
    '--backend', 'cpu',
    '--max-steps', '24',
    '--set', 'allreduce.skipZeroBlocks=true',
  ]);
  t.is(result.exitCode, 0, result.stderr);
  t.regex(result.stdout, /exchanging full gradients from now on \(allreduce\.skipZeroBlocks\)/);
  t.is(sentFraction(result), null);
  // Every step exchanged full gradients: the 20 before the switch-off and the 4 after it.
  t.regex(result.stdout, /packed gradient exchange summary[^\n]*packedSteps=0 fullSteps=24 /);
  t.true(readFileSync(join(result.runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').length >= 24);
});
