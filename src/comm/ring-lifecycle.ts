/**
 * The lifecycle of a connected ring: open between collectives, running one, or closed, and the failure after
 * which every collective raises. It decides, when a link fails or a neighbour closes, whether the ring aborts
 * or the running collective may finish.
 */
import type { Logger } from 'pino';
import type { CollectiveKind } from './ring-frame.js';
import { CLOSE_ABORTED, CLOSE_NORMAL } from './ring-hello.js';
import { normalCloseReason, type LinkFailure, type SendLink } from './ring-link.js';
import type { ReceiveLink } from './ring-receive-link.js';

/** Time that `close()` waits for a neighbour's close frame before destroying the socket. */
const CLOSE_GRACE_MS = 2000;

/** State of a ring: 'open' between collectives, 'running' during one, and 'closed' once `close()` ran. */
export type RingState = 'open' | 'running' | 'closed';

/**
 * The state and the two links of one `Ring`. The ring sets `state` to 'running' and `runningKind` when a
 * collective starts, and counts each completed one in `completed`. This class makes every other change.
 */
export class RingLifecycle {
  private readonly rank: number;
  private readonly logger: Logger;
  private readonly previous: ReceiveLink | null;
  private readonly next: SendLink | null;
  state: RingState = 'open';
  /** The kind of the collective that runs, or ran last; for messages. */
  runningKind: CollectiveKind = 'all-reduce';
  failure: Error | null = null;
  /** A neighbour's normal close that arrived after it completed the running collective; applied when it ends. */
  private closeAfterCollective: Error | null = null;
  completed = 0;

  constructor(rank: number, logger: Logger, previous: ReceiveLink | null, next: SendLink | null) {
    this.rank = rank;
    this.logger = logger;
    this.previous = previous;
    this.next = next;
    previous?.onFailure((failure) => this.handleLinkFailure(failure));
    next?.onFailure((failure) => this.handleLinkFailure(failure));
  }

  /** Returns to 'open' once a collective has settled, unless `close()` ran meanwhile. */
  endRunning(): void {
    if (this.state === 'running') {
      this.state = 'open';
    }
  }

  /**
   * Closes both links with a normal close, as `Ring.close()` documents. `collectives` is the number of
   * collectives started, for the log line.
   */
  async close(collectives: number): Promise<void> {
    if (this.state === 'closed') {
      return;
    }
    const wasRunning = this.state === 'running';
    this.state = 'closed';
    const closedError = new Error(`ring of rank ${this.rank} was closed while allReduce was running`);
    for (const link of [this.previous, this.next]) {
      link?.fail(closedError);
    }
    await Promise.all(
      [this.previous, this.next].map((link) => link?.close(CLOSE_NORMAL, normalCloseReason(this.rank, this.completed), CLOSE_GRACE_MS)),
    );
    this.logger.info({ rank: this.rank, collectives, wasRunning }, 'ring closed');
  }

  /** Records, as the ring's failure, a neighbour's normal close that arrived during the collective that just completed. */
  applyCloseAfterCollective(): void {
    if (this.closeAfterCollective !== null && this.failure === null) {
      this.failure = this.closeAfterCollective;
      this.logger.info({ rank: this.rank, reason: this.failure.message }, 'ring neighbour closed the ring');
    }
  }

  isClosed(): boolean {
    return this.state === 'closed';
  }

  /** Records `error`, rejects every wait and closes both links so the neighbours fail fast as well. */
  abort(error: Error, logMessage: string): void {
    if (this.failure === null) {
      this.failure = error;
      this.logger.error({ err: error, rank: this.rank }, logMessage);
    }
    const reason = `rank ${this.rank} aborted: ${error.message}`;
    for (const link of [this.previous, this.next]) {
      if (link !== null) {
        link.fail(error);
        void link.close(CLOSE_ABORTED, reason, CLOSE_GRACE_MS);
      }
    }
  }

  private handleLinkFailure({ error, closeCode, peerCompleted }: LinkFailure): void {
    if (this.state === 'closed' || this.failure !== null) {
      return;
    }
    if (this.state === 'open' && closeCode === CLOSE_NORMAL) {
      // A neighbour that closed between collectives is shutting down, so later calls fail without an abort.
      this.failure = error;
      this.logger.info({ rank: this.rank, reason: error.message }, 'ring neighbour closed the ring');
      return;
    }
    if (this.state === 'running' && peerCompleted !== null && peerCompleted >= this.completed + 1) {
      // The neighbour completed the running collective before closing, so every frame it sent for it is
      // already on its way and it needs nothing more from this rank: let the collective finish.
      this.closeAfterCollective ??= error;
      return;
    }
    if (this.state === 'open') {
      this.abort(error, 'ring link failed between collectives');
      return;
    }
    // During a collective the waiting loop rejects with this error and aborts the ring itself.
    this.previous?.fail(error);
    this.next?.fail(error);
  }
}
