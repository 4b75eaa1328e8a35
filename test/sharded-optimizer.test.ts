import test, { type ExecutionContext } from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch, pidsInLog, readSafetensors, runningPids, tinyRunFlags, type LaunchResult } from './helpers/launch.js';

const sharded = ['--set', 'optimizer.shardState=true'];
const unsharded = ['--set', 'optimizer.shardState=false'];

/** Launches a tiny run and fails the test unless it exits with 0 and leaves no process behind. */
async function run(t: ExecutionContext, args: string[], options: Parameters<typeof launch>[2] = {}): Promise<LaunchResult> {
  const result = await launch(t, [...args, ...tinyRunFlags], options);
  t.is(result.exitCode, 0, `launch ${args.join(' ')} failed:\n${result.stderr}\n${result.stdout.slice(-3000)}`);
  t.deepEqual(runningPids(pidsInLog(result.runDir)), []);
  return result;
}

/** Returns the largest absolute difference between the final weights of two runs. */
function maxDifference(t: ExecutionContext, left: LaunchResult, right: LaunchResult): number {
  const first = readSafetensors(join(left.runDir, 'weights.safetensors'));
  const second = readSafetensors(join(right.runDir, 'weights.safetensors'));
  t.deepEqual([...second.keys()], [...first.keys()]);
  let largest = 0;
  for (const [name, values] of first) {
    const other = second.get(name) as Float32Array;
    for (let i = 0; i < values.length; i++) largest = Math.max(largest, Math.abs((values[i] as number) - (other[i] as number)));
  }
  return largest;
}

/** Reports whether two runs wrote bit-identical final tensors (the file headers differ in the run id). */
function sameWeights(left: LaunchResult, right: LaunchResult): boolean {
  const first = readSafetensors(join(left.runDir, 'weights.safetensors'));
  const second = readSafetensors(join(right.runDir, 'weights.safetensors'));
  if ([...first.keys()].join() !== [...second.keys()].join()) return false;
  return [...first].every(([name, values]) => {
    const other = second.get(name) as Float32Array;
    return Buffer.from(values.buffer, values.byteOffset, values.byteLength).equals(Buffer.from(other.buffer, other.byteOffset, other.byteLength));
  });
}

/** Returns the per-step losses of a run's metrics file. */
function losses(result: LaunchResult): number[] {
  return readFileSync(join(result.runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => (JSON.parse(line) as { loss: number }).loss);
}

// Every launch checks parameter checksums across ranks after each step (train.checksumEvery defaults to 1), so
// a run that exits with 0 had bitwise identical parameters on every rank at every step.
test.serial('sharded optimizer matches unsharded runs', async (t) => {
  t.timeout(300_000);
  const steps = ['--max-steps', '4', '--seed', '7'];

  const single = await run(t, ['--gpus', '1', ...steps, ...unsharded]);
  const singleSharded = await run(t, ['--gpus', '1', ...steps, ...sharded]);
  // One worker ignores the setting, so the update is the same code path with the same inputs.
  t.true(sameWeights(single, singleSharded), 'one sharded worker differs from one unsharded worker');

  for (const workers of ['2', '3']) {
    const plain = await run(t, ['--gpus', workers, ...steps, ...unsharded]);
    const split = await run(t, ['--gpus', workers, ...steps, ...sharded]);
    // Sharding changes only the float32 summation order of the last gradient bucket (the loss count no longer
    // shares it) and the float64 order of the norm's sum of squares: relative differences of about 1e-7 per
    // gradient. As in the world-size comparison, 4 AdamW steps of lr 3e-3 keep the effect far below 1e-4.
    const tolerance = 1e-4;
    const difference = maxDifference(t, plain, split);
    t.true(difference <= tolerance, `${workers} workers: sharded differs from unsharded by ${difference} (> ${tolerance})`);
    const referenceDifference = maxDifference(t, single, split);
    t.true(referenceDifference <= tolerance, `${workers} sharded workers differ from one worker by ${referenceDifference}`);
    // The loss of step 1 comes before any update. Its sum adds N non-negative float32 shard sums with N - 1
    // roundings, so two summation orders differ by at most 2 (N - 1) 2^-24 relative: under 1e-6 for N <= 3.
    const [splitLoss, plainLoss] = [losses(split)[0] as number, losses(plain)[0] as number];
    t.true(Math.abs(splitLoss - plainLoss) <= 1e-6 * plainLoss, `${workers} workers: step 1 loss ${splitLoss} vs ${plainLoss}`);
  }
});

test.serial('sharded run is deterministic', async (t) => {
  t.timeout(180_000);
  const args = ['--gpus', '3', '--max-steps', '4', '--seed', '11', ...sharded];
  const first = await run(t, args);
  const second = await run(t, args);
  t.true(sameWeights(first, second), 'two identical sharded runs wrote different weights');
  t.deepEqual(losses(second), losses(first));
});

test.serial('sharded resume continues bit for bit', async (t) => {
  t.timeout(240_000);
  // Checkpoints at steps 4 and 8; the moments of both ranks must reach the checkpoint for the resumed run
  // to repeat steps 5 to 12 exactly.
  const args = ['--gpus', '2', '--max-steps', '12', '--set', 'checkpoint.every=4', '--set', 'checkpoint.keep=2', ...sharded];
  const reference = await run(t, args);

  const failed = await launch(t, [...args, ...tinyRunFlags], { env: { RINGTRAIN_FAULT_KILL: '1:7' } });
  t.is(failed.exitCode, 1);
  t.regex(failed.stdout, /resume from .*step-000004\.ckpt/);

  const resumed = await launch(t, ['--resume', failed.runDir], { runDir: failed.runDir });
  t.is(resumed.exitCode, 0, resumed.stdout.slice(-3000));
  t.regex(resumed.stdout, /training resumed/);
  t.true(sameWeights(reference, resumed), 'the resumed sharded run differs from the uninterrupted one');
  t.deepEqual(runningPids(pidsInLog(resumed.runDir)), []);
});

test.serial('sharded checkpoint resumes unsharded', async (t) => {
  t.timeout(240_000);
  // The checkpoint contains the complete moments, so a run without sharding can continue it; its result then
  // equals a run that used no sharding from the start, up to the summation-order tolerance derived above.
  const args = ['--gpus', '2', '--max-steps', '8', '--set', 'checkpoint.every=4'];
  const plain = await run(t, [...args, ...unsharded]);
  const failed = await launch(t, [...args, ...sharded, ...tinyRunFlags], { env: { RINGTRAIN_FAULT_KILL: '0:6' } });
  t.is(failed.exitCode, 1);
  const resumed = await launch(t, ['--resume', failed.runDir, '--set', 'optimizer.shardState=false'], { runDir: failed.runDir });
  t.is(resumed.exitCode, 0, resumed.stdout.slice(-3000));
  const resumedConfig = JSON.parse(readFileSync(join(failed.runDir, 'config.json'), 'utf8')) as { optimizer: { shardState: boolean } };
  t.false(resumedConfig.optimizer.shardState, 'the resumed run did not turn sharding off');
  const difference = maxDifference(t, plain, resumed);
  t.true(difference <= 1e-4, `resumed unsharded run differs by ${difference}`);
});

test.serial('sharded non-finite step skipped everywhere', async (t) => {
  t.timeout(120_000);
  // Rank 1 puts NaN into gradient element 0, whose reduced sum rank 2 owns (chunk 0 of bucket 0 with 3 ranks).
  // Ranks 0 and 1 see it only through the summed norm, yet all three must skip step 3; the per-step checksum
  // check would stop the run if one rank had updated.
  const result = await run(t, ['--gpus', '3', '--max-steps', '5', ...sharded], { env: { RINGTRAIN_FAULT_NAN: '1:3' } });
  const records = readFileSync(join(result.runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { step: number; skipped: boolean });
  t.deepEqual(
    records.filter((record) => record.skipped).map((record) => record.step),
    [3],
  );
  t.is(records.length, 5);
});
