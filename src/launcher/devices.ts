import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';

/** GPUs this node can give to workers, and why there are none when `count` is 0. */
export interface GpuInventory {
  count: number;
  reason: string;
}

/**
 * Counts the CUDA GPUs that workers could use: the CUDA build of the native backend must be installed and
 * `nvidia-smi -L` must list devices. CUDA_VISIBLE_DEVICES, when set, limits the count as it limits CUDA.
 */
// NOTE: not yet run on a GPU; on machines without one only the "none found" branches have run.
export function detectGpus(): GpuInventory {
  if (!isGpuPackageInstalled()) {
    return { count: 0, reason: '@tensorflow/tfjs-node-gpu is not installed' };
  }
  let listing: string;
  try {
    listing = execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'ignore'] });
  } catch (error) {
    return { count: 0, reason: `nvidia-smi failed: ${(error as Error).message.split('\n')[0]}` };
  }
  let count = listing.split('\n').filter((line) => line.startsWith('GPU ')).length;
  const visible = process.env.CUDA_VISIBLE_DEVICES;
  if (visible !== undefined) count = Math.min(count, visible === '' ? 0 : visible.split(',').length);
  return { count, reason: count === 0 ? 'nvidia-smi lists no GPU' : `${count} GPUs found` };
}

/** Returns true when the CUDA build of the native backend is installed (it may still fail to load). */
function isGpuPackageInstalled(): boolean {
  try {
    createRequire(import.meta.url).resolve('@tensorflow/tfjs-node-gpu');
    return true;
  } catch {
    return false;
  }
}
