/** Tests of the plain text reader. */
import test from 'ava';

import { readText } from '../src/data/formats/text.js';
import { assertDataError, useDataFolder } from './helpers/data-files.js';

const { writeDataFile } = useDataFolder();

test('readText reads file unchanged', (t) => {
  const content = 'First line.\r\n\r\n  Second paragraph, ünïcode.\n';
  const file = writeDataFile('story.txt', `\uFEFF${content}`);
  t.is(readText(file), content);
});

test('readText rejects empty text', (t) => {
  const empty = writeDataFile('empty.txt', '');
  assertDataError(t, () => readText(empty), empty, null, 'is empty', 'empty');
  const blank = writeDataFile('blank.txt', ' \n\t\n');
  assertDataError(t, () => readText(blank), blank, null, 'contains only whitespace (4 characters)', 'whitespace');
});
