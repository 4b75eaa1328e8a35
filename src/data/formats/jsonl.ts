/**
 * Reader of JSON Lines text-classification files: one JSON object per line with a text and a label field.
 */
import { ConfigError } from '../../errors.js';
import { type BadRecordPolicy, RecordCollector, type ReadResult, readDataFile, resolvePolicy, splitLines } from './records.js';

/** Options of `readJsonl`. */
export interface JsonlOptions {
  /** Field that contains the text; default `text`. */
  textField?: string;
  /** Field that contains the label; default `label`. */
  labelField?: string;
  /** Policy for a malformed line; default 'error'. */
  onBadRecord?: BadRecordPolicy;
}

/** One labelled text of a JSON Lines file. */
export interface TextRecord {
  text: string;
  /** Label as a string; numeric labels in the file are converted with String(). */
  label: string;
  /** 1-based line number in the file. */
  line: number;
}

/** Throws a ConfigError unless `value` is undefined or a non-empty string. */
function checkFieldOption(name: string, value: string | undefined): void {
  if (value !== undefined && (typeof value !== 'string' || value.length === 0)) {
    throw new ConfigError(`readJsonl ${name} must be a non-empty field name (got ${JSON.stringify(value)})`);
  }
}

/** Returns a short description of a JSON value's type for error messages. */
function describeJsonType(value: unknown): string {
  if (value === null) {
    return 'null';
  }
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

/**
 * Returns the record parsed from one line, or the problem with it.
 */
function parseLine(
  line: string,
  lineNumber: number,
  textField: string,
  labelField: string,
): TextRecord | { problem: string } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (error) {
    return { problem: `not valid JSON (${(error as Error).message})` };
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { problem: `is ${describeJsonType(value)}, expected a JSON object` };
  }

  const fields = value as Record<string, unknown>;
  const text = fields[textField];
  if (!Object.hasOwn(fields, textField)) {
    return { problem: `has no field "${textField}"` };
  }
  if (typeof text !== 'string') {
    return { problem: `field "${textField}" is ${describeJsonType(text)}, expected a string` };
  }
  // An empty text would give an example without tokens, which no model can learn from.
  if (text.trim().length === 0) {
    return { problem: `field "${textField}" is empty` };
  }

  const label = fields[labelField];
  if (!Object.hasOwn(fields, labelField)) {
    return { problem: `has no field "${labelField}"` };
  }
  if (typeof label === 'number') {
    // JSON.parse turns a literal such as 1e999 into Infinity.
    if (!Number.isFinite(label)) {
      return { problem: `field "${labelField}" is ${label}, expected a finite number or a string` };
    }
    return { text, label: String(label), line: lineNumber };
  }
  if (typeof label !== 'string') {
    return { problem: `field "${labelField}" is ${describeJsonType(label)}, expected a string or a number` };
  }
  if (label.length === 0) {
    return { problem: `field "${labelField}" is empty` };
  }
  return { text, label, line: lineNumber };
}

/**
 * Reads the labelled texts of a JSON Lines file.
 *
 * Blank lines are ignored. A line that is not valid JSON, not an object, or lacks a non-empty string text
 * or a string or number label is bad. Throws a DataFileError when the file is missing, contains no record, or
 * every record is bad, and on the first bad line unless `onBadRecord` is 'skip'.
 */
export function readJsonl(file: string, options: JsonlOptions = {}): ReadResult<TextRecord> {
  checkFieldOption('textField', options.textField);
  checkFieldOption('labelField', options.labelField);
  const textField = options.textField ?? 'text';
  const labelField = options.labelField ?? 'label';
  const collector = new RecordCollector<TextRecord>(file, resolvePolicy(options.onBadRecord));

  const lines = splitLines(readDataFile(file));
  for (let index = 0; index < lines.length; index++) {
    if (lines[index].trim().length === 0) {
      continue;
    }
    const parsed = parseLine(lines[index], index + 1, textField, labelField);
    if ('problem' in parsed) {
      collector.reject(index + 1, parsed.problem);
    } else {
      collector.add(parsed);
    }
  }
  return collector.finish();
}
