/**
 * The handshake of a ring link: the dialing rank sends a hello, the listening rank answers with a welcome
 * or closes the socket with CLOSE_REJECTED. Both are small JSON text frames; bulk data never uses them.
 */
import { RingtrainError } from '../errors.js';

/** URL path that ring listeners accept; WebSocket upgrades to other paths get HTTP 400. */
export const RING_PATH = '/ringtrain/ring';

/** Protocol name carried in every handshake message. */
export const RING_PROTOCOL = 'ringtrain-ring';

/**
 * Version of the handshake and data frames; the listener rejects a hello with another version. Version 2
 * added the element type and the bucket fields to the data frame header.
 */
export const RING_PROTOCOL_VERSION = 2;

/** Close code for a connection whose hello or welcome does not match (1008, policy violation). */
export const CLOSE_REJECTED = 1008;

/** Close code sent by `Ring.close()`. */
export const CLOSE_NORMAL = 1000;

/** Close code sent when a rank abandons the ring after an error; the close reason names the error. */
export const CLOSE_ABORTED = 4000;

/** Largest handshake message in bytes; the listener side of a link receives nothing else. */
export const MAX_HANDSHAKE_BYTES = 4096;

/** A handshake message: `hello` from the dialer, `welcome` from the listener. */
export interface RingHandshake {
  type: 'hello' | 'welcome';
  protocol: typeof RING_PROTOCOL;
  version: number;
  runId: string;
  /** Rank of the sender of this message. */
  rank: number;
  worldSize: number;
}

/** Identity that a handshake message must carry to be accepted. */
export interface ExpectedPeer {
  runId: string;
  rank: number;
  worldSize: number;
}

/** Encodes a handshake message as the text of one WebSocket frame. */
export function encodeHandshake(type: RingHandshake['type'], runId: string, rank: number, worldSize: number): string {
  const message: RingHandshake = {
    type,
    protocol: RING_PROTOCOL,
    version: RING_PROTOCOL_VERSION,
    runId,
    rank,
    worldSize,
  };
  return JSON.stringify(message);
}

/**
 * Parses a handshake frame of the given type. Raises RINGTRAIN_ERR_PROTOCOL when it is binary, not JSON,
 * or lacks a field; `source` names the peer in the message.
 */
export function parseHandshake(data: Buffer, isBinary: boolean, type: RingHandshake['type'], source: string): RingHandshake {
  if (isBinary) {
    throw protocolError(`${source} sent a binary frame where a ${type} text frame was expected`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(data.toString('utf8'));
  } catch {
    throw protocolError(`${source} sent a ${type} frame that is not valid JSON`);
  }
  if (typeof parsed !== 'object' || parsed === null) {
    throw protocolError(`${source} sent a ${type} frame that is not a JSON object`);
  }
  const message = parsed as Partial<RingHandshake>;
  if (message.type !== type || message.protocol !== RING_PROTOCOL) {
    throw protocolError(
      `${source} sent type ${String(message.type)} protocol ${String(message.protocol)} ` +
        `(expected type ${type} protocol ${RING_PROTOCOL}); the peer is not a ringtrain ring link`,
    );
  }
  if (message.version !== RING_PROTOCOL_VERSION) {
    throw protocolError(
      `${source} speaks ring protocol version ${String(message.version)} (expected ${RING_PROTOCOL_VERSION}); ` +
        'run the same ringtrain version on every worker',
    );
  }
  if (typeof message.runId !== 'string' || !Number.isInteger(message.rank) || !Number.isInteger(message.worldSize)) {
    throw protocolError(`${source} sent a ${type} without a string runId and integer rank and worldSize`);
  }
  return message as RingHandshake;
}

/**
 * Returns a short description of how `message` differs from `expected`, or null when it matches.
 * The description fits in a WebSocket close reason (at most 123 bytes) for ASCII run ids of up to 40 characters.
 */
export function describeMismatch(message: RingHandshake, expected: ExpectedPeer): string | null {
  if (message.runId !== expected.runId) {
    return `run id ${clip(message.runId)} is not ${clip(expected.runId)}`;
  }
  if (message.worldSize !== expected.worldSize) {
    return `world size ${message.worldSize} is not ${expected.worldSize}`;
  }
  if (message.rank !== expected.rank) {
    return `rank ${message.rank} is not the expected rank ${expected.rank}`;
  }
  return null;
}

function clip(text: string): string {
  return JSON.stringify(text.length > 40 ? `${text.slice(0, 37)}...` : text);
}

function protocolError(message: string): RingtrainError {
  return new RingtrainError('RINGTRAIN_ERR_PROTOCOL', `ring handshake failed: ${message}`);
}

/** Returns `text` cut to the 123 UTF-8 bytes that a WebSocket close reason allows. */
export function toCloseReason(text: string): string {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length <= 123) {
    return text;
  }
  // Decoding a cut multi-byte sequence yields U+FFFD (3 bytes), so leave room and re-check.
  let cut = bytes.subarray(0, 120).toString('utf8');
  while (Buffer.byteLength(cut, 'utf8') > 120) {
    cut = cut.slice(0, -1);
  }
  return `${cut}...`;
}
