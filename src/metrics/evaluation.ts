/**
 * The evaluation report of a run: the counts every rank sends for its share of the evaluation split, added up
 * once by the coordinator, so the report equals what one process evaluating the whole split would produce.
 */
import { classificationReport, formatReport, type Report } from './classification.js';

/** One rank's evaluation counts. */
export interface EvaluationShare {
  /** Confusion matrix of the share (empty when the task does not classify). */
  confusion: Float64Array;
  classNames: string[];
  lossSum: number;
  count: number;
}

/** Everything the evaluation reports; `accuracy` and the class tables are present for classification tasks. */
export interface EvaluationReport extends Partial<Report> {
  /** Evaluation examples counted across all ranks. */
  examples: number;
  /** Mean evaluation loss per term, or null when the task reports no loss. */
  loss: number | null;
  /** exp(loss), for language models; null unless the task requests it. */
  perplexity: number | null;
}

/** Adds the shares in rank order and computes the report. */
export function combineEvaluation(shares: readonly EvaluationShare[], examples: number, withPerplexity: boolean): EvaluationReport {
  const first = shares[0];
  if (first === undefined) throw new Error('evaluation returned no results');
  const confusion = new Float64Array(first.confusion.length);
  let lossSum = 0;
  let count = 0;
  for (const share of shares) {
    for (let i = 0; i < confusion.length; i++) confusion[i] = (confusion[i] as number) + (share.confusion[i] as number);
    lossSum += share.lossSum;
    count += share.count;
  }
  const loss = count > 0 ? lossSum / count : null;
  const classification = confusion.length > 0 ? classificationReport(confusion, first.classNames) : {};
  return { ...classification, examples, loss, perplexity: withPerplexity && loss !== null ? Math.exp(loss) : null };
}

/** Formats the report for the terminal and eval-report.txt. */
export function formatEvaluation(report: EvaluationReport): string {
  const lines: string[] = [];
  if (report.classes !== undefined) lines.push(formatReport(report as Report));
  if (report.loss !== null) lines.push(`evaluation loss ${report.loss.toFixed(4)} over ${report.examples} examples`);
  if (report.perplexity !== null) lines.push(`perplexity ${report.perplexity.toFixed(4)}`);
  if (lines.length === 0) lines.push(`evaluated ${report.examples} examples`);
  return lines.join('\n');
}
