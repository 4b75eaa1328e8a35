/**
 * Seeded parameter initialisers that fill Float32Arrays in plain JavaScript, so every process and every tfjs
 * backend starts from bit-identical parameters.
 */
import { fnv1a } from '../data/word-features.js';
import { SeededRandom } from '../random.js';

/** Draws standard normal samples from a seeded uniform generator (Box-Muller, both values of each pair used). */
export class NormalSampler {
  private spare: number | undefined;

  constructor(private readonly random: SeededRandom) {}

  /** Returns the next standard normal sample. */
  next(): number {
    if (this.spare !== undefined) {
      const value = this.spare;
      this.spare = undefined;
      return value;
    }
    // 1 - next() is in (0, 1], so the logarithm is finite.
    const radius = Math.sqrt(-2 * Math.log(1 - this.random.next()));
    const angle = 2 * Math.PI * this.random.next();
    this.spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  }
}

/**
 * Returns a generator for one parameter, seeded from the run seed and the parameter name, so adding a
 * parameter does not change the initial values of the others.
 */
export function parameterRandom(seed: number, name: string): SeededRandom {
  return new SeededRandom(fnv1a(name, seed >>> 0));
}

/** Returns `size` samples of a normal distribution with mean 0 and standard deviation `std`. */
export function normalArray(size: number, std: number, random: SeededRandom): Float32Array {
  const sampler = new NormalSampler(random);
  const values = new Float32Array(size);
  for (let i = 0; i < size; i++) {
    values[i] = std * sampler.next();
  }
  return values;
}

/**
 * Returns `size` Glorot (Xavier) uniform samples for a kernel with the given fans: U(-a, a) with
 * a = sqrt(6 / (fanIn + fanOut)). `size` may be smaller than fanIn * fanOut for a slice of a larger kernel.
 */
export function glorotUniform(size: number, fanIn: number, fanOut: number, random: SeededRandom): Float32Array {
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  const values = new Float32Array(size);
  for (let i = 0; i < values.length; i++) {
    values[i] = limit * (2 * random.next() - 1);
  }
  return values;
}

/** Returns `size` copies of `value`. */
export function constantArray(size: number, value: number): Float32Array {
  return new Float32Array(size).fill(value);
}
