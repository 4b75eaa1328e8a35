import pino from 'pino';

/** Destination of pino's lines: anything with a `write(line)` method, such as a file stream or a link to the coordinator. */
export interface LineDestination {
  write(line: string): void;
}

/**
 * Fields every log line of a run carries. `rank` is null for the launcher and the coordinator. A worker leaves it
 * out here and binds it with `child({ rank })` once rendezvous assigns one, so no line carries the key twice.
 */
export interface LogBindings {
  run: string;
  node: number;
  rank?: number | null;
  role: 'launcher' | 'coordinator' | 'worker';
}

/** Log level names accepted by `createLogger`; RINGTRAIN_LOG_LEVEL picks one at run time. */
export type LevelName = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';

/**
 * Creates the pino logger of one process with the run's standard bindings. Lines are pino's JSON format,
 * so pino-pretty and pino transports read them unchanged.
 */
export function createLogger(bindings: LogBindings, destination: LineDestination, level?: LevelName): pino.Logger {
  const chosenLevel = level ?? levelFromEnvironment();
  return pino(
    {
      level: chosenLevel,
      base: { pid: process.pid, ...bindings },
    },
    destination,
  );
}

function levelFromEnvironment(): LevelName {
  const requested = process.env.RINGTRAIN_LOG_LEVEL;
  const allowed: LevelName[] = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'];
  if (requested !== undefined && (allowed as string[]).includes(requested)) {
    return requested as LevelName;
  }
  return 'info';
}
