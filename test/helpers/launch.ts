import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';

/** Root of the source tree (tests run from dist/test/helpers). */
export const repositoryRoot = fileURLToPath(new URL('../../../', import.meta.url));
const launcherEntry = join(repositoryRoot, 'dist', 'src', 'launcher', 'main.js');

/** A small tagger on the hand-written corpus: a few steps take seconds on the cpu backend. */
export const tinyRunFlags = [
  '--backend', 'cpu',
  '--set', `data.corpus=${join(repositoryRoot, 'test', 'fixtures', 'brown-mini')}`,
  '--set', 'data.heldOutEvery=2',
  '--set', 'data.minWordCount=1',
  '--set', 'model.dModel=16',
  '--set', 'model.heads=2',
  '--set', 'model.layers=1',
  '--set', 'model.ffDim=32',
  '--set', 'model.suffixBuckets=64',
  '--set', 'train.globalBatchSize=6',
  '--set', 'train.epochs=1000',
  '--set', 'train.logEvery=1',
  '--set', 'optimizer.warmupSteps=1',
  '--set', 'coordinator.joinTimeoutMs=60000',
];

export interface LaunchResult {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  runDir: string;
}

/** Creates a temporary run directory that is removed when the test ends. */
export function temporaryRunDir(t: ExecutionContext): string {
  const directory = mkdtempSync(join(tmpdir(), 'ringtrain-test-'));
  t.teardown(() => rmSync(directory, { recursive: true, force: true }));
  return join(directory, 'run');
}

/**
 * Runs the launcher as a user would and waits for it to exit. The whole process group is killed if it runs past
 * `timeoutMs` or when the test ends, so no coordinator or worker outlives the test.
 */
export function launch(t: ExecutionContext, args: string[], options: { timeoutMs?: number; env?: Record<string, string>; runDir?: string } = {}): Promise<LaunchResult> {
  const runDir = options.runDir ?? temporaryRunDir(t);
  // Workers put their ring sockets in TMPDIR. A worker killed by a signal cannot remove its socket, so each launch
  // gets a temporary directory of its own, removed when the test ends.
  const socketParent = mkdtempSync(join(tmpdir(), 'ringtrain-tmp-'));
  t.teardown(() => rmSync(socketParent, { recursive: true, force: true }));
  const child = spawn(process.execPath, [launcherEntry, '--run-dir', runDir, ...args], {
    cwd: repositoryRoot,
    env: { ...process.env, TMPDIR: socketParent, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  const killGroup = (): void => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
    } catch {
      // The group has already exited.
    }
  };
  t.teardown(killGroup);

  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));

  return new Promise((resolve) => {
    const timer = setTimeout(killGroup, options.timeoutMs ?? 120_000);
    child.once('close', (exitCode, signal) => {
      clearTimeout(timer);
      resolve({ exitCode, signal, stdout, stderr, runDir });
    });
  });
}

/** Returns the pids that appear in a run's merged log: the launcher, coordinator and every worker. */
export function pidsInLog(runDir: string): number[] {
  const pids = new Set<number>();
  for (const line of readFileSync(join(runDir, 'logs.jsonl'), 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    const record = JSON.parse(line) as { pid?: number };
    if (typeof record.pid === 'number') pids.add(record.pid);
  }
  return [...pids];
}

/** Returns the pids from `pids` that still run. A zombie (exited, not yet reaped by its new parent) does not count. */
export function runningPids(pids: readonly number[]): number[] {
  return pids.filter((pid) => {
    try {
      process.kill(pid, 0);
    } catch {
      return false;
    }
    try {
      // The state is the field after the parenthesised command name in /proc/PID/stat.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
    } catch {
      return false;
    }
  });
}

/** Waits (at most `timeoutMs`) until none of `pids` runs, and returns those still running then. */
export async function waitUntilGone(pids: readonly number[], timeoutMs = 5000): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let left = runningPids(pids);
  while (left.length > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    left = runningPids(pids);
  }
  return left;
}

/** Reads a safetensors file into a map from tensor name to values. */
export function readSafetensors(path: string): Map<string, Float32Array> {
  const bytes = readFileSync(path);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { dtype: string; data_offsets: [number, number] }>;
  const dataStart = 8 + headerLength;
  const tensors = new Map<string, Float32Array>();
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const [begin, end] = entry.data_offsets;
    const copy = new Uint8Array(bytes.subarray(dataStart + begin, dataStart + end));
    tensors.set(name, new Float32Array(copy.buffer));
  }
  return tensors;
}

/** One parsed line of a run's logs.jsonl. */
export type LogRecord = Record<string, unknown>;

/**
 * Polls `<runDir>/logs.jsonl` every 100 ms, for at most `timeoutMs`, until a line matches `predicate`, and returns
 * `pick` of it. Rejects when the time runs out.
 */
export async function waitForLogRecord<T>(
  runDir: string,
  predicate: (record: LogRecord) => boolean,
  pick: (record: LogRecord) => T,
  timeoutMs = 60_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    let text = '';
    try {
      text = readFileSync(join(runDir, 'logs.jsonl'), 'utf8');
    } catch {
      // The launcher has not created the log yet.
    }
    for (const line of text.split('\n')) {
      if (line.trim() === '') continue;
      let record: LogRecord;
      try {
        record = JSON.parse(line) as LogRecord;
      } catch {
        continue; // the last line may still be half-written
      }
      if (predicate(record)) return pick(record);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`no matching line in ${join(runDir, 'logs.jsonl')} within ${timeoutMs} ms`);
}

/**
 * Returns [rank, [previousTransport, nextTransport]] for each rank, in rank order, from the 'ring connected'
 * lines of the runs' logs.jsonl files.
 */
export function ringTransportsByRank(runDirs: string[]): Array<[number, [unknown, unknown]]> {
  const byRank = new Map<number, [unknown, unknown]>();
  for (const runDir of runDirs) {
    for (const line of readFileSync(join(runDir, 'logs.jsonl'), 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      const record = JSON.parse(line) as LogRecord;
      if (record.msg === 'ring connected') {
        byRank.set(record.rank as number, [record.previousTransport, record.nextTransport]);
      }
    }
  }
  return [...byRank].sort(([a], [b]) => a - b);
}
