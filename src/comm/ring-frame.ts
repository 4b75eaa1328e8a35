/**
 * The binary data frame of the ring all-reduce and the chunk layout both ends agree on.
 * docs/ring-wire.md describes the same layout for people; this module is the definition.
 */
import { RingtrainError } from '../errors.js';

/** Bytes before the payload of every data frame. A multiple of 8, so an aligned frame has an aligned payload. */
export const FRAME_HEADER_BYTES = 40;

/** The ASCII bytes "RTAR" read as a little-endian uint32. */
export const FRAME_MAGIC = 0x52415452;

/** Version of the data frame layout; a frame with another version is a protocol error. */
export const FRAME_VERSION = 2;

/** Phase of a ring collective: the two halves of an all-reduce. */
export enum RingPhase {
  ReduceScatter = 1,
  AllGather = 2,
}

/** The collective a frame belongs to: an all-reduce, or one of its halves called on its own. */
export type CollectiveKind = 'all-reduce' | 'reduce-scatter' | 'all-gather';

/**
 * Phase byte values of the frame header. An all-reduce sends 1 and 2; a standalone reduce-scatter sends 3 and
 * a standalone all-gather 4, so a rank that calls another collective than its neighbour fails with a clear
 * message instead of a sequence mismatch.
 */
export enum WirePhase {
  AllReduceScatter = 1,
  AllReduceGather = 2,
  ReduceScatterOnly = 3,
  AllGatherOnly = 4,
}

/** Returns the phase byte that frames of `phase` carry in a collective of kind `kind`. */
export function wirePhaseOf(kind: CollectiveKind, phase: RingPhase): WirePhase {
  if (kind === 'reduce-scatter') return WirePhase.ReduceScatterOnly;
  if (kind === 'all-gather') return WirePhase.AllGatherOnly;
  return phase === RingPhase.ReduceScatter ? WirePhase.AllReduceScatter : WirePhase.AllReduceGather;
}

/** Returns the collective kind that the phase byte `wirePhase` belongs to, or null for an unknown value. */
export function collectiveKindOf(wirePhase: number): CollectiveKind | null {
  switch (wirePhase) {
    case WirePhase.AllReduceScatter:
    case WirePhase.AllReduceGather:
      return 'all-reduce';
    case WirePhase.ReduceScatterOnly:
      return 'reduce-scatter';
    case WirePhase.AllGatherOnly:
      return 'all-gather';
    default:
      return null;
  }
}

/** Type of the payload values, as stored in the frame header. */
export enum ElementType {
  Float32 = 1,
  /** IEEE 754 binary16. */
  Float16 = 2,
  /** bfloat16, the upper 16 bits of a float32. */
  BFloat16 = 3,
}

/** Returns the size of one payload value of type `type` in bytes. */
export function elementBytes(type: ElementType): number {
  return type === ElementType.Float32 ? 4 : 2;
}

/** Returns the name of an element type for messages: "float32", "fp16" or "bf16". */
export function elementTypeName(type: ElementType): string {
  if (type === ElementType.Float32) return 'float32';
  if (type === ElementType.Float16) return 'fp16';
  return 'bf16';
}

/** The fields of a data frame header, in elements (buffer values) where they are lengths. */
export interface FrameHeader {
  /** Phase byte: see WirePhase. */
  phase: WirePhase;
  elementType: ElementType;
  /** Ring step within the phase, 0 to worldSize - 2. */
  step: number;
  /** Number of collectives this ring ran before this one, modulo 2^32. */
  sequence: number;
  /** Rank that sent the frame. */
  senderRank: number;
  /** Length of the whole buffer being reduced. */
  totalLength: number;
  /** Index of the bucket this frame belongs to, 0 for an unbucketed all-reduce. */
  bucket: number;
  /** Largest bucket length of this collective in elements, the same on every rank. */
  bucketElements: number;
  /** Index of the first payload element within the whole buffer. */
  offset: number;
  /** Number of values in the payload. */
  count: number;
}

/** Returns the human name of a phase for log lines and error messages. */
export function phaseName(phase: RingPhase): string {
  return phase === RingPhase.ReduceScatter ? 'reduce-scatter' : 'all-gather';
}

/** Returns the name of a collective kind as its Ring method: "allReduce", "reduceScatter" or "allGather". */
export function collectiveMethodName(kind: CollectiveKind): string {
  if (kind === 'all-reduce') return 'allReduce';
  if (kind === 'reduce-scatter') return 'reduceScatter';
  return 'allGather';
}

/** Writes `header` into the first FRAME_HEADER_BYTES of `frame`; all fields are little-endian. */
export function writeFrameHeader(frame: Buffer, header: FrameHeader): void {
  frame.writeUInt32LE(FRAME_MAGIC, 0);
  frame.writeUInt16LE(FRAME_VERSION, 4);
  frame.writeUInt8(header.phase, 6);
  frame.writeUInt8(header.elementType, 7);
  frame.writeUInt32LE(header.step, 8);
  frame.writeUInt32LE(header.sequence >>> 0, 12);
  frame.writeUInt32LE(header.senderRank, 16);
  frame.writeUInt32LE(header.totalLength, 20);
  frame.writeUInt32LE(header.bucket, 24);
  frame.writeUInt32LE(header.bucketElements, 28);
  frame.writeUInt32LE(header.offset, 32);
  frame.writeUInt32LE(header.count, 36);
}

/**
 * Reads the header of a received frame from its first FRAME_HEADER_BYTES bytes. Raises RINGTRAIN_ERR_PROTOCOL
 * when the magic or the version differs or the element type is unknown; `source` names the sender in the
 * message. The caller checks the
 * frame's length with `checkFrameLength` once the whole frame has arrived.
 */
export function parseFrameHeader(header: Buffer, source: string): FrameHeader {
  const magic = header.readUInt32LE(0);
  const version = header.readUInt16LE(4);
  if (magic !== FRAME_MAGIC || version !== FRAME_VERSION) {
    throw new RingtrainError(
      'RINGTRAIN_ERR_PROTOCOL',
      `ring frame from ${source} has magic 0x${magic.toString(16)} version ${version} ` +
        `(expected 0x${FRAME_MAGIC.toString(16)} version ${FRAME_VERSION}); run the same ringtrain version on every worker`,
    );
  }
  const elementType = header.readUInt8(7);
  if (elementType !== ElementType.Float32 && elementType !== ElementType.Float16 && elementType !== ElementType.BFloat16) {
    throw new RingtrainError(
      'RINGTRAIN_ERR_PROTOCOL',
      `ring frame from ${source} has element type ${elementType} (expected 1 float32, 2 fp16 or 3 bf16); ` +
        'run the same ringtrain version on every worker',
    );
  }
  return {
    phase: header.readUInt8(6),
    elementType,
    step: header.readUInt32LE(8),
    sequence: header.readUInt32LE(12),
    senderRank: header.readUInt32LE(16),
    totalLength: header.readUInt32LE(20),
    bucket: header.readUInt32LE(24),
    bucketElements: header.readUInt32LE(28),
    offset: header.readUInt32LE(32),
    count: header.readUInt32LE(36),
  };
}

/**
 * Raises RINGTRAIN_ERR_PROTOCOL unless a frame of `frameBytes` bytes has a whole header and exactly the
 * payload that its header announces (`header` is null when the header itself is incomplete).
 */
export function checkFrameLength(frameBytes: number, header: FrameHeader | null, source: string): void {
  if (frameBytes < FRAME_HEADER_BYTES || header === null) {
    throw new RingtrainError(
      'RINGTRAIN_ERR_PROTOCOL',
      `ring frame from ${source} has ${frameBytes} bytes, fewer than the ${FRAME_HEADER_BYTES}-byte header; ` +
        'the peer is not a ringtrain ring link of this version',
    );
  }
  const { count, elementType } = header;
  const expectedBytes = FRAME_HEADER_BYTES + count * elementBytes(elementType);
  if (frameBytes !== expectedBytes) {
    throw new RingtrainError(
      'RINGTRAIN_ERR_PROTOCOL',
      `ring frame from ${source} has ${frameBytes} bytes but its header announces ${count} ${elementTypeName(elementType)} elements ` +
        `(${expectedBytes} bytes); the frame was truncated or corrupted`,
    );
  }
}

/**
 * The split of a buffer into `worldSize` contiguous chunks whose lengths differ by at most one.
 * The first `length % worldSize` chunks get the extra element; chunks are empty when length < worldSize.
 */
export class ChunkLayout {
  readonly length: number;
  readonly worldSize: number;
  private readonly baseLength: number;
  private readonly longChunks: number;

  constructor(length: number, worldSize: number) {
    this.length = length;
    this.worldSize = worldSize;
    this.baseLength = Math.floor(length / worldSize);
    this.longChunks = length % worldSize;
  }

  /** Returns the index of the first element of chunk `chunk`. */
  start(chunk: number): number {
    return chunk * this.baseLength + Math.min(chunk, this.longChunks);
  }

  /** Returns the number of elements in chunk `chunk`. */
  chunkLength(chunk: number): number {
    return this.baseLength + (chunk < this.longChunks ? 1 : 0);
  }

  /** Returns the length of the longest chunk. */
  maxChunkLength(): number {
    return this.baseLength + (this.longChunks > 0 ? 1 : 0);
  }
}
