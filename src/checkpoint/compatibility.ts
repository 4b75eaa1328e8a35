/**
 * The check that a checkpoint fits the run that wants to resume from it: same parameter layout, same config
 * fingerprint, same schedule length and a sampler position that the batch plan can continue from.
 */
import type { ParameterSpec } from '../models/model.js';
import { samplerPositionAfterStep, type Checkpoint } from './checkpoint.js';
import { firstConfigDifference, type ConfigHash } from './config-hash.js';
import { checkpointError } from './format.js';
import { checkpointFileName } from './store.js';

/** Properties of the resuming run that the checkpoint must match. */
export interface CompatibilityOptions {
  /** Parameter layout of the model that will load the checkpoint. */
  specs: readonly ParameterSpec[];
  /** Fingerprint of the resuming run's config, from `hashConfig`. */
  configHash: ConfigHash;
  /** Ranks of the resuming run. */
  worldSize: number;
  /** Planned length of the resuming run; when given it must equal the checkpoint's `totalSteps`. */
  totalSteps?: number;
  /** Global batches per epoch of the resuming run; when given the sampler position must match the step. */
  batchesPerEpoch?: number;
  /** Reject a different world size instead of returning a note about it. */
  requireSameWorldSize?: boolean;
  /** Name of the checkpoint in error messages, usually its path; defaults to its step file name. */
  source?: string;
}

/** Result of a successful `checkCompatible`. */
export interface CompatibilityReport {
  /** Differences that do not prevent resuming but change the result, one sentence each, for the log. */
  notes: string[];
}

/**
 * Checks that `checkpoint` can resume the run described by `options`, in this order: config fingerprint,
 * parameter layout, run length, sampler position, world size. Raises RINGTRAIN_ERR_CHECKPOINT at the first
 * mismatch, naming the config key or parameter and both values.
 *
 * Format version 1 stores no per-rank state, because parameters and AdamW state are replicated. So a different
 * world size is accepted with a note unless `requireSameWorldSize` is set: the all-reduce then sums in another
 * order, and the continued run matches the original only to float32 rounding.
 */
export function checkCompatible(checkpoint: Checkpoint, options: CompatibilityOptions): CompatibilityReport {
  const source = options.source ?? checkpointFileName(checkpoint.optimizer.step);
  const mismatch = (problem: string): Error => checkpointError(source, `does not fit this run: ${problem}`);

  const difference = firstConfigDifference(checkpoint.config, options.configHash);
  if (difference !== null) {
    const detail =
      difference.first === undefined && difference.second === undefined
        ? `config section ${difference.section} differs (section hash ${checkpoint.config.sections[difference.section]} in the checkpoint, ${options.configHash.sections[difference.section]} here)`
        : `config key ${difference.key} is ${describe(difference.first)} in the checkpoint but ${describe(difference.second)} in this run`;
    throw mismatch(`${detail}; resume with the checkpoint's config value, or start a new run without resuming`);
  }

  const layoutProblem = firstLayoutDifference(checkpoint.specs, options.specs);
  if (layoutProblem !== null) {
    throw mismatch(`${layoutProblem}; the model code changed since the checkpoint was written, so resume with the ringtrain version that wrote it`);
  }

  if (options.totalSteps !== undefined && options.totalSteps !== checkpoint.totalSteps) {
    throw mismatch(
      `it was written for a run of ${checkpoint.totalSteps} steps but this run plans ${options.totalSteps}, which would move the ` +
        'learning-rate schedule; set train.epochs and train.maxSteps as in the checkpointed run, or start a new run',
    );
  }

  if (options.batchesPerEpoch !== undefined) {
    const step = checkpoint.optimizer.step;
    const expected = samplerPositionAfterStep(step, options.batchesPerEpoch);
    const actual = checkpoint.sampler;
    if (expected.epoch !== actual.epoch || expected.nextBatch !== actual.nextBatch) {
      throw mismatch(
        `after ${step} steps the checkpoint continues at epoch ${actual.epoch} batch ${actual.nextBatch}, but with ` +
          `${options.batchesPerEpoch} batches per epoch this run would continue at epoch ${expected.epoch} batch ${expected.nextBatch}; ` +
          'the training split changed size, so check the corpus files',
      );
    }
  }

  const notes: string[] = [];
  if (options.worldSize !== checkpoint.worldSize) {
    if (options.requireSameWorldSize === true) {
      throw mismatch(`it was written by ${checkpoint.worldSize} ranks but this run has ${options.worldSize}; start the run with ${checkpoint.worldSize} ranks`);
    }
    notes.push(
      `the checkpoint was written by ${checkpoint.worldSize} ranks and this run has ${options.worldSize}; ` +
        'the all-reduce sums gradients in another order, so the run continues equal to float32 rounding, not bit for bit',
    );
  }
  return { notes };
}

/** Describes the first difference between two parameter layouts, or returns null when they are equal. */
export function firstLayoutDifference(saved: readonly ParameterSpec[], current: readonly ParameterSpec[]): string | null {
  const shared = Math.min(saved.length, current.length);
  for (let index = 0; index < shared; index++) {
    const a = saved[index] as ParameterSpec;
    const b = current[index] as ParameterSpec;
    if (a.name !== b.name) {
      return `parameter ${index} is ${a.name} in the checkpoint but ${b.name} in this model`;
    }
    if (a.shape.length !== b.shape.length || a.shape.some((size, axis) => size !== b.shape[axis])) {
      return `parameter ${a.name} has shape [${a.shape.join(', ')}] in the checkpoint but [${b.shape.join(', ')}] in this model`;
    }
    if (a.decay !== b.decay) {
      return `parameter ${a.name} has decay=${a.decay} in the checkpoint but decay=${b.decay} in this model`;
    }
  }
  if (saved.length > shared) {
    return `the checkpoint has ${saved.length} parameters but this model has ${current.length}; the first extra one in the checkpoint is ${(saved[shared] as ParameterSpec).name}`;
  }
  if (current.length > shared) {
    return `the checkpoint has ${saved.length} parameters but this model has ${current.length}; the first one missing from the checkpoint is ${(current[shared] as ParameterSpec).name}`;
  }
  return null;
}

function describe(value: unknown): string {
  return value === undefined ? 'missing' : JSON.stringify(value);
}
