/**
 * The learning-rate schedule: linear warm-up followed by cosine decay.
 */
import type { OptimizerConfig } from '../config/types.js';

/**
 * Computes the learning rate of optimizer step `step` (counted from 1) in a run of `totalSteps` steps.
 *
 * - Warm-up, 1 <= step <= warmupSteps: `lr * step / warmupSteps`, so step 1 gets `lr / warmupSteps` and step
 *   `warmupSteps` gets `lr` exactly.
 * - Decay, warmupSteps < step < totalSteps: with `progress = (step - warmupSteps) / (totalSteps - warmupSteps)`
 *   the rate is `minLr + (lr - minLr) * (1 + cos(pi * progress)) / 2`, where `minLr = lr * minLrRatio`. The
 *   curve starts at `lr` at step `warmupSteps` (step 0 when warmupSteps is 0), so the first decay step is
 *   already slightly below `lr`.
 * - step >= totalSteps after warm-up: `minLr`, so the last step of the run gets `minLr` and later steps keep it.
 *
 * When totalSteps <= warmupSteps the run ends inside warm-up and never reaches `lr`.
 * The result depends only on float64 arithmetic and `Math.cos`, so every rank on the same Node build gets the
 * same bits. Throws a RangeError unless `step` and `totalSteps` are integers of at least 1.
 */
export function learningRateAt(step: number, totalSteps: number, config: Pick<OptimizerConfig, 'lr' | 'warmupSteps' | 'minLrRatio'>): number {
  if (!Number.isSafeInteger(step) || step < 1) {
    throw new RangeError(`learning-rate step must be an integer of at least 1 (got ${step}); steps count from 1`);
  }
  if (!Number.isSafeInteger(totalSteps) || totalSteps < 1) {
    throw new RangeError(`totalSteps must be an integer of at least 1 (got ${totalSteps})`);
  }

  const peak = config.lr;
  const warmup = config.warmupSteps;
  if (step <= warmup) {
    return (peak * step) / warmup;
  }

  const floor = peak * config.minLrRatio;
  if (step >= totalSteps) {
    return floor;
  }

  // Here warmup < step < totalSteps, so the denominator is positive and progress lies in (0, 1).
  const progress = (step - warmup) / (totalSteps - warmup);
  return floor + ((peak - floor) * (1 + Math.cos(Math.PI * progress))) / 2;
}
