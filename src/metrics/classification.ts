/**
 * Classification metrics from confusion counts. Each rank counts its share of the evaluation split, the
 * coordinator adds the counts, and the report is computed once from the sum, so it equals a single-process
 * evaluation.
 */

/** Precision, recall, F1 and support of one class or one average. */
export interface ClassMetrics {
  precision: number;
  recall: number;
  f1: number;
  /** Gold occurrences (for averages: of the classes averaged). */
  support: number;
}

/** Per-class and averaged metrics computed from a confusion matrix. */
export interface Report {
  /** Metrics of every class that occurs in the gold labels or the predictions, in class-id order. */
  classes: Array<ClassMetrics & { name: string }>;
  /** Correct predictions divided by all counted predictions (token accuracy for a tagger); 0 when nothing was counted. */
  accuracy: number;
  /** Metrics from the summed true positives, false positives and false negatives of all classes. */
  micro: ClassMetrics;
  /** Unweighted mean over the classes in `classes`. */
  macro: ClassMetrics;
  /** Mean over the classes in `classes`, weighted by support. */
  weighted: ClassMetrics;
  /** Counted predictions. */
  total: number;
}

/**
 * Counts (gold, predicted) pairs into a `classCount` x `classCount` confusion matrix, row = gold class,
 * column = predicted class, row-major. Positions whose gold class is -1 (padding) are skipped.
 * Throws on arrays of different length or a class outside [0, classCount) at a counted position.
 */
export function countPredictions(gold: Int32Array, predicted: Int32Array, classCount: number): Float64Array {
  if (gold.length !== predicted.length) {
    throw new RangeError(
      `gold has ${gold.length} labels but predicted has ${predicted.length}; pass one prediction per label`,
    );
  }
  const confusion = new Float64Array(classCount * classCount);
  for (let i = 0; i < gold.length; i++) {
    const truth = gold[i];
    if (truth === -1) {
      continue;
    }
    const guess = predicted[i];
    if (truth < 0 || truth >= classCount || guess < 0 || guess >= classCount) {
      throw new RangeError(
        `position ${i} has gold class ${truth} and predicted class ${guess}; both must be in [0, ${classCount}) ` +
          'wherever the gold class is not -1',
      );
    }
    confusion[truth * classCount + guess] += 1;
  }
  return confusion;
}

/** Returns the element-wise sum of two confusion matrices of equal size. */
export function addCounts(a: Float64Array, b: Float64Array): Float64Array {
  if (a.length !== b.length) {
    throw new RangeError(`confusion matrices differ in size (${a.length} and ${b.length}); count both with the same classCount`);
  }
  const sum = new Float64Array(a.length);
  for (let i = 0; i < a.length; i++) {
    sum[i] = a[i] + b[i];
  }
  return sum;
}

/** Returns a / b, or 0 when b is 0 (the convention of scikit-learn's zero_division=0). */
function ratio(a: number, b: number): number {
  return b === 0 ? 0 : a / b;
}

/** Returns precision, recall and F1 from true positive, false positive and false negative counts. */
function metricsFrom(truePositives: number, falsePositives: number, falseNegatives: number): ClassMetrics {
  const precision = ratio(truePositives, truePositives + falsePositives);
  const recall = ratio(truePositives, truePositives + falseNegatives);
  return {
    precision,
    recall,
    f1: ratio(2 * precision * recall, precision + recall),
    support: truePositives + falseNegatives,
  };
}

/**
 * Computes per-class precision, recall, F1 and support, token accuracy, and micro, macro and support-weighted
 * averages from a row-major confusion matrix (row = gold, column = predicted). Classes that occur neither in
 * the gold labels nor in the predictions are left out of `classes` and of the averages.
 */
export function classificationReport(confusion: Float64Array, classNames: readonly string[]): Report {
  const classCount = classNames.length;
  if (confusion.length !== classCount * classCount) {
    throw new RangeError(
      `confusion matrix has ${confusion.length} cells but ${classCount} class names need ${classCount * classCount}; ` +
        'pass the class names the counts were made with',
    );
  }

  const classes: Report['classes'] = [];
  let correct = 0;
  let total = 0;
  for (let c = 0; c < classCount; c++) {
    let goldCount = 0;
    let predictedCount = 0;
    for (let other = 0; other < classCount; other++) {
      goldCount += confusion[c * classCount + other];
      predictedCount += confusion[other * classCount + c];
    }
    const truePositives = confusion[c * classCount + c];
    correct += truePositives;
    total += goldCount;
    if (goldCount > 0 || predictedCount > 0) {
      classes.push({ name: classNames[c], ...metricsFrom(truePositives, predictedCount - truePositives, goldCount - truePositives) });
    }
  }

  const mean = (weight: (entry: ClassMetrics) => number): ClassMetrics => {
    const weights = classes.map(weight);
    const weightSum = weights.reduce((sum, value) => sum + value, 0);
    const average = (key: 'precision' | 'recall' | 'f1') =>
      ratio(classes.reduce((sum, entry, i) => sum + weights[i] * entry[key], 0), weightSum);
    return { precision: average('precision'), recall: average('recall'), f1: average('f1'), support: total };
  };

  return {
    classes,
    accuracy: ratio(correct, total),
    // Every counted position is one prediction, so false positives and false negatives both equal the errors.
    micro: metricsFrom(correct, total - correct, total - correct),
    macro: mean(() => 1),
    weighted: mean((entry) => entry.support),
    total,
  };
}

/**
 * Formats a report as an aligned text table in the layout of scikit-learn's classification_report: one row per
 * class, then accuracy and the micro, macro and weighted averages, with four decimals.
 */
export function formatReport(report: Report): string {
  const labels = [...report.classes.map((entry) => entry.name), 'micro avg', 'macro avg', 'weighted avg'];
  const labelWidth = Math.max(...labels.map((label) => label.length), 'accuracy'.length);
  const column = (text: string) => text.padStart(10);
  const number = (value: number) => column(value.toFixed(4));
  const row = (label: string, metrics: ClassMetrics) =>
    label.padStart(labelWidth) +
    number(metrics.precision) +
    number(metrics.recall) +
    number(metrics.f1) +
    column(String(metrics.support));

  const lines = [
    ' '.repeat(labelWidth) + column('precision') + column('recall') + column('f1-score') + column('support'),
    '',
    ...report.classes.map((entry) => row(entry.name, entry)),
    '',
    'accuracy'.padStart(labelWidth) + column('') + column('') + number(report.accuracy) + column(String(report.total)),
    row('micro avg', report.micro),
    row('macro avg', report.macro),
    row('weighted avg', report.weighted),
  ];
  return lines.join('\n');
}
