/** The aggregator's `--live` terminal view: lines of every run and process, merged in arrival order. */
import { formatLogLine } from '../pretty.js';

/**
 * Formats one JSON log line for the terminal: the run id, then the same time, level, node/rank, message and
 * key=value fields that a local run prints. The run id is shown because several runs may stream at once.
 */
export function formatLiveLine(run: string | null, line: string): string {
  return `${run ?? '?'} ${formatLogLine(line)}`;
}
