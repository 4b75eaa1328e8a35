/**
 * The worker's side of the ring: connecting it from the coordinator's welcome message, and the collectives
 * that training steps and the initial broadcast run on it.
 */
import type { Logger } from 'pino';
import type { WelcomeMessage } from '../src/comm/protocol.js';
import { Ring } from '../src/comm/ring-allreduce.js';
import type { RingListener } from '../src/comm/ring-listener.js';
import type { RunConfig } from '../src/config/types.js';
import type { ShardCollectives } from './trainer.js';

/** Connects this rank to its ring neighbours named in `welcome`, with the all-reduce settings of `config`. */
export async function connectRing(
  welcome: WelcomeMessage,
  listener: RingListener,
  runId: string,
  config: RunConfig,
  token: string | null,
  logger: Logger,
): Promise<Ring> {
  logger.info({ worldSize: welcome.worldSize, previous: welcome.previous, next: welcome.next }, 'connecting ring links');
  return Ring.connect({
    listener,
    rank: welcome.rank,
    worldSize: welcome.worldSize,
    runId,
    previous: welcome.previous,
    next: welcome.next,
    timeoutMs: config.allreduce.timeoutMs,
    bucketBytes: config.allreduce.bucketBytes,
    compression: config.allreduce.compression,
    token,
    logger,
  });
}

/** Returns the collectives of a sharded optimizer step, or undefined when `optimizer.shardState` is off or the ring has one rank. */
export function shardCollectives(ring: Ring, config: RunConfig): ShardCollectives | undefined {
  if (!config.optimizer.shardState || ring.worldSize === 1) return undefined;
  return {
    reduceScatter: (buffer) => ring.reduceScatter(buffer),
    allGather: (buffer) => ring.allGather(buffer),
    sumFloat64: (value) => ring.sumFloat64(value),
    ownedRanges: (length) => ring.ownedRanges(length),
  };
}

/** Sums `buffer` across the ring with float32 values on the wire, whatever the value of `allreduce.compression`. */
export function allReduceFloat32(ring: Ring, buffer: Float32Array): Promise<void> {
  const reduction = ring.beginAllReduce(buffer, { compression: 'none' });
  reduction.markFilled(buffer.length);
  return reduction.done;
}
