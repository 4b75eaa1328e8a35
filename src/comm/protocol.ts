import { Packr } from 'msgpackr';
import { RingtrainError } from '../errors.js';

/**
 * Control messages between the coordinator and the workers, one msgpack-encoded WebSocket binary frame each.
 * Gradients never travel here; they use the ring links (docs/ring-wire.md). docs/protocol.md describes the
 * sequence of messages for people; this module is the definition.
 */

/**
 * Bumped whenever a message changes shape; a worker with another version is rejected at join. Version 5
 * added `RingAddress`, with the Unix socket path and the node identity.
 */
export const PROTOCOL_VERSION = 5;

/**
 * Largest control frame accepted, in bytes. The largest message is `join`, with 2 bytes per training example, so
 * this allows about 4 million examples.
 */
export const MAX_CONTROL_FRAME_BYTES = 8 * 1024 * 1024;

/** A TCP address that a peer dials. */
export interface PeerAddress {
  host: string;
  port: number;
}

/** The address of a ring listener: its TCP address, dialed from other nodes, and its Unix socket. */
export interface RingAddress extends PeerAddress {
  /** The listener's Unix socket, or null when it opened none (allreduce.localTransport=tcp, or it failed). */
  unixSocketPath: string | null;
  /** Identity of the listener's node (host name, boot id, node index); equal identities allow the Unix socket. */
  nodeId: string;
}

// ---------------------------------------------------------------- worker -> coordinator

/** Worker -> coordinator, first message after connecting. */
export interface JoinMessage {
  type: 'join';
  protocolVersion: number;
  runId: string;
  /** Node index of the launcher that started the worker. */
  node: number;
  /** Index of the worker among the workers of its node. */
  localRank: number;
  /** Number of workers its node's launcher started; nodes may differ. */
  nodeWorkers: number;
  pid: number;
  /** Address of this worker's ring listener, which its next neighbour dials. */
  ring: RingAddress;
  /** tfjs backend the worker loaded. */
  backend: string;
  trainSize: number;
  evalSize: number;
  /** Length of each training example, for length bucketing; empty when the task gives no lengths. */
  trainLengths: Uint16Array;
  /** Parameter names and shapes in order, so that a rank whose model differs is named with the first difference. */
  parameterSpecs: Array<{ name: string; shape: number[] }>;
  /** Number of model parameters (float32 values). */
  parameterCount: number;
  /** Hash of parameter names, shapes and decay flags in order; differs when ranks built different models. */
  parameterLayoutHash: string;
  /** Hash of the initial parameter values. */
  initialChecksum: string;
}

/** Worker -> coordinator: one pino JSON line, forwarded to the merged log. */
export interface LogMessage {
  type: 'log';
  line: string;
}

/** Worker -> coordinator: the worker has connected its ring links and is ready for its first step. */
export interface ReadyMessage {
  type: 'ready';
}

/** Worker -> coordinator, every `health.heartbeatIntervalMs`: the worker's event loop is alive. */
export interface HeartbeatMessage {
  type: 'heartbeat';
}

/** Per-step wall time of each phase on one worker, in milliseconds. */
export interface StepTimings {
  /** Time the step waited for its batch from the data-loading threads. */
  dataWaitMs: number;
  computeMs: number;
  allReduceMs: number;
  optimizerMs: number;
}

/** Worker -> coordinator: a step finished on this worker. */
export interface StepDoneMessage {
  type: 'stepDone';
  step: number;
  /** Mean loss over the whole global batch (identical on every rank). */
  loss: number;
  /** Loss terms (tokens) in the global batch. */
  globalCount: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  lr: number;
  /** Parameter checksum after the update, present on checksum steps only. */
  checksum?: string;
  /** True when the reduced loss or gradient was not finite and every rank skipped the update. */
  skipped: boolean;
  timings: StepTimings;
}

/** Worker -> coordinator: evaluation counts for this worker's share of the evaluation split. */
export interface EvalDoneMessage {
  type: 'evalDone';
  /** Confusion matrix, row = gold class, column = predicted class, numClasses x numClasses, row-major. */
  confusion: Float64Array;
  classNames: string[];
  /** Summed evaluation loss of the share and its number of terms (0 and 0 when the task reports no loss). */
  lossSum: number;
  count: number;
  /** Metrics the task asked for, e.g. `perplexity`. */
  metrics: string[];
}

/** Worker -> coordinator: rank 0 wrote a checkpoint. */
export interface CheckpointedMessage {
  type: 'checkpointed';
  step: number;
  path: string;
  bytes: number;
}

/** Worker -> coordinator: rank 0 wrote the final weights. */
export interface SavedMessage {
  type: 'saved';
  files: string[];
}

/** Worker -> coordinator: the worker hit an error it cannot recover from and is about to exit. */
export interface FailedMessage {
  type: 'failed';
  step: number | null;
  code: string;
  message: string;
}

export type WorkerMessage =
  | JoinMessage
  | LogMessage
  | ReadyMessage
  | HeartbeatMessage
  | StepDoneMessage
  | CheckpointedMessage
  | EvalDoneMessage
  | SavedMessage
  | FailedMessage;

// ---------------------------------------------------------------- coordinator -> worker

/** Coordinator -> worker, after every expected worker has joined: the worker's place in the ring. */
export interface WelcomeMessage {
  type: 'welcome';
  rank: number;
  worldSize: number;
  previous: RingAddress;
  next: RingAddress;
  totalSteps: number;
}

/** Coordinator -> worker: run one optimizer step on these training examples. */
export interface StepMessage {
  type: 'step';
  /** Step number, counted from 1. */
  step: number;
  epoch: number;
  /** Indices into the training split forming this worker's shard; may be empty when the batch is smaller than the world. */
  indices: number[];
  /** This worker's shards of the next steps, so its data-loading threads can build them ahead (`data.prefetch`). */
  upcoming: Array<{ step: number; indices: number[] }>;
  /** Whether to send a parameter checksum with the result. */
  checksum: boolean;
}

/** Coordinator -> worker: evaluate these examples of the evaluation split and send the counts. */
export interface EvaluateMessage {
  type: 'evaluate';
  indices: number[];
}

/** Position in the batch plan: the epoch (from 0) and the index of the next global batch in it. */
export interface SamplerPosition {
  epoch: number;
  nextBatch: number;
}

/**
 * Coordinator -> rank 0 (every rank with sharded optimizer state, which first gathers the moments over the
 * ring): write a checkpoint of the state after `step` into `directory`.
 */
export interface CheckpointMessage {
  type: 'checkpoint';
  step: number;
  sampler: SamplerPosition;
  directory: string;
  /** Checkpoints to keep in `directory`; older ones are deleted. */
  keep: number;
}

/** Coordinator -> rank 0: write the final weights into `directory`. */
export interface SaveMessage {
  type: 'save';
  directory: string;
}

/** Coordinator -> worker: the run is over; close links and exit with `exitCode`. */
export interface ShutdownMessage {
  type: 'shutdown';
  exitCode: number;
  reason: string;
}

export type CoordinatorMessage = WelcomeMessage | StepMessage | CheckpointMessage | EvaluateMessage | SaveMessage | ShutdownMessage;

const workerMessageTypes = new Set(['join', 'log', 'ready', 'heartbeat', 'stepDone', 'checkpointed', 'evalDone', 'saved', 'failed']);
const coordinatorMessageTypes = new Set(['welcome', 'step', 'checkpoint', 'evaluate', 'save', 'shutdown']);

// Typed arrays survive the round trip only with structured cloning on; records off keeps frames plain msgpack.
const packr = new Packr({ structuredClone: true, useRecords: false });

/** Encodes one control message into a frame. */
export function encodeMessage(message: WorkerMessage | CoordinatorMessage): Buffer {
  return packr.pack(message);
}

function decodeFrame(frame: Buffer, allowed: Set<string>, direction: string): { type: string } {
  let value: unknown;
  try {
    value = packr.unpack(frame);
  } catch (error) {
    throw new RingtrainError('RINGTRAIN_ERR_PROTOCOL', `invalid ${direction} frame of ${frame.length} bytes: not msgpack`, {
      cause: error,
    });
  }
  if (typeof value !== 'object' || value === null || typeof (value as { type?: unknown }).type !== 'string') {
    throw new RingtrainError('RINGTRAIN_ERR_PROTOCOL', `invalid ${direction} frame: expected an object with a string 'type'`);
  }
  const type = (value as { type: string }).type;
  if (!allowed.has(type)) {
    throw new RingtrainError(
      'RINGTRAIN_ERR_PROTOCOL',
      `unknown ${direction} message type '${type}'; expected one of ${[...allowed].join(', ')}`,
    );
  }
  return value as { type: string };
}

/** Decodes a frame a worker sent; raises RINGTRAIN_ERR_PROTOCOL for anything that is not a known message. */
export function decodeWorkerMessage(frame: Buffer): WorkerMessage {
  return decodeFrame(frame, workerMessageTypes, 'worker-to-coordinator') as WorkerMessage;
}

/** Decodes a frame the coordinator sent; raises RINGTRAIN_ERR_PROTOCOL for anything that is not a known message. */
export function decodeCoordinatorMessage(frame: Buffer): CoordinatorMessage {
  return decodeFrame(frame, coordinatorMessageTypes, 'coordinator-to-worker') as CoordinatorMessage;
}
