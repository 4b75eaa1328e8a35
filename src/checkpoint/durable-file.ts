/**
 * File helpers for crash-safe writes: a file is written under a temporary name in its final directory, synced,
 * renamed over the final name and the directory synced, so a crash leaves either the old file or the new one.
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** Bytes per write or read call; Linux moves at most about 2 GiB per call, so large buffers go in pieces. */
const IO_CHUNK_BYTES = 64 * 1024 * 1024;

/** Returns the temporary name used while `path` is written; it starts with a dot and contains `.tmp-`. */
export function temporaryPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/**
 * Writes `chunks` to `path` atomically: temporary file in the same directory, fsync, rename, fsync of the
 * directory. On failure the temporary file is removed and `path` keeps its old content.
 */
export async function writeFileAtomically(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  const temporaryPath = temporaryPathFor(path);
  const handle = await open(temporaryPath, 'wx');
  try {
    try {
      for (const chunk of chunks) {
        await writeFully(handle, chunk);
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temporaryPath, path);
  } catch (error) {
    await rm(temporaryPath, { force: true });
    throw error;
  }
  await syncDirectory(dirname(path));
}

/** Writes all of `bytes` at the current file position, looping because one write call may write fewer bytes. */
export async function writeFully(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.byteLength) {
    const length = Math.min(IO_CHUNK_BYTES, bytes.byteLength - offset);
    const { bytesWritten } = await handle.write(bytes, offset, length);
    offset += bytesWritten;
  }
}

/**
 * Reads exactly `target.byteLength` bytes starting at file offset `position` into `target`. Returns the number
 * of bytes read, which is smaller only when the file ends first.
 */
export async function readFully(handle: FileHandle, target: Uint8Array, position: number): Promise<number> {
  let offset = 0;
  while (offset < target.byteLength) {
    const length = Math.min(IO_CHUNK_BYTES, target.byteLength - offset);
    const { bytesRead } = await handle.read(target, offset, length, position + offset);
    if (bytesRead === 0) {
      break;
    }
    offset += bytesRead;
  }
  return offset;
}

/**
 * Flushes a directory's entries to disk, so that a rename inside it survives a power loss.
 * Skipped on Windows, where a directory cannot be opened for fsync.
 */
export async function syncDirectory(directory: string): Promise<void> {
  if (process.platform === 'win32') {
    return;
  }
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
