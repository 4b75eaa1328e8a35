import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import { addInto, addIntoScalar } from '../src/comm/ring-reduce.js';
import { batchMatMul, batchMatMulScalar } from '../src/kernels/batch-matmul.js';
import { checksumFloats } from '../src/kernels/checksum.js';
import { KernelMemory, SCRATCH_FLOATS, kernelMemory } from '../src/kernels/kernel-memory.js';
import { updateElements, updateElementsScalar, type AdamWArrays, type AdamWCoefficients } from '../src/optim/adamw-update.js';
import { SeededRandom } from '../src/random.js';
import { sameBits } from './helpers/bits.js';

const repositoryRoot = fileURLToPath(new URL('../../', import.meta.url));

/** Returns float32 values of every kind: ordinary, tiny, huge, subnormal, signed zeros, infinities and NaN. */
function mixedValues(random: SeededRandom, length: number, special: boolean): Float32Array {
  const values = new Float32Array(length);
  const bits = new Uint32Array(values.buffer);
  for (let i = 0; i < length; i++) {
    const pick = random.next();
    if (!special || pick < 0.7) {
      values[i] = (random.next() - 0.5) * 2 ** (random.nextInt(40) - 20);
    } else if (pick < 0.8) {
      // Any bit pattern: subnormals, NaNs with payloads, infinities.
      bits[i] = Math.floor(random.next() * 2 ** 32) >>> 0;
    } else if (pick < 0.9) {
      values[i] = [0, -0, Infinity, -Infinity, 1e-45, -3e38][random.nextInt(6)] as number;
    } else {
      values[i] = (random.next() - 0.5) * 1e-40;
    }
  }
  return values;
}

/** Copies `values` into the kernel memory, or into an ordinary array when `inside` is false. */
function place(values: Float32Array, inside: boolean): Float32Array {
  const copy = inside ? kernelMemory().allocateFloats(values.length) : new Float32Array(values.length);
  copy.set(values);
  return copy;
}

test('kernel bytes match kernels.wat', (t) => {
  const output = execFileSync(process.execPath, ['scripts/build-kernels.mjs', '--check'], { cwd: repositoryRoot, encoding: 'utf8' });
  t.regex(output, /matches kernels\.wat/);
});

test('SIMD add matches scalar bits', (t) => {
  const random = new SeededRandom(11);
  // Lengths around the kernel's stride of 16 and across the scratch block size, which the copy path splits at.
  const lengths = [0, 1, 15, 16, 17, 64, 1000, SCRATCH_FLOATS - 3, SCRATCH_FLOATS + 37, 2 * SCRATCH_FLOATS + 16];
  let cases = 0;
  for (const length of lengths) {
    const first = mixedValues(random, length, true);
    const second = mixedValues(random, length, true);
    const expected = new Float32Array(length);
    addIntoScalar(expected, first, second, length);
    for (let placement = 0; placement < 8; placement++) {
      const a = place(first, (placement & 1) !== 0);
      const b = place(second, (placement & 2) !== 0);
      const target = place(new Float32Array(length), (placement & 4) !== 0);
      addInto(target, a, b, length);
      t.true(sameBits(target, expected), `length ${length}, placement ${placement}: separate target`);
      // In place, as the ring does: the received frame plus the local values, into either of them.
      const intoFirst = place(first, (placement & 1) !== 0);
      addInto(intoFirst, intoFirst, place(second, (placement & 2) !== 0), length);
      t.true(sameBits(intoFirst, expected), `length ${length}, placement ${placement}: into the first operand`);
      const intoSecond = place(second, (placement & 2) !== 0);
      addInto(intoSecond, place(first, (placement & 1) !== 0), intoSecond, length);
      t.true(sameBits(intoSecond, expected), `length ${length}, placement ${placement}: into the second operand`);
      cases += 3;
    }
  }
  t.is(cases, lengths.length * 24);
});

test('SIMD add stays inside subarray', (t) => {
  const memory = kernelMemory();
  const target = memory.allocateFloats(100).fill(7);
  addInto(target.subarray(10, 90), memory.allocateFloats(80).fill(1), memory.allocateFloats(80).fill(2), 80);
  t.deepEqual([target[9], target[10], target[89], target[90]], [7, 3, 3, 7]);
});

test('AdamW kernel matches scalar bits', (t) => {
  const random = new SeededRandom(5);
  for (const length of [1, 2, 3, 17, 4096, 10001]) {
    for (const [gradientFactor, gradientScale] of [[1, 1], [1 / 37, 1], [1, 0.3712], [1 / 37, 0.3712]] as const) {
      for (const shrink of [1, 1 - 1e-3 * 0.01]) {
        const coefficients: AdamWCoefficients = {
          gradientFactor,
          gradientScale,
          beta1: 0.9,
          oneMinusBeta1: 1 - 0.9,
          beta2: 0.999,
          oneMinusBeta2: 1 - 0.999,
          eps: 1e-8,
          stepSize: 1e-3 / (1 - 0.9 ** 7),
          shrink,
        };
        const parameters = mixedValues(random, length, false);
        const gradients = mixedValues(random, length, false);
        const firstMoment = mixedValues(random, length, false);
        const secondMoment = mixedValues(random, length, false).map(Math.abs);
        const build = (inside: boolean): AdamWArrays => ({
          parameters: place(parameters, inside),
          gradients: place(gradients, inside),
          firstMoment: place(firstMoment, inside),
          secondMoment: place(secondMoment, inside),
        });
        const reference = build(false);
        updateElementsScalar(reference, 0, length, coefficients);
        const kernel = build(true);
        // Two calls, the second starting at an odd element, cover the kernel's groups of four and the scalar tail.
        const split = Math.floor(length / 2) | 1;
        updateElements(kernel, 0, Math.min(split, length), coefficients);
        updateElements(kernel, Math.min(split, length), length, coefficients);
        const where = `length ${length}, factor ${gradientFactor}, scale ${gradientScale}, shrink ${shrink}`;
        t.true(sameBits(kernel.parameters, reference.parameters), `${where}: parameters`);
        t.true(sameBits(kernel.firstMoment, reference.firstMoment), `${where}: first moment`);
        t.true(sameBits(kernel.secondMoment, reference.secondMoment), `${where}: second moment`);
        t.true(sameBits(kernel.gradients, gradients), `${where}: gradients are read only`);
        if (length >= 17) {
          // Parameters far larger than the step size keep their bits, so only longer arrays surely change.
          t.false(sameBits(kernel.parameters, parameters), `${where}: the update changed the parameters`);
        }
      }
    }
  }
});

test('kernel memory growth keeps arrays', (t) => {
  const memory = new KernelMemory();
  const early = memory.allocateFloats(1000).fill(1.5);
  const before = memory.heap.buffer.byteLength;
  // Several MiB forces growth; the early array must neither move nor detach.
  const late = memory.allocateFloats(4 * 1024 * 1024).fill(2.5);
  t.true(memory.heap.buffer.byteLength > before);
  t.is(early.length, 1000);
  t.true(early.every((value) => value === 1.5));
  t.true(memory.addressOf(early) >= 0);
  t.true(memory.addressOf(late) >= memory.addressOf(early) + 4000);
  t.is(memory.addressOf(late) % 64, 0);
  t.is(memory.addressOf(new Float32Array(4)), -1);
  // Growing one shared memory can give every shared memory of the process a new buffer object.
  const shared = kernelMemory().allocateFloats(10);
  t.true(kernelMemory().addressOf(shared) >= 0);
  t.throws(() => memory.allocateFloats(-1), { instanceOf: RangeError, message: /non-negative integer number of bytes/ });
});

test('checksum sees every single bit flip', (t) => {
  const random = new SeededRandom(17);
  for (const length of [0, 1, 3, 4, 5, 9, 1000, SCRATCH_FLOATS + 5]) {
    const values = mixedValues(random, length, true);
    const inside = place(values, true);
    const digest = checksumFloats(inside);
    t.regex(digest, /^[0-9a-f]{16}$/);
    t.is(checksumFloats(values), digest, `length ${length}: the copy path gives the kernel path's digits`);
    const bits = new Uint32Array(inside.buffer, inside.byteOffset, length);
    // Flip bits at the start, in the middle and in the zero-padded tail.
    for (const index of new Set([0, Math.floor(length / 2), length - 1].filter((i) => i >= 0 && i < length))) {
      for (const bit of [0, 17, 31]) {
        bits[index] = (bits[index] as number) ^ (1 << bit);
        t.not(checksumFloats(inside), digest, `length ${length}, element ${index}, bit ${bit}`);
        bits[index] = (bits[index] as number) ^ (1 << bit);
      }
    }
    t.is(checksumFloats(inside), digest);
  }
  t.not(checksumFloats(new Float32Array(4)), checksumFloats(new Float32Array(5)), 'the length enters the checksum');
});

/** Returns true when both arrays hold the same bits, counting every NaN as equal to every other NaN. */
function sameBitsOrBothNaN(a: Float32Array, b: Float32Array): boolean {
  const left = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const right = new Uint32Array(b.buffer, b.byteOffset, b.length);
  return a.length === b.length && left.every((bits, i) => bits === right[i] || (Number.isNaN(a[i]) && Number.isNaN(b[i])));
}

test('batched product kernel matches scalar bits', (t) => {
  const random = new SeededRandom(31);
  // Rows go in blocks of four by eight outputs. The columns left over (n mod 8) and the rows left over (m mod 4)
  // take the single-row loops, which compute sixteen outputs at a time, then four, then one.
  const shapes = [
    [3, 5, 7, 37],
    [1, 13, 19, 29],
    [2, 8, 11, 8],
    [1, 3, 40, 45],
    [2, 24, 32, 24],
    [1, 1, 1, 1],
    [4, 9, 17, 6],
    [2, 64, 33, 32],
  ];
  for (const [batch, m, k, n] of shapes) {
    for (const transposeA of [false, true]) {
      for (const transposeB of [false, true]) {
        const shape = { batch: batch!, m: m!, k: k!, n: n!, transposeA, transposeB };
        const a = mixedValues(random, batch! * m! * k!, false);
        const b = mixedValues(random, batch! * k! * n!, false);
        // A few signed zeros and infinities; products of zero and infinity give NaN.
        a[0] = -0;
        b[b.length - 1] = Infinity;
        const label = `${batch}x${m}x${k}x${n} transposeA ${transposeA} transposeB ${transposeB}`;
        t.true(sameBitsOrBothNaN(batchMatMul(a, b, shape), batchMatMulScalar(a, b, shape)), label);
      }
    }
  }
});

test('batched product equals the definition', (t) => {
  // a is two 2 x 3 matrices, b two 3 x 2 matrices; the products are small integers, exact in float32.
  const a = Float32Array.from([1, 2, 3, 4, 5, 6, -1, 0, 2, 3, 1, -2]);
  const b = Float32Array.from([1, 0, 0, 1, 2, 2, 1, 1, 1, -1, 0, 4]);
  const products = batchMatMul(a, b, { batch: 2, m: 2, k: 3, n: 2, transposeA: false, transposeB: false });
  t.deepEqual(Array.from(products), [7, 8, 16, 17, -1, 7, 4, -6]);
  // The same products from stored transposes of both operands.
  const aT = Float32Array.from([1, 4, 2, 5, 3, 6, -1, 3, 0, 1, 2, -2]);
  const bT = Float32Array.from([1, 0, 2, 0, 1, 2, 1, 1, 0, 1, -1, 4]);
  const again = batchMatMul(aT, bT, { batch: 2, m: 2, k: 3, n: 2, transposeA: true, transposeB: true });
  t.deepEqual(Array.from(again), [7, 8, 16, 17, -1, 7, 4, -6]);
  t.throws(() => batchMatMul(a, b, { batch: 3, m: 2, k: 3, n: 2, transposeA: false, transposeB: false }), {
    message: /operands hold 12 and 12 floats but the shape needs 18 and 18/,
  });
});
