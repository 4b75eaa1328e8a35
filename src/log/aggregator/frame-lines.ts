/** Splitting one WebSocket text frame into log lines and sorting them by run. */

/** The lines of one frame, grouped for writing. */
export interface FrameLines {
  /** Lines keyed by their `run` field (null: JSON without a usable run), each ending in '\n', in frame order. */
  byRun: Map<string | null, string[]>;
  /** Lines that are not a JSON object. They are counted and reported, never written. */
  invalid: string[];
  /** Number of lines in `byRun`. */
  validCount: number;
}

/**
 * Splits `text` on '\n' and parses each non-empty line. A JSON object is kept byte for byte, under its `run`
 * when that is a non-empty string or a finite number, else under null. A trailing '\r' stays part of the line
 * because JSON allows it as whitespace.
 */
export function splitFrameLines(text: string): FrameLines {
  const byRun = new Map<string | null, string[]>();
  const invalid: string[] = [];
  let validCount = 0;

  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      invalid.push(line);
      continue;
    }
    if (record === null || typeof record !== 'object' || Array.isArray(record)) {
      invalid.push(line);
      continue;
    }
    const run = runOf(record as Record<string, unknown>);
    let group = byRun.get(run);
    if (group === undefined) {
      group = [];
      byRun.set(run, group);
    }
    group.push(line + '\n');
    validCount++;
  }
  return { byRun, invalid, validCount };
}

function runOf(record: Record<string, unknown>): string | null {
  const run = record.run;
  if (typeof run === 'string' && run !== '') return run;
  if (typeof run === 'number' && Number.isFinite(run)) return String(run);
  return null;
}
