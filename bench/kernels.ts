/**
 * `npm run bench:kernels`: times each WebAssembly kernel against the JavaScript it replaces, in one process,
 * and prints nanoseconds per element (median of 7 repetitions after 2 untimed ones). The figures in
 * docs/kernels.md come from this script.
 */
import { createHash } from 'node:crypto';
import { addInto, addIntoScalar } from '../src/comm/ring-reduce.js';
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

console.log(`WebAssembly kernels against JavaScript, Node ${process.version}, median of ${REPETITIONS}`);
benchAdd();
benchAdamW();
