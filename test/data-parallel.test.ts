import test from 'ava';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch, pidsInLog, readSafetensors, runningPids, temporaryRunDir, tinyRunFlags } from './helpers/launch.js';

// Three launches of 1, 2 and 3 workers: each spawns a coordinator and workers that load tfjs.
test.serial('N workers match one worker', async (t) => {
  t.timeout(240_000);
  const steps = 4;
  const runs = [];
  for (const workers of [1, 2, 3]) {
    const result = await launch(t, ['--gpus', String(workers), '--max-steps', String(steps), '--seed', '7', ...tinyRunFlags]);
    t.is(result.exitCode, 0, `launch with ${workers} workers failed:\n${result.stderr}\n${result.stdout.slice(-3000)}`);
    runs.push(result);
  }

  const reference = readSafetensors(join((runs[0] as (typeof runs)[number]).runDir, 'weights.safetensors'));
  t.true(reference.size > 0);
  // The only difference between world sizes is the order of float32 additions in the all-reduce (rounding of
  // about 1e-7 relative per sum). After 4 AdamW steps of lr 2e-3 those differences stay far below 1e-4.
  const tolerance = 1e-4;
  for (const run of runs.slice(1)) {
    const weights = readSafetensors(join(run.runDir, 'weights.safetensors'));
    t.deepEqual([...weights.keys()], [...reference.keys()]);
    let maxDifference = 0;
    let changed = 0;
    for (const [name, values] of reference) {
      const other = weights.get(name) as Float32Array;
      for (let i = 0; i < values.length; i++) {
        maxDifference = Math.max(maxDifference, Math.abs((values[i] as number) - (other[i] as number)));
      }
      changed += values.length;
    }
    t.true(changed > 0);
    t.true(maxDifference <= tolerance, `max parameter difference ${maxDifference} exceeds ${tolerance}`);
  }

  // One initial-parameter snapshot is not enough to trust the comparison: training must have moved them.
  const metrics = readFileSync(join((runs[1] as (typeof runs)[number]).runDir, 'metrics.jsonl'), 'utf8').trim().split('\n');
  t.is(metrics.length, steps);
  for (const run of runs) t.deepEqual(runningPids(pidsInLog(run.runDir)), []);
});

test.serial('run writes report, metrics and config', async (t) => {
  t.timeout(120_000);
  const result = await launch(t, ['--gpus', '2', '--max-steps', '3', ...tinyRunFlags]);
  t.is(result.exitCode, 0, result.stderr);
  for (const file of ['config.json', 'logs.jsonl', 'metrics.jsonl', 'eval-report.json', 'eval-report.txt', 'weights.safetensors']) {
    t.true(existsSync(join(result.runDir, file)), `${file} is missing`);
  }
  const report = JSON.parse(readFileSync(join(result.runDir, 'eval-report.json'), 'utf8')) as { accuracy: number };
  t.true(report.accuracy >= 0 && report.accuracy <= 1);
  t.regex(result.stdout, /accuracy/);

  // Every worker's lines reach the merged log with its rank.
  const ranks = new Set(
    readFileSync(join(result.runDir, 'logs.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as { role: string; rank?: number | null })
      .filter((record) => record.role === 'worker' && typeof record.rank === 'number')
      .map((record) => record.rank),
  );
  t.deepEqual([...ranks].sort(), [0, 1]);
  t.deepEqual(runningPids(pidsInLog(result.runDir)), []);
});

test.serial('checksum mismatch stops the run', async (t) => {
  t.timeout(120_000);
  const result = await launch(t, ['--gpus', '3', '--max-steps', '6', ...tinyRunFlags], { env: { RINGTRAIN_FAULT_PERTURB: '2:2' } });
  t.is(result.exitCode, 1);
  t.regex(result.stdout, /parameters differ across ranks after step 2/);
  t.regex(result.stdout, /rank 2 has [0-9a-f]{16}/);
  const metrics = readFileSync(join(result.runDir, 'metrics.jsonl'), 'utf8').trim().split('\n');
  t.is(metrics.length, 1, 'only step 1 completes');
  t.deepEqual(runningPids(pidsInLog(result.runDir)), []);
});

test.serial('killed worker fails the run', async (t) => {
  t.timeout(120_000);
  const runDir = temporaryRunDir(t);
  const running = launch(t, ['--gpus', '2', '--epochs', '10000', '--max-steps', '100000', ...tinyRunFlags], { runDir, timeoutMs: 100_000 });

  // Wait (bounded) until rank 1 has logged and training has passed step 2, then kill rank 1's process.
  let victim: number | null = null;
  for (let attempt = 0; attempt < 600 && victim === null; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    victim = findWorkerPid(runDir, 1, 2);
  }
  t.not(victim, null, 'rank 1 never reached step 2');
  process.kill(victim as number, 'SIGKILL');

  const result = await running;
  t.is(result.exitCode, 1);
  t.regex(result.stdout, /run failed/);
  t.regex(result.stdout, /run failed: rank 1 \(node 0, local rank 1, pid \d+\) was killed by SIGKILL during step \d+/);
  t.deepEqual(runningPids(pidsInLog(result.runDir)), []);
});

/** Returns the pid of the worker with `rank` once the coordinator has logged progress past `step`. */
function findWorkerPid(runDir: string, rank: number, step: number): number | null {
  let text: string;
  try {
    text = readFileSync(join(runDir, 'logs.jsonl'), 'utf8');
  } catch {
    return null;
  }
  let pid: number | null = null;
  let passed = false;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let record: { role?: string; rank?: number | null; pid?: number; msg?: string; step?: number };
    try {
      record = JSON.parse(line) as typeof record;
    } catch {
      continue; // the last line may still be half-written
    }
    if (record.role === 'worker' && record.rank === rank && typeof record.pid === 'number') pid = record.pid;
    if (record.msg === 'progress' && (record.step ?? 0) >= step) passed = true;
  }
  return passed ? pid : null;
}
