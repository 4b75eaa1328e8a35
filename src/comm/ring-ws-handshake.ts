/**
 * The parts of RFC 6455 that the ring's WebSocket client needs besides reading frames: the opening
 * handshake's request and the check of the server's response, and the encoding of the masked frames
 * that a client sends.
 */
import { createHash, randomFillSync } from 'node:crypto';

/** The GUID that RFC 6455 appends to Sec-WebSocket-Key to compute Sec-WebSocket-Accept. */
const ACCEPT_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** Largest HTTP response head accepted during the opening handshake. */
export const MAX_HTTP_HEAD_BYTES = 16 * 1024;

/** Returns the HTTP request for upgrading `path` on the server at `host:port` to a WebSocket. */
export function buildUpgradeRequest(host: string, port: number, path: string, key: string, token: string | null = null): string {
  const hostHeader = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const authorization = token === null ? '' : `Authorization: Bearer ${token}\r\n`;
  return (
    `GET ${path} HTTP/1.1\r\nHost: ${hostHeader}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${authorization}\r\n`
  );
}

/**
 * Checks the server's response head (without the final blank line) to an upgrade request sent with
 * `key`. Returns null when it accepts the upgrade without extensions or subprotocols, else what is wrong.
 */
export function describeUpgradeProblem(head: string, key: string): string | null {
  const [statusLine, ...headerLines] = head.split('\r\n');
  const status = /^HTTP\/1\.1 (\d{3})/.exec(statusLine);
  if (status === null || status[1] !== '101') {
    return `listener responded with HTTP ${status?.[1] ?? JSON.stringify(statusLine)} instead of a WebSocket upgrade`;
  }
  const headers = new Map<string, string>();
  for (const line of headerLines) {
    const colon = line.indexOf(':');
    if (colon > 0) {
      headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
  }
  const expectedAccept = createHash('sha1').update(key + ACCEPT_GUID).digest('base64');
  if (headers.get('upgrade')?.toLowerCase() !== 'websocket' || headers.get('sec-websocket-accept') !== expectedAccept) {
    return 'the server responded with 101 but without a valid Upgrade or Sec-WebSocket-Accept header';
  }
  if (headers.has('sec-websocket-extensions') || headers.has('sec-websocket-protocol')) {
    return 'the server selected an extension or subprotocol that this client did not offer';
  }
  return null;
}

/** Encodes one final frame with `opcode` and `payload` (at most 65535 bytes), masked with a random key. */
export function encodeMaskedFrame(opcode: number, payload: Buffer): Buffer {
  const lengthBytes = payload.length < 126 ? 0 : 2;
  const frame = Buffer.alloc(2 + lengthBytes + 4 + payload.length);
  frame[0] = 0x80 | opcode;
  if (lengthBytes === 0) {
    frame[1] = 0x80 | payload.length;
  } else {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(payload.length, 2);
  }
  const maskOffset = 2 + lengthBytes;
  randomFillSync(frame, maskOffset, 4);
  for (let i = 0; i < payload.length; i += 1) {
    frame[maskOffset + 4 + i] = payload[i] ^ frame[maskOffset + (i & 3)];
  }
  return frame;
}

/** Returns true for close codes that an endpoint may put in a close frame (RFC 6455, section 7.4). */
export function isSendableCloseCode(code: number): boolean {
  return (code >= 1000 && code <= 1014 && code !== 1004 && code !== 1005 && code !== 1006) || (code >= 3000 && code <= 4999);
}
