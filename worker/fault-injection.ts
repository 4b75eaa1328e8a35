import type { Logger } from 'pino';
import { RingtrainError } from '../src/errors.js';
import { destination, writeToStderr } from './exit.js';

/**
 * Fault injection for tests of failure handling. Each variable takes `RANK:STEP` and acts on that rank at that
 * step; all are unset in normal runs. They act only in the first attempt of a run (RINGTRAIN_RESTART_COUNT unset
 * or 0), so a run restarted after an injected crash can complete.
 *   RINGTRAIN_FAULT_PERTURB  after the step, change one parameter, so the cross-rank checksum differs
 *   RINGTRAIN_FAULT_KILL     at the start of the step, the worker kills itself with SIGKILL
 *   RINGTRAIN_FAULT_NAN      before the all-reduce, put NaN into the gradient, so every rank sees a NaN sum
 *   RINGTRAIN_FAULT_HANG     at the start of the step, block the worker's event loop for good
 * One more acts in every attempt and takes `RANK:MS`, to imitate a slower device:
 *   RINGTRAIN_FAULT_SLOW     every step, the rank computes MS milliseconds longer per example of its shard
 */
export interface FaultPlan {
  perturb: FaultPoint | null;
  kill: FaultPoint | null;
  nan: FaultPoint | null;
  hang: FaultPoint | null;
  /** Rank that runs slower, and the extra milliseconds per example (the `step` field contains the milliseconds). */
  slow: FaultPoint | null;
}

/** The rank and step at which one fault fires. */
export interface FaultPoint {
  rank: number;
  step: number;
}

/** Reads the fault plan from the environment; every entry is null in normal runs. */
export function readFaultPlan(environment: NodeJS.ProcessEnv = process.env): FaultPlan {
  const firstAttempt = (environment.RINGTRAIN_RESTART_COUNT ?? '0') === '0';
  const read = (name: string): FaultPoint | null => (firstAttempt ? parseFaultPoint(name, environment[name]) : null);
  return {
    perturb: read('RINGTRAIN_FAULT_PERTURB'),
    kill: read('RINGTRAIN_FAULT_KILL'),
    nan: read('RINGTRAIN_FAULT_NAN'),
    hang: read('RINGTRAIN_FAULT_HANG'),
    slow: parseFaultPoint('RINGTRAIN_FAULT_SLOW', environment.RINGTRAIN_FAULT_SLOW),
  };
}

/** Returns true when `point` fires on `rank` at `step`. */
export function firesAt(point: FaultPoint | null, rank: number, step: number): boolean {
  return point !== null && point.rank === rank && point.step === step;
}

function parseFaultPoint(name: string, value: string | undefined): FaultPoint | null {
  if (value === undefined || value === '') return null;
  const match = /^(\d+):(\d+)$/.exec(value);
  if (match === null) throw new RingtrainError('RINGTRAIN_ERR_USAGE', `${name} must be RANK:STEP, e.g. 1:5 (got '${value}')`);
  return { rank: Number(match[1]), step: Number(match[2]) };
}

/** Returns the extra compute milliseconds that RINGTRAIN_FAULT_SLOW adds to `rank` for a shard of `examples`. */
export function slowdownMs(plan: FaultPlan, rank: number, examples: number): number {
  return plan.slow !== null && plan.slow.rank === rank ? plan.slow.step * examples : 0;
}

/** Kills this worker with SIGKILL, or blocks it for good, when the kill or hang fault fires on `rank` at `step`. */
export function injectStartOfStepFaults(faults: FaultPlan, rank: number, step: number, logger: Logger): void {
  if (firesAt(faults.kill, rank, step)) {
    logger.warn({ step }, 'fault injection: killing this worker with SIGKILL');
    destination.flushTo(writeToStderr);
    process.kill(process.pid, 'SIGKILL');
  }
  if (firesAt(faults.hang, rank, step)) {
    logger.warn({ step }, 'fault injection: blocking this worker forever');
    // Busy-wait without yielding, as a deadlocked native call would; only SIGKILL ends it.
    for (;;) {
      /* hang */
    }
  }
}
