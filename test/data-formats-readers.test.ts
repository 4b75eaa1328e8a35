/** Tests of the cases that every data reader handles the same way: missing, empty and all-bad files, and the bad-record policy. */
import { join } from 'node:path';

import test from 'ava';

import { readConll } from '../src/data/formats/conll.js';
import { readCsv } from '../src/data/formats/csv.js';
import { readJsonl } from '../src/data/formats/jsonl.js';
import { readText } from '../src/data/formats/text.js';
import { hasCode } from '../src/errors.js';
import { assertDataError, useDataFolder } from './helpers/data-files.js';

const { directory, writeDataFile } = useDataFolder();

const readers: Array<[string, (file: string) => unknown]> = [
  ['conll', (file) => readConll(file, { onBadRecord: 'skip' })],
  ['jsonl', (file) => readJsonl(file, { onBadRecord: 'skip' })],
  ['csv', (file) => readCsv(file, { onBadRecord: 'skip' })],
  ['text', (file) => readText(file)],
];

test('readers reject missing file', (t) => {
  for (const [name, read] of readers) {
    const file = join(directory, `missing.${name}`);
    assertDataError(t, () => read(file), file, null, 'not found; check the path', name);
  }
});

test('readers reject file without records', (t) => {
  const emptyFiles: Array<[string, (file: string) => unknown, string]> = [
    ['conll', readers[0][1], '\n-DOCSTART- -X- O O\n# comment\n\n'],
    ['jsonl', readers[1][1], '\n  \n'],
    ['csv', readers[2][1], ''],
    ['csv header only', readers[2][1], 'x,label\n\n'],
  ];
  for (const [name, read, content] of emptyFiles) {
    const file = writeDataFile('empty', content);
    assertDataError(t, () => read(file), file, null, 'contains no records', name);
  }
});

test('readers reject all-bad file', (t) => {
  const badFiles: Array<[string, (file: string) => unknown, string, string]> = [
    ['conll', readers[0][1], 'x NN\nword\n\nother\n', 'every record is bad (2 skipped; first: '],
    ['jsonl', readers[1][1], '\nnope\n{"text": "a"}\n', 'every record is bad (2 skipped; first: '],
    ['csv', readers[2][1], 'x,label\nq,a\n', 'every record is bad (1 skipped; first: '],
  ];
  for (const [name, read, content, problem] of badFiles) {
    const file = writeDataFile('all-bad', content);
    assertDataError(t, () => read(file), file, null, `${problem}${file}:2: `, name);
  }
});

test('readers reject invalid policy', (t) => {
  const file = writeDataFile('policy.jsonl', '{"text": "a", "label": "b"}\n');
  const error = t.throws(() => readJsonl(file, { onBadRecord: 'ignore' as 'skip' }));
  t.true(hasCode(error, 'RINGTRAIN_ERR_CONFIG'), 'config error code');
  t.true(error?.message.includes('data.onBadRecord must be "error" or "skip" (got "ignore")'), error?.message);
});
