/**
 * The kernels of kernels.wat working in place on tensors of the tfjs WASM backend.
 *
 * The WASM backend keeps every tensor in its own WebAssembly memory. A second instance of the kernels module,
 * built to import an ordinary memory, runs on that memory. A product reads its operands where tfjs keeps them
 * and writes into a tensor that the backend allocated, with no copy in or out. On the tagger's 2-D shapes this
 * is 1.8 times as fast as tfjs's own product, and 9 to 16 times with a transposed operand (`npm run
 * bench:kernels`).
 *
 * This reaches into tfjs 4.22's WASM backend: its WebAssembly memory (`wasm.asm.memory`), `getMemoryOffset`,
 * `makeOutput` and the module's `_malloc` and `_free`. `tensorKernels()` returns null when any of them is
 * missing or another backend is active, and callers then copy the values through the kernel memory instead.
 * NOTE: checked against tfjs 4.22 only; a tfjs upgrade must rerun test/tensor-kernels.test.ts.
 */
import * as tf from '@tensorflow/tfjs';

import type { BatchMatMulShape } from './batch-matmul.js';
import type { KernelExports } from './kernel-memory.js';
import { KERNELS_ORDINARY_MEMORY_WASM_BASE64 } from './kernels-wasm.js';

/** The parts of tfjs 4.22's WASM backend that the in-place kernels use. */
interface WasmBackendInternals {
  wasm?: { asm?: { memory?: unknown }; _malloc?: unknown; _free?: unknown };
  getMemoryOffset?: unknown;
  makeOutput?: unknown;
}

/** The same internals after `isUsable` found them all. */
interface WasmBackend {
  wasm: { asm: { memory: WebAssembly.Memory }; _malloc(bytes: number): number; _free(address: number): void };
  getMemoryOffset(dataId: object): number;
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
}

function isUsable(backend: WasmBackendInternals): backend is WasmBackend {
  return (
    backend.wasm?.asm?.memory instanceof WebAssembly.Memory &&
    typeof backend.wasm._malloc === 'function' &&
    typeof backend.wasm._free === 'function' &&
    typeof backend.getMemoryOffset === 'function' &&
    typeof backend.makeOutput === 'function'
  );
}

/** The kernels bound to one WASM backend's memory. */
export class TensorKernels {
  private readonly kernels: KernelExports;
  /** Address and size of the area for a transposed right-hand operand, allocated with `_malloc`. */
  private scratchAddress = 0;
  private scratchBytes = 0;

  constructor(private readonly backend: WasmBackend) {
    const module = new WebAssembly.Module(Buffer.from(KERNELS_ORDINARY_MEMORY_WASM_BASE64, 'base64'));
    const instance = new WebAssembly.Instance(module, { env: { memory: backend.wasm.asm.memory } });
    this.kernels = instance.exports as unknown as KernelExports;
  }

  /**
   * Returns op(a) @ op(b) for `shape` as a new float32 tensor of shape `outputShape`, computed by the
   * `batchMatMul` kernel in the backend's memory. src/kernels/batch-matmul.ts gives the order of operations.
   * Returns null when an operand is not a float32 tensor of this backend.
   */
  product(a: tf.Tensor, b: tf.Tensor, shape: BatchMatMulShape, outputShape: number[]): tf.Tensor | null {
    const { batch, m, k, n } = shape;
    if (a.size !== batch * m * k || b.size !== batch * k * n || outputShape.reduce((x, y) => x * y, 1) !== batch * m * n) {
      throw new RangeError(
        `product operands of ${a.size} and ${b.size} values and output shape [${outputShape.join(', ')}] do not match ` +
          `batch ${batch}, m ${m}, k ${k}, n ${n}; pass tensors of the sizes the shape describes`,
      );
    }
    const scratch = shape.transposeB ? this.scratch(k * n * 4) : 0;
    const aAddress = this.addressOf(a);
    const bAddress = this.addressOf(b);
    if (aAddress < 0 || bAddress < 0) return null;
    const output = this.backend.makeOutput(outputShape, 'float32');
    this.kernels.batchMatMul(
      aAddress,
      bAddress,
      this.backend.getMemoryOffset(output.dataId),
      scratch,
      batch,
      m,
      k,
      n,
      shape.transposeA ? 1 : 0,
      shape.transposeB ? 1 : 0,
    );
    return tf.engine().makeTensorFromTensorInfo(output);
  }

  /** Returns the column sums of `x` [rows, columns] as a tensor [columns], or null as `product` does. */
  columnSums(x: tf.Tensor2D): tf.Tensor1D | null {
    const address = this.addressOf(x);
    if (address < 0) return null;
    const [rows, columns] = x.shape;
    const output = this.backend.makeOutput([columns], 'float32');
    this.kernels.columnSums(address, this.backend.getMemoryOffset(output.dataId), rows, columns);
    return tf.engine().makeTensorFromTensorInfo(output) as tf.Tensor1D;
  }

  /** Returns the byte address of a float32 tensor's values in the backend's memory, or -1. */
  private addressOf(tensor: tf.Tensor): number {
    if (tensor.dtype !== 'float32' || tensor.isDisposed) return -1;
    try {
      return this.backend.getMemoryOffset(tensor.dataId);
    } catch {
      // The tensor's values live on another backend (tfjs moves them only when a tfjs kernel reads them).
      return -1;
    }
  }

  /** Returns an area of at least `bytes` bytes, reallocated larger when needed. */
  private scratch(bytes: number): number {
    if (bytes > this.scratchBytes) {
      if (this.scratchBytes > 0) this.backend.wasm._free(this.scratchAddress);
      this.scratchBytes = Math.max(bytes, this.scratchBytes * 2);
      this.scratchAddress = this.backend.wasm._malloc(this.scratchBytes);
      if (this.scratchAddress === 0) {
        this.scratchBytes = 0;
        throw new Error(`the tfjs WASM backend could not allocate ${bytes} bytes for a transposed operand; the process is out of memory`);
      }
    }
    return this.scratchAddress;
  }
}

let bound: { backend: object; kernels: TensorKernels | null } | null = null;

/** Returns the in-place kernels of the active tfjs backend, or null when it is not a usable WASM backend. */
export function tensorKernels(): TensorKernels | null {
  if (tf.getBackend() !== 'wasm') return null;
  const backend = tf.backend() as unknown as WasmBackendInternals;
  if (bound === null || bound.backend !== backend) {
    bound = { backend, kernels: isUsable(backend) ? new TensorKernels(backend) : null };
  }
  return bound.kernels;
}
