import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import test from 'ava';

import { hasCode } from '../src/errors.js';
import type { ParameterSpec } from '../src/models/model.js';
import { readSafetensors, writeSafetensors } from '../src/checkpoint/safetensors.js';
import { rejection, temporaryDirectory } from './helpers/files.js';

// Names that look like integers, which JSON.parse moves to the front of an object, test that order comes from offsets.
const specs: ParameterSpec[] = [
  { name: 'encoder/kernel', shape: [3, 2], decay: true },
  { name: '10', shape: [2], decay: false },
  { name: '2', shape: [], decay: false },
  { name: 'empty', shape: [0, 4], decay: false },
];

/** Parameters 0.5, -1.25, ... for the 6 + 2 + 1 + 0 = 9 elements of `specs`, with a NaN payload and -0. */
function makeParameters(): Float32Array {
  const values = Float32Array.from({ length: 9 }, (_, i) => (i + 1) * (i % 2 === 0 ? 0.5 : -1.25));
  const bits = new Uint32Array(values.buffer);
  bits[3] = 0x7fc0beef;
  bits[8] = 0x80000000;
  return values;
}

/** Builds a safetensors file by hand from a header object and data bytes. */
function safetensorsBytes(header: object, data: Uint8Array): Buffer {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([prefix, json, data]);
}

test('safetensors round trip is bit-exact', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-safetensors-');
  const path = join(directory, 'weights.safetensors');
  const parameters = makeParameters();
  await writeSafetensors(path, specs, parameters, { runId: 'run-1' });
  const content = await readSafetensors(path);

  t.deepEqual(content.metadata, { runId: 'run-1' });
  t.deepEqual(content.tensors.map((tensor) => tensor.name), ['encoder/kernel', '10', '2', 'empty']);
  t.deepEqual(content.tensors.map((tensor) => tensor.shape), [[3, 2], [2], [], [0, 4]]);
  const joined = new Float32Array(9);
  let offset = 0;
  for (const tensor of content.tensors) {
    joined.set(tensor.values, offset);
    offset += tensor.values.length;
  }
  t.true(Buffer.from(joined.buffer).equals(Buffer.from(parameters.buffer)), 'values differ from the written ones');
});

test('safetensors truncation is rejected', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-safetensors-');
  const path = join(directory, 'weights.safetensors');
  await writeSafetensors(path, specs, makeParameters());
  const bytes = await readFile(path);
  for (const length of [0, 5, 8, 20, bytes.length - 36, bytes.length - 1]) {
    await writeFile(path, bytes.subarray(0, length));
    const error = await rejection(readSafetensors(path));
    t.true(hasCode(error, 'RINGTRAIN_ERR_CHECKPOINT'), `length ${length}: ${String(error)}`);
    t.regex(error?.message ?? '', /is truncated/, `length ${length}`);
  }
});

test('safetensors other dtype is rejected', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-safetensors-');
  const path = join(directory, 'half.safetensors');
  await writeFile(path, safetensorsBytes({ w: { dtype: 'F16', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4)));
  const error = await rejection(readSafetensors(path));
  t.is(error?.message, `safetensors file ${path} stores w as F16; readSafetensors reads only F32 tensors`);
});

test('safetensors gap is rejected', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-safetensors-');
  const path = join(directory, 'gap.safetensors');
  const header = {
    a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
    b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
  };
  await writeFile(path, safetensorsBytes(header, new Uint8Array(12)));
  const error = await rejection(readSafetensors(path));
  t.regex(error?.message ?? '', /has tensor b at byte 8 of the data section, expected 4/);
});

test('safetensors wrong byte count is rejected', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-safetensors-');
  const path = join(directory, 'short.safetensors');
  await writeFile(path, safetensorsBytes({ w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 12] } }, new Uint8Array(12)));
  const error = await rejection(readSafetensors(path));
  t.is(error?.message, `safetensors file ${path} has data_offsets [0, 12] (12 bytes) for w, but shape [2, 2] of F32 needs 16 bytes`);
});
