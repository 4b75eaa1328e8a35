/** Tests of the check that evaluation labels occur in the training data. */
import test from 'ava';

import { checkKnownLabels } from '../src/data/formats/labels.js';
import { assertDataError } from './helpers/data-files.js';

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
