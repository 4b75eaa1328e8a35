/**
 * The rule for the parts of a batch that move between threads instead of being copied.
 */

/**
 * Collects the buffers of the typed arrays in `value` that cover their whole buffer. A view into a larger
 * buffer (for example a slice of the dataset itself) is left to be copied, so the thread keeps its data.
 */
export function ownedBuffers(value: unknown, found: Set<ArrayBuffer> = new Set()): ArrayBuffer[] {
  if (ArrayBuffer.isView(value)) {
    if (value.buffer instanceof ArrayBuffer && value.byteOffset === 0 && value.byteLength === value.buffer.byteLength) {
      found.add(value.buffer);
    }
  } else if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) ownedBuffers(child, found);
  }
  return [...found];
}
