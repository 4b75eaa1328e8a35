import type { Logger } from 'pino';
import type { RunConfig } from '../config/types.js';
import { ConfigError } from '../errors.js';
import type { Task } from './task.js';
import { createBrownPosTask } from './brown-pos.js';

/** Names accepted by the config's `task` key. */
export const builtInTasks = ['brown-pos'] as const;

/** Builds the task named by `config.task`; the tfjs backend must already be selected. */
export async function createTask(config: RunConfig, logger: Logger): Promise<Task<unknown>> {
  switch (config.task) {
    case 'brown-pos':
      return (await createBrownPosTask(config, logger)) as Task<unknown>;
    default:
      throw new ConfigError(`task must be one of ${builtInTasks.join(', ')} (got '${config.task}')`);
  }
}
