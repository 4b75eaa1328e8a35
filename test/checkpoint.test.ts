import { createHash } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';

import { defaultConfig } from '../src/config/defaults.js';
import { hasCode } from '../src/errors.js';
import type { ParameterSpec } from '../src/models/model.js';
import { samplerPositionAfterStep, type Checkpoint } from '../src/checkpoint/checkpoint.js';
import { hashConfig } from '../src/checkpoint/config-hash.js';
import { DIGEST_BYTES, encodeCheckpoint, PREFIX_BYTES } from '../src/checkpoint/format.js';
import { readCheckpoint, writeCheckpoint } from '../src/checkpoint/store.js';
import { rejection, temporaryDirectory } from './helpers/files.js';

// 15 + 3 + 1 (a scalar) = 19 elements per tensor.
const specs: ParameterSpec[] = [
  { name: 'embedding/table', shape: [5, 3], decay: true },
  { name: 'dense/bias', shape: [3], decay: false },
  { name: 'output/scale', shape: [], decay: false },
];

/**
 * Builds a checkpoint whose tensors contain float32 values that a lossy path would change: a NaN with a payload,
 * -0, both infinities, the smallest subnormal and the largest finite float.
 */
function makeCheckpoint(step: number): Checkpoint {
  const tensor = (salt: number): Float32Array => {
    const values = new Float32Array(19);
    for (let i = 0; i < values.length; i++) values[i] = Math.sin(salt * 31 + i * 1.7 + step) * 10 ** ((i % 7) - 3);
    const bits = new Uint32Array(values.buffer);
    bits[0] = 0x7fc00123; // NaN with a payload
    bits[1] = 0x80000000; // -0
    bits[2] = 0x7f800000; // +Infinity
    bits[3] = 0xff800000; // -Infinity
    bits[4] = 0x00000001; // smallest subnormal
    bits[5] = 0x7f7fffff; // largest finite float32
    return values;
  };
  return {
    specs,
    parameters: tensor(1),
    optimizer: { step, firstMoment: tensor(2), secondMoment: tensor(3) },
    totalSteps: 100,
    sampler: samplerPositionAfterStep(step, 7),
    seed: 1234,
    worldSize: 2,
    config: hashConfig(defaultConfig()),
    metadata: { runId: 'test-run' },
  };
}

function bytesOf(values: Float32Array): Buffer {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength);
}

function encode(checkpoint: Checkpoint): Buffer {
  return Buffer.concat(encodeCheckpoint(checkpoint));
}

test('round trip is bit-exact', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  const original = makeCheckpoint(42);
  const { path } = await writeCheckpoint(directory, original, { keep: 2 });
  const loaded = await readCheckpoint(path);

  t.true(bytesOf(loaded.parameters).equals(bytesOf(original.parameters)), 'parameters differ');
  t.true(bytesOf(loaded.optimizer.firstMoment).equals(bytesOf(original.optimizer.firstMoment)), 'first moments differ');
  t.true(bytesOf(loaded.optimizer.secondMoment).equals(bytesOf(original.optimizer.secondMoment)), 'second moments differ');
  t.is(loaded.optimizer.step, 42);
  t.is(loaded.totalSteps, 100);
  // 42 completed steps at 7 batches per epoch: epochs 0..5 done, the next batch is batch 0 of epoch 6.
  t.deepEqual(loaded.sampler, { epoch: 6, nextBatch: 0 });
  t.is(loaded.seed, 1234);
  t.is(loaded.worldSize, 2);
  t.deepEqual(loaded.specs, specs);
  t.deepEqual(loaded.config, original.config);
  t.deepEqual(loaded.metadata, { runId: 'test-run' });
});

test('round trip keeps empty model', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  const empty: Checkpoint = {
    ...makeCheckpoint(0),
    specs: [],
    parameters: new Float32Array(0),
    optimizer: { step: 0, firstMoment: new Float32Array(0), secondMoment: new Float32Array(0) },
  };
  const { path } = await writeCheckpoint(directory, empty, { keep: 1 });
  const loaded = await readCheckpoint(path);
  t.is(loaded.parameters.length, 0);
  t.deepEqual(loaded.specs, []);
});

test('file layout matches documented prefix', async (t) => {
  const bytes = encode(makeCheckpoint(3));
  const headerLength = bytes.readUInt32LE(12);
  const dataLength = Number(bytes.readBigUInt64LE(16));

  t.is(bytes.subarray(0, 8).toString('ascii'), 'RINGCKPT');
  t.is(bytes.readUInt32LE(8), 1);
  t.is(headerLength % 8, 0, 'header length keeps the data section 8-byte aligned');
  // Three tensors of 19 float32 values: 3 * 19 * 4 = 228 bytes.
  t.is(dataLength, 228);
  t.is(bytes.length, PREFIX_BYTES + headerLength + dataLength + DIGEST_BYTES);
  const digest = createHash('sha256').update(bytes.subarray(0, bytes.length - DIGEST_BYTES)).digest();
  t.true(digest.equals(bytes.subarray(bytes.length - DIGEST_BYTES)), 'trailing digest is the SHA-256 of the rest');
});

test('truncated files are rejected', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  const bytes = encode(makeCheckpoint(5));
  const path = join(directory, 'step-000005.ckpt');
  const lengths = [0, 7, 23, PREFIX_BYTES, PREFIX_BYTES + DIGEST_BYTES - 1, PREFIX_BYTES + DIGEST_BYTES, 100, bytes.length >> 1, bytes.length - DIGEST_BYTES, bytes.length - 1];

  for (const length of lengths) {
    await writeFile(path, bytes.subarray(0, length));
    const error = await rejection(readCheckpoint(path));
    t.true(hasCode(error, 'RINGTRAIN_ERR_CHECKPOINT'), `length ${length}: ${String(error)}`);
    t.regex(error?.message ?? '', /is truncated/, `length ${length}`);
    t.true(error?.message.includes(path), `length ${length}: message names the file`);
  }
});

test('truncation message gives both sizes', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  const bytes = encode(makeCheckpoint(5));
  const path = join(directory, 'step-000005.ckpt');
  await writeFile(path, bytes.subarray(0, 200));
  const error = await rejection(readCheckpoint(path));
  t.is(error?.message, `checkpoint ${path} is truncated: its prefix gives a size of ${bytes.length} bytes, the file has 200; delete it and resume from an earlier checkpoint`);
});

test('appended bytes are rejected', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  const path = join(directory, 'step-000005.ckpt');
  await writeFile(path, Buffer.concat([encode(makeCheckpoint(5)), Buffer.from([0])]));
  const error = await rejection(readCheckpoint(path));
  t.true(hasCode(error, 'RINGTRAIN_ERR_CHECKPOINT'));
  t.regex(error?.message ?? '', /is corrupted: its prefix gives a size of \d+ bytes, but the file has \d+/);
});

test('flipped bit anywhere is rejected', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  const bytes = encode(makeCheckpoint(9));
  const path = join(directory, 'step-000009.ckpt');
  const accepted: number[] = [];
  const otherErrors: string[] = [];

  // Every byte of the file, flipping its lowest bit: the smallest corruption there is.
  for (let position = 0; position < bytes.length; position++) {
    const corrupted = Buffer.from(bytes);
    corrupted[position] = (corrupted[position] as number) ^ 0x01;
    await writeFile(path, corrupted);
    const error = await rejection(readCheckpoint(path));
    if (error === null) accepted.push(position);
    else if (!hasCode(error, 'RINGTRAIN_ERR_CHECKPOINT') || !error.message.includes(path)) otherErrors.push(`${position}: ${String(error)}`);
  }
  t.deepEqual(accepted, [], 'positions whose corruption went unnoticed');
  t.deepEqual(otherErrors, [], 'positions that raised something other than a checkpoint error naming the file');
});

test('flipped data byte reports checksum', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  const bytes = encode(makeCheckpoint(9));
  const path = join(directory, 'step-000009.ckpt');
  bytes[bytes.length - DIGEST_BYTES - 10] = (bytes[bytes.length - DIGEST_BYTES - 10] as number) ^ 0xff;
  await writeFile(path, bytes);
  const error = await rejection(readCheckpoint(path));
  t.regex(error?.message ?? '', /is corrupted: the SHA-256 of its first \d+ bytes is [0-9a-f]{64}, but the file stores [0-9a-f]{64}; delete it/);
});

test('unknown version is rejected', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  const bytes = encode(makeCheckpoint(9));
  const path = join(directory, 'step-000009.ckpt');
  // A well-formed file of a future version: new version number and a checksum that matches it.
  bytes.writeUInt32LE(2, 8);
  createHash('sha256').update(bytes.subarray(0, bytes.length - DIGEST_BYTES)).digest().copy(bytes, bytes.length - DIGEST_BYTES);
  await writeFile(path, bytes);
  const error = await rejection(readCheckpoint(path));
  t.true(hasCode(error, 'RINGTRAIN_ERR_CHECKPOINT'));
  t.true(error?.message.includes(`checkpoint ${path} has unknown format version 2; this ringtrain reads version 1`), error?.message);
});

test('small foreign file is rejected', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  const path = join(directory, 'notes.ckpt');
  await writeFile(path, 'hello\n');
  const error = await rejection(readCheckpoint(path));
  t.true(error?.message.includes('is not a ringtrain checkpoint: it starts with bytes 68 65 6c 6c 6f 0a'), error?.message);
});

test('foreign file is rejected by magic', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  const path = join(directory, 'weights.ckpt');
  await writeFile(path, Buffer.alloc(4096, 0x41));
  const error = await rejection(readCheckpoint(path));
  t.true(hasCode(error, 'RINGTRAIN_ERR_CHECKPOINT'));
  t.true(error?.message.includes('is not a ringtrain checkpoint: it starts with bytes 41 41 41 41 41 41 41 41'), error?.message);
});

test('invalid header with valid checksum', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  const bytes = encode(makeCheckpoint(9));
  const path = join(directory, 'step-000009.ckpt');
  // Rewrites "worldSize":2 as "worldSize":0 (same length) and recomputes the checksum, as a foreign writer would.
  const text = bytes.toString('latin1');
  const at = text.indexOf('"worldSize":2');
  t.true(at > 0, 'fixture header contains "worldSize":2');
  bytes.write('"worldSize":0', at, 'latin1');
  createHash('sha256').update(bytes.subarray(0, bytes.length - DIGEST_BYTES)).digest().copy(bytes, bytes.length - DIGEST_BYTES);
  await writeFile(path, bytes);
  const error = await rejection(readCheckpoint(path));
  t.true(hasCode(error, 'RINGTRAIN_ERR_CHECKPOINT'));
  t.true(error?.message.includes('has an invalid header: worldSize must be an integer of at least 1 (got 0)'), error?.message);
});

test('missing file is rejected', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  const path = join(directory, 'step-000001.ckpt');
  const error = await rejection(readCheckpoint(path));
  t.is(error?.message, `checkpoint ${path} does not exist; pass an existing .ckpt file`);
});

test('directory passed as file is rejected', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  const error = await rejection(readCheckpoint(directory));
  t.true(hasCode(error, 'RINGTRAIN_ERR_CHECKPOINT'));
  t.regex(error?.message ?? '', /is not a file/);
});

test('writer rejects wrong moment length', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  const broken = makeCheckpoint(3);
  broken.optimizer = { ...broken.optimizer, secondMoment: new Float32Array(18) };
  const error = await rejection(writeCheckpoint(directory, broken, { keep: 1 }));
  t.true(error instanceof RangeError);
  t.is(error?.message, 'checkpoint optimizer.secondMoment has 18 elements but the specs describe 19; pass Float32Arrays laid out in ParameterSpec order');
});

test('writer rejects invalid keep', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  const error = await rejection(writeCheckpoint(directory, makeCheckpoint(3), { keep: 0 }));
  t.is(error?.message, 'checkpoint keep must be an integer of at least 1 (got 0)');
});

test('writer leaves no temporary file', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-');
  await writeCheckpoint(directory, makeCheckpoint(3), { keep: 1 });
  t.deepEqual((await readdir(directory)).sort(), ['latest', 'step-000003.ckpt']);
  t.is(await readFile(join(directory, 'latest'), 'utf8'), 'step-000003.ckpt\n');
});
