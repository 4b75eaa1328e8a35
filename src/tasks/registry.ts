/**
 * Finds and imports task modules: a built-in task by name, or a user's module by path. Loaded by the data
 * threads too, so it imports nothing heavy.
 */
import { isAbsolute, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { ConfigError } from '../errors.js';
import { checkTaskDefinition, type AnyTaskDefinition, type NativeTaskDefinition } from './api.js';

/** Modules of the built-in tasks, next to this file. */
const BUILT_IN_MODULES: Record<string, string> = {
  'brown-pos': './brown-pos.js',
  'brown-charlm': './brown-charlm.js',
  'conll-tagging': './conll-tagging.js',
  'text-classification': './text-classification.js',
  'spam-classification': './spam-classification.js',
  'tabular-classification': './tabular-classification.js',
};

/** Returns the URL to import for `config.task`; a path must exist. */
export function taskModuleUrl(task: string): string {
  const builtIn = BUILT_IN_MODULES[task];
  if (builtIn !== undefined) return new URL(builtIn, import.meta.url).href;
  const file = isAbsolute(task) ? task : resolve(task);
  if (!existsSync(file)) {
    throw new ConfigError(`task module ${file} does not exist; pass --task with the path of a .js or .mjs file whose default export is defineTask({...})`);
  }
  return pathToFileURL(file).href;
}

/** Imports the task module named by `task` and returns its checked definition (the default export). */
export async function importTask(task: string): Promise<AnyTaskDefinition> {
  const url = taskModuleUrl(task);
  let module: { default?: unknown };
  try {
    module = (await import(url)) as { default?: unknown };
  } catch (error) {
    throw new ConfigError(`cannot import task module ${task}: ${(error as Error).message}`);
  }
  checkTaskDefinition(module.default, `task module ${task}`);
  return module.default;
}

/** Reports whether a definition brings its own low-level model. */
export function isNativeTask(definition: AnyTaskDefinition): definition is NativeTaskDefinition<unknown, unknown> {
  return typeof (definition as { nativeModel?: unknown }).nativeModel === 'function';
}

