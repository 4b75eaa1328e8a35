/**
 * Types and helpers shared by the dataset file readers: the result of reading one file, the error that names
 * the file and line of a bad record, and the policy that decides whether a bad record stops the run.
 */
import { readFileSync } from 'node:fs';

import { ConfigError, RingtrainError } from '../../errors.js';

/** Policy for a malformed record: stop with an error, or leave the record out and count it. */
export type BadRecordPolicy = 'error' | 'skip';

/** Records read from one file, and the bad ones left out under the 'skip' policy. */
export interface ReadResult<T> {
  records: T[];
  /** Number of records left out under the 'skip' policy. */
  skipped: number;
  /** First 5 skip reasons, "file:line: problem" */
  skipReasons: string[];
}

/** Number of skip reasons kept in a ReadResult; the rest are only counted. */
export const MAX_SKIP_REASONS = 5;

/** Fix suggested for a bad record when the policy is 'error'. */
export const SKIP_FIX = 'fix the line or set data.onBadRecord=skip to skip bad lines';

/**
 * A dataset file that is missing, empty or contains a malformed record.
 *
 * The message reads `data file FILE, line N: PROBLEM; FIX`, without the line part when `line` is null.
 */
export class DataFileError extends RingtrainError {
  /** Path of the file as the caller gave it. */
  readonly file: string;
  /** 1-based line number of the bad record, or null when the problem concerns the whole file. */
  readonly line: number | null;

  constructor(file: string, line: number | null, problem: string, fix: string, options?: { cause?: unknown }) {
    const where = line === null ? `data file ${file}` : `data file ${file}, line ${line}`;
    super('RINGTRAIN_ERR_DATA', `${where}: ${problem}; ${fix}`, options);
    this.name = 'DataFileError';
    this.file = file;
    this.line = line;
  }
}

/**
 * Reads `file` as UTF-8 and drops a leading byte-order mark.
 *
 * Throws a DataFileError with line null when the file is missing or cannot be read.
 */
export function readDataFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new DataFileError(file, null, 'not found', 'check the path, which is resolved from the current folder', {
        cause: error,
      });
    }
    throw new DataFileError(
      file,
      null,
      `could not be read (${(error as Error).message})`,
      'check that the path is a readable file',
      { cause: error },
    );
  }
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

/**
 * Returns `policy`, or 'error' when it is undefined.
 *
 * Throws a ConfigError for any other value, because the policy may come from an untyped config file.
 */
export function resolvePolicy(policy: BadRecordPolicy | undefined): BadRecordPolicy {
  if (policy === undefined) {
    return 'error';
  }
  if (policy !== 'error' && policy !== 'skip') {
    throw new ConfigError(
      `data.onBadRecord must be "error" or "skip" (got ${JSON.stringify(policy)}); set it in the config or with ` +
        '--set data.onBadRecord=skip',
    );
  }
  return policy;
}

/** Splits file text into lines, accepting both LF and CRLF line ends. */
export function splitLines(text: string): string[] {
  return text.split(/\r?\n/);
}

/**
 * Collector of the records of one file that applies the bad-record policy.
 *
 * Under 'error' the first bad record throws. Under 'skip' bad records are counted, and `finish` still
 * throws when no good record is left, because training on an empty file is never what the user meant.
 */
export class RecordCollector<T> {
  private readonly records: T[] = [];
  private skipped = 0;
  private readonly skipReasons: string[] = [];

  constructor(
    private readonly file: string,
    private readonly policy: BadRecordPolicy,
    private readonly fix: string = SKIP_FIX,
  ) {}

  /** Adds a good record. */
  add(record: T): void {
    this.records.push(record);
  }

  /** Rejects the record at `line`: throws under 'error', counts it under 'skip'. */
  reject(line: number, problem: string): void {
    if (this.policy === 'error') {
      throw new DataFileError(this.file, line, problem, this.fix);
    }
    this.skipped++;
    if (this.skipReasons.length < MAX_SKIP_REASONS) {
      this.skipReasons.push(`${this.file}:${line}: ${problem}`);
    }
  }

  /**
   * Returns the result, or throws when the file contained no records or every record was bad.
   */
  finish(): ReadResult<T> {
    if (this.records.length === 0 && this.skipped === 0) {
      throw new DataFileError(this.file, null, 'contains no records', 'check that the path names the intended file');
    }
    if (this.records.length === 0) {
      throw new DataFileError(
        this.file,
        null,
        `every record is bad (${this.skipped} skipped; first: ${this.skipReasons[0]})`,
        'check that the file has the expected format and the reader options match its columns or fields',
      );
    }
    return { records: this.records, skipped: this.skipped, skipReasons: this.skipReasons };
  }
}
