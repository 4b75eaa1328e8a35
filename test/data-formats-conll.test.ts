/** Tests of the CoNLL reader. */
import test from 'ava';

import { readConll } from '../src/data/formats/conll.js';
import { assertDataError, useDataFolder } from './helpers/data-files.js';

const { writeDataFile } = useDataFolder();

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
