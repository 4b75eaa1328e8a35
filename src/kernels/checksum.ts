/**
 * A fast checksum of a float array's bits, which the coordinator compares across ranks to detect parameters
 * that diverged. It runs the `hashBlocks` kernel: eight 64-bit polynomial hashes, lane k over the 64-bit words
 * k, k + 8, k + 16 and so on, started from the length and combined with XOR. Changing any single 64-bit word
 * always changes the checksum, and other changes are missed with a chance of about 2^-64 for unrelated
 * inputs. It is not a cryptographic hash; it only has to tell honest copies apart, several times faster
 * than SHA-256 (`npm run bench:kernels`).
 */
import { SCRATCH_FLOATS, kernelMemory } from './kernel-memory.js';

/** Bytes of the hash state (eight 64-bit lanes), and of one block of input. */
const STATE_BYTES = 64;
const BLOCK_FLOATS = 16;

/** State (64 bytes) and zero-padded last block (64 bytes) of the running hash, in the kernel memory. */
let work: Buffer | null = null;

/** Returns 16 hex digits that depend on every bit of `values`. Equal arrays give equal digits. */
export function checksumFloats(values: Float32Array): string {
  const memory = kernelMemory();
  work ??= memory.allocateBytes(2 * STATE_BYTES);
  const stateAddress = memory.addressOf(work);
  if (stateAddress < 0) {
    throw new Error(
      'cannot compute the parameter checksum: the kernel memory reached its 4 GiB limit; set train.checksumEvery=0 to skip the check',
    );
  }
  for (let lane = 0; lane < 8; lane++) work.writeBigUInt64LE(BigInt(values.length + lane), lane * 8);

  const wholeFloats = values.length - (values.length % BLOCK_FLOATS);
  const address = memory.addressOf(values);
  if (address >= 0) {
    memory.kernels.hashBlocks(address, wholeFloats / BLOCK_FLOATS, stateAddress);
  } else {
    const [scratch] = memory.scratch;
    for (let start = 0; start < wholeFloats; start += SCRATCH_FLOATS) {
      const length = Math.min(SCRATCH_FLOATS, wholeFloats - start);
      memory.heap.set(values.subarray(start, start + length), scratch / 4);
      memory.kernels.hashBlocks(scratch, length / BLOCK_FLOATS, stateAddress);
    }
  }
  if (wholeFloats < values.length) {
    const tail = new Uint8Array(values.buffer, values.byteOffset + wholeFloats * 4, (values.length - wholeFloats) * 4);
    work.fill(0, STATE_BYTES);
    work.set(tail, STATE_BYTES);
    memory.kernels.hashBlocks(stateAddress + STATE_BYTES, 1, stateAddress);
  }
  let digest = 0n;
  for (let lane = 0; lane < 8; lane++) digest ^= work.readBigUInt64LE(lane * 8);
  return digest.toString(16).padStart(16, '0');
}
