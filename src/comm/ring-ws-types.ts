/**
 * The interface of the ring's WebSocket client (ring-ws-client.ts): its options, the callbacks that
 * receive messages, and its error type.
 */

/** Destination of the bytes of one binary message; the client requests a buffer before every read. */
export interface BinarySink {
  /** Returns the buffer for the next bytes of the message; it must hold at least one byte. */
  buffer(): Uint8Array;
  /** Reports that `bytes` bytes were written at the start of the buffer last returned. */
  wrote(bytes: number): void;
  /** Reports the end of the message. */
  end(): void;
}

/** Callbacks that receive the messages and the end of the connection after the opening handshake. */
export interface ClientSocketHandler {
  /** A complete text message arrived. */
  text(text: string): void;
  /** A binary message starts; the returned sink receives its bytes. */
  binary(): BinarySink;
  /**
   * The connection ended. `code` and `reason` come from the peer's close frame, or are 1006 and '' when
   * it ended without one. `error` is the socket error or the protocol violation that ended it, if any.
   */
  closed(code: number, reason: string, error: ClientSocketError | null): void;
}

/** A failure of the client; `kind` shows whether retrying the connection can help. */
export class ClientSocketError extends Error {
  /** `network`: connect or socket error; `http`: the server refused the upgrade; `protocol`: a bad frame. */
  readonly kind: 'network' | 'http' | 'protocol';
  /** Close code that the client sends for a protocol error: 1009 for a message above the limit, else 1002. */
  readonly closeCode: number;

  constructor(kind: ClientSocketError['kind'], message: string, options?: { cause?: unknown; closeCode?: number }) {
    super(message, options);
    this.name = 'ClientSocketError';
    this.kind = kind;
    this.closeCode = options?.closeCode ?? 1002;
  }
}

/** Options of `RingClientSocket.connect`. */
export interface ClientConnectOptions {
  /** Host and port of the server; with `socketPath` they only fill the Host header. */
  host: string;
  port: number;
  /** Unix socket to connect to instead of host:port; null or absent for TCP. */
  socketPath?: string | null;
  /** Request path, e.g. /ringtrain/ring. */
  path: string;
  /** Largest message accepted, in bytes; a larger one closes the connection with 1009. */
  maxPayload: number;
  /** Largest text message accepted, in bytes. */
  maxTextBytes: number;
  /** Run token sent as `Authorization: Bearer <token>` in the upgrade request, or null. */
  token?: string | null;
}
