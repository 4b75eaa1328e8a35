/**
 * Reader of CoNLL-style token files: one token per line with whitespace-separated columns, and a blank line
 * after each sentence (as in CoNLL-2003 and CoNLL-U).
 */
import { ConfigError } from '../../errors.js';
import { type BadRecordPolicy, RecordCollector, type ReadResult, readDataFile, resolvePolicy, splitLines } from './records.js';

/** Options of `readConll`. */
export interface ConllOptions {
  /** 0-based column of the token; default 0. */
  tokenColumn?: number;
  /** 0-based column of the tag; default the last column of each line. */
  tagColumn?: number;
  /** Policy for a malformed sentence; default 'error'. */
  onBadRecord?: BadRecordPolicy;
}

/** One sentence of a CoNLL file. */
export interface ConllSentence {
  words: string[];
  /** Tags, one per word. */
  tags: string[];
  /** 1-based line of the sentence's first token. */
  line: number;
}

/** Lines that start a new document in CoNLL-2003 files; they carry no token. */
const DOCUMENT_START = '-DOCSTART-';

/** Throws a ConfigError unless `value` is undefined or a non-negative integer. */
function checkColumnOption(name: string, value: number | undefined): void {
  if (value !== undefined && !(Number.isInteger(value) && value >= 0)) {
    throw new ConfigError(`readConll ${name} must be a non-negative integer (got ${JSON.stringify(value)}); columns count from 0`);
  }
}

/**
 * Reads the sentences of a CoNLL-style file.
 *
 * Columns are separated by tabs or runs of spaces. Blank lines end sentences, and lines starting with
 * `-DOCSTART-` (which also end a sentence) or `#` are skipped. A line with fewer columns than the token and
 * tag columns need makes its sentence bad: `onBadRecord: 'skip'` drops the whole sentence.
 * Throws a DataFileError when the file is missing, contains no sentence, or every sentence is bad.
 */
export function readConll(file: string, options: ConllOptions = {}): ReadResult<ConllSentence> {
  const tokenColumn = options.tokenColumn ?? 0;
  const tagColumn = options.tagColumn;
  checkColumnOption('tokenColumn', options.tokenColumn);
  checkColumnOption('tagColumn', tagColumn);
  if (tagColumn === tokenColumn) {
    throw new ConfigError(`readConll tagColumn and tokenColumn are both ${tokenColumn}; give the tag its own column`);
  }
  // With the tag in the last column, that column must come after the token column.
  const neededColumns = tagColumn === undefined ? tokenColumn + 2 : Math.max(tokenColumn, tagColumn) + 1;

  const collector = new RecordCollector<ConllSentence>(file, resolvePolicy(options.onBadRecord));
  let sentence: ConllSentence | null = null;
  // First problem found in the current sentence; under 'skip' the sentence is dropped when it ends.
  let problem: { line: number; text: string } | null = null;

  const endSentence = (): void => {
    if (sentence !== null) {
      if (problem === null) {
        collector.add(sentence);
      } else {
        collector.reject(problem.line, problem.text);
      }
    }
    sentence = null;
    problem = null;
  };

  const lines = splitLines(readDataFile(file));
  for (let index = 0; index < lines.length; index++) {
    const lineNumber = index + 1;
    const trimmed = lines[index].trim();
    if (trimmed.length === 0 || trimmed.startsWith(DOCUMENT_START)) {
      endSentence();
      continue;
    }
    if (trimmed.startsWith('#')) {
      continue;
    }

    const columns = trimmed.split(/[\t ]+/);
    sentence ??= { words: [], tags: [], line: lineNumber };
    if (columns.length < neededColumns) {
      if (problem === null) {
        const tagText = tagColumn === undefined ? 'a tag column after it' : `tag column ${tagColumn}`;
        problem = {
          line: lineNumber,
          text: `has ${columns.length} column(s), expected at least ${neededColumns} (token column ${tokenColumn} and ${tagText})`,
        };
      }
      continue;
    }
    sentence.words.push(columns[tokenColumn]);
    sentence.tags.push(columns[tagColumn ?? columns.length - 1]);
  }
  endSentence();

  return collector.finish();
}
