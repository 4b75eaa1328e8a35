/** Bearer-token check of WebSocket handshakes: control links, ring links and log streams. */
import { createHash, timingSafeEqual } from 'node:crypto';

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
