/** The shipper's bounded line queue, which evicts the oldest line when it is full. */

/**
 * A fixed-capacity FIFO of lines. Pushing onto a full queue evicts the oldest line in O(1).
 * NOTE: the bound counts lines, not bytes, so memory can reach maxQueueLines x maxFrameBytes with huge lines.
 */
export class LineQueue {
  private readonly items: (string | undefined)[];
  private head = 0;
  size = 0;

  constructor(readonly capacity: number) {
    this.items = new Array<string | undefined>(capacity);
  }

  /** Appends `line` and returns true when the oldest line was evicted to make room. */
  push(line: string): boolean {
    const evicted = this.size === this.capacity;
    if (evicted) {
      this.head = (this.head + 1) % this.capacity;
      this.size--;
    }
    this.items[(this.head + this.size) % this.capacity] = line;
    this.size++;
    return evicted;
  }

  peek(): string | undefined {
    return this.size === 0 ? undefined : this.items[this.head];
  }

  shift(): string | undefined {
    if (this.size === 0) return undefined;
    const line = this.items[this.head];
    this.items[this.head] = undefined;
    this.head = (this.head + 1) % this.capacity;
    this.size--;
    return line;
  }
}
