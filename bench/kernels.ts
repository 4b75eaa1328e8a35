/**
 * `npm run bench:kernels`: times each WebAssembly kernel against the JavaScript it replaces, in one process,
 * and prints nanoseconds per element (median of 7 repetitions after 2 untimed ones). The batched products of
 * attention are timed per call against tfjs's own on the WASM backend, both from tensor to tensor. The
 * figures in docs/kernels.md come from this script.
 */
import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { addInto, addIntoScalar } from '../src/comm/ring-reduce.js';
import { batchMatMul } from '../src/kernels/batch-matmul.js';
import { checksumFloats } from '../src/kernels/checksum.js';
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
    sqrtBiasCorrection2: Math.sqrt(1 - 0.999 ** 10),
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
  report(
    'parameter checksum, 2.04 M elements (8 MB)',
    time(length, () => checksumFloats(kernel.parameters)),
    time(length, () => createHash('sha256').update(new Uint8Array(scalar.parameters.buffer)).digest('hex')),
    'SHA-256 (node:crypto)',
  );
}

/** Times attention-shaped batched products: the kernel with its copies out of and into tensors, and tf.matMul. */
async function benchBatchMatMul(): Promise<void> {
  await tf.setBackend('wasm');
  await tf.ready();
  const calls = 50;
  for (const [batch, m, k, n, transposeB] of [
    [64, 24, 24, 32, false],
    [64, 24, 32, 24, true],
    [64, 48, 48, 32, false],
  ] as const) {
    const a = tf.randomNormal([batch, m, k]) as tf.Tensor3D;
    const b = tf.randomNormal(transposeB ? [batch, n, k] : [batch, k, n]) as tf.Tensor3D;
    const shape = { batch, m, k, n, transposeA: false, transposeB };
    const viaKernel = (): void => {
      const values = batchMatMul(a.dataSync() as Float32Array, b.dataSync() as Float32Array, shape);
      tf.tensor3d(values, [batch, m, n]).dispose();
    };
    const viaTfjs = (): void => {
      const product = tf.matMul(a, b, false, transposeB);
      product.dataSync();
      product.dispose();
    };
    // time() returns nanoseconds per call here, so 1e6 of them make a millisecond.
    const kernelMs = time(calls, () => { for (let i = 0; i < calls; i++) viaKernel(); }) / 1e6;
    const tfjsMs = time(calls, () => { for (let i = 0; i < calls; i++) viaTfjs(); }) / 1e6;
    const gflop = (2 * batch * m * k * n) / 1e9;
    const name = `batched product ${batch} x ${m}x${k} @ ${k}x${n}${transposeB ? ' (b transposed)' : ''}`;
    console.log(
      `${name.padEnd(50)} kernel ${kernelMs.toFixed(3).padStart(7)} ms (${(gflop / (kernelMs / 1e3)).toFixed(1)} GFLOP/s)   ` +
        `tf.matMul on wasm ${tfjsMs.toFixed(3).padStart(7)} ms (${(gflop / (tfjsMs / 1e3)).toFixed(1)} GFLOP/s)   ratio ${(tfjsMs / kernelMs).toFixed(1)}x`,
    );
    tf.dispose([a, b]);
  }
}

console.log(`WebAssembly kernels against JavaScript, Node ${process.version}, median of ${REPETITIONS}`);
benchAdd();
benchAdamW();
await benchBatchMatMul();
