import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ExecutionContext } from 'ava';

/** Creates a temporary directory named after `prefix` that is removed when the test ends. */
export async function temporaryDirectory(t: ExecutionContext, prefix: string): Promise<string> {
  const directory = await mkdtemp(join(tmpdir(), prefix));
  t.teardown(() => rm(directory, { recursive: true, force: true }));
  return directory;
}

/** Returns the error that `promise` rejects with, or null when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<Error | null> {
  try {
    await promise;
    return null;
  } catch (error) {
    return error as Error;
  }
}
