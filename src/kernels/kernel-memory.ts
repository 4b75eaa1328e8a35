/**
 * The process-wide memory of the WebAssembly kernels (kernels.wat): one shared WebAssembly.Memory from which
 * long-lived float32 arrays are allocated, such as the trainer's parameters and gradients, the optimizer's
 * moments and the ring's frames. A kernel reads and writes such arrays in place, so the hot loops run as SIMD
 * code without copying their operands first.
 *
 * The memory is shared (backed by a SharedArrayBuffer) because growing a shared memory leaves every array
 * allocated before valid, where growing an ordinary one would detach them. Only the thread that created it
 * uses the memory. Allocations are never freed, so the memory suits buffers that live
 * as long as the process. When the memory cannot grow (its limit is 4 GiB), `allocateFloats` returns an
 * ordinary array, and callers use their plain JavaScript loop for it.
 */
import { KERNELS_WASM_BASE64 } from './kernels-wasm.js';

const PAGE_BYTES = 65536;
/** Limit of a 32-bit WebAssembly memory, in pages (4 GiB). */
const MAX_PAGES = 65536;
/** Allocations start on a 64-byte boundary, a cache line, which the kernels' 16-byte vectors also want. */
const ALIGNMENT = 64;
/** Floats in each of the two scratch blocks that hold copies of operands from outside the memory. */
export const SCRATCH_FLOATS = 16384;

/** The exports of kernels.wat; addresses are byte offsets into the memory. */
export interface KernelExports {
  add(target: number, first: number, second: number, bytes: number): void;
  adamw(
    parameters: number,
    gradients: number,
    firstMoment: number,
    secondMoment: number,
    count: number,
    gradientFactor: number,
    gradientScale: number,
    beta1: number,
    oneMinusBeta1: number,
    beta2: number,
    oneMinusBeta2: number,
    eps: number,
    stepSize: number,
    shrink: number,
  ): void;
  nonzeroBlocks(values: number, blocks: number, flags: number): void;
  sumScaledSquares(values: number, blocks: number, factor: number, total: number): number;
  hashBlocks(values: number, blocks: number, state: number): void;
  batchMatMul(
    a: number,
    b: number,
    c: number,
    scratch: number,
    batch: number,
    m: number,
    k: number,
    n: number,
    transposeA: number,
    transposeB: number,
  ): void;
  columnSums(x: number, out: number, rows: number, columns: number): void;
  packBlocks(values: number, flags: number, blocks: number, packed: number, unpack: number): number;
}

/** The kernels and the memory they work on; get the process's instance with `kernelMemory()`. */
export class KernelMemory {
  readonly kernels: KernelExports;
  /** Byte addresses of the two scratch blocks of SCRATCH_FLOATS floats each. */
  readonly scratch: readonly [number, number];
  private readonly memory: WebAssembly.Memory;
  /** Every buffer object that an array of this memory was made from; see currentBuffer. */
  private readonly buffers = new Set<ArrayBufferLike>();
  private floats: Float32Array;
  private top = 0;

  constructor() {
    this.memory = new WebAssembly.Memory({ initial: 1, maximum: MAX_PAGES, shared: true });
    const module = new WebAssembly.Module(Buffer.from(KERNELS_WASM_BASE64, 'base64'));
    const instance = new WebAssembly.Instance(module, { env: { memory: this.memory } });
    this.kernels = instance.exports as unknown as KernelExports;
    this.floats = new Float32Array(this.currentBuffer());
    const first = this.reserve(SCRATCH_FLOATS * 4);
    const second = this.reserve(SCRATCH_FLOATS * 4);
    if (first < 0 || second < 0) {
      throw new Error('the kernel memory could not hold its two scratch blocks of 64 KiB; the process is out of memory');
    }
    this.scratch = [first, second];
  }

  /**
   * Returns a zeroed array of `length` floats in the memory, or an ordinary Float32Array when the memory has
   * reached its limit.
   * NOTE: the array is never freed, so a process that builds many optimizers or rings keeps all their memory.
   */
  allocateFloats(length: number): Float32Array {
    const address = this.reserve(length * 4);
    if (address < 0) {
      return new Float32Array(length);
    }
    return new Float32Array(this.currentBuffer(), address, length);
  }

  /** Returns a zeroed Buffer of `bytes` bytes in the memory, or an ordinary one at the limit. */
  allocateBytes(bytes: number): Buffer {
    const address = this.reserve(bytes);
    if (address < 0) {
      return Buffer.alloc(bytes);
    }
    return Buffer.from(this.currentBuffer(), address, bytes);
  }

  /** Returns the byte address of `view` in the memory, or -1 when it lies elsewhere. */
  addressOf(view: ArrayBufferView): number {
    return this.buffers.has(view.buffer) ? view.byteOffset : -1;
  }

  /** A float32 view of the whole memory as it is now, for copies in and out of the scratch blocks. */
  get heap(): Float32Array {
    if (this.floats.byteLength !== this.memory.buffer.byteLength) {
      this.floats = new Float32Array(this.currentBuffer());
    }
    return this.floats;
  }

  /** Reserves `bytes` bytes, growing the memory as needed; returns their address, or -1 at the limit. */
  private reserve(bytes: number): number {
    if (!Number.isSafeInteger(bytes) || bytes < 0) {
      throw new RangeError(`kernel memory allocation must be a non-negative integer number of bytes (got ${bytes})`);
    }
    const address = Math.ceil(this.top / ALIGNMENT) * ALIGNMENT;
    const end = address + bytes;
    const size = this.memory.buffer.byteLength;
    if (end > size) {
      const neededPages = Math.ceil((end - size) / PAGE_BYTES);
      const currentPages = size / PAGE_BYTES;
      // Growing by at least half the current size keeps the number of growths, and of buffer objects, small.
      const pages = Math.min(Math.max(neededPages, Math.floor(currentPages / 2)), MAX_PAGES - currentPages);
      if (pages < neededPages) {
        return -1;
      }
      try {
        this.memory.grow(pages);
      } catch {
        return -1;
      }
    }
    this.top = end;
    return address;
  }

  /**
   * Returns the memory's buffer object and remembers it. V8 may hand out a new object for the same shared
   * memory after any shared memory of the process grows, so every array is made from the object of its time.
   */
  private currentBuffer(): ArrayBufferLike {
    const buffer = this.memory.buffer;
    this.buffers.add(buffer);
    return buffer;
  }
}

let instance: KernelMemory | null = null;

/** Returns the process's kernel memory, creating it on first use. */
export function kernelMemory(): KernelMemory {
  instance ??= new KernelMemory();
  return instance;
}

/** Returns a zeroed float32 array in the kernel memory (see `KernelMemory.allocateFloats`). */
export function allocateKernelFloats(length: number): Float32Array {
  return kernelMemory().allocateFloats(length);
}

/** Returns a zeroed Buffer in the kernel memory (see `KernelMemory.allocateBytes`). */
export function allocateKernelBytes(bytes: number): Buffer {
  return kernelMemory().allocateBytes(bytes);
}
