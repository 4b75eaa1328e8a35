/** Bearer-token check of WebSocket handshakes: control links, ring links and log streams. */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';

/**
 * Checks an `Authorization` header against the expected token in constant time. Both sides are hashed first
 * because timingSafeEqual needs equal lengths, and comparing lengths directly would leak the token's length.
 */
export function bearerTokenMatches(header: string | undefined, expected: string): boolean {
  if (header === undefined) return false;
  const match = /^Bearer +(\S+) *$/i.exec(header);
  const presented = match?.[1] ?? '';
  const presentedDigest = createHash('sha256').update(presented).digest();
  const expectedDigest = createHash('sha256').update(expected).digest();
  return timingSafeEqual(presentedDigest, expectedDigest) && match !== null;
}

/** The `verifyClient` callback of a ws server. */
export type VerifyClient = (info: { req: IncomingMessage }, done: (result: boolean, code?: number, message?: string) => void) => void;

/**
 * Returns a ws `verifyClient` that accepts only handshakes presenting `token` as a bearer token, and rejects
 * others with HTTP 401 and a warning naming `listener` and the peer's address. Returns undefined (accept all)
 * when `token` is null.
 */
export function tokenVerifier(token: string | null, listener: string, logger: Logger): VerifyClient | undefined {
  if (token === null) return undefined;
  return (info, done) => {
    if (bearerTokenMatches(info.req.headers.authorization, token)) {
      done(true);
      return;
    }
    // A Unix socket peer has no address, unlike a TCP one.
    const { remoteAddress, remotePort } = info.req.socket;
    const peer = remoteAddress === undefined ? 'a Unix socket' : `${remoteAddress}:${remotePort}`;
    logger.warn({ peer }, `${listener} rejected a connection without a valid run token`);
    done(false, 401, 'Unauthorized');
  };
}
