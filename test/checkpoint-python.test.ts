import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import test from 'ava';
import type { ExecutionContext } from 'ava';

import type { ParameterSpec } from '../src/models/model.js';
import type { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { fingerprintValues } from '../src/checkpoint/config-hash.js';
import { writeCheckpoint } from '../src/checkpoint/store.js';

const run = promisify(execFile);
const documentPath = fileURLToPath(new URL('../../docs/checkpoint-format.md', import.meta.url));
const documentedPath = 'runs/x/checkpoints/step-000040.ckpt';
const hasNumpy = spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;
const pythonTest = hasNumpy ? test : test.skip;

// 6 + 3 + 1 (a scalar) = 10 elements.
const specs: ParameterSpec[] = [
  { name: 'encoder/kernel', shape: [2, 3], decay: true },
  { name: 'encoder/bias', shape: [3], decay: false },
  { name: 'temperature', shape: [], decay: false },
];

function makeCheckpoint(): Checkpoint {
  const values = (salt: number): Float32Array => Float32Array.from({ length: 10 }, (_, i) => Math.cos(salt + i) * 3);
  return {
    specs,
    parameters: values(1),
    optimizer: { step: 40, firstMoment: values(2), secondMoment: values(3) },
    totalSteps: 100,
    sampler: { epoch: 2, nextBatch: 4 },
    seed: 3,
    worldSize: 1,
    config: fingerprintValues({ task: 'test', taskOptions: {}, seed: 3, model: {}, data: {}, optimizer: {}, train: {} }),
    metadata: {},
  };
}

/** Returns the first python code block under the Python heading of docs/checkpoint-format.md. */
async function documentedReader(): Promise<string> {
  const text = await readFile(documentPath, 'utf8');
  const section = text.slice(text.indexOf('## Reading a checkpoint from Python'));
  const match = /```python\n([\s\S]*?)```/.exec(section);
  if (match === null) throw new Error('docs/checkpoint-format.md has no python block under its Python heading');
  return match[1] as string;
}

async function temporaryDirectory(t: ExecutionContext): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), 'ringtrain-checkpoint-python-'));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

/** Runs the documented reader on `path` and prints what it read as JSON. */
async function runReader(reader: string, path: string): Promise<{ stdout: string }> {
  const script =
    reader.replace(JSON.stringify(documentedPath), JSON.stringify(path)) +
    'print(json.dumps({"step": header["step"], "names": list(weights), "shapes": [list(w.shape) for w in weights.values()],\n' +
    '                  "parameters": b"".join(w.tobytes() for w in weights.values()).hex(),\n' +
    '                  "firstMoment": tensors["optimizer.firstMoment"].tobytes().hex()}))\n';
  return run('python3', ['-c', script], { timeout: 30_000 });
}

pythonTest('python reader matches node', async (t) => {
  const directory = await temporaryDirectory(t);
  const checkpoint = makeCheckpoint();
  const { path } = await writeCheckpoint(directory, checkpoint, { keep: 1 });
  const reader = await documentedReader();
  t.true(reader.includes(JSON.stringify(documentedPath)), 'documented reader opens the example path');

  const printed = JSON.parse((await runReader(reader, path)).stdout) as Record<string, unknown>;
  t.is(printed.step, 40);
  t.deepEqual(printed.names, ['encoder/kernel', 'encoder/bias', 'temperature']);
  t.deepEqual(printed.shapes, [[2, 3], [3], []]);
  t.is(printed.parameters, Buffer.from(checkpoint.parameters.buffer).toString('hex'));
  t.is(printed.firstMoment, Buffer.from(checkpoint.optimizer.firstMoment.buffer).toString('hex'));
});

pythonTest('python reader rejects corruption', async (t) => {
  const directory = await temporaryDirectory(t);
  const { path } = await writeCheckpoint(directory, makeCheckpoint(), { keep: 1 });
  const bytes = await readFile(path);
  bytes[bytes.length - 40] = (bytes[bytes.length - 40] as number) ^ 0x01;
  await writeFile(path, bytes);
  const error = (await runReader(await documentedReader(), path).then(() => null, (failure: unknown) => failure)) as { stderr?: string } | null;
  t.not(error, null, 'the reader exits with an error');
  t.regex(error?.stderr ?? '', /checksum mismatch/);
});
