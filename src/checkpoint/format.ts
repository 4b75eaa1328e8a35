/**
 * The byte layout of a ringtrain checkpoint file (format version 1), as docs/checkpoint-format.md describes:
 *
 *   offset 0   8 bytes   magic "RINGCKPT"
 *          8   uint32    format version
 *         12   uint32    header length H in bytes, a multiple of 8
 *         16   uint64    data length D in bytes
 *         24   H bytes   UTF-8 JSON header, padded with spaces
 *     24 + H   D bytes   float32 tensors, little-endian, at the offsets the header lists
 * 24 + H + D   32 bytes  SHA-256 of all preceding bytes
 *
 * Integers are little-endian. This module turns a Checkpoint into these bytes and checks the parts of a file;
 * store.ts does the file I/O.
 */
import { createHash } from 'node:crypto';
import { endianness } from 'node:os';
import { RingtrainError } from '../errors.js';
import type { ParameterSpec } from '../models/model.js';
import { countParameters } from '../optim/adamw.js';
import type { Checkpoint } from './checkpoint.js';
import type { ConfigHash } from './config-hash.js';

/** First 8 bytes of every checkpoint file. */
export const CHECKPOINT_MAGIC = Buffer.from('RINGCKPT', 'ascii');
/** Format version that this code writes and the only one it reads. */
export const CHECKPOINT_FORMAT_VERSION = 1;
/** Bytes before the JSON header: magic, version, header length, data length. */
export const PREFIX_BYTES = 24;
/** Bytes of the trailing SHA-256 digest. */
export const DIGEST_BYTES = 32;

/** Names of the tensors in the data section, in the order the writer stores them. */
export const TENSOR_NAMES = ['parameters', 'optimizer.firstMoment', 'optimizer.secondMoment'] as const;

/** One entry of the header's tensor table; `offset` counts from the start of the data section. */
export interface TensorEntry {
  name: string;
  dtype: 'F32';
  shape: number[];
  offset: number;
  length: number;
}

/** The JSON header of format version 1. */
export interface CheckpointHeader {
  /** Optimizer steps completed, which is also the learning-rate schedule position. */
  step: number;
  totalSteps: number;
  sampler: { epoch: number; nextBatch: number };
  rng: { seed: number };
  worldSize: number;
  config: ConfigHash;
  parameters: ParameterSpec[];
  tensors: TensorEntry[];
  metadata: Record<string, string>;
}

/** Lengths read from a file's fixed prefix. */
export interface CheckpointPrefix {
  headerLength: number;
  dataLength: number;
  /** PREFIX_BYTES + headerLength + dataLength + DIGEST_BYTES. */
  fileLength: number;
}

const hostIsLittleEndian = endianness() === 'LE';

/**
 * Encodes `checkpoint` as the chunks of one file, in order: prefix, header, the three tensors, digest. The
 * tensor chunks are views of the checkpoint's arrays on little-endian hosts, so the caller must not change
 * those arrays until the chunks are written. Throws a RangeError naming the field when the checkpoint is
 * inconsistent, for example a moment buffer of the wrong length.
 */
export function encodeCheckpoint(checkpoint: Checkpoint): Uint8Array[] {
  const elementCount = validateForWriting(checkpoint);
  const tensorData = [checkpoint.parameters, checkpoint.optimizer.firstMoment, checkpoint.optimizer.secondMoment];
  const tensors: TensorEntry[] = TENSOR_NAMES.map((name, index) => ({
    name,
    dtype: 'F32',
    shape: [elementCount],
    offset: index * 4 * elementCount,
    length: 4 * elementCount,
  }));

  const header: CheckpointHeader = {
    step: checkpoint.optimizer.step,
    totalSteps: checkpoint.totalSteps,
    sampler: { epoch: checkpoint.sampler.epoch, nextBatch: checkpoint.sampler.nextBatch },
    rng: { seed: checkpoint.seed },
    worldSize: checkpoint.worldSize,
    config: checkpoint.config,
    parameters: checkpoint.specs.map((spec) => ({ name: spec.name, shape: [...spec.shape], decay: spec.decay })),
    tensors,
    metadata: checkpoint.metadata,
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  // Space padding keeps the data section 8-byte aligned, which lets readers map tensors without copying.
  const headerBytes = Buffer.concat([json, Buffer.alloc((8 - (json.length % 8)) % 8, ' ')]);
  if (headerBytes.length > 0xffffffff) {
    throw new RangeError(`checkpoint header is ${headerBytes.length} bytes, more than the 4 GiB a uint32 length allows`);
  }

  const prefix = Buffer.alloc(PREFIX_BYTES);
  CHECKPOINT_MAGIC.copy(prefix, 0);
  prefix.writeUInt32LE(CHECKPOINT_FORMAT_VERSION, 8);
  prefix.writeUInt32LE(headerBytes.length, 12);
  prefix.writeBigUInt64LE(BigInt(3 * 4 * elementCount), 16);

  const chunks: Uint8Array[] = [prefix, headerBytes, ...tensorData.map(littleEndianBytes)];
  const hash = createHash('sha256');
  for (const chunk of chunks) {
    hash.update(chunk);
  }
  chunks.push(hash.digest());
  return chunks;
}

/**
 * Checks magic, format version and the lengths in the first PREFIX_BYTES of a file of `fileSize` bytes, and
 * returns the lengths. `prefix` may be shorter when the file is. Raises RINGTRAIN_ERR_CHECKPOINT naming `path` and the problem.
 */
export function checkPrefix(prefix: Uint8Array, fileSize: number, path: string): CheckpointPrefix {
  const bytes = Buffer.from(prefix.buffer, prefix.byteOffset, prefix.byteLength);
  // The magic is compared first, on as many bytes as the file has, so a small foreign file is not called truncated.
  const magicBytes = Math.min(CHECKPOINT_MAGIC.length, fileSize, bytes.length);
  if (!bytes.subarray(0, magicBytes).equals(CHECKPOINT_MAGIC.subarray(0, magicBytes))) {
    const start = bytes.subarray(0, magicBytes).toString('hex').replace(/(..)(?!$)/g, '$1 ');
    throw checkpointError(path, `is not a ringtrain checkpoint: it starts with bytes ${start}, expected "RINGCKPT"; pass a .ckpt file that ringtrain wrote`);
  }
  const minimum = PREFIX_BYTES + DIGEST_BYTES;
  if (fileSize < minimum) {
    throw checkpointError(path, `is truncated: the file has ${fileSize} bytes, fewer than the ${minimum} bytes of the smallest checkpoint`, true);
  }

  const version = bytes.readUInt32LE(8);
  if (version !== CHECKPOINT_FORMAT_VERSION) {
    throw checkpointError(
      path,
      `has unknown format version ${version}; this ringtrain reads version ${CHECKPOINT_FORMAT_VERSION}. ` +
        `Use the ringtrain release that wrote it, or resume from another checkpoint`,
    );
  }

  const headerLength = bytes.readUInt32LE(12);
  const dataLength = bytes.readBigUInt64LE(16);
  const expected = BigInt(PREFIX_BYTES + headerLength + DIGEST_BYTES) + dataLength;
  if (expected > BigInt(fileSize)) {
    throw checkpointError(path, `is truncated: its prefix gives a size of ${expected} bytes, the file has ${fileSize}`, true);
  }
  if (expected < BigInt(fileSize)) {
    throw checkpointError(path, `is corrupted: its prefix gives a size of ${expected} bytes, but the file has ${fileSize}`, true);
  }
  return { headerLength, dataLength: Number(dataLength), fileLength: fileSize };
}

/**
 * Parses and validates the JSON header of a file whose checksum already matched. The tensor table must hold
 * exactly TENSOR_NAMES as float32 vectors of the parameter count that tile the `dataLength`-byte data section.
 * Raises RINGTRAIN_ERR_CHECKPOINT naming `path` and the first invalid field.
 */
export function parseHeader(headerBytes: Uint8Array, dataLength: number, path: string): CheckpointHeader {
  let value: unknown;
  try {
    value = JSON.parse(Buffer.from(headerBytes.buffer, headerBytes.byteOffset, headerBytes.byteLength).toString('utf8'));
  } catch (error) {
    throw checkpointError(path, `has a header that is not valid JSON (${(error as Error).message}); ${NOT_OURS}`);
  }
  const invalid = (field: string, expected: string, got: unknown): RingtrainError =>
    checkpointError(path, `has an invalid header: ${field} must be ${expected} (got ${preview(got)}); ${NOT_OURS}`);
  const count = (field: string, got: unknown, minimum: number): number => {
    if (typeof got !== 'number' || !Number.isSafeInteger(got) || got < minimum) throw invalid(field, `an integer of at least ${minimum}`, got);
    return got;
  };
  const record = (field: string, got: unknown): Record<string, unknown> => {
    if (typeof got !== 'object' || got === null || Array.isArray(got)) throw invalid(field, 'an object', got);
    return got as Record<string, unknown>;
  };

  const header = record('header', value);
  const sampler = record('sampler', header.sampler);
  const rng = record('rng', header.rng);
  const config = record('config', header.config);
  const sections = record('config.sections', config.sections);
  record('config.values', config.values);
  if (typeof config.digest !== 'string') throw invalid('config.digest', 'a string', config.digest);
  for (const [name, hash] of Object.entries(sections)) {
    if (typeof hash !== 'string') throw invalid(`config.sections.${name}`, 'a string', hash);
  }
  const metadata = record('metadata', header.metadata);
  for (const [key, text] of Object.entries(metadata)) {
    if (typeof text !== 'string') throw invalid(`metadata.${key}`, 'a string', text);
  }

  const specs = parseSpecs(header.parameters, invalid);
  let elementCount: number;
  try {
    elementCount = countParameters(specs);
  } catch (error) {
    throw invalid('parameters', 'shapes of integer dimensions', (error as Error).message);
  }
  const tensors = parseTensorTable(header.tensors, elementCount, dataLength, invalid);

  return {
    step: count('step', header.step, 0),
    totalSteps: count('totalSteps', header.totalSteps, 1),
    sampler: { epoch: count('sampler.epoch', sampler.epoch, 0), nextBatch: count('sampler.nextBatch', sampler.nextBatch, 0) },
    rng: { seed: count('rng.seed', rng.seed, 0) },
    worldSize: count('worldSize', header.worldSize, 1),
    config: config as unknown as ConfigHash,
    parameters: specs,
    tensors,
    metadata: metadata as Record<string, string>,
  };
}

const NOT_OURS = "its checksum matches, so the file is intact but was not written by ringtrain's checkpoint writer";

/** Returns at most 80 characters of the JSON of `value`, for error messages. */
function preview(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

type InvalidField = (field: string, expected: string, got: unknown) => RingtrainError;

function parseSpecs(value: unknown, invalid: InvalidField): ParameterSpec[] {
  if (!Array.isArray(value)) throw invalid('parameters', 'an array', value);
  const seen = new Set<string>();
  return value.map((entry: unknown, index) => {
    const spec = entry as Partial<ParameterSpec> | null;
    if (typeof spec !== 'object' || spec === null) throw invalid(`parameters[${index}]`, 'an object', entry);
    if (typeof spec.name !== 'string' || spec.name === '' || seen.has(spec.name)) {
      throw invalid(`parameters[${index}].name`, 'a non-empty unique string', spec.name);
    }
    seen.add(spec.name);
    if (!Array.isArray(spec.shape) || !spec.shape.every((size) => Number.isSafeInteger(size) && size >= 0)) {
      throw invalid(`parameters[${index}].shape`, 'an array of integers of at least 0', spec.shape);
    }
    if (typeof spec.decay !== 'boolean') throw invalid(`parameters[${index}].decay`, 'true or false', spec.decay);
    return { name: spec.name, shape: [...spec.shape], decay: spec.decay };
  });
}

function parseTensorTable(value: unknown, elementCount: number, dataLength: number, invalid: InvalidField): TensorEntry[] {
  if (!Array.isArray(value) || value.length !== TENSOR_NAMES.length) {
    throw invalid('tensors', `an array of ${TENSOR_NAMES.length} entries`, value);
  }
  let end = 0;
  const entries = value.map((entry: unknown, index) => {
    const tensor = entry as Partial<TensorEntry> | null;
    const field = `tensors[${index}]`;
    if (typeof tensor !== 'object' || tensor === null) throw invalid(field, 'an object', entry);
    if (tensor.name !== TENSOR_NAMES[index]) throw invalid(`${field}.name`, JSON.stringify(TENSOR_NAMES[index]), tensor.name);
    if (tensor.dtype !== 'F32') throw invalid(`${field}.dtype`, '"F32"', tensor.dtype);
    if (!Array.isArray(tensor.shape) || tensor.shape.length !== 1 || tensor.shape[0] !== elementCount) {
      throw invalid(`${field}.shape`, `[${elementCount}], the parameter count`, tensor.shape);
    }
    // The tensors tile the data section in order, so every byte of it belongs to exactly one tensor.
    if (tensor.offset !== end) throw invalid(`${field}.offset`, `${end}, the end of the previous tensor`, tensor.offset);
    if (tensor.length !== 4 * elementCount) throw invalid(`${field}.length`, `${4 * elementCount}`, tensor.length);
    end += tensor.length;
    return { name: tensor.name, dtype: 'F32' as const, shape: [elementCount], offset: tensor.offset, length: tensor.length };
  });
  if (end !== dataLength) throw invalid('tensors', `to cover the ${dataLength}-byte data section`, `${end} bytes`);
  return entries;
}

/** Returns the little-endian bytes of `values`: a view on little-endian hosts, a swapped copy otherwise. */
export function littleEndianBytes(values: Float32Array): Uint8Array {
  const view = Buffer.from(values.buffer, values.byteOffset, values.byteLength);
  return hostIsLittleEndian ? view : Buffer.from(view).swap32();
}

/** Converts little-endian float32 bytes read from a file into host order, in place. */
export function toHostOrder(bytes: Uint8Array): void {
  if (!hostIsLittleEndian) {
    Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).swap32();
  }
}

/**
 * Creates a RINGTRAIN_ERR_CHECKPOINT error for the file at `path`. With `damaged` set, the message ends with the
 * usual remedy for a broken file.
 */
export function checkpointError(path: string, problem: string, damaged = false): RingtrainError {
  const remedy = damaged ? '; delete it and resume from an earlier checkpoint' : '';
  return new RingtrainError('RINGTRAIN_ERR_CHECKPOINT', `checkpoint ${path} ${problem}${remedy}`);
}

/** Checks the fields that the header and tensor table are built from; returns the parameter count. */
function validateForWriting(checkpoint: Checkpoint): number {
  const elementCount = countParameters(checkpoint.specs);
  const buffers: [string, Float32Array][] = [
    ['parameters', checkpoint.parameters],
    ['optimizer.firstMoment', checkpoint.optimizer.firstMoment],
    ['optimizer.secondMoment', checkpoint.optimizer.secondMoment],
  ];
  for (const [name, buffer] of buffers) {
    if (!(buffer instanceof Float32Array) || buffer.length !== elementCount) {
      throw new RangeError(
        `checkpoint ${name} has ${buffer?.length} elements but the specs describe ${elementCount}; ` +
          'pass Float32Arrays laid out in ParameterSpec order',
      );
    }
  }

  const integers: [string, number, number][] = [
    ['optimizer.step', checkpoint.optimizer.step, 0],
    ['totalSteps', checkpoint.totalSteps, 1],
    ['sampler.epoch', checkpoint.sampler.epoch, 0],
    ['sampler.nextBatch', checkpoint.sampler.nextBatch, 0],
    ['seed', checkpoint.seed, 0],
    ['worldSize', checkpoint.worldSize, 1],
  ];
  for (const [name, value, minimum] of integers) {
    if (!Number.isSafeInteger(value) || value < minimum) {
      throw new RangeError(`checkpoint ${name} must be an integer of at least ${minimum} (got ${value})`);
    }
  }

  const names = new Set(checkpoint.specs.map((spec) => spec.name));
  if (names.size !== checkpoint.specs.length) {
    throw new RangeError('checkpoint specs contain a parameter name twice; every ParameterSpec name must be unique');
  }
  for (const [key, value] of Object.entries(checkpoint.metadata)) {
    if (typeof value !== 'string') {
      throw new RangeError(`checkpoint metadata.${key} must be a string (got ${typeof value})`);
    }
  }
  return elementCount;
}
