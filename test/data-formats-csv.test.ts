/** Tests of the CSV reader. */
import test from 'ava';

import { readCsv } from '../src/data/formats/csv.js';
import { assertDataError, useDataFolder } from './helpers/data-files.js';

const { writeDataFile } = useDataFolder();

test('readCsv reads header table', (t) => {
  const file = writeDataFile('iris.csv', 'width, label ,"length"\n1.5,"setosa",-2e-1\n\n.25 ,versicolor, +3\n');
  const result = readCsv(file);
  t.deepEqual(result.featureNames, ['width', 'length'], 'feature names');
  t.deepEqual(result.records, [
    { features: [1.5, -0.2], label: 'setosa', line: 2 },
    { features: [0.25, 3], label: 'versicolor', line: 4 },
  ]);
});

test('readCsv reads headerless table', (t) => {
  const file = writeDataFile('plain.csv', '1,2,yes\n3,4,no\n');
  const result = readCsv(file, { header: false });
  t.deepEqual(result.featureNames, ['column0', 'column1'], 'feature names');
  t.deepEqual(result.records, [
    { features: [1, 2], label: 'yes', line: 1 },
    { features: [3, 4], label: 'no', line: 2 },
  ]);

  const first = readCsv(writeDataFile('first.csv', 'a,1,2\nb,3,4\n'), { header: false, labelColumn: 0 });
  t.deepEqual(first.records[1], { features: [3, 4], label: 'b', line: 2 }, 'label in column 0');
});

test('readCsv reads named label column', (t) => {
  const file = writeDataFile('named.csv', 'species,x\ncat,1\n');
  const result = readCsv(file, { labelColumn: 'species' });
  t.deepEqual(result.records, [{ features: [1], label: 'cat', line: 2 }]);
});

const badCsvRows: Array<[string, string]> = [
  ['1,2', 'has 2 columns, expected 3 (as in the header)'],
  ['1,2,a,4', 'has 4 columns, expected 3 (as in the header)'],
  ['1,abc,a', 'column "y" value "abc" is not a finite decimal number'],
  ['0x10,2,a', 'column "x" value "0x10" is not a finite decimal number'],
  [',2,a', 'column "x" value "" is not a finite decimal number'],
  ['1,1e999,a', 'column "y" value "1e999" is not a finite decimal number'],
  ['1,2,', 'label column "label" is empty'],
];

test('readCsv rejects malformed rows', (t) => {
  for (const [row, problem] of badCsvRows) {
    const file = writeDataFile('bad.csv', `x,y,label\n1,2,a\n${row}\n`);
    assertDataError(t, () => readCsv(file), file, 3, problem, row);
  }
  const headerless = writeDataFile('ragged.csv', '\n1,2,a\n1,2,3,b\n');
  assertDataError(t, () => readCsv(headerless, { header: false }), headerless, 3, 'expected 3 (as in line 2)', 'headerless');
});

test('readCsv skip counts bad rows', (t) => {
  const rows = ['x,y,label', '1,2,a', ...badCsvRows.map(([row]) => row), '5,6,b'];
  const file = writeDataFile('mixed.csv', rows.join('\n'));
  const result = readCsv(file, { onBadRecord: 'skip' });
  t.deepEqual(
    result.records.map((record) => record.label),
    ['a', 'b'],
    'kept labels',
  );
  t.is(result.skipped, badCsvRows.length, 'skipped count');
  t.is(result.skipReasons[0], `${file}:3: has 2 columns, expected 3 (as in the header)`, 'first reason');
});

test('readCsv rejects bad header', (t) => {
  const noLabel = writeDataFile('no-label.csv', 'x,y,class\n1,2,a\n');
  assertDataError(t, () => readCsv(noLabel), noLabel, 1, 'header has no column "label" (columns: x, y, class)', 'no label');

  const twice = writeDataFile('twice.csv', 'x,x,label\n1,2,a\n');
  assertDataError(t, () => readCsv(twice), twice, 1, 'header names column "x" twice', 'duplicate');

  const range = writeDataFile('range.csv', '\n1,2,a\n');
  assertDataError(t, () => readCsv(range, { header: false, labelColumn: 3 }), range, 2, 'labelColumn 3 is out of range for 3 columns', 'range');

  const single = writeDataFile('single.csv', 'label\na\n');
  assertDataError(t, () => readCsv(single), single, 1, 'has 1 column, expected at least 2', 'one column');
});
