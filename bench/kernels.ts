/**
 * `npm run bench:kernels`: times each WebAssembly kernel against the JavaScript it replaces, in one process,
 * and prints nanoseconds per element (median of 7 repetitions after 2 untimed ones). Matrix products and
 * column sums are timed per call against tfjs's own on the WASM backend, from tensors to a tensor. The figures
 * in docs/kernels.md come from this script.
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { addInto, addIntoScalar } from '../src/comm/ring-reduce.js';
import { BLOCK_ELEMENTS, gatherBlocks } from '../src/comm/zero-blocks.js';
import { batchMatMul } from '../src/kernels/batch-matmul.js';
import { checksumFloats } from '../src/kernels/checksum.js';
import { tensorKernels } from '../src/kernels/tensor-kernels.js';
import { allocateKernelFloats } from '../src/kernels/kernel-memory.js';
import { updateElements, updateElementsScalar, type AdamWArrays, type AdamWCoefficients } from '../src/optim/adamw-update.js';
import { sumOfScaledSquares } from '../src/optim/clip.js';

const REPETITIONS = 7;
const WARMUP = 2;

/** Returns the median time of `run` in nanoseconds per element. */
function time(elements: number, run: () => void): number {
  const times: number[] = [];
  for (let repetition = 0; repetition < WARMUP + REPETITIONS; repetition++) {
    const started = performance.now();
    run();
    if (repetition >= WARMUP) times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return ((times[Math.floor(times.length / 2)] as number) * 1e6) / elements;
}

function filled(length: number, inKernelMemory: boolean, value: (index: number) => number): Float32Array {
  const array = inKernelMemory ? allocateKernelFloats(length) : new Float32Array(length);
  for (let i = 0; i < length; i++) array[i] = value(i);
  return array;
}

function report(name: string, kernelNs: number, scalarNs: number, scalarName: string): void {
  console.log(
    `${name.padEnd(44)} kernel ${kernelNs.toFixed(3).padStart(7)} ns/element   ${scalarName} ${scalarNs.toFixed(3).padStart(7)} ns/element   ratio ${(scalarNs / kernelNs).toFixed(1)}x`,
  );
}

function benchAdd(): void {
  // The ring adds 1 MiB frames to chunks of a larger buffer. The hot case adds to the same chunk again, the
  // cold case walks over 64 MiB.
  const slice = 262_144;
  const slices = 64;
  for (const [name, buffer] of [
    ['add, local chunk in cache', 1],
    ['add, local chunk from a 64 MiB buffer', slices],
  ] as const) {
    const kernelLocal = filled(slice * buffer, true, (i) => i * 1e-3);
    const kernelFrame = filled(slice, true, () => 1.5);
    const scalarLocal = filled(slice * buffer, false, (i) => i * 1e-3);
    const scalarFrame = filled(slice, false, () => 1.5);
    const elements = slice * slices;
    const kernelNs = time(elements, () => {
      for (let k = 0; k < slices; k++) addInto(kernelFrame, kernelFrame, kernelLocal.subarray((k % buffer) * slice, ((k % buffer) + 1) * slice), slice);
    });
    const scalarNs = time(elements, () => {
      for (let k = 0; k < slices; k++) addIntoScalar(scalarFrame, scalarFrame, scalarLocal.subarray((k % buffer) * slice, ((k % buffer) + 1) * slice), slice);
    });
    report(name, kernelNs, scalarNs, 'JavaScript loop');
  }
}

function benchAdamW(): void {
  const length = 2_040_000;
  const coefficients: AdamWCoefficients = {
    gradientFactor: 1 / 3000,
    gradientScale: 1,
    beta1: 0.9,
    oneMinusBeta1: 0.1,
    beta2: 0.999,
    oneMinusBeta2: 1 - 0.999,
    eps: 1e-8,
    stepSize: 1e-3 / (1 - 0.9 ** 10),
    shrink: 1 - 1e-5,
  };
  const arrays = (inKernelMemory: boolean): AdamWArrays => ({
    parameters: filled(length, inKernelMemory, (i) => Math.sin(i)),
    gradients: filled(length, inKernelMemory, (i) => Math.cos(i)),
    firstMoment: filled(length, inKernelMemory, () => 0),
    secondMoment: filled(length, inKernelMemory, () => 0),
  });
  const kernel = arrays(true);
  const scalar = arrays(false);
  report(
    'AdamW update, 2.04 M elements',
    time(length, () => updateElements(kernel, 0, length, coefficients)),
    time(length, () => updateElementsScalar(scalar, 0, length, coefficients)),
    'JavaScript loop',
  );
  const ranges = [{ start: 0, end: length }];
  report(
    'sum of scaled squares, 2.04 M elements',
    time(length, () => sumOfScaledSquares(kernel.gradients, ranges, 1 / 3000)),
    time(length, () => sumOfScaledSquares(scalar.gradients, ranges, 1 / 3000)),
    'JavaScript loop',
  );
  // One marked block in ten, as in the default job's packed exchange.
  const blocks = Math.floor(length / BLOCK_ELEMENTS);
  const flags = (inKernelMemory: boolean): Float32Array => filled(blocks, inKernelMemory, (block) => (block % 10 === 0 ? 1 : 0));
  const kernelFlags = flags(true);
  const scalarFlags = flags(false);
  const kernelPacked = filled(length, true, () => 0);
  const scalarPacked = filled(length, false, () => 0);
  report(
    'pack 1 block of 64 in 10, 2.04 M elements',
    time(length, () => gatherBlocks(kernel.gradients, blocks * BLOCK_ELEMENTS, kernelFlags, kernelPacked)),
    time(length, () => gatherBlocks(scalar.gradients, blocks * BLOCK_ELEMENTS, scalarFlags, scalarPacked)),
    'copies run by run',
  );
  report(
    'parameter checksum, 2.04 M elements (8 MB)',
    time(length, () => checksumFloats(kernel.parameters)),
    time(length, () => createHash('sha256').update(new Uint8Array(scalar.parameters.buffer)).digest('hex')),
    'SHA-256 (node:crypto)',
  );
}

/** Returns the median milliseconds of one call of `run`, timed over `calls` calls per repetition. */
function msPerCall(calls: number, run: () => void): number {
  // time() returns nanoseconds per element. With one element per call, 1e6 of them make a millisecond.
  return time(calls, () => {
    for (let i = 0; i < calls; i++) run();
  }) / 1e6;
}

/**
 * Times matrix products from tensors to a tensor on the WASM backend: the kernel in place on tfjs's memory, the
 * kernel on copies (its route on other backends), and tf.matMul with the same transpose flags. The 2-D shapes
 * are the default tagger's (1536 tokens, dModel 64, ffDim 192): a forward product and the two gradients of it.
 */
async function benchProducts(): Promise<void> {
  await tf.setBackend('wasm');
  await tf.ready();
  const kernels = tensorKernels();
  if (kernels === null) {
    throw new Error('the in-place kernels are not available: this tfjs WASM backend lacks the internals they use; run with tfjs 4.22');
  }
  const calls = 20;
  for (const [name, batch, m, k, n, transposeA, transposeB] of [
    ['forward, x @ W', 1, 1536, 64, 192, false, false],
    ['input gradient, dy @ Wᵀ', 1, 1536, 192, 64, false, true],
    ['weight gradient, xᵀ @ dy', 1, 64, 1536, 192, true, false],
    ['attention scores, 64 × q @ kᵀ', 64, 24, 32, 24, false, true],
    ['attention context, 64 × p @ v', 64, 24, 24, 32, false, false],
    ['attention, 64 × (48 × 48 @ 48 × 32)', 64, 48, 48, 32, false, false],
  ] as const) {
    const aShape = transposeA ? [k, m] : [m, k];
    const bShape = transposeB ? [n, k] : [k, n];
    const a = tf.randomNormal(batch > 1 ? [batch, ...aShape] : aShape);
    const b = tf.randomNormal(batch > 1 ? [batch, ...bShape] : bShape);
    const shape = { batch, m, k, n, transposeA, transposeB };
    const outputShape = batch > 1 ? [batch, m, n] : [m, n];
    const inPlaceMs = msPerCall(calls, () => kernels.product(a, b, shape, outputShape)?.dispose());
    const copiedMs = msPerCall(calls, () => {
      tf.tensor(batchMatMul(a.dataSync() as Float32Array, b.dataSync() as Float32Array, shape), outputShape).dispose();
    });
    const tfjsMs = msPerCall(calls, () => {
      const product = tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D, transposeA, transposeB);
      product.dataSync();
      product.dispose();
    });
    const gflop = (2 * batch * m * k * n) / 1e9;
    const rate = (ms: number): string => `${ms.toFixed(3).padStart(6)} ms (${(gflop / (ms / 1e3)).toFixed(1).padStart(4)} GFLOP/s)`;
    console.log(
      `${`${name}, ${m}x${k}x${n}`.padEnd(52)} in place ${rate(inPlaceMs)}   copied ${rate(copiedMs)}   ` +
        `tf.matMul ${rate(tfjsMs)}   tf.matMul / in place ${(tfjsMs / inPlaceMs).toFixed(1)}x`,
    );
    tf.dispose([a, b]);
  }
  const gradient = tf.randomNormal([1536, 64]) as tf.Tensor2D;
  const ones = tf.ones([1, 1536]) as tf.Tensor2D;
  const inPlaceMs = msPerCall(calls, () => kernels.columnSums(gradient)?.dispose());
  const sumMs = msPerCall(calls, () => {
    const sums = tf.sum(gradient, 0);
    sums.dataSync();
    sums.dispose();
  });
  const onesMs = msPerCall(calls, () => {
    const sums = tf.matMul(ones, gradient);
    sums.dataSync();
    sums.dispose();
  });
  console.log(
    `${'column sums (bias gradient), 1536 x 64'.padEnd(52)} in place ${inPlaceMs.toFixed(3)} ms   tf.sum ${sumMs.toFixed(3)} ms   ` +
      `ones @ x ${onesMs.toFixed(3)} ms`,
  );
  tf.dispose([gradient, ones]);
}

console.log(`WebAssembly kernels against JavaScript, Node ${process.version}, median of ${REPETITIONS}`);
benchAdd();
benchAdamW();
await benchProducts();
