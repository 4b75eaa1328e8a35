/** Helpers for the data format tests: a temporary folder of data files and the check of a DataFileError. */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import test, { type ExecutionContext } from 'ava';

import { DataFileError } from '../../src/data/formats/records.js';

/** A temporary folder and a writer of numbered data files into it. */
export interface DataFolder {
  directory: string;
  writeDataFile(name: string, content: string): string;
}

/** Creates a temporary folder that is removed after the last test of the calling test file. */
export function useDataFolder(): DataFolder {
  const directory = mkdtempSync(join(tmpdir(), 'ringtrain-formats-'));
  test.after.always(() => rmSync(directory, { recursive: true, force: true }));

  let fileCount = 0;

  /** Writes `content` to a new file in the test folder and returns its path. */
  function writeDataFile(name: string, content: string): string {
    fileCount++;
    const path = join(directory, `${fileCount}-${name}`);
    writeFileSync(path, content, 'utf8');
    return path;
  }

  return { directory, writeDataFile };
}

/**
 * Runs `read`, asserts that it throws a DataFileError for `file` at `line`, and that the message names the
 * file, the line and contains `problem`.
 */
export function assertDataError(
  t: ExecutionContext,
  read: () => unknown,
  file: string,
  line: number | null,
  problem: string,
  label: string,
): void {
  const error = t.throws(read, { instanceOf: DataFileError }, `${label}: error type`) as DataFileError | undefined;
  if (error === undefined) {
    return;
  }
  t.is(error.code, 'RINGTRAIN_ERR_DATA', `${label}: code`);
  t.is(error.file, file, `${label}: file field`);
  t.is(error.line, line, `${label}: line field`);
  const where = line === null ? `data file ${file}: ` : `data file ${file}, line ${line}: `;
  t.true(error.message.startsWith(where), `${label}: message starts with "${where}", got: ${error.message}`);
  t.true(error.message.includes(problem), `${label}: message contains "${problem}", got: ${error.message}`);
}
