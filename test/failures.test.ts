import test from 'ava';
import { readFileSync, truncateSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { launch, pidsInLog, readSafetensors, runningPids, temporaryRunDir, tinyRunFlags, waitForLogRecord, waitUntilGone } from './helpers/launch.js';

const checkpointFlags = ['--set', 'checkpoint.every=4', '--set', 'checkpoint.keep=2'];

function sameBits(t: import('ava').ExecutionContext, leftDir: string, rightDir: string): void {
  const left = readSafetensors(join(leftDir, 'weights.safetensors'));
  const right = readSafetensors(join(rightDir, 'weights.safetensors'));
  t.deepEqual([...left.keys()], [...right.keys()]);
  for (const [name, values] of left) {
    const other = right.get(name) as Float32Array;
    const leftBytes = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
    const rightBytes = Buffer.from(other.buffer, other.byteOffset, other.byteLength);
    t.true(leftBytes.equals(rightBytes), `parameter ${name} differs`);
  }
}

test.serial('restart after SIGKILL matches uninterrupted run', async (t) => {
  t.timeout(180_000);
  const args = ['--gpus', '2', '--max-steps', '12', ...tinyRunFlags, ...checkpointFlags];
  const reference = await launch(t, args);
  t.is(reference.exitCode, 0, reference.stderr);

  const restarted = await launch(t, [...args, '--max-restarts', '1'], { env: { RINGTRAIN_FAULT_KILL: '1:6' } });
  t.is(restarted.exitCode, 0, restarted.stdout.slice(-3000));
  t.regex(restarted.stdout, /killed by SIGKILL during step 6/);
  t.regex(restarted.stdout, /restarting the worker group from the latest checkpoint/);
  t.regex(restarted.stdout, /resuming from checkpoint .*step-000004\.ckpt/);
  sameBits(t, reference.runDir, restarted.runDir);
  t.deepEqual(runningPids(pidsInLog(restarted.runDir)), []);
});

test.serial('resume flag continues a failed run', async (t) => {
  t.timeout(180_000);
  const args = ['--gpus', '2', '--max-steps', '12', ...tinyRunFlags, ...checkpointFlags];
  const reference = await launch(t, args);
  t.is(reference.exitCode, 0, reference.stderr);

  const failed = await launch(t, args, { env: { RINGTRAIN_FAULT_KILL: '0:7' } });
  t.is(failed.exitCode, 1);
  t.regex(failed.stdout, /run failed after 1 attempt\(s\); resume from .*step-000004\.ckpt/);
  t.deepEqual(runningPids(pidsInLog(failed.runDir)), []);

  t.regex(failed.stdout, /resume="npm run launch -- --gpus 2 --resume /);

  // The resumed run reuses the saved config and the worker count of the checkpoint, so no other flag is needed.
  const resumed = await launch(t, ['--resume', failed.runDir], { runDir: failed.runDir });
  t.is(resumed.exitCode, 0, resumed.stdout.slice(-3000));
  t.regex(resumed.stdout, /training resumed .*worldSize=2/);
  t.notRegex(resumed.stdout, /resuming a checkpoint written by/);
  sameBits(t, reference.runDir, resumed.runDir);
});

test.serial('restarts used up end with summary', async (t) => {
  t.timeout(120_000);
  // No restarts allowed and a crash before the first checkpoint (step 4): the summary has nothing to resume from.
  const result = await launch(t, ['--gpus', '2', '--max-steps', '12', ...tinyRunFlags, ...checkpointFlags], {
    env: { RINGTRAIN_FAULT_KILL: '1:2' },
  });
  t.is(result.exitCode, 1);
  t.regex(result.stdout, /run failed after 1 attempt\(s\); no checkpoint was written/);
  t.regex(result.stdout, /local rank 1, pid \d+\) was killed by SIGKILL during step 2/);
  t.deepEqual(runningPids(pidsInLog(result.runDir)), []);
});

test.serial('hung worker detected by heartbeat', async (t) => {
  t.timeout(120_000);
  const started = Date.now();
  const result = await launch(t, ['--gpus', '2', '--max-steps', '50', ...tinyRunFlags, '--set', 'health.heartbeatIntervalMs=200', '--set', 'health.heartbeatTimeoutMs=2000', '--set', 'allreduce.timeoutMs=60000'], {
    env: { RINGTRAIN_FAULT_HANG: '1:3' },
  });
  const elapsedMs = Date.now() - started;
  t.is(result.exitCode, 1);
  t.regex(result.stdout, /rank 1 \(node 0, local rank 1, pid \d+\) sent no heartbeat for \d+ ms during step 3/);
  // 2 s to detect, up to 10 s grace before the hung process is killed, plus start-up.
  t.true(elapsedMs < 40_000, `took ${elapsedMs} ms`);
  t.deepEqual(runningPids(pidsInLog(result.runDir)), []);
});

test.serial('non-finite gradient skipped on every rank', async (t) => {
  t.timeout(120_000);
  const result = await launch(t, ['--gpus', '2', '--max-steps', '6', ...tinyRunFlags], { env: { RINGTRAIN_FAULT_NAN: '0:3' } });
  t.is(result.exitCode, 0, result.stdout.slice(-2000));
  const metrics = readFileSync(join(result.runDir, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((line) => JSON.parse(line) as { step: number; skipped: boolean; skippedSteps: number });
  t.deepEqual(
    metrics.filter((record) => record.skipped).map((record) => record.step),
    [3],
  );
  t.is(metrics.at(-1)?.skippedSteps, 1);
  t.deepEqual(runningPids(pidsInLog(result.runDir)), []);
});

test.serial('non-finite gradient stops under error policy', async (t) => {
  t.timeout(120_000);
  const result = await launch(t, ['--gpus', '2', '--max-steps', '6', ...tinyRunFlags, '--set', 'train.nonFinite=error'], {
    env: { RINGTRAIN_FAULT_NAN: '1:3' },
  });
  t.is(result.exitCode, 1);
  t.regex(result.stdout, /failed at step 3: the reduced loss \([^)]*\) or gradient norm \(NaN\) is not finite/);
  t.deepEqual(runningPids(pidsInLog(result.runDir)), []);
});

test.serial('SIGINT checkpoints and exits', async (t) => {
  t.timeout(120_000);
  const runDir = temporaryRunDir(t);
  const running = launch(t, ['--gpus', '2', '--max-steps', '100000', ...tinyRunFlags, '--set', 'checkpoint.every=1000'], { runDir });
  const launcherPid = await waitForLogRecord(runDir, (record) => record.role === 'launcher' && typeof record.pid === 'number', (record) => record.pid as number);
  await waitForLogRecord(runDir, (record) => record.msg === 'progress' && (record.step as number) >= 3, () => true);
  // The launcher leads its own process group, so this reaches every process, as Ctrl-C in a terminal does.
  process.kill(-launcherPid, 'SIGINT');

  const result = await running;
  t.is(result.exitCode, 130);
  t.regex(result.stdout, /stop requested; checkpointing at the next step boundary/);
  t.regex(result.stdout, /run stopped/);
  t.truthy(statSync(join(runDir, 'checkpoints', 'latest')));
  t.deepEqual(runningPids(pidsInLog(runDir)), []);
});

test.serial('second SIGINT kills at once', async (t) => {
  t.timeout(120_000);
  const runDir = temporaryRunDir(t);
  // Checkpoints every step would let the first signal finish quickly; a slow stop shows the second one acting.
  const running = launch(t, ['--gpus', '2', '--max-steps', '100000', ...tinyRunFlags, '--set', 'health.heartbeatTimeoutMs=60000'], {
    runDir,
    env: { RINGTRAIN_FAULT_HANG: '1:4' },
  });
  const launcherPid = await waitForLogRecord(runDir, (record) => record.role === 'launcher' && typeof record.pid === 'number', (record) => record.pid as number);
  await waitForLogRecord(runDir, (record) => record.msg === 'fault injection: blocking this worker forever', () => true);

  // Rank 1 is stuck, so the first signal's graceful stop cannot complete; the second must end everything.
  process.kill(-launcherPid, 'SIGINT');
  await waitForLogRecord(runDir, (record) => record.msg === 'stop requested; checkpointing at the next step boundary', () => true);
  const secondSignalAt = Date.now();
  process.kill(-launcherPid, 'SIGINT');

  const result = await running;
  t.is(result.exitCode, 130);
  t.true(Date.now() - secondSignalAt < 10_000, 'the second signal did not end the run quickly');
  // SIGKILL is delivered at once, but the kernel may need a moment to tear the processes down.
  t.deepEqual(await waitUntilGone(pidsInLog(runDir)), []);
});

test.serial('killed coordinator ends every worker', async (t) => {
  t.timeout(120_000);
  const runDir = temporaryRunDir(t);
  const running = launch(t, ['--gpus', '2', '--max-steps', '100000', ...tinyRunFlags], { runDir });
  const coordinatorPid = await waitForLogRecord(
    runDir,
    (record) => record.role === 'coordinator' && record.msg === 'progress' && (record.step as number) >= 2,
    (record) => record.pid as number,
  );
  process.kill(coordinatorPid, 'SIGKILL');

  const result = await running;
  t.is(result.exitCode, 1);
  t.deepEqual(runningPids(pidsInLog(runDir)), []);
});

test.serial('corrupted checkpoint rejected on resume', async (t) => {
  t.timeout(120_000);
  const first = await launch(t, ['--gpus', '1', '--max-steps', '4', ...tinyRunFlags, ...checkpointFlags]);
  t.is(first.exitCode, 0, first.stderr);
  const file = join(first.runDir, 'checkpoints', 'step-000004.ckpt');
  truncateSync(file, statSync(file).size - 100);

  const resumed = await launch(t, ['--gpus', '1', '--resume', first.runDir], { runDir: first.runDir });
  t.is(resumed.exitCode, 2);
  t.regex(resumed.stderr, /^ringtrain: cannot resume from /);
  t.regex(resumed.stderr, /step-000004\.ckpt/);
  t.regex(resumed.stderr, /truncated/);
});
