/**
 * Checkpoint files on disk: the crash-safe writer with its `latest` pointer and pruning, the verifying reader,
 * and the resolution of a run directory to its latest checkpoint.
 *
 * A checkpoint directory contains `step-000123.ckpt` files and a `latest` file whose one line names the current
 * one. Temporary files start with a dot and contain `.tmp-`; readers never open them.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Checkpoint } from './checkpoint.js';
import { readFully, syncDirectory, writeFileAtomically } from './durable-file.js';
import {
  checkpointError,
  checkPrefix,
  DIGEST_BYTES,
  encodeCheckpoint,
  parseHeader,
  PREFIX_BYTES,
  toHostOrder,
  type TensorEntry,
} from './format.js';

/** Subdirectory of a run directory that contains its checkpoints. */
export const CHECKPOINT_DIRECTORY = 'checkpoints';
/** Name of the pointer file inside a checkpoint directory. */
export const LATEST_POINTER = 'latest';

const CHECKPOINT_NAME = /^step-(\d+)\.ckpt$/;
const TEMPORARY_CHECKPOINT_NAME = /^\.step-(\d+)\.ckpt\.tmp-/;
const TEMPORARY_POINTER_NAME = /^\.latest\.tmp-/;
/** Bytes hashed per read while the checksum is verified. */
const HASH_CHUNK_BYTES = 8 * 1024 * 1024;

/** Options of `writeCheckpoint`. */
export interface WriteCheckpointOptions {
  /** Checkpoints to keep, counting the one just written; older ones are deleted. An integer of at least 1. */
  keep: number;
  /** Receives one info line per checkpoint written and a warning about checkpoints newer than it. */
  logger?: Logger;
}

/** Result of `writeCheckpoint`. */
export interface WrittenCheckpoint {
  /** Path of the new checkpoint file. */
  path: string;
  /** Size of the new file in bytes. */
  bytes: number;
  /** Paths deleted by pruning: older checkpoints and temporary files that crashed writers left behind. */
  removed: string[];
}

/** A checkpoint file found in a checkpoint directory. */
export interface CheckpointFile {
  step: number;
  path: string;
}

/** Returns the file name of the checkpoint after `step` steps, e.g. `step-000123.ckpt`. */
export function checkpointFileName(step: number): string {
  return `step-${String(step).padStart(6, '0')}.ckpt`;
}

/**
 * Writes `checkpoint` into `directory` (created if missing) so that a crash at any moment leaves the previous
 * checkpoint and `latest` pointer intact. The order is: temporary file, fsync, rename to
 * `step-NNNNNN.ckpt`, fsync of the directory, then the same for the `latest` pointer, then pruning.
 *
 * Pruning keeps the `keep` newest checkpoints whose step is at most this one's. Checkpoints with a larger step
 * are left in place, because they come from a run that this one resumed behind, and are logged as a warning.
 * Throws a RangeError when `keep` or a checkpoint field is invalid; file system errors propagate.
 * Only one writer per directory is supported. The checksum is computed before the tensors are written, so the
 * checkpoint's arrays must not change until the promise resolves: pass copies of buffers that training updates.
 */
export async function writeCheckpoint(directory: string, checkpoint: Checkpoint, options: WriteCheckpointOptions): Promise<WrittenCheckpoint> {
  const { keep, logger } = options;
  if (!Number.isSafeInteger(keep) || keep < 1) {
    throw new RangeError(`checkpoint keep must be an integer of at least 1 (got ${keep})`);
  }
  const chunks = encodeCheckpoint(checkpoint);
  const bytes = chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0);

  await makeDirectoryDurably(directory);
  const step = checkpoint.optimizer.step;
  const name = checkpointFileName(step);
  const path = join(directory, name);
  await writeFileAtomically(path, chunks);
  await writeFileAtomically(join(directory, LATEST_POINTER), [Buffer.from(`${name}\n`, 'utf8')]);

  const removed = await prune(directory, step, keep, logger);
  logger?.info({ path, step, bytes, removed: removed.length }, 'checkpoint written');
  return { path, bytes, removed };
}

/** Lists the checkpoint files of `directory` by ascending step, ignoring temporary files; [] when it is missing. */
export async function listCheckpoints(directory: string): Promise<CheckpointFile[]> {
  let names: string[];
  try {
    names = await readdir(directory);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') return [];
    throw error;
  }
  const files: CheckpointFile[] = [];
  for (const name of names) {
    const match = CHECKPOINT_NAME.exec(name);
    if (match !== null) {
      files.push({ step: Number(match[1]), path: join(directory, name) });
    }
  }
  return files.sort((a, b) => a.step - b.step);
}

/**
 * Resolves a path to one checkpoint file. A file is returned unchanged. A directory is read as a run directory
 * (its `checkpoints/latest` pointer) or, failing that, as a checkpoint directory (its own `latest` pointer).
 * Raises RINGTRAIN_ERR_CHECKPOINT when the path does not exist, no pointer is found, or the pointer is invalid
 * or names a missing file.
 */
export async function resolveCheckpoint(runDirOrFile: string): Promise<string> {
  let isDirectory: boolean;
  try {
    isDirectory = (await stat(runDirOrFile)).isDirectory();
  } catch (error) {
    if (errorCode(error) === 'ENOENT') {
      throw checkpointError(runDirOrFile, 'does not exist; pass a run directory or a .ckpt file');
    }
    throw error;
  }
  if (!isDirectory) {
    return runDirOrFile;
  }

  const candidates = [join(runDirOrFile, CHECKPOINT_DIRECTORY), runDirOrFile];
  for (const directory of candidates) {
    const pointerPath = join(directory, LATEST_POINTER);
    let content: string;
    try {
      content = await readFile(pointerPath, 'utf8');
    } catch (error) {
      if (errorCode(error) === 'ENOENT' || errorCode(error) === 'ENOTDIR') continue;
      throw error;
    }
    return followPointer(pointerPath, content);
  }

  // No pointer: either no checkpoint was written, or the first writer crashed between the file and the pointer.
  const found = [...(await listCheckpoints(candidates[0] as string)), ...(await listCheckpoints(runDirOrFile))];
  const last = found[found.length - 1];
  const hint = last === undefined ? 'no checkpoint was written there' : `the newest file is ${last.path}; pass it to resume from it`;
  throw checkpointError(runDirOrFile, `has no ${CHECKPOINT_DIRECTORY}/${LATEST_POINTER} pointer: ${hint}`);
}

/**
 * Reads and verifies the checkpoint file at `path`: magic, format version, file length, SHA-256 checksum and
 * header fields. Raises RINGTRAIN_ERR_CHECKPOINT naming the file and the problem when any check fails.
 */
export async function readCheckpoint(path: string): Promise<Checkpoint> {
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    if (errorCode(error) === 'ENOENT') throw checkpointError(path, 'does not exist; pass an existing .ckpt file');
    throw error;
  }
  try {
    const info = await handle.stat();
    const size = info.size;
    if (!info.isFile()) {
      throw checkpointError(path, 'is not a file; pass a .ckpt file, or resolve a run directory with resolveCheckpoint');
    }
    const prefix = new Uint8Array(PREFIX_BYTES);
    await readFully(handle, prefix, 0);
    const { headerLength, dataLength } = checkPrefix(prefix, size, path);

    // Writers replace files by rename, so both passes through the open handle read the same unchanging file.
    await verifyDigest(handle, size, path);

    const headerBytes = new Uint8Array(headerLength);
    await readFully(handle, headerBytes, PREFIX_BYTES);
    const header = parseHeader(headerBytes, dataLength, path);
    const dataStart = PREFIX_BYTES + headerLength;
    const [parameters, firstMoment, secondMoment] = await Promise.all(
      header.tensors.map((tensor) => readTensor(handle, dataStart, tensor)),
    );

    return {
      specs: header.parameters,
      parameters: parameters as Float32Array,
      optimizer: { step: header.step, firstMoment: firstMoment as Float32Array, secondMoment: secondMoment as Float32Array },
      totalSteps: header.totalSteps,
      sampler: header.sampler,
      seed: header.rng.seed,
      worldSize: header.worldSize,
      config: header.config,
      metadata: header.metadata,
    };
  } finally {
    await handle.close();
  }
}

async function verifyDigest(handle: FileHandle, size: number, path: string): Promise<void> {
  const hashedLength = size - DIGEST_BYTES;
  const hash = createHash('sha256');
  const buffer = new Uint8Array(Math.min(HASH_CHUNK_BYTES, hashedLength));
  for (let position = 0; position < hashedLength; position += buffer.byteLength) {
    const piece = buffer.subarray(0, Math.min(buffer.byteLength, hashedLength - position));
    const read = await readFully(handle, piece, position);
    if (read !== piece.byteLength) {
      throw checkpointError(path, `became shorter while it was read (${position + read} of ${size} bytes)`, true);
    }
    hash.update(piece);
  }
  const computed = hash.digest();
  const stored = Buffer.alloc(DIGEST_BYTES);
  await readFully(handle, stored, hashedLength);
  if (!computed.equals(stored)) {
    throw checkpointError(
      path,
      `is corrupted: the SHA-256 of its first ${hashedLength} bytes is ${computed.toString('hex')}, but the file stores ${stored.toString('hex')}`,
      true,
    );
  }
}

async function readTensor(handle: FileHandle, dataStart: number, tensor: TensorEntry): Promise<Float32Array> {
  const values = new Float32Array(tensor.length / 4);
  const bytes = new Uint8Array(values.buffer);
  await readFully(handle, bytes, dataStart + tensor.offset);
  toHostOrder(bytes);
  return values;
}

async function followPointer(pointerPath: string, content: string): Promise<string> {
  const name = content.trim();
  if (!CHECKPOINT_NAME.test(name)) {
    throw checkpointError(
      pointerPath,
      `pointer contains ${JSON.stringify(name.slice(0, 80))} instead of a file name such as step-000123.ckpt; ` +
        'delete the pointer and pass a .ckpt file from that directory',
    );
  }
  const target = join(dirname(pointerPath), name);
  try {
    await stat(target);
  } catch (error) {
    if (errorCode(error) === 'ENOENT') {
      throw checkpointError(pointerPath, `pointer names ${name}, which does not exist; pass an existing .ckpt file from that directory`);
    }
    throw error;
  }
  return target;
}

/** Deletes old checkpoints and leftover temporary files after `step` was written; returns the deleted paths. */
async function prune(directory: string, step: number, keep: number, logger: Logger | undefined): Promise<string[]> {
  const checkpoints = await listCheckpoints(directory);
  const current = checkpoints.filter((file) => file.step <= step);
  const newer = checkpoints.filter((file) => file.step > step);
  const doomed = current.slice(0, Math.max(0, current.length - keep)).map((file) => file.path);
  if (newer.length > 0) {
    logger?.warn(
      { directory, step, newer: newer.map((file) => file.path) },
      'checkpoint directory contains checkpoints newer than the one written; the latest pointer skips them',
    );
  }

  // The writer renamed its own temporary files, so the ones left came from a writer that crashed.
  for (const name of await readdir(directory)) {
    const match = TEMPORARY_CHECKPOINT_NAME.exec(name);
    if ((match !== null && Number(match[1]) < step) || TEMPORARY_POINTER_NAME.test(name)) {
      doomed.push(join(directory, name));
    }
  }
  for (const path of doomed) {
    await rm(path, { force: true });
  }
  return doomed;
}

/** Creates `directory` and its missing parents, then syncs each parent so the new entries survive a power loss. */
async function makeDirectoryDurably(directory: string): Promise<void> {
  const absolute = resolve(directory);
  const firstCreated = await mkdir(absolute, { recursive: true });
  if (firstCreated === undefined) return;
  for (let created = absolute; ; created = dirname(created)) {
    await syncDirectory(dirname(created));
    if (created === firstCreated || dirname(created) === created) break;
  }
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}
