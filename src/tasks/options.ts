/**
 * Reading and checking `taskOptions` and the data file settings of the built-in file tasks.
 */
import type { RunConfig, TaskOptions } from '../config/types.js';
import { ConfigError } from '../errors.js';

/**
 * Throws a ConfigError when `options` contains a key that is not in `allowed`, so that a misspelt option
 * does not silently fall back to its default.
 */
export function checkOptionNames(task: string, options: TaskOptions, allowed: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) {
      const known = allowed.length === 0 ? 'it takes none' : `it takes ${allowed.join(', ')}`;
      throw new ConfigError(`taskOptions.${key} is not an option of task ${task} (${known}); remove it or fix its spelling`);
    }
  }
}

/** Returns the boolean `taskOptions[name]`, or `fallback` when it is absent; throws a ConfigError otherwise. */
export function booleanOption(options: TaskOptions, name: string, fallback: boolean): boolean {
  const value = options[name];
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') {
    throw new ConfigError(`taskOptions.${name} must be true or false (got ${JSON.stringify(value)}); set it with --set taskOptions.${name}=true`);
  }
  return value;
}

/** Returns the non-empty string `taskOptions[name]`, or undefined when it is absent; throws a ConfigError otherwise. */
export function stringOption(options: TaskOptions, name: string): string | undefined {
  const value = options[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0) {
    throw new ConfigError(`taskOptions.${name} must be a non-empty string (got ${JSON.stringify(value)}); set it in the config's taskOptions`);
  }
  return value;
}

/** Returns `config.data.trainFile`, or throws a ConfigError with an example when it is empty. */
export function requireTrainFile(config: RunConfig, example: string): string {
  const file = config.data.trainFile;
  if (file === '') {
    throw new ConfigError(
      `data.trainFile is empty, but task ${config.task} reads its training data from a file; ` +
        `set it in the config or with --set data.trainFile=${example}`,
    );
  }
  return file;
}
