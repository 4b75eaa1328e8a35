/** Tests of the JSON Lines reader. */
import test from 'ava';

import { readJsonl } from '../src/data/formats/jsonl.js';
import { MAX_SKIP_REASONS } from '../src/data/formats/records.js';
import { assertDataError, useDataFolder } from './helpers/data-files.js';

const { writeDataFile } = useDataFolder();

test('readJsonl reads text and labels', (t) => {
  const file = writeDataFile(
    'reviews.jsonl',
    '{"text": "great film", "label": "pos"}\n\n   \n{"text": "dull", "label": 0, "extra": true}\n',
  );
  const result = readJsonl(file);
  t.deepEqual(result.records, [
    { text: 'great film', label: 'pos', line: 1 },
    { text: 'dull', label: '0', line: 4 },
  ]);
  t.is(result.skipped, 0, 'skipped');
});

test('readJsonl reads chosen fields', (t) => {
  const file = writeDataFile('fields.jsonl', '{"body": "hello", "class": 3}\n');
  const result = readJsonl(file, { textField: 'body', labelField: 'class' });
  t.deepEqual(result.records, [{ text: 'hello', label: '3', line: 1 }]);
});

const badJsonlLines: Array<[string, string]> = [
  ['{"text": "a", "label": "x"', 'not valid JSON ('],
  ['["a", "x"]', 'is an array, expected a JSON object'],
  ['42', 'is a number, expected a JSON object'],
  ['null', 'is null, expected a JSON object'],
  ['{"label": "x"}', 'has no field "text"'],
  ['{"text": 5, "label": "x"}', 'field "text" is a number, expected a string'],
  ['{"text": "  ", "label": "x"}', 'field "text" is empty'],
  ['{"text": "a"}', 'has no field "label"'],
  ['{"text": "a", "label": true}', 'field "label" is a boolean, expected a string or a number'],
  ['{"text": "a", "label": null}', 'field "label" is null, expected a string or a number'],
  ['{"text": "a", "label": 1e999}', 'field "label" is Infinity, expected a finite number'],
];

test('readJsonl rejects malformed lines', (t) => {
  for (const [badLine, problem] of badJsonlLines) {
    const file = writeDataFile('bad.jsonl', `{"text": "fine", "label": "x"}\n${badLine}\n`);
    assertDataError(t, () => readJsonl(file), file, 2, problem, badLine);
  }
});

test('readJsonl error suggests skip setting', (t) => {
  const file = writeDataFile('fix.jsonl', '{oops}\n');
  const error = t.throws(() => readJsonl(file));
  t.true(error?.message.endsWith('; fix the line or set data.onBadRecord=skip to skip bad lines'), error?.message);
});

test('readJsonl skip counts bad lines', (t) => {
  const lines = ['{"text": "good one", "label": "a"}'];
  for (const [badLine] of badJsonlLines) {
    lines.push(badLine);
  }
  lines.push('{"text": "good two", "label": "b"}');
  const file = writeDataFile('mixed.jsonl', lines.join('\n'));
  const result = readJsonl(file, { onBadRecord: 'skip' });

  t.deepEqual(
    result.records.map((record) => record.line),
    [1, badJsonlLines.length + 2],
    'lines of the kept records',
  );
  t.is(result.skipped, badJsonlLines.length, 'skipped count');
  t.is(result.skipReasons.length, MAX_SKIP_REASONS, 'reasons kept');
  t.true(result.skipReasons[0].startsWith(`${file}:2: not valid JSON`), result.skipReasons[0]);
});
