/**
 * Reader of comma-separated feature tables: numeric feature columns and one label column.
 *
 * Only a simple subset of RFC 4180 is read. A field wrapped in double quotes is unquoted (with `""` read as
 * `"`), but a comma inside quotes still splits the field, so such a row reads as ragged.
 */
import { ConfigError } from '../../errors.js';
import {
  type BadRecordPolicy,
  DataFileError,
  RecordCollector,
  type ReadResult,
  readDataFile,
  resolvePolicy,
  splitLines,
} from './records.js';

/** Options of `readCsv`. */
export interface CsvOptions {
  /** Label column: a header name, or a 0-based index. Default `label`, or the last column without a header. */
  labelColumn?: string | number;
  /** Whether the first non-blank line names the columns; default true. */
  header?: boolean;
  /** Policy for a malformed row; default 'error'. */
  onBadRecord?: BadRecordPolicy;
}

/** One row of a feature table. */
export interface FeatureRecord {
  /** Feature values in the order of `featureNames`. */
  features: number[];
  label: string;
  /** 1-based line number in the file. */
  line: number;
}

/** Rows of a feature table and the names of its feature columns. */
export type CsvReadResult = ReadResult<FeatureRecord> & {
  /** Header names of the feature columns, or `column0`, `column1`, ... (0-based indexes) without a header. */
  featureNames: string[];
};

/** Decimal numbers with an optional exponent; stricter than Number(), which reads '' and '0x10'. */
const DECIMAL_NUMBER = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

/** Splits a row at commas and unquotes fields of the form `"..."`. */
function splitFields(line: string): string[] {
  return line.split(',').map((raw) => {
    const field = raw.trim();
    if (field.length >= 2 && field.startsWith('"') && field.endsWith('"')) {
      return field.slice(1, -1).replaceAll('""', '"');
    }
    return field;
  });
}

/** Layout of the table, fixed by the header or the first row. */
interface TableLayout {
  columnCount: number;
  labelIndex: number;
  /** Names of all columns, label included, for messages. */
  columnNames: string[];
  /** Describes where the expected column count comes from, for the ragged-row message. */
  countSource: string;
}

/**
 * Returns the table layout from the first non-blank line, or throws a DataFileError naming that line.
 */
function readLayout(file: string, firstLine: string, lineNumber: number, options: CsvOptions): TableLayout {
  const header = options.header ?? true;
  const fields = splitFields(firstLine);
  const columnNames = header ? fields : fields.map((_, index) => `column${index}`);

  if (header) {
    fields.forEach((name, index) => {
      if (name.length === 0) {
        throw new DataFileError(file, lineNumber, `header column ${index} has no name`, 'give every column a name in the header line');
      }
      if (fields.indexOf(name) !== index) {
        throw new DataFileError(file, lineNumber, `header names column "${name}" twice`, 'give every column a unique name');
      }
    });
  }
  if (fields.length < 2) {
    throw new DataFileError(
      file,
      lineNumber,
      `has ${fields.length} column, expected at least 2 (features and a label)`,
      'separate the columns with commas',
    );
  }

  const labelColumn = options.labelColumn ?? (header ? 'label' : fields.length - 1);
  let labelIndex: number;
  if (typeof labelColumn === 'number') {
    if (!Number.isInteger(labelColumn) || labelColumn < 0 || labelColumn >= fields.length) {
      throw new DataFileError(
        file,
        lineNumber,
        `labelColumn ${labelColumn} is out of range for ${fields.length} columns`,
        `set labelColumn (taskOptions.labelColumn of tabular-classification) to a 0-based index from 0 to ${fields.length - 1}`,
      );
    }
    labelIndex = labelColumn;
  } else if (!header) {
    throw new ConfigError(
      `readCsv labelColumn "${labelColumn}" is a column name, but header is false; give a 0-based column index instead`,
    );
  } else {
    labelIndex = fields.indexOf(labelColumn);
    if (labelIndex < 0) {
      throw new DataFileError(
        file,
        lineNumber,
        `header has no column "${labelColumn}" (columns: ${fields.join(', ')})`,
        'name the label column "label" or set labelColumn (taskOptions.labelColumn of tabular-classification) to one of these columns',
      );
    }
  }

  const countSource = header ? 'the header' : `line ${lineNumber}`;
  return { columnCount: fields.length, labelIndex, columnNames, countSource };
}

/**
 * Returns the record parsed from the fields of one row, or the problem with it.
 */
function parseRow(fields: string[], lineNumber: number, layout: TableLayout): FeatureRecord | { problem: string } {
  if (fields.length !== layout.columnCount) {
    return { problem: `has ${fields.length} columns, expected ${layout.columnCount} (as in ${layout.countSource})` };
  }

  const features: number[] = [];
  for (let index = 0; index < fields.length; index++) {
    if (index === layout.labelIndex) {
      continue;
    }
    const field = fields[index];
    const value = Number(field);
    if (!DECIMAL_NUMBER.test(field) || !Number.isFinite(value)) {
      return { problem: `column "${layout.columnNames[index]}" value "${field}" is not a finite decimal number` };
    }
    features.push(value);
  }

  const label = fields[layout.labelIndex];
  if (label.length === 0) {
    return { problem: `label column "${layout.columnNames[layout.labelIndex]}" is empty` };
  }
  return { features, label, line: lineNumber };
}

/**
 * Reads the rows of a comma-separated feature table.
 *
 * Blank lines are ignored. A row whose column count differs from the header (or the first row), a feature
 * that is not a decimal number, or an empty label is bad. Throws a DataFileError when the file is missing,
 * contains no row, every row is bad, or the header is invalid, and on the first bad row unless `onBadRecord`
 * is 'skip'.
 */
export function readCsv(file: string, options: CsvOptions = {}): CsvReadResult {
  const collector = new RecordCollector<FeatureRecord>(file, resolvePolicy(options.onBadRecord));
  const lines = splitLines(readDataFile(file));
  const firstIndex = lines.findIndex((line) => line.trim().length > 0);
  if (firstIndex < 0) {
    return { ...collector.finish(), featureNames: [] };
  }

  const layout = readLayout(file, lines[firstIndex], firstIndex + 1, options);
  const featureNames = layout.columnNames.filter((_, index) => index !== layout.labelIndex);
  const header = options.header ?? true;
  for (let index = header ? firstIndex + 1 : firstIndex; index < lines.length; index++) {
    if (lines[index].trim().length === 0) {
      continue;
    }
    const parsed = parseRow(splitFields(lines[index]), index + 1, layout);
    if ('problem' in parsed) {
      collector.reject(index + 1, parsed.problem);
    } else {
      collector.add(parsed);
    }
  }
  return { ...collector.finish(), featureNames };
}
