/**
 * `npm run bench:train -- --gpus 1,2 [--steps 80] [--per-worker-batch 64] [--backend wasm] [--set KEY=VALUE ...]
 *   [--compare KEY=V1,V2] [--rounds 1] [--json FILE]`
 *
 * Runs the default job through the real launcher for each worker count, with the per-worker batch fixed (weak
 * scaling), and reports the median per-step time split into phases, samples per second, the weak-scaling
 * efficiency against the first worker count, and model FLOP utilisation (the timed steps' matMul FLOPs over
 * their total time) against this backend's measured matMul peak. The first 10 steps of each run are treated as warm-up and left out. `--compare` runs every
 * worker count once per value of one config key, and `--rounds` repeats the whole sequence, so variants
 * alternate and share the machine's load as evenly as the runs allow.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

const WARMUP_STEPS = 10;
const repositoryRoot = fileURLToPath(new URL('../../', import.meta.url));
const launcherEntry = join(repositoryRoot, 'dist', 'src', 'launcher', 'main.js');

interface StepRecord {
  step: number;
  samples: number;
  tokens: number;
  stepMs: number;
  timings: { dataWaitMs: number; computeMs: number; allReduceMs: number; optimizerMs: number }[];
}

/** Median phase times of one run, in milliseconds per step. */
interface RunProfile {
  round: number;
  /** The compared setting, KEY=VALUE, or '' without --compare. */
  variant: string;
  workers: number;
  globalBatchSize: number;
  steps: number;
  stepMs: number;
  dataWaitMs: number;
  computeMs: number;
  transferMs: number;
  peerWaitMs: number;
  optimizerMs: number;
  coordinationMs: number;
  samplesPerSecond: number;
  tokensPerStep: number;
  modelGflopPerStep: number;
  achievedGflops: number;
  mfu: number;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] as number) : ((sorted[middle - 1] as number) + (sorted[middle] as number)) / 2;
}

function runLauncher(args: string[], timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [launcherEntry, ...args], { cwd: repositoryRoot, stdio: ['ignore', 'ignore', 'inherit'] });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`launcher ${args.join(' ')} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code ?? 1);
    });
  });
}

/** Reads the 2-D weight shapes of the saved model: every matMul kernel, excluding embedding tables. */
function kernelShapes(weightsFile: string): number[][] {
  const bytes = readFileSync(weightsFile);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, { shape?: number[] }>;
  return Object.entries(header)
    .filter(([name, entry]) => name !== '__metadata__' && !name.startsWith('embedding/') && entry.shape?.length === 2)
    .map(([, entry]) => entry.shape as number[]);
}

/**
 * Estimates the matMul FLOPs of one training step: 6 FLOPs per kernel weight per token (2 forward, 4 backward),
 * plus attention scores and weighted values, 12 * layers * dModel * sentenceLength per token forward and
 * backward. Padding is not counted, so this is the useful work.
 */
function modelFlopsPerStep(kernels: number[][], tokens: number, samples: number, layers: number, dModel: number): number {
  const weights = kernels.reduce((sum, [rows, columns]) => sum + (rows as number) * (columns as number), 0);
  const meanLength = tokens / samples;
  return 6 * weights * tokens + 12 * layers * dModel * meanLength * tokens;
}

async function measureMatMulPeakGflops(backend: string): Promise<number> {
  await tf.setBackend(backend);
  await tf.ready();
  const size = 1024;
  const a = tf.randomNormal([size, size]);
  const b = tf.randomNormal([size, size]);
  const times: number[] = [];
  for (let i = 0; i < 6; i++) {
    const started = performance.now();
    const product = tf.matMul(a, b);
    await product.data();
    times.push(performance.now() - started);
    product.dispose();
  }
  a.dispose();
  b.dispose();
  return (2 * size ** 3) / (median(times.slice(1)) * 1e6);
}

async function profileRun(
  workers: number,
  steps: number,
  perWorkerBatch: number,
  backend: string,
  peakGflops: number,
  overrides: readonly string[],
): Promise<Omit<RunProfile, 'round' | 'variant'>> {
  const directory = mkdtempSync(join(tmpdir(), 'ringtrain-bench-train-'));
  try {
    const runDir = join(directory, 'run');
    const config = JSON.parse(readFileSync(join(repositoryRoot, 'configs', 'brown-pos.json'), 'utf8')) as {
      model: { layers: number; dModel: number };
    };
    const code = await runLauncher(
      [
        '--gpus', String(workers),
        '--max-steps', String(steps),
        '--backend', backend,
        '--run-dir', runDir,
        '--set', `train.globalBatchSize=${perWorkerBatch * workers}`,
        '--set', 'checkpoint.every=0',
        ...overrides.flatMap((override) => ['--set', override]),
      ],
      30 * 60_000,
    );
    if (code !== 0) throw new Error(`launcher with ${workers} workers exited with code ${code}; see its output above`);

    const records = readFileSync(join(runDir, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as StepRecord)
      .filter((record) => record.step > WARMUP_STEPS);

    const perStep = (pick: (record: StepRecord) => number): number => median(records.map(pick));
    const slowest = (record: StepRecord, key: keyof StepRecord['timings'][number]): number => Math.max(...record.timings.map((t) => t[key]));
    // The rank that reaches the all-reduce last waits least, so its all-reduce time is the transfer itself. The
    // first rank to arrive waits longest: its extra time is the imbalance of the ranks' work before the exchange.
    const transfer = (record: StepRecord): number => Math.min(...record.timings.map((t) => t.allReduceMs));
    const peerWait = (record: StepRecord): number => Math.max(...record.timings.map((t) => t.allReduceMs)) - transfer(record);

    const stepMs = perStep((record) => record.stepMs);
    const dataWaitMs = perStep((record) => slowest(record, 'dataWaitMs'));
    const computeMs = perStep((record) => slowest(record, 'computeMs'));
    const transferMs = perStep(transfer);
    const peerWaitMs = perStep(peerWait);
    const optimizerMs = perStep((record) => slowest(record, 'optimizerMs'));
    const tokensPerStep = perStep((record) => record.tokens);
    const samples = perStep((record) => record.samples);
    // FLOPs and time are summed over the timed steps: step times and token counts vary together with the
    // sentence length, so the ratio of their separate medians would not be the rate of any step.
    const kernels = kernelShapes(join(runDir, 'weights.safetensors'));
    const flopsOf = (record: StepRecord): number =>
      modelFlopsPerStep(kernels, record.tokens, record.samples, config.model.layers, config.model.dModel);
    const totalFlops = records.reduce((sum, record) => sum + flopsOf(record), 0);
    const totalMs = records.reduce((sum, record) => sum + record.stepMs, 0);
    const achievedGflops = totalFlops / (totalMs * 1e6);

    return {
      workers,
      globalBatchSize: perWorkerBatch * workers,
      steps: records.length,
      stepMs,
      dataWaitMs,
      computeMs,
      transferMs,
      peerWaitMs,
      optimizerMs,
      // The wait overlaps the slowest rank's compute, so it is not subtracted. Each phase is the median of its own
      // slowest rank, so the phases can add up to more than the step; "other" is then 0.
      coordinationMs: Math.max(0, stepMs - dataWaitMs - computeMs - transferMs - optimizerMs),
      samplesPerSecond: (samples * 1000) / stepMs,
      tokensPerStep,
      modelGflopPerStep: totalFlops / records.length / 1e9,
      achievedGflops,
      // Every worker has its own core here, so the peak of the whole job is one core's peak times the workers.
      mfu: achievedGflops / (peakGflops * workers),
    };
  } finally {
    rmSync(directory, { recursive: true, force: true });
  }
}

const USAGE = `usage: npm run bench:train -- [options]
  --gpus 1,2                worker counts to run, each at least 1
  --steps 80                optimizer steps per run; the first ${WARMUP_STEPS} are warm-up and left out
  --per-worker-batch 64     sentences per worker and step (weak scaling)
  --backend wasm            tfjs backend of the workers and of the matMul peak
  --set KEY=VALUE           config override for every run (repeatable)
  --compare KEY=V1,V2       run every worker count once per value of one config key
  --rounds 1                repeat the whole sequence, so variants alternate
  --json FILE               also write the profiles as JSON to FILE`;

async function main(): Promise<void> {
  if (process.argv.includes('--help')) {
    console.log(USAGE);
    return;
  }
  const { values } = parseArgs({
    options: {
      gpus: { type: 'string', default: '1,2' },
      steps: { type: 'string', default: '80' },
      'per-worker-batch': { type: 'string', default: '64' },
      backend: { type: 'string', default: 'wasm' },
      json: { type: 'string' },
      // Passed to the launcher, e.g. --set allreduce.compression=fp16.
      set: { type: 'string', multiple: true, default: [] },
      compare: { type: 'string' },
      rounds: { type: 'string', default: '1' },
    },
  });
  const variants = parseCompare(values.compare);
  const rounds = Number(values.rounds);
  if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be an integer of at least 1 (got ${values.rounds})`);
  const workerCounts = (values.gpus as string).split(',').map(Number);
  const steps = Number(values.steps);
  const perWorkerBatch = Number(values['per-worker-batch']);
  const backend = values.backend as string;
  if (workerCounts.some((count) => !Number.isInteger(count) || count < 1) || !(steps > WARMUP_STEPS) || !(perWorkerBatch >= 1)) {
    throw new Error(`--gpus must list integers of at least 1, --steps must exceed ${WARMUP_STEPS} and --per-worker-batch must be at least 1`);
  }

  const peakGflops = await measureMatMulPeakGflops(backend);
  console.log(`${backend} matMul peak (1024x1024x1024, one core): ${peakGflops.toFixed(1)} GFLOP/s`);

  const profiles: RunProfile[] = [];
  for (let round = 1; round <= rounds; round++) {
    for (const variant of variants) {
      for (const workers of workerCounts) {
        const label = variant === '' ? '' : ` with ${variant}`;
        console.log(`round ${round}: running ${workers} worker(s)${label}, global batch ${perWorkerBatch * workers}, ${steps} steps ...`);
        const overrides = [...(values.set as string[]), ...(variant === '' ? [] : [variant])];
        const profile = await profileRun(workers, steps, perWorkerBatch, backend, peakGflops, overrides);
        profiles.push({ ...profile, round, variant });
      }
    }
  }

  const columns: [string, (profile: RunProfile) => string][] = [
    ...(rounds > 1 ? ([['round', (p) => String(p.round)]] as [string, (profile: RunProfile) => string][]) : []),
    ...(variants.length > 1 ? ([['variant', (p) => p.variant]] as [string, (profile: RunProfile) => string][]) : []),
    ['workers', (p) => String(p.workers)],
    ['batch', (p) => String(p.globalBatchSize)],
    ['step ms', (p) => p.stepMs.toFixed(1)],
    ['data ms', (p) => p.dataWaitMs.toFixed(1)],
    ['fwd+bwd+flatten ms', (p) => p.computeMs.toFixed(1)],
    ['all-reduce ms', (p) => p.transferMs.toFixed(1)],
    ['optimizer ms', (p) => p.optimizerMs.toFixed(1)],
    ['other ms', (p) => p.coordinationMs.toFixed(1)],
    ['peer wait ms', (p) => p.peerWaitMs.toFixed(1)],
    ['samples/s', (p) => p.samplesPerSecond.toFixed(0)],
    ['(all-reduce+opt)/step', (p) => `${(((p.transferMs + p.optimizerMs) / p.stepMs) * 100).toFixed(1)}%`],
    ['(all-reduce+opt+wait)/step', (p) => `${(((p.transferMs + p.peerWaitMs + p.optimizerMs) / p.stepMs) * 100).toFixed(1)}%`],
    ['MFU', (p) => `${(p.mfu * 100).toFixed(1)}%`],
  ];
  console.log('\n| ' + columns.map(([name]) => name).join(' | ') + ' |');
  console.log('|' + columns.map(() => '---|').join(''));
  for (const profile of profiles) console.log('| ' + columns.map(([, cell]) => cell(profile)).join(' | ') + ' |');

  for (const profile of profiles) {
    // Each run is compared with the first worker count of the same round and variant.
    const base = profiles.find((other) => other.round === profile.round && other.variant === profile.variant) as RunProfile;
    if (base === profile) continue;
    const efficiency = profile.samplesPerSecond / ((base.samplesPerSecond * profile.workers) / base.workers);
    const where = `${rounds > 1 ? `round ${profile.round}, ` : ''}${profile.variant === '' ? '' : `${profile.variant}, `}`;
    console.log(`weak-scaling efficiency, ${where}${profile.workers} workers against ${base.workers}: ${(efficiency * 100).toFixed(1)}%`);
  }
  if (values.json !== undefined) writeFileSync(values.json, JSON.stringify({ backend, peakGflops, profiles }, null, 2) + '\n');
}

/** Turns `--compare KEY=V1,V2` into the overrides KEY=V1 and KEY=V2; without it, one run with no override. */
function parseCompare(compare: string | undefined): string[] {
  if (compare === undefined) return [''];
  const match = /^([A-Za-z][\w.]*)=(.+)$/.exec(compare);
  if (match === null) throw new Error(`--compare must look like KEY=VALUE1,VALUE2, e.g. allreduce.skipZeroBlocks=true,false (got ${compare})`);
  return (match[2] as string).split(',').map((value) => `${match[1]}=${value}`);
}

main().catch((error: unknown) => {
  console.error(`bench:train failed: ${(error as Error).message}`);
  process.exit(1);
});
