/**
 * The worker's exit paths. Log lines go to the coordinator through one LinkDestination, and every exit writes
 * the lines that never reached it to stderr first. A start failure is also sent to the launcher over IPC.
 */
import type { ControlLink } from './control-link.js';
import type { RingtrainError } from '../src/errors.js';
import { LinkDestination } from '../src/log/link-destination.js';
import { formatLogLine } from '../src/log/pretty.js';

/** The pino destination of the worker's logger. The control link is attached to it once the worker has connected. */
export const destination = new LinkDestination();

/** Writes log lines that never reached the coordinator to stderr, formatted like the merged terminal log. */
export function writeToStderr(text: string): void {
  process.stderr.write(formatLogLine(text) + '\n');
}

/** Sends a start failure to the launcher over IPC and waits until it is written, so exiting does not drop it. */
export function reportStartFailure(error: RingtrainError): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined) return resolve();
    process.send({ type: 'startFailed', code: error.code, message: error.message }, () => resolve());
  });
}

let exiting = false;

/** Closes `link` if given, writes the unsent log lines to stderr and exits with `code`. Only the first call acts. */
export async function exitSoon(link: ControlLink | null, code: number): Promise<void> {
  if (exiting) return;
  exiting = true;
  await link?.close(1000);
  destination.flushTo(writeToStderr);
  process.exit(code);
}
