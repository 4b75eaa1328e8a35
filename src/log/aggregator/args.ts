/** Command-line parsing for `npm run aggregator`. */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { RingtrainError } from '../../errors.js';

/** The aggregator's resolved options. */
export interface AggregatorOptions {
  /** TCP port to listen on. 0 picks a free one, which the start log line reports. */
  port: number;
  /** Interface to listen on (`--host`, default 127.0.0.1). */
  host: string;
  /** Absolute path of the directory that receives one `<run>.jsonl` per run. */
  outDir: string;
  /** Shared secret clients must present, from `--token` or RINGTRAIN_TOKEN. Null accepts every client. */
  token: string | null;
  /** Origin of the token, so the start log can warn about a token visible in the process list. */
  tokenSource: 'flag' | 'environment' | null;
  /** True to print every received line in readable form on stdout (`--live`). */
  live: boolean;
  /** True when `--help` or `-h` was given, in which case nothing else was checked. */
  help: boolean;
}

const OPTIONS = {
  port: { type: 'string' },
  host: { type: 'string' },
  out: { type: 'string' },
  token: { type: 'string' },
  live: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

const HELP_HINT = 'run with --help for the options';

/** Returns the `--help` text. */
export function aggregatorHelpText(): string {
  return [
    'Usage: npm run aggregator -- --port PORT --out DIR [--host 127.0.0.1] [--token TOKEN] [--live]',
    '',
    'Receives pino JSON log lines from LogShipper clients over WebSocket and appends them, unchanged,',
    'to DIR/<run>.jsonl.',
    '',
    '  --port PORT    TCP port to listen on (0 picks a free port; the start log line shows it)',
    '  --out DIR      directory for the per-run JSONL files; created if missing',
    '  --host HOST    interface to listen on (default 127.0.0.1; use 0.0.0.0 for other machines)',
    '  --token TOKEN  shared secret clients send as "Authorization: Bearer TOKEN"; RINGTRAIN_TOKEN',
    '                 sets it without showing it in the process list. Without either, any client is accepted.',
    '  --live         also print every line in readable form on stdout',
    '  -h, --help     show this text',
    '',
    'The aggregator logs its own events as pino JSON on stderr. SIGINT or SIGTERM closes the connections,',
    'flushes the files and exits with 0.',
    '',
  ].join('\n');
}

function usageError(message: string): RingtrainError {
  return new RingtrainError('RINGTRAIN_ERR_USAGE', `${message}; ${HELP_HINT}`);
}

/** Parses the aggregator's flags, with RINGTRAIN_TOKEN from `environment`. Throws RINGTRAIN_ERR_USAGE on invalid flags. */
export function parseAggregatorArgs(argv: string[], environment: NodeJS.ProcessEnv = process.env): AggregatorOptions {
  let values: { port?: string; host?: string; out?: string; token?: string; live?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({ args: argv, options: OPTIONS, strict: true, allowPositionals: false }));
  } catch (error) {
    throw usageError((error as Error).message);
  }

  const empty: AggregatorOptions = { port: 0, host: '127.0.0.1', outDir: '', token: null, tokenSource: null, live: false, help: true };
  if (values.help === true) return empty;

  if (values.port === undefined) throw usageError('--port is missing; pass the port to listen on, e.g. --port 9400');
  const port = Number(values.port);
  if (!/^\d+$/.test(values.port) || !Number.isInteger(port) || port > 65535) {
    throw usageError(`--port must be an integer from 0 to 65535 (got '${values.port}'); pass e.g. --port 9400`);
  }
  if (values.out === undefined || values.out === '') {
    throw usageError('--out is missing; pass the directory for the log files, e.g. --out logs/aggregated');
  }
  const host = values.host ?? '127.0.0.1';
  if (host === '') throw usageError("--host must not be empty; pass an address such as 127.0.0.1");

  let token: string | null = null;
  let tokenSource: AggregatorOptions['tokenSource'] = null;
  if (values.token !== undefined) {
    if (values.token === '') throw usageError('--token must not be empty; pass a secret or drop the flag');
    token = values.token;
    tokenSource = 'flag';
  } else if (environment.RINGTRAIN_TOKEN !== undefined && environment.RINGTRAIN_TOKEN !== '') {
    token = environment.RINGTRAIN_TOKEN;
    tokenSource = 'environment';
  }
  // The token travels in an HTTP header as "Bearer <token>", which allows no whitespace or control characters.
  if (token !== null && !/^[\x21-\x7e]+$/.test(token)) {
    const origin = tokenSource === 'flag' ? '--token' : 'RINGTRAIN_TOKEN';
    throw usageError(`${origin} must consist of printable ASCII characters without spaces; generate one with 'openssl rand -hex 32'`);
  }

  return { port, host, outDir: resolve(values.out), token, tokenSource, live: values.live === true, help: false };
}
