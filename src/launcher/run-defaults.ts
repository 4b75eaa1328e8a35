/**
 * Defaults the launcher derives from where it runs: the package root and its default config file, a new
 * run id from the start time, and the run directory that a --resume path belongs to.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { ConfigError } from '../errors.js';
import { usageError } from './usage.js';

let cachedPackageRoot: string | undefined;

/**
 * Returns the folder of ringtrain's package.json by walking up from this module, so the result is the same
 * whether the module runs compiled from dist/src/launcher or from the source tree in src/launcher.
 * Throws a ConfigError when no package.json named ringtrain is found.
 */
export function packageRoot(): string {
  if (cachedPackageRoot !== undefined) {
    return cachedPackageRoot;
  }
  const start = dirname(fileURLToPath(import.meta.url));
  let directory = start;
  // Bounded by the depth of the file system: dirname of the root is the root itself.
  for (;;) {
    try {
      const manifest = JSON.parse(readFileSync(join(directory, 'package.json'), 'utf8')) as { name?: unknown };
      if (manifest.name === 'ringtrain') {
        cachedPackageRoot = directory;
        return directory;
      }
    } catch {
      // No readable package.json here, so keep walking up.
    }
    const parent = dirname(directory);
    if (parent === directory) {
      throw new ConfigError(`cannot find the ringtrain package.json above ${start}; pass the config file with --config`);
    }
    directory = parent;
  }
}

/** Returns the absolute path of configs/brown-pos.json in the package, the config used without --config. */
export function defaultConfigPath(): string {
  return join(packageRoot(), 'configs', 'brown-pos.json');
}

/** Builds a run id from the UTC time `now` and 4 hex digits, e.g. `20261204-213015-a3f9`. */
export function makeRunId(now: Date = new Date(), hex: string = randomBytes(2).toString('hex')): string {
  const pad = (value: number): string => String(value).padStart(2, '0');
  const date = `${now.getUTCFullYear()}${pad(now.getUTCMonth() + 1)}${pad(now.getUTCDate())}`;
  const time = `${pad(now.getUTCHours())}${pad(now.getUTCMinutes())}${pad(now.getUTCSeconds())}`;
  return `${date}-${time}-${hex}`;
}

/**
 * Returns the run directory that a `--resume` path belongs to: the path itself when it is a directory, the
 * folder above `checkpoints/` for a checkpoint file inside a run, and null for a checkpoint elsewhere.
 */
export function runDirOfResume(resume: string): string | null {
  let isDirectory = false;
  try {
    isDirectory = statSync(resume).isDirectory();
  } catch {
    throw usageError(`--resume path ${resume} does not exist; pass a run directory or a checkpoint file`);
  }
  if (isDirectory) return resume;
  const folder = dirname(resume);
  return basename(folder) === 'checkpoints' ? dirname(folder) : null;
}
