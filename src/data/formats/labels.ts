/**
 * Check of evaluation labels against the classes seen in training.
 */
import { type BadRecordPolicy, RecordCollector, type ReadResult, resolvePolicy } from './records.js';

/** Number of known labels listed in an unknown-label message. */
const LISTED_LABELS = 10;

/** Returns up to 10 of `classNames` quoted and comma-separated, with the count of the rest. */
function listKnownLabels(classNames: readonly string[]): string {
  const listed = classNames.slice(0, LISTED_LABELS).map((name) => JSON.stringify(name)).join(', ');
  const rest = classNames.length - LISTED_LABELS;
  return rest > 0 ? `${listed} and ${rest} more` : listed;
}

/**
 * Checks that every record of an evaluation file has a label that occurs in `classNames`.
 *
 * A record with an unknown label throws a DataFileError naming the file, line and label under 'error', or
 * is left out and counted under 'skip'. Throws as well when `records` is empty or every label is unknown.
 */
export function checkKnownLabels<T extends { label: string; line: number }>(
  records: readonly T[],
  classNames: readonly string[],
  file: string,
  policy: BadRecordPolicy,
): ReadResult<T> {
  const known = new Set(classNames);
  const collector = new RecordCollector<T>(
    file,
    resolvePolicy(policy),
    'fix the label, add examples of it to the training data, or set data.onBadRecord=skip to skip such records',
  );

  for (const record of records) {
    if (known.has(record.label)) {
      collector.add(record);
    } else {
      collector.reject(
        record.line,
        `label ${JSON.stringify(record.label)} does not occur in the training data (known labels: ${listKnownLabels(classNames)})`,
      );
    }
  }
  return collector.finish();
}
