import test from 'ava';
import type { ExecutionContext } from 'ava';

import { addCounts, classificationReport, countPredictions, formatReport } from '../src/metrics/classification.js';

const classNames = ['A', 'B', 'C', 'D'];

// Gold and predicted classes (A = 0, B = 1, C = 2; D never occurs), with three padding positions (-1).
// Confusion (rows gold, columns predicted): A [3 1 0], B [1 2 1], C [0 0 2].
const gold = Int32Array.from([0, 0, -1, 0, 0, 1, 1, 1, 1, -1, 2, 2, -1]);
const predicted = Int32Array.from([0, 0, -1, 0, 1, 0, 1, 1, 2, 2, 2, 2, -1]);

function assertNear(t: ExecutionContext, actual: number, expected: number, label: string): void {
  // Expected values are exact fractions written to 6 digits.
  t.true(Math.abs(actual - expected) <= 1e-6, `${label}: expected ${expected}, got ${actual}`);
}

test('countPredictions skips padding', (t) => {
  const confusion = countPredictions(gold, predicted, 4);
  t.deepEqual([...confusion], [3, 1, 0, 0, 1, 2, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0]);
});

test('countPredictions rejects length mismatch', (t) => {
  t.throws(() => countPredictions(gold, predicted.subarray(1), 4), { instanceOf: RangeError });
});

test('countPredictions rejects unknown class', (t) => {
  t.throws(() => countPredictions(Int32Array.from([4]), Int32Array.from([0]), 4), { instanceOf: RangeError });
  t.throws(() => countPredictions(Int32Array.from([1]), Int32Array.from([-1]), 4), { instanceOf: RangeError });
});

test('addCounts sums two shares', (t) => {
  const first = countPredictions(gold.subarray(0, 6), predicted.subarray(0, 6), 4);
  const second = countPredictions(gold.subarray(6), predicted.subarray(6), 4);
  t.deepEqual(addCounts(first, second), countPredictions(gold, predicted, 4));
  t.throws(() => addCounts(first, new Float64Array(4)), { instanceOf: RangeError });
});

test('classificationReport per-class metrics', (t) => {
  const report = classificationReport(countPredictions(gold, predicted, 4), classNames);
  // D has no gold and no prediction, so it is left out.
  t.deepEqual(
    report.classes.map((entry) => entry.name),
    ['A', 'B', 'C'],
  );
  // Predicted counts A 4, B 3, C 3. Precision 3/4, 2/3, 2/3; recall 3/4, 2/4, 2/2.
  // F1: A 3/4; B 2 * (2/3) * (1/2) / (7/6) = 4/7; C 2 * (2/3) * 1 / (5/3) = 4/5.
  const expected = [
    { precision: 0.75, recall: 0.75, f1: 0.75, support: 4 },
    { precision: 2 / 3, recall: 0.5, f1: 4 / 7, support: 4 },
    { precision: 2 / 3, recall: 1, f1: 0.8, support: 2 },
  ];
  expected.forEach((values, i) => {
    const entry = report.classes[i];
    assertNear(t, entry.precision, values.precision, `${entry.name} precision`);
    assertNear(t, entry.recall, values.recall, `${entry.name} recall`);
    assertNear(t, entry.f1, values.f1, `${entry.name} f1`);
    t.is(entry.support, values.support, `${entry.name} support`);
  });
});

test('classificationReport averages and accuracy', (t) => {
  const report = classificationReport(countPredictions(gold, predicted, 4), classNames);
  // 7 of 10 counted tokens are correct.
  assertNear(t, report.accuracy, 0.7, 'accuracy');
  t.is(report.total, 10);
  // Micro: one prediction per token, so precision = recall = F1 = accuracy.
  assertNear(t, report.micro.precision, 0.7, 'micro precision');
  assertNear(t, report.micro.recall, 0.7, 'micro recall');
  assertNear(t, report.micro.f1, 0.7, 'micro f1');
  // Macro: (3/4 + 2/3 + 2/3) / 3 = 0.694444, (3/4 + 1/2 + 1) / 3 = 0.75, (3/4 + 4/7 + 4/5) / 3 = 0.707143.
  assertNear(t, report.macro.precision, 0.694444, 'macro precision');
  assertNear(t, report.macro.recall, 0.75, 'macro recall');
  assertNear(t, report.macro.f1, 0.707143, 'macro f1');
  // Weighted by support 4, 4, 2: (3 + 8/3 + 4/3) / 10 = 0.7, (3 + 2 + 2) / 10 = 0.7,
  // (3 + 16/7 + 8/5) / 10 = 0.688571.
  assertNear(t, report.weighted.precision, 0.7, 'weighted precision');
  assertNear(t, report.weighted.recall, 0.7, 'weighted recall');
  assertNear(t, report.weighted.f1, 0.688571, 'weighted f1');
});

test('classificationReport handles no predictions', (t) => {
  const report = classificationReport(new Float64Array(16), classNames);
  t.is(report.accuracy, 0);
  t.is(report.classes.length, 0);
  t.is(report.macro.f1, 0);
});

test('classificationReport rejects wrong size', (t) => {
  t.throws(() => classificationReport(new Float64Array(9), classNames), { instanceOf: RangeError });
});

test('formatReport aligns columns', (t) => {
  const text = formatReport(classificationReport(countPredictions(gold, predicted, 4), classNames));
  const lines = text.split('\n');
  // Labels are right-aligned to 12 characters ("weighted avg"), then four columns of 10.
  t.is(lines[0], '             precision    recall  f1-score   support');
  t.is(lines[2], '           A    0.7500    0.7500    0.7500         4');
  t.is(lines[3], '           B    0.6667    0.5000    0.5714         4');
  t.is(lines[6], '    accuracy                        0.7000        10');
  t.is(lines[8], '   macro avg    0.6944    0.7500    0.7071        10');
  for (const line of lines.filter((entry) => entry.length > 0)) {
    t.is(line.length, 52, `line "${line}"`);
  }
});
