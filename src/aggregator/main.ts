/**
 * `npm run aggregator -- --port PORT --out DIR [--host HOST] [--token TOKEN] [--live]`: the central log
 * aggregator. It logs its own events as pino JSON on stderr, and `--live` prints received lines on stdout.
 *
 * Exit codes: 0 after SIGINT or SIGTERM (connections closed, files flushed), 1 when it cannot listen or a second
 * signal cut the shutdown short, 2 for invalid flags.
 */
import pino from 'pino';
import { RingtrainError } from '../errors.js';
import { aggregatorHelpText, parseAggregatorArgs, type AggregatorOptions } from '../log/aggregator/args.js';
import { LogAggregator } from '../log/aggregator/server.js';

const EXIT_FAILED = 1;
const EXIT_USAGE = 2;
const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];

function parseOrExit(argv: string[]): AggregatorOptions {
  try {
    return parseAggregatorArgs(argv);
  } catch (error) {
    if (error instanceof RingtrainError) {
      process.stderr.write(`ringtrain aggregator: ${error.message}\n`);
      process.exit(EXIT_USAGE);
    }
    throw error;
  }
}

async function main(): Promise<number> {
  const options = parseOrExit(process.argv.slice(2));
  if (options.help) {
    process.stdout.write(aggregatorHelpText());
    return 0;
  }

  const requestedLevel = process.env.RINGTRAIN_LOG_LEVEL;
  const level = requestedLevel !== undefined && LEVELS.includes(requestedLevel) ? requestedLevel : 'info';
  const logger = pino({ level, base: { pid: process.pid, role: 'aggregator' } }, pino.destination({ dest: 2, sync: true }));
  if (options.tokenSource === 'flag') {
    logger.warn('the --token value is visible to other users in the process list; prefer the RINGTRAIN_TOKEN environment variable');
  }

  let printLine: ((text: string) => void) | null = null;
  if (options.live) {
    let stdoutOpen = true;
    process.stdout.on('error', (error) => {
      // A closed pipe (e.g. `| head`) ends the live view, but the files keep being written.
      stdoutOpen = false;
      logger.warn({ err: error }, 'stdout failed; live view stopped');
    });
    printLine = (text) => {
      if (stdoutOpen) process.stdout.write(text + '\n');
    };
  }

  let aggregator: LogAggregator;
  try {
    aggregator = await LogAggregator.start({ port: options.port, host: options.host, outDir: options.outDir, token: options.token, printLine }, logger);
  } catch (error) {
    logger.error({ err: error }, (error as Error).message);
    return EXIT_FAILED;
  }

  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (signal: NodeJS.Signals): void => {
      signals++;
      if (signals > 1) {
        logger.warn({ signal }, 'second signal: exiting without waiting for the shutdown to finish');
        resolve(EXIT_FAILED);
        return;
      }
      aggregator.stop(signal).then(
        () => resolve(0),
        (error: unknown) => {
          logger.error({ err: error }, 'log aggregator shutdown failed');
          resolve(EXIT_FAILED);
        },
      );
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`ringtrain aggregator failed: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(EXIT_FAILED);
  },
);
