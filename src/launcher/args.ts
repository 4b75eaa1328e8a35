/**
 * Command-line parsing for the launcher: flags, the config file and `--set` overrides resolved into one
 * validated RunConfig.
 */
import { existsSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';

import { defaultConfig } from '../config/defaults.js';
import { applyOverrides, loadConfig } from '../config/load.js';
import { CONFIG_SCHEMA, describeRule, ruleAllows } from '../config/schema.js';
import { isTaskModulePath } from '../config/validate.js';
import type { BackendName, RunConfig } from '../config/types.js';
import type { PeerAddress } from '../comm/protocol.js';
import { readSchedulerEnvironment, type SchedulerSettings } from './scheduler-env.js';
import { ConfigError } from '../errors.js';
import {
  describeFlagValue,
  parseFlags,
  parseHostPort,
  parseIntegerFlag,
  parsePathFlag,
  parseRunId,
  parseWebSocketUrl,
  wantsHelp,
} from './flag-values.js';
import { defaultConfigPath, makeRunId, runDirOfResume } from './run-defaults.js';
import { usageError, WORKERS_RULE } from './usage.js';

export { helpText } from './usage.js';
export { defaultConfigPath, makeRunId, packageRoot } from './run-defaults.js';

/** The launcher's resolved options. */
export interface LaunchOptions {
  /** Worker processes to start on this node (`--gpus`). */
  workers: number;
  /** True when `--gpus` was given; a resumed run otherwise keeps the checkpoint's worker count. */
  workersGiven: boolean;
  /** Absolute path of the config file that was read. */
  configPath: string;
  /** Absolute path of the run directory, which the launcher creates. */
  runDir: string;
  /** Run id: the UTC start time plus 4 random hex digits, e.g. `20261204-213015-a3f9`. */
  runId: string;
  /** The config file with flags and `--set` overrides applied and validated, or the defaults when `help` is true. */
  config: RunConfig;
  /** True when `--help` or `-h` was given, in which case nothing else was parsed or read. */
  help: boolean;
  /** Run directory or checkpoint file given with `--resume`, as an absolute path; null for a fresh run. */
  resume: string | null;
  /** Times the launcher restarts the worker group from the latest checkpoint after a failure (`--max-restarts`). */
  maxRestarts: number;
  /** WebSocket URL of a log aggregator that receives every log line of the run (`--log-to`), or null. */
  logTo: string | null;
  /** Nodes in the run (`--nnodes`) and this node's index (`--node-rank`); node 0 starts the coordinator. */
  nodeCount: number;
  nodeRank: number;
  /** Coordinator address (`--coordinator HOST:PORT`); null on a single node, where it listens on a free port. */
  coordinator: PeerAddress | null;
  /** Address this node's ring listeners bind to (`--bind`), and the address peers dial (`--advertise`). */
  bind: string;
  advertise: string;
  /** Run token (`--token` or RINGTRAIN_TOKEN) every connection presents, or null for an open run. */
  token: string | null;
}

/** Inputs of parseLaunchArgs besides argv, replaceable in tests. */
export interface LaunchEnvironment {
  /** Directory that relative paths and the default run directory are resolved against (default: process.cwd()). */
  cwd?: string;
  /** Start time used for the run id (default: now). */
  now?: Date;
}

/**
 * Parses the launcher's command line (without the node and script paths) and resolves the run config.
 *
 * The config is built in this order: the config file (keys it omits take their defaults), then --max-steps,
 * --epochs, --seed and --backend, then each --set from left to right, and the result is validated again.
 * With --help or -h nothing else is parsed or read, and `config` contains the defaults.
 * Throws a RingtrainError with code RINGTRAIN_ERR_USAGE for an unknown option, a missing or invalid flag value
 * or a positional argument, and a ConfigError for an invalid config file, --set override or config key.
 */
export function parseLaunchArgs(argv: readonly string[], environment: LaunchEnvironment = {}, variables: NodeJS.ProcessEnv = process.env): LaunchOptions {
  const cwd = environment.cwd ?? process.cwd();
  const newRunId = makeRunId(environment.now ?? new Date());
  const defaultRunDir = resolve(cwd, 'runs', newRunId);

  if (wantsHelp(argv)) {
    return {
      workers: 1,
      workersGiven: false,
      configPath: defaultConfigPath(),
      runDir: defaultRunDir,
      runId: newRunId,
      config: defaultConfig(),
      help: true,
      resume: null,
      maxRestarts: 0,
      logTo: null,
      nodeCount: 1,
      nodeRank: 0,
      coordinator: null,
      bind: '127.0.0.1',
      advertise: '127.0.0.1',
      token: null,
    };
  }

  const values = parseFlags(argv);

  const workers = values.gpus === undefined ? 1 : parseIntegerFlag('--gpus', values.gpus, WORKERS_RULE);
  const maxRestarts = values['max-restarts'] === undefined ? 0 : parseIntegerFlag('--max-restarts', values['max-restarts'], { kind: 'integer', min: 0 });
  const resume = values.resume === undefined ? null : parsePathFlag('--resume', values.resume, cwd);
  const logTo = values['log-to'] === undefined ? null : parseWebSocketUrl('--log-to', values['log-to']);
  let scheduler: SchedulerSettings;
  try {
    scheduler = readSchedulerEnvironment(variables);
  } catch (error) {
    throw usageError((error as Error).message);
  }
  const nodeCount = values.nnodes === undefined ? (scheduler.nodeCount ?? 1) : parseIntegerFlag('--nnodes', values.nnodes, { kind: 'integer', min: 1 });
  const nodeRank = values['node-rank'] === undefined ? (scheduler.nodeRank ?? 0) : parseIntegerFlag('--node-rank', values['node-rank'], { kind: 'integer', min: 0 });
  if (nodeCount < 1 || nodeRank >= nodeCount) {
    let origin = '';
    if (scheduler.sources.length > 0) origin = `, from ${scheduler.sources.join(', ')}`;
    else if (values.nnodes === undefined) origin = ', and --nnodes defaults to 1';
    throw usageError(`the node rank must be below the node count (got node rank ${nodeRank} of ${nodeCount} nodes${origin})`);
  }
  const coordinator = values.coordinator === undefined ? (scheduler.coordinator ?? null) : parseHostPort('--coordinator', values.coordinator);
  if (nodeCount > 1 && coordinator === null) {
    throw usageError(`--nnodes ${nodeCount} needs --coordinator HOST:PORT, the address of node 0's coordinator that every node dials`);
  }
  const tokenText = values.token ?? variables.RINGTRAIN_TOKEN ?? '';
  const token = tokenText === '' ? null : tokenText;
  if (nodeCount > 1 && token === null && values.insecure !== true) {
    throw usageError(
      `--nnodes ${nodeCount} needs a run token, so that only this run's processes can join: set RINGTRAIN_TOKEN ` +
        '(or --token) to the same secret on every node, or pass --insecure to run without one',
    );
  }
  // A resumed run continues in the run directory it came from and reuses its resolved config by default.
  const resumedRunDir = resume === null ? null : runDirOfResume(resume);
  const runDir =
    values['run-dir'] !== undefined ? parsePathFlag('--run-dir', values['run-dir'], cwd) : (resumedRunDir ?? defaultRunDir);
  // Every node of a run must present the same run id at rendezvous, so a multi-node run derives it from the
  // coordinator address unless --run-id names it. A run resumed in its own directory keeps its run id.
  const runId =
    values['run-id'] !== undefined
      ? parseRunId(values['run-id'])
      : coordinator !== null && nodeCount > 1
        ? `run-${coordinator.host}-${coordinator.port}`.replace(/[^A-Za-z0-9._-]/g, '_')
        : resumedRunDir !== null && resumedRunDir === runDir
          ? basename(runDir)
          : newRunId;
  const savedConfig = resumedRunDir === null ? null : join(resumedRunDir, 'config.json');
  const configPath =
    values.config !== undefined
      ? parsePathFlag('--config', values.config, cwd)
      : savedConfig !== null && existsSync(savedConfig)
        ? savedConfig
        : defaultConfigPath();

  const fileConfig = loadConfig(configPath);
  if (values['max-steps'] !== undefined) {
    fileConfig.train.maxSteps = parseIntegerFlag('--max-steps', values['max-steps'], CONFIG_SCHEMA.train.maxSteps);
  }
  if (values.epochs !== undefined) {
    fileConfig.train.epochs = parseIntegerFlag('--epochs', values.epochs, CONFIG_SCHEMA.train.epochs);
  }
  if (values.seed !== undefined) {
    fileConfig.seed = parseIntegerFlag('--seed', values.seed, CONFIG_SCHEMA.seed);
  }
  if (values.backend !== undefined) {
    if (!ruleAllows(CONFIG_SCHEMA.backend, values.backend)) {
      throw usageError(`--backend must be ${describeRule(CONFIG_SCHEMA.backend)} (got ${describeFlagValue(values.backend)})`);
    }
    fileConfig.backend = values.backend as BackendName;
  }
  if (values.task !== undefined) {
    if (values.task === '') throw usageError('--task must be a built-in task name or the path of a task module (got an empty value)');
    fileConfig.task = values.task;
  }
  if (values.balance === true) fileConfig.train.balance = true;
  const config = applyOverrides(fileConfig, values.set ?? []);
  resolveConfigPaths(config, cwd);

  if (config.train.globalBatchSize < workers) {
    throw new ConfigError(
      `train.globalBatchSize (${config.train.globalBatchSize}) must be at least --gpus (${workers}) so that every ` +
        `worker gets a sentence of each batch; raise it with --set train.globalBatchSize=${workers} or lower --gpus`,
    );
  }

  // Single-node runs bind to loopback unless --bind or the config names another address.
  const bind = values.bind ?? config.coordinator.host;
  const advertise = values.advertise ?? bind;
  return {
    workers,
    workersGiven: values.gpus !== undefined,
    configPath,
    runDir,
    runId,
    config,
    help: false,
    resume,
    maxRestarts,
    logTo,
    nodeCount,
    nodeRank,
    coordinator,
    bind,
    advertise,
    token,
  };
}

/**
 * Makes the task module and data file paths of `config` absolute (relative ones are read from `cwd`), so every
 * process and the saved config.json name the same files. A task module that does not exist is a usage error.
 */
function resolveConfigPaths(config: RunConfig, cwd: string): void {
  if (isTaskModulePath(config.task)) {
    config.task = resolve(cwd, config.task);
    if (!existsSync(config.task)) {
      throw usageError(`task module ${config.task} does not exist; pass --task with the path of a .js or .mjs file whose default export is defineTask({...})`);
    }
  }
  for (const key of ['trainFile', 'evalFile'] as const) {
    if (config.data[key] !== '') config.data[key] = resolve(cwd, config.data[key]);
  }
}
