/**
 * The check of each received frame header against the frame that the collective's schedule expects next,
 * and the RINGTRAIN_ERR_PROTOCOL errors it raises. Each message names the setting to align across ranks.
 */
import { RingtrainError } from '../errors.js';
import { collectiveKindOf, collectiveMethodName, elementTypeName, phaseName, wirePhaseOf, type FrameHeader } from './ring-frame.js';
import type { CollectiveSchedule } from './ring-schedule.js';

/** The settings whose mismatch between nodes makes ranks call different collectives or lengths in training. */
const TRAINING_SETTINGS_HINT = '(in training: set the same optimizer.shardState and allreduce.skipZeroBlocks on every node)';

/** Raises RINGTRAIN_ERR_PROTOCOL unless `header` is the frame that `schedule` expects next from the previous rank. */
export function checkFrameHeader(header: FrameHeader, schedule: CollectiveSchedule): void {
  const { rank } = schedule;
  const peer = schedule.previousRank;
  const { position, sequence, region } = schedule;
  const where = `${phaseName(position.phase)} step ${position.step} of bucket ${region.index} of collective ${sequence}`;
  const peerKind = collectiveKindOf(header.phase);
  if (peerKind !== null && peerKind !== region.kind) {
    throw protocolError(
      `rank ${rank} runs ${collectiveMethodName(region.kind)} but rank ${peer} sent a frame of ` +
        `${collectiveMethodName(peerKind)} in ${where}; every rank must call the same collectives in the same order ` +
        TRAINING_SETTINGS_HINT,
    );
  }
  if (header.totalLength !== schedule.totalLength) {
    throw protocolError(
      `rank ${rank} called allReduce with ${schedule.totalLength} elements, but rank ${peer} sent a frame for ` +
        `${header.totalLength} elements in ${where}; every rank must call allReduce with buffers of the same length ` +
        TRAINING_SETTINGS_HINT,
    );
  }
  if (header.sequence !== sequence >>> 0) {
    throw protocolError(
      `rank ${rank} is in collective ${sequence} but rank ${peer} sent a frame of collective ` +
        `${header.sequence}; every rank must call allReduce the same number of times in the same order`,
    );
  }
  if (header.elementType !== region.elementType) {
    throw protocolError(
      `rank ${rank} reduces ${elementTypeName(region.elementType)} values but rank ${peer} sent ` +
        `${elementTypeName(header.elementType)} values in ${where}; set the same allreduce.compression on every rank`,
    );
  }
  if (header.bucketElements !== region.maxElements || header.bucket !== region.index) {
    throw protocolError(
      `rank ${rank} expected bucket ${region.index} of at most ${region.maxElements} elements but rank ${peer} ` +
        `sent bucket ${header.bucket} of at most ${header.bucketElements} elements in ${where}; ` +
        'set the same allreduce.bucketBytes on every rank',
    );
  }
  if (header.senderRank !== peer || header.phase !== wirePhaseOf(region.kind, position.phase) || header.step !== position.step) {
    throw protocolError(
      `rank ${rank} expected a frame from rank ${peer} for ${where} but got one from rank ` +
        `${header.senderRank} for phase ${header.phase} step ${header.step}; the ring order of the ranks disagrees`,
    );
  }
  const remaining = schedule.chunkEnd - schedule.offset;
  if (header.offset !== schedule.offset || header.count > remaining || (header.count === 0 && remaining > 0)) {
    throw protocolError(
      `rank ${rank} expected elements from offset ${schedule.offset} (${remaining} left in the chunk) from rank ` +
        `${peer} in ${where}, but the frame covers offset ${header.offset} with ${header.count} elements`,
    );
  }
}

function protocolError(message: string): RingtrainError {
  return new RingtrainError('RINGTRAIN_ERR_PROTOCOL', message);
}
