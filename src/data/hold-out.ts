/**
 * Held-out splits and class lists for datasets that come as one list of labelled records.
 */
import { ConfigError } from '../errors.js';

/**
 * Splits `records` into training and held-out parts: every `heldOutEvery`-th record (counting from 1, in
 * the given order) is held out. Throws a ConfigError when nothing would be held out.
 */
export function holdOut<T>(records: readonly T[], heldOutEvery: number, source: string): { train: T[]; eval: T[] } {
  const train: T[] = [];
  const held: T[] = [];
  records.forEach((record, index) => ((index + 1) % heldOutEvery === 0 ? held : train).push(record));
  if (held.length === 0) {
    throw new ConfigError(
      `${source} has ${records.length} record(s), fewer than data.heldOutEvery (${heldOutEvery}), so no record is held out ` +
        'for evaluation; lower data.heldOutEvery, add records or set data.evalFile',
    );
  }
  return { train, eval: held };
}

/** Returns the distinct labels of `records`, sorted by code unit so that every thread assigns the same ids. */
export function sortedLabels(records: readonly { label: string }[]): string[] {
  const labels = [...new Set(records.map((record) => record.label))];
  // Code-unit order, not localeCompare, so the ids do not depend on the locale of the thread.
  return labels.sort((a, b) => {
    if (a < b) return -1;
    return a > b ? 1 : 0;
  });
}
