/**
 * The frame reader of the ring's WebSocket client. It parses the RFC 6455 frames that the server sends
 * after the opening handshake, and before every read it supplies a buffer for exactly the bytes it needs next.
 */
import { ClientSocketError, type BinarySink, type ClientConnectOptions } from './ring-ws-types.js';

/** Close code for a frame that breaks the protocol (1002) and for a message above the limit (1009). */
const CLOSE_PROTOCOL_ERROR = 1002;
export const CLOSE_TOO_BIG = 1009;
/** Close code reported when the connection ended without a close frame (1006), and for an empty close frame (1005). */
export const CLOSE_ABNORMAL = 1006;
const CLOSE_NO_STATUS = 1005;

const OPCODE_CONTINUATION = 0x0;
export const OPCODE_TEXT = 0x1;
const OPCODE_BINARY = 0x2;
export const OPCODE_CLOSE = 0x8;
const OPCODE_PING = 0x9;
export const OPCODE_PONG = 0xa;

type ReadState = 'frame-head' | 'frame-length' | 'payload' | 'control' | 'done';

/** Receivers of the messages and control frames that the reader parsed. */
export interface FrameReaderEvents {
  /** A binary message starts; the returned sink receives its bytes. */
  binary(): BinarySink;
  /** A complete text message arrived. */
  text(text: string): void;
  /** A ping arrived. `payload` is valid only during the call. */
  ping(payload: Buffer): void;
  /** A close frame arrived, after which the reader discards all bytes. `payload` is valid only during the call. */
  close(code: number, reason: string, payload: Buffer): void;
}

/** A parser of the frames that a server sends, which throws a ClientSocketError for a frame that breaks the protocol. */
export class WsFrameReader {
  private readonly options: Pick<ClientConnectOptions, 'maxPayload' | 'maxTextBytes'>;
  private readonly events: FrameReaderEvents;

  private state: ReadState = 'frame-head';
  /** Frame header: 2 bytes, then up to 8 bytes of extended length. */
  private readonly head = Buffer.alloc(10);
  private headLength = 0;
  private headNeeded = 2;
  private opcode = 0;
  private fin = false;
  /** Payload bytes of the current frame that are still to be read. */
  private frameRemaining = 0;
  /** Opcode of the data message in progress (text or binary), or -1 between messages. */
  private messageOpcode = -1;
  private messageBytes = 0;
  private sink: BinarySink | null = null;
  private text: Buffer | null = null;
  private readonly control = Buffer.alloc(125);
  private controlLength = 0;
  private readonly discard = Buffer.alloc(64 * 1024);

  constructor(options: Pick<ClientConnectOptions, 'maxPayload' | 'maxTextBytes'>, events: FrameReaderEvents) {
    this.options = options;
    this.events = events;
  }

  /** True once `stop` ran or a close frame arrived. */
  get stopped(): boolean {
    return this.state === 'done';
  }

  /** Stops parsing, so every later read goes to a scratch buffer and is ignored. */
  stop(): void {
    this.state = 'done';
  }

  /** Returns the buffer for the next read: exactly the bytes the parser needs next, never more. */
  nextReadBuffer(): Uint8Array {
    switch (this.state) {
      case 'frame-head':
      case 'frame-length':
        return this.head.subarray(this.headLength, this.headNeeded);
      case 'payload': {
        let target: Uint8Array;
        if (this.sink !== null) {
          target = this.sink.buffer();
        } else if (this.text !== null) {
          target = this.text.subarray(this.messageBytes);
        } else {
          target = this.discard;
        }
        return target.length > this.frameRemaining ? target.subarray(0, this.frameRemaining) : target;
      }
      case 'control':
        return this.control.subarray(this.controlLength, this.controlLength + this.frameRemaining);
      default:
        return this.discard;
    }
  }

  /** Parses the `bytes` bytes that were just read into the buffer from `nextReadBuffer`. */
  handleRead(bytes: number): void {
    switch (this.state) {
      case 'frame-head':
      case 'frame-length':
        this.headLength += bytes;
        if (this.headLength === this.headNeeded) {
          this.readFrameHead();
        }
        break;
      case 'payload':
        this.readPayload(bytes);
        break;
      case 'control':
        this.controlLength += bytes;
        this.frameRemaining -= bytes;
        if (this.frameRemaining === 0) {
          this.handleControlFrame();
        }
        break;
      default:
        break;
    }
  }

  private startFrame(): void {
    this.state = 'frame-head';
    this.headLength = 0;
    this.headNeeded = 2;
  }

  private readFrameHead(): void {
    const first = this.head[0];
    const second = this.head[1];
    if (this.state === 'frame-head') {
      if ((first & 0x70) !== 0) {
        throw new ClientSocketError('protocol', 'received a frame with reserved bits set, but no extension was negotiated');
      }
      if ((second & 0x80) !== 0) {
        throw new ClientSocketError('protocol', 'received a masked frame; a server must not mask its frames');
      }
      const length7 = second & 0x7f;
      if (length7 >= 126) {
        this.state = 'frame-length';
        this.headNeeded = length7 === 126 ? 4 : 10;
        return;
      }
    }
    const length7 = second & 0x7f;
    let length = length7;
    if (length7 === 126) {
      length = this.head.readUInt16BE(2);
    } else if (length7 === 127) {
      const big = this.head.readBigUInt64BE(2);
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw new ClientSocketError('protocol', `received a frame length of ${big} bytes`);
      }
      length = Number(big);
    }
    this.fin = (first & 0x80) !== 0;
    this.opcode = first & 0x0f;
    this.frameRemaining = length;
    this.beginPayload();
  }

  private beginPayload(): void {
    const { opcode } = this;
    if (opcode >= 0x8) {
      if (!this.fin || this.frameRemaining > 125 || (opcode !== OPCODE_CLOSE && opcode !== OPCODE_PING && opcode !== OPCODE_PONG)) {
        throw new ClientSocketError('protocol', `received an invalid control frame (opcode ${opcode}, ${this.frameRemaining} bytes)`);
      }
      this.controlLength = 0;
      this.state = 'control';
      if (this.frameRemaining === 0) {
        this.handleControlFrame();
      }
      return;
    }
    if (opcode === OPCODE_CONTINUATION) {
      if (this.messageOpcode === -1) {
        throw new ClientSocketError('protocol', 'received a continuation frame without a message to continue');
      }
    } else if (opcode === OPCODE_TEXT || opcode === OPCODE_BINARY) {
      if (this.messageOpcode !== -1) {
        throw new ClientSocketError('protocol', 'received a new message before the previous fragmented message ended');
      }
      this.messageOpcode = opcode;
      this.messageBytes = 0;
      if (opcode === OPCODE_BINARY) {
        this.sink = this.events.binary();
      } else {
        this.text = Buffer.alloc(this.options.maxTextBytes);
      }
    } else {
      throw new ClientSocketError('protocol', `received a frame with the unknown opcode ${opcode}`);
    }
    const limit = this.messageOpcode === OPCODE_TEXT ? this.options.maxTextBytes : this.options.maxPayload;
    if (this.messageBytes + this.frameRemaining > limit) {
      throw new ClientSocketError(
        'protocol',
        `received a message of at least ${this.messageBytes + this.frameRemaining} bytes, above the maximum payload of ${limit} bytes`,
        { closeCode: CLOSE_TOO_BIG },
      );
    }
    this.state = 'payload';
    if (this.frameRemaining === 0) {
      this.endDataFrame();
    }
  }

  private readPayload(bytes: number): void {
    this.frameRemaining -= bytes;
    this.messageBytes += bytes;
    this.sink?.wrote(bytes);
    if (this.frameRemaining === 0) {
      this.endDataFrame();
    }
  }

  private endDataFrame(): void {
    if (!this.fin) {
      this.startFrame();
      return;
    }
    const sink = this.sink;
    const text = this.text;
    const length = this.messageBytes;
    this.sink = null;
    this.text = null;
    this.messageOpcode = -1;
    this.startFrame();
    if (sink !== null) {
      sink.end();
    } else if (text !== null) {
      this.events.text(text.toString('utf8', 0, length));
    }
  }

  private handleControlFrame(): void {
    const payload = this.control.subarray(0, this.controlLength);
    const opcode = this.opcode;
    this.startFrame();
    if (opcode === OPCODE_PING) {
      this.events.ping(payload);
    } else if (opcode === OPCODE_CLOSE) {
      if (payload.length === 1) {
        throw new ClientSocketError('protocol', 'received a close frame with a 1-byte payload');
      }
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : CLOSE_NO_STATUS;
      this.state = 'done';
      this.events.close(code, payload.toString('utf8', 2), payload);
    }
  }
}
