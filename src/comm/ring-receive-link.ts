/**
 * The dialing side of a link, from the previous rank: a RingClientSocket whose binary messages are data
 * frames. The link reads the 40-byte header of a frame first, and the running collective then names the
 * buffer for its payload, so payload bytes go from the kernel straight to their destination.
 *
 * When a data frame starts while no collective runs here, the link stops reading until the next
 * collective starts. Frames that the previous rank sent early then wait in the socket buffers of both ends,
 * and its writes stall until this rank joins, so no frame is copied or queued in memory. Close frames
 * that arrive between collectives are still read, unless a data frame came first: a neighbour's close
 * after it started the next collective is noticed only when this rank reads again.
 */
import { FRAME_HEADER_BYTES, checkFrameLength, elementBytes, parseFrameHeader, type FrameHeader } from './ring-frame.js';
import { RingLink, type RingLinkInfo } from './ring-link.js';
import { RingClientSocket, type BinarySink, type ClientSocketError } from './ring-ws-client.js';

/** The receiver of data frames, normally the running collective. */
export interface FrameConsumer {
  /**
   * Returns the buffer that receives the payload bytes of a frame (`header.count` values of
   * `header.elementType`), or null to drop them
   * (after the consumer failed). The header's magic, version and size are already checked.
   */
  beginFrame(header: FrameHeader): Uint8Array | null;
  /** Reports that the whole payload of the frame from the last `beginFrame` call has arrived. */
  endFrame(): void;
}

/** Destination of the bytes of the current message: its header, its payload, or nowhere. */
type MessageState = 'header' | 'payload' | 'drop';

/** A link that receives data frames from the previous rank; see the module comment. */
export class ReceiveLink extends RingLink {
  private readonly client: RingClientSocket;
  private readonly maxPayload: number;
  private consumer: FrameConsumer | null = null;

  private state: MessageState = 'drop';
  private readonly headerBytes = Buffer.alloc(FRAME_HEADER_BYTES);
  private headerLength = 0;
  private header: FrameHeader | null = null;
  private destination: Uint8Array = new Uint8Array(0);
  private written = 0;
  private messageBytes = 0;
  private readonly discard = Buffer.alloc(64 * 1024);
  private readonly sink: BinarySink = {
    buffer: () => this.nextBuffer(),
    wrote: (bytes) => this.handleWrite(bytes),
    end: () => this.handleMessageEnd(),
  };
  private resolveClosed: () => void = () => undefined;
  /** Settles when the socket has closed, for any reason. */
  readonly closed: Promise<void>;

  /** Wraps `client`, whose handshake is complete; the link reads data frames only while a consumer is set. */
  constructor(client: RingClientSocket, info: RingLinkInfo, maxPayload: number) {
    super(info);
    this.client = client;
    this.maxPayload = maxPayload;
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    client.setHandler({
      text: () =>
        this.reportProtocolError(
          `rank ${this.info.localRank} received a text frame from its ${this.describePeer()} after the handshake; ` +
            'ring links carry only binary data frames',
        ),
      binary: () => this.beginMessage(),
      closed: (code: number, reason: string, error: ClientSocketError | null) => {
        this.socketError = error;
        this.handleClose(code, reason);
        this.resolveClosed();
      },
    });
  }

  /**
   * Sets the consumer of data frames and reads the frames that wait; null stops reading at the start of
   * the next data frame. A consumer may clear itself while it runs.
   */
  setConsumer(consumer: FrameConsumer | null): void {
    this.consumer = consumer;
    if (consumer === null) {
      if (this.state === 'payload') {
        // The payload's destination belongs to the consumer that left, so the rest of it is dropped.
        this.state = 'drop';
      }
      return;
    }
    this.client.resume();
  }

  async close(code: number, reason: string, graceMs: number): Promise<void> {
    this.closingLocally = true;
    this.consumer = null;
    this.state = 'drop';
    if (this.client.isOpen) {
      // Reading again drops a waiting data frame and lets the peer's close frame in, which completes the handshake.
      this.client.resume();
      this.client.close(code, reason);
      const timer = setTimeout(() => this.client.terminate(), graceMs);
      await this.closed;
      clearTimeout(timer);
    }
  }

  private beginMessage(): BinarySink {
    if (this.consumer === null && !this.closingLocally) {
      // The frame belongs to a collective that has not started here yet; its bytes wait in the socket.
      this.client.pause();
    }
    this.state = this.closingLocally ? 'drop' : 'header';
    this.headerLength = 0;
    this.header = null;
    this.written = 0;
    this.messageBytes = 0;
    return this.sink;
  }

  private nextBuffer(): Uint8Array {
    if (this.state === 'header') {
      return this.headerBytes.subarray(this.headerLength);
    }
    if (this.state === 'payload' && this.written < this.destination.length) {
      return this.destination.subarray(this.written);
    }
    // Bytes beyond the announced payload are read here and counted, so the length check names them.
    return this.discard;
  }

  private handleWrite(bytes: number): void {
    this.messageBytes += bytes;
    if (this.state === 'header') {
      this.headerLength += bytes;
      if (this.headerLength === FRAME_HEADER_BYTES) {
        this.handleHeader();
      }
    } else if (this.state === 'payload' && this.written < this.destination.length) {
      this.written += bytes;
    }
  }

  private handleHeader(): void {
    const source = `rank ${this.info.peerRank}`;
    let header: FrameHeader;
    try {
      header = parseFrameHeader(this.headerBytes, source);
    } catch (error) {
      this.failMessage((error as Error).message);
      return;
    }
    if (FRAME_HEADER_BYTES + header.count * elementBytes(header.elementType) > this.maxPayload) {
      this.failMessage(
        `ring frame from ${source} announces ${header.count} elements, more than the maximum payload of ` +
          `${this.maxPayload} bytes allows; every rank must use the same sliceBytes`,
      );
      return;
    }
    this.header = header;
    this.state = 'payload';
    const destination = this.consumer?.beginFrame(header) ?? null;
    if (destination === null) {
      this.state = 'drop';
      return;
    }
    this.destination = destination;
  }

  private handleMessageEnd(): void {
    const state = this.state;
    this.state = 'drop';
    if (state === 'drop') {
      return;
    }
    try {
      checkFrameLength(this.messageBytes, this.header, `rank ${this.info.peerRank}`);
    } catch (error) {
      this.reportProtocolError((error as Error).message);
      return;
    }
    this.consumer?.endFrame();
  }

  private failMessage(message: string): void {
    this.state = 'drop';
    this.reportProtocolError(message);
  }
}
