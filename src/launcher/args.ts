/**
 * Command-line parsing for the launcher: flags, the config file and `--set` overrides resolved into one
 * validated RunConfig.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { DEFAULT_CONFIG, defaultConfig } from '../config/defaults.js';
import { applyOverrides, loadConfig } from '../config/load.js';
import { BACKEND_NAMES, CONFIG_SCHEMA, TASK_NAMES, describeRule, ruleAllows, type LeafRule } from '../config/schema.js';
import { closestMatches } from '../config/suggest.js';
import { isTaskModulePath } from '../config/validate.js';
import type { BackendName, RunConfig } from '../config/types.js';
import type { PeerAddress } from '../comm/protocol.js';
import { readSchedulerEnvironment, type SchedulerSettings } from './scheduler-env.js';
import { ConfigError, RingtrainError } from '../errors.js';

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

const OPTIONS = {
  gpus: { type: 'string' },
  config: { type: 'string' },
  'max-steps': { type: 'string' },
  epochs: { type: 'string' },
  seed: { type: 'string' },
  'run-dir': { type: 'string' },
  backend: { type: 'string' },
  set: { type: 'string', multiple: true },
  resume: { type: 'string' },
  'max-restarts': { type: 'string' },
  'log-to': { type: 'string' },
  nnodes: { type: 'string' },
  'run-id': { type: 'string' },
  'node-rank': { type: 'string' },
  coordinator: { type: 'string' },
  bind: { type: 'string' },
  advertise: { type: 'string' },
  token: { type: 'string' },
  task: { type: 'string' },
  balance: { type: 'boolean' },
  insecure: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const VALUE_FLAGS = new Set(
  Object.entries(OPTIONS)
    .filter(([, option]) => option.type === 'string')
    .map(([name]) => `--${name}`),
);
const ALL_FLAGS = [...Object.keys(OPTIONS).map((name) => `--${name}`), '-h'];
const HELP_HINT = 'run with --help for the options';
const WORKERS_RULE: LeafRule = { kind: 'integer', min: 1 };
const FLAG_EXAMPLES: Readonly<Record<string, string>> = {
  '--gpus': '2',
  '--config': 'configs/brown-pos.json',
  '--max-steps': '100',
  '--epochs': '1',
  '--seed': '1234',
  '--run-dir': 'runs/trial',
  '--backend': 'wasm',
  '--set': 'optimizer.lr=3e-4',
  '--resume': 'runs/20261204-213015-a3f9',
  '--max-restarts': '3',
  '--log-to': 'ws://127.0.0.1:9400',
  '--nnodes': '2',
  '--run-id': 'tagger-trial-3',
  '--node-rank': '1',
  '--coordinator': '127.0.0.1:29400',
  '--bind': '127.0.0.2',
  '--advertise': '127.0.0.2',
  '--token': 'a-long-random-secret',
  '--task': './examples/xor-task.js',
};

function usageError(message: string): RingtrainError {
  return new RingtrainError('RINGTRAIN_ERR_USAGE', `${message}; ${HELP_HINT}`);
}

/**
 * Rewrites `--flag value` as `--flag=value` for flags that take a value. node:util parseArgs rejects a
 * separate value that starts with "-" as ambiguous, which would hide the real problem in `--seed -1`.
 */
function joinFlagValues(argv: readonly string[]): string[] {
  const joined: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i];
    if (token === '--') {
      joined.push(...argv.slice(i));
      break;
    }
    if (!VALUE_FLAGS.has(token)) {
      joined.push(token);
      continue;
    }
    const value = argv[i + 1];
    const looksLikeFlag = value !== undefined && value.startsWith('-') && !/^-\d/.test(value);
    if (value === undefined || looksLikeFlag) {
      throw usageError(`option ${token} requires a value, e.g. ${token} ${FLAG_EXAMPLES[token] ?? 'VALUE'}`);
    }
    joined.push(`${token}=${value}`);
    i++;
  }
  return joined;
}

/** Converts node:util parseArgs errors into usage errors that name the flag or argument. */
function toUsageError(error: unknown): unknown {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message.split('\n')[0] : String(error);
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const flag = /Unknown option '([^']+)'/.exec(message)?.[1] ?? message;
    const matches = closestMatches(flag, ALL_FLAGS);
    const suggestion = matches.length > 0 ? ` (did you mean ${matches.join(' or ')}?)` : '';
    return usageError(`unknown option ${flag}${suggestion}`);
  }
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
    const argument = /Unexpected argument '([^']+)'/.exec(message)?.[1] ?? message;
    return usageError(`unexpected argument ${argument}; the launcher takes only options`);
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    return usageError(message);
  }
  return error;
}

function parseFlags(argv: readonly string[]) {
  try {
    return parseArgs({ args: joinFlagValues(argv), options: OPTIONS, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw toUsageError(error);
  }
}

/** Parses a decimal integer flag value and checks it against `rule`, throwing a usage error that names the flag. */
function parseIntegerFlag(flag: string, text: string, rule: LeafRule): number {
  const value = /^-?\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!ruleAllows(rule, value)) {
    throw usageError(`${flag} must be ${describeRule(rule)} (got ${describeFlagValue(text)})`);
  }
  return value;
}

function parsePathFlag(flag: string, text: string, cwd: string): string {
  if (text === '') {
    throw usageError(`${flag} must be a path (got an empty value)`);
  }
  return resolve(cwd, text);
}

function describeFlagValue(text: string): string {
  return text === '' ? 'an empty value' : text;
}

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

/** Reports whether argv requests help before any `--` terminator. */
function wantsHelp(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  const options = end < 0 ? argv : argv.slice(0, end);
  return options.includes('--help') || options.includes('-h');
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

function parseRunId(text: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/.test(text)) {
    throw usageError(`--run-id must be 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit (got ${describeFlagValue(text)})`);
  }
  return text;
}

function parseHostPort(flag: string, text: string): PeerAddress {
  const match = /^(.+):(\d+)$/.exec(text);
  const port = match === null ? Number.NaN : Number(match[2]);
  if (match === null || !(port >= 1 && port <= 65535)) {
    throw usageError(`${flag} must be HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:29400 (got ${describeFlagValue(text)})`);
  }
  return { host: match[1] as string, port };
}

function parseWebSocketUrl(flag: string, text: string): string {
  let url: URL | null = null;
  try {
    url = new URL(text);
  } catch {
    // Reported below with the expected form.
  }
  if (url === null || (url.protocol !== 'ws:' && url.protocol !== 'wss:')) {
    throw usageError(`${flag} must be a ws:// or wss:// URL such as ws://127.0.0.1:9400 (got ${describeFlagValue(text)})`);
  }
  return url.toString();
}

/**
 * Returns the run directory that a `--resume` path belongs to: the path itself when it is a directory, the
 * folder above `checkpoints/` for a checkpoint file inside a run, and null for a checkpoint elsewhere.
 */
function runDirOfResume(resume: string): string | null {
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

/** Returns the launcher's --help text: what each option sets, its unit and default, and two examples. */
export function helpText(): string {
  const defaults = DEFAULT_CONFIG;
  const rule = (leaf: LeafRule): string => describeRule(leaf).replace(/^an? /, '');
  return `Usage: npm run launch -- [options]
   or: node dist/src/launcher/main.js [options]

Starts a coordinator and one worker process per device on this machine and trains the
configured task data-parallel. The run config is built from the config file, then
--max-steps, --epochs, --seed and --backend, then each --set from left to right.
Config defaults below are those of configs/brown-pos.json.

Options:
  --gpus N          Worker processes to start on this node, one per device
                    (${rule(WORKERS_RULE)}; default 1). Workers run on the CPU when
                    fewer GPUs are found.
  --config FILE     JSON run config; keys it leaves out take their defaults
                    (default: configs/brown-pos.json in the package).
  --max-steps N     Stop after N optimizer steps, 0 for no limit beyond the epochs
                    (sets train.maxSteps, ${rule(CONFIG_SCHEMA.train.maxSteps)}; default ${defaults.train.maxSteps}).
  --epochs N        Passes over the training split
                    (sets train.epochs, ${rule(CONFIG_SCHEMA.train.epochs)}; default ${defaults.train.epochs}).
  --seed N          Random seed of the run
                    (sets seed, ${rule(CONFIG_SCHEMA.seed)}; default ${defaults.seed}).
  --backend NAME    tfjs backend, ${describeRule(CONFIG_SCHEMA.backend)} (sets backend; default ${defaults.backend}).
                    auto tries tensorflow, then wasm, then cpu.
  --run-dir DIR     Folder for everything the run writes: logs, metrics, checkpoints,
                    the evaluation report, weights and the resolved config (default:
                    runs/RUN_ID in the current directory, where RUN_ID is the UTC start
                    time plus 4 random hex digits, e.g. 20261204-213015-a3f9).
  --set KEY=VALUE   Override one config key, e.g. --set optimizer.lr=3e-4 (repeatable).
                    VALUE is read as JSON when it parses and as text otherwise.
                    docs/config.md lists every key with its range and default.
  --resume PATH     Continue a run from a checkpoint: a run directory (its latest
                    checkpoint) or a checkpoint file. The run continues in that run
                    directory, with its run id, saved config and worker count, unless
                    --run-dir, --config or --gpus is given.
  --max-restarts N  After a failure, restart every worker from the latest checkpoint
                    up to N times (integer of at least 0; default 0).
  --log-to URL      Also stream every process's log lines to a log aggregator
                    (npm run aggregator) at this ws:// URL. RINGTRAIN_TOKEN, when set,
                    is presented to it. Losing the aggregator never stops the run.
  --run-id ID       Name of the run, the same on every node (default: the start time on one
                    node, run-HOST-PORT of --coordinator with --nnodes above 1).
  --nnodes N        Nodes in the run (default 1). Start the launcher once on each node.
  --node-rank K     This node's index, 0 to N-1 (default 0). Node 0 starts the coordinator.
  --coordinator HOST:PORT
                    Address of node 0's coordinator; required with --nnodes above 1.
                    Node 0 listens on it, every node's workers dial it.
  --token SECRET    Run token that every connection presents (default RINGTRAIN_TOKEN).
                    Connections without it are rejected and logged. Required with
                    --nnodes above 1 unless --insecure is given; prefer the variable,
                    because flags are visible in the process list.
  --task NAME|FILE  Task to train: a built-in task (${TASK_NAMES.join(', ')})
                    or the path of a task module written with defineTask (sets task;
                    docs/tasks.md). Relative paths are read from the current directory.
  --balance         Size each worker's shard by its measured speed instead of equally
                    (sets train.balance; docs/sampling.md).
  --insecure        Allow a multi-node run without a token.
  --bind ADDR       Address this node's ring listeners bind to (default coordinator.host,
                    127.0.0.1).
  --advertise ADDR  Address other nodes dial to reach this node's workers (default --bind).
  -h, --help        Print this help and exit.

Examples:
  npm run launch -- --gpus 2 --max-steps 200
  npm run launch -- --gpus 2 --config configs/brown-pos.json --set optimizer.lr=3e-4 --set train.globalBatchSize=128
  npm run launch -- --gpus 2 --resume runs/20261204-213015-a3f9 --max-restarts 2
  npm run launch -- --gpus 2 --task ./examples/xor-task.js
  npm run launch -- --gpus 2 --config configs/brown-charlm.json
`;
}
