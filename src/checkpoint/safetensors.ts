import { writeFile, rename, open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { RingtrainError } from '../errors.js';
import type { ParameterSpec } from '../models/model.js';
import { readFully, syncDirectory } from './durable-file.js';
import { toHostOrder } from './format.js';

/**
 * Writes float32 parameters in the safetensors format, which PyTorch and Hugging Face tools read: an 8-byte
 * little-endian header length, a JSON header mapping each tensor name to its dtype, shape and byte range, then
 * the raw little-endian tensor bytes. The file is written to a temporary name, synced, then renamed, so a reader
 * never sees a half-written file, and the directory is synced so that the rename survives a power loss.
 */
export async function writeSafetensors(
  path: string,
  specs: readonly ParameterSpec[],
  parameters: Float32Array,
  metadata: Record<string, string> = {},
): Promise<void> {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const spec of specs) {
    const bytes = 4 * spec.shape.reduce((product, size) => product * size, 1);
    header[spec.name] = { dtype: 'F32', shape: spec.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  if (offset !== parameters.byteLength) {
    throw new Error(
      `safetensors: specs describe ${offset} bytes but the parameter buffer has ${parameters.byteLength}; ` +
        'pass the flat parameters laid out in specs order',
    );
  }

  // The format allows padding the header with spaces; aligning the data to 8 bytes helps memory-mapping readers.
  const headerJson = Buffer.from(JSON.stringify(header), 'utf8');
  const headerBytes = Buffer.concat([headerJson, Buffer.alloc((8 - (headerJson.length % 8)) % 8, ' ')]);
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length));

  const temporaryPath = `${path}.tmp-${process.pid}`;
  await writeFile(temporaryPath, Buffer.concat([prefix, headerBytes, Buffer.from(parameters.buffer, parameters.byteOffset, parameters.byteLength)]));
  const handle = await open(temporaryPath, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporaryPath, path);
  await syncDirectory(dirname(path));
}

/** One tensor read from a safetensors file. */
export interface SafetensorsTensor {
  name: string;
  shape: number[];
  values: Float32Array;
}

/** The content of a safetensors file: its `__metadata__` and its tensors in file order. */
export interface SafetensorsContent {
  metadata: Record<string, string>;
  tensors: SafetensorsTensor[];
}

/** Largest header that `readSafetensors` accepts, the same limit as the huggingface/safetensors Rust crate. */
const MAX_SAFETENSORS_HEADER_BYTES = 100_000_000;

/**
 * Reads a safetensors file of float32 tensors, such as the ones `writeSafetensors` writes. Tensors come back in
 * the order of their byte offsets, which is the writer's order. Raises RINGTRAIN_ERR_CHECKPOINT naming the file
 * when it is truncated, its header is invalid, a tensor is not F32, or the tensors do not exactly cover the data.
 */
export async function readSafetensors(path: string): Promise<SafetensorsContent> {
  const fail = (problem: string): RingtrainError =>
    new RingtrainError('RINGTRAIN_ERR_CHECKPOINT', `safetensors file ${path} ${problem}`);
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw fail('does not exist; check the path');
    throw error;
  }
  try {
    const { size } = await handle.stat();
    const prefix = Buffer.alloc(8);
    if (size < 8 || (await readFully(handle, prefix, 0)) < 8) {
      throw fail(`is truncated: it has ${size} bytes, fewer than the 8-byte header length`);
    }
    const headerLength = prefix.readBigUInt64LE(0);
    if (headerLength > BigInt(MAX_SAFETENSORS_HEADER_BYTES)) {
      throw fail(`declares a ${headerLength}-byte header, more than the ${MAX_SAFETENSORS_HEADER_BYTES} bytes allowed; it is corrupted or not safetensors`);
    }
    const dataStart = 8 + Number(headerLength);
    if (dataStart > size) {
      throw fail(`is truncated: its header ends at byte ${dataStart}, but the file has ${size} bytes`);
    }
    const headerBytes = Buffer.alloc(Number(headerLength));
    await readFully(handle, headerBytes, 8);

    const { metadata, entries } = parseSafetensorsHeader(headerBytes, size - dataStart, fail);
    const tensors: SafetensorsTensor[] = [];
    for (const entry of entries) {
      const values = new Float32Array((entry.end - entry.begin) / 4);
      const bytes = new Uint8Array(values.buffer);
      await readFully(handle, bytes, dataStart + entry.begin);
      toHostOrder(bytes);
      tensors.push({ name: entry.name, shape: entry.shape, values });
    }
    return { metadata, tensors };
  } finally {
    await handle.close();
  }
}

interface SafetensorsEntry {
  name: string;
  shape: number[];
  begin: number;
  end: number;
}

function parseSafetensorsHeader(
  headerBytes: Buffer,
  dataLength: number,
  fail: (problem: string) => RingtrainError,
): { metadata: Record<string, string>; entries: SafetensorsEntry[] } {
  let header: unknown;
  try {
    header = JSON.parse(headerBytes.toString('utf8'));
  } catch (error) {
    throw fail(`has a header that is not valid JSON (${(error as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw fail('has a header that is not a JSON object');
  }

  const metadata: Record<string, string> = {};
  const entries: SafetensorsEntry[] = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
    if (name === '__metadata__') {
      for (const [key, text] of Object.entries(value ?? {})) {
        if (typeof text !== 'string') throw fail(`has a non-string __metadata__ value for ${key}`);
        metadata[key] = text;
      }
      continue;
    }
    if (typeof info !== 'object' || info === null) throw fail(`has an invalid header entry for ${name}`);
    if (info.dtype !== 'F32') {
      throw fail(`stores ${name} as ${String(info.dtype)}; readSafetensors reads only F32 tensors`);
    }
    const shape = info.shape;
    if (!Array.isArray(shape) || !shape.every((size) => Number.isSafeInteger(size) && size >= 0)) {
      throw fail(`has an invalid shape for ${name}: ${JSON.stringify(shape)}`);
    }
    const offsets = info.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((offset) => Number.isSafeInteger(offset) && offset >= 0)) {
      throw fail(`has invalid data_offsets for ${name}: ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    const expectedBytes = 4 * (shape as number[]).reduce((product: number, size: number) => product * size, 1);
    if (end - begin !== expectedBytes) {
      throw fail(`has data_offsets [${begin}, ${end}] (${end - begin} bytes) for ${name}, but shape [${shape.join(', ')}] of F32 needs ${expectedBytes} bytes`);
    }
    entries.push({ name, shape: [...(shape as number[])], begin, end });
  }

  // Like the reference implementation, require the tensors to tile the data section without gaps or overlaps.
  // Sorting by end second puts an empty tensor before a non-empty one that starts at the same byte.
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let position = 0;
  for (const entry of entries) {
    if (entry.begin !== position) {
      throw fail(`has tensor ${entry.name} at byte ${entry.begin} of the data section, expected ${position}; the offsets leave a gap or overlap`);
    }
    position = entry.end;
  }
  if (position !== dataLength) {
    const problem = position > dataLength ? 'is truncated' : 'is corrupted';
    throw fail(`${problem}: its tensors need ${position} data bytes, but the file has ${dataLength}`);
  }
  return { metadata, entries };
}
