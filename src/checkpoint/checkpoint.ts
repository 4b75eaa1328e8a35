/**
 * The in-memory checkpoint: everything a data-parallel run needs to continue bit for bit from a saved step.
 * docs/checkpoint-format.md describes how it is stored on disk.
 */
import type { ParameterSpec } from '../models/model.js';
import type { AdamWState } from '../optim/adamw.js';
import type { ConfigHash } from './config-hash.js';

/** Position of the coordinator's batch sampler: the next global batch to train on. */
export interface SamplerPosition {
  /** Epoch of the next batch, counted from 0; `planEpoch({ size, lengths, globalBatchSize, seed, epoch, lastBatch })` lists its batches. */
  epoch: number;
  /** Index of the next batch within that epoch's plan, counted from 0. */
  nextBatch: number;
}

/** The state of a run after `optimizer.step` completed optimizer steps. */
export interface Checkpoint {
  /** Parameter layout: names, shapes and weight-decay flags, in the order of the flat buffers. */
  specs: readonly ParameterSpec[];
  /** All parameters laid end to end in `specs` order. */
  parameters: Float32Array;
  /**
   * AdamW state as `AdamW.exportState()` returns it and `AdamW.loadState()` takes it. Its `step` is also the
   * learning-rate schedule position, because the schedule is a pure function of the step.
   */
  optimizer: AdamWState;
  /** Planned length of the run, which fixes the end of the cosine learning-rate decay. */
  totalSteps: number;
  /** Position at which the batch sampler continues. */
  sampler: SamplerPosition;
  /** Run seed; the batch plan is a pure function of (seed, epoch), so no other random state needs saving. */
  seed: number;
  /** Ranks that trained up to this checkpoint. */
  worldSize: number;
  /** Fingerprint of the config keys that give the saved state its meaning. */
  config: ConfigHash;
  /** Free-form string pairs such as a run id; not used when resuming. */
  metadata: Record<string, string>;
}

/**
 * Computes the sampler position after `step` completed steps when every epoch has `batchesPerEpoch` batches
 * and steps count from 1: step s trains batch (s - 1) % batchesPerEpoch of epoch floor((s - 1) / batchesPerEpoch).
 * Throws a RangeError unless `step` is an integer of at least 0 and `batchesPerEpoch` one of at least 1.
 */
export function samplerPositionAfterStep(step: number, batchesPerEpoch: number): SamplerPosition {
  if (!Number.isSafeInteger(step) || step < 0) {
    throw new RangeError(`step must be an integer of at least 0 (got ${step})`);
  }
  if (!Number.isSafeInteger(batchesPerEpoch) || batchesPerEpoch < 1) {
    throw new RangeError(`batchesPerEpoch must be an integer of at least 1 (got ${batchesPerEpoch})`);
  }
  return { epoch: Math.floor(step / batchesPerEpoch), nextBatch: step % batchesPerEpoch };
}
