/**
 * The launcher's option table and its --help text, plus the usage error that points the user to --help.
 */
import { DEFAULT_CONFIG } from '../config/defaults.js';
import { CONFIG_SCHEMA, TASK_NAMES, describeRule, type LeafRule } from '../config/schema.js';
import { RingtrainError } from '../errors.js';

/** The launcher's flags in the form node:util parseArgs takes. */
export const OPTIONS = {
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

export const VALUE_FLAGS = new Set(
  Object.entries(OPTIONS)
    .filter(([, option]) => option.type === 'string')
    .map(([name]) => `--${name}`),
);
export const ALL_FLAGS = [...Object.keys(OPTIONS).map((name) => `--${name}`), '-h'];
const HELP_HINT = 'run with --help for the options';
export const WORKERS_RULE: LeafRule = { kind: 'integer', min: 1 };

/** An example value for each flag that takes one, shown when the value is missing. */
export const FLAG_EXAMPLES: Readonly<Record<string, string>> = {
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

/** Builds a RINGTRAIN_ERR_USAGE error whose message ends by pointing to --help. */
export function usageError(message: string): RingtrainError {
  return new RingtrainError('RINGTRAIN_ERR_USAGE', `${message}; ${HELP_HINT}`);
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
