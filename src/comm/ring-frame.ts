/**
 * The binary data frame of the ring all-reduce and the chunk layout both ends agree on.
 * docs/ring-wire.md describes the same layout for people; this module is the definition.
 */
import { RingtrainError } from '../errors.js';

/** Bytes before the float32 payload of every data frame. A multiple of 4, so an aligned frame has an aligned payload. */
export const FRAME_HEADER_BYTES = 32;

/** The ASCII bytes "RTAR" read as a little-endian uint32. */
export const FRAME_MAGIC = 0x52415452;

/** Version of the data frame layout; a frame with another version is a protocol error. */
export const FRAME_VERSION = 1;

/** Phase of a ring collective, as stored in the frame header. */
export enum RingPhase {
  ReduceScatter = 1,
  AllGather = 2,
}

/** The fields of a data frame header, in elements (float32 values) where they are lengths. */
export interface FrameHeader {
  phase: RingPhase;
  /** Ring step within the phase, 0 to worldSize - 2. */
  step: number;
  /** Number of collectives this ring ran before this one, modulo 2^32. */
  sequence: number;
  /** Rank that sent the frame. */
  senderRank: number;
  /** Length of the whole buffer being reduced. */
  totalLength: number;
  /** Index of the first payload element within the whole buffer. */
  offset: number;
  /** Number of float32 values in the payload. */
  count: number;
}

/** Returns the human name of a phase for log lines and error messages. */
export function phaseName(phase: RingPhase): string {
  return phase === RingPhase.ReduceScatter ? 'reduce-scatter' : 'all-gather';
}

/** Writes `header` into the first FRAME_HEADER_BYTES of `frame`; all fields are little-endian. */
export function writeFrameHeader(frame: Buffer, header: FrameHeader): void {
  frame.writeUInt32LE(FRAME_MAGIC, 0);
  frame.writeUInt16LE(FRAME_VERSION, 4);
  frame.writeUInt16LE(header.phase, 6);
  frame.writeUInt32LE(header.step, 8);
  frame.writeUInt32LE(header.sequence >>> 0, 12);
  frame.writeUInt32LE(header.senderRank, 16);
  frame.writeUInt32LE(header.totalLength, 20);
  frame.writeUInt32LE(header.offset, 24);
  frame.writeUInt32LE(header.count, 28);
}

/**
 * Reads the header of a received frame. Raises RINGTRAIN_ERR_PROTOCOL when the frame is too short, has another
 * magic or version, or its byte length disagrees with its element count; `source` names the sender in the message.
 */
export function readFrameHeader(frame: Buffer, source: string): FrameHeader {
  if (frame.length < FRAME_HEADER_BYTES) {
    throw new RingtrainError(
      'RINGTRAIN_ERR_PROTOCOL',
      `ring frame from ${source} has ${frame.length} bytes, fewer than the ${FRAME_HEADER_BYTES}-byte header; ` +
        'the peer is not a ringtrain ring link of this version',
    );
  }
  const magic = frame.readUInt32LE(0);
  const version = frame.readUInt16LE(4);
  if (magic !== FRAME_MAGIC || version !== FRAME_VERSION) {
    throw new RingtrainError(
      'RINGTRAIN_ERR_PROTOCOL',
      `ring frame from ${source} has magic 0x${magic.toString(16)} version ${version} ` +
        `(expected 0x${FRAME_MAGIC.toString(16)} version ${FRAME_VERSION}); run the same ringtrain version on every worker`,
    );
  }
  const header: FrameHeader = {
    phase: frame.readUInt16LE(6),
    step: frame.readUInt32LE(8),
    sequence: frame.readUInt32LE(12),
    senderRank: frame.readUInt32LE(16),
    totalLength: frame.readUInt32LE(20),
    offset: frame.readUInt32LE(24),
    count: frame.readUInt32LE(28),
  };
  const expectedBytes = FRAME_HEADER_BYTES + header.count * 4;
  if (frame.length !== expectedBytes) {
    throw new RingtrainError(
      'RINGTRAIN_ERR_PROTOCOL',
      `ring frame from ${source} has ${frame.length} bytes but its header announces ${header.count} elements ` +
        `(${expectedBytes} bytes); the frame was truncated or corrupted`,
    );
  }
  return header;
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
