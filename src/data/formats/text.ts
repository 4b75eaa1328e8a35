/**
 * Reader of plain-text files, for tasks that train on running text.
 */
import { DataFileError, readDataFile } from './records.js';

/**
 * Reads `file` as UTF-8 text, without a leading byte-order mark.
 *
 * Throws a DataFileError when the file is missing, empty, or contains only whitespace.
 */
export function readText(file: string): string {
  const text = readDataFile(file);
  if (text.length === 0) {
    throw new DataFileError(file, null, 'is empty', 'check that the path names the intended file');
  }
  if (text.trim().length === 0) {
    throw new DataFileError(
      file,
      null,
      `contains only whitespace (${text.length} characters)`,
      'check that the path names the intended file',
    );
  }
  return text;
}
