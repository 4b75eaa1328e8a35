import { createRequire } from 'node:module';
import * as tf from '@tensorflow/tfjs';
import type { Logger } from 'pino';
import type { BackendName } from '../config/types.js';
import { RingtrainError } from '../errors.js';

/** The backend a process ended up with, for logs and the run report. */
export interface SelectedBackend {
  /** tfjs backend name: `tensorflow`, `wasm` or `cpu`. */
  name: string;
  /** npm package that provided it. */
  packageName: string;
  /** Reasons the backends tried before it were skipped, in order. */
  skipped: string[];
}

interface Candidate {
  backend: 'tensorflow' | 'wasm' | 'cpu';
  packageName: string;
  load: () => Promise<void>;
}

const require = createRequire(import.meta.url);

// NOTE: not yet run on a GPU. The native packages cannot be installed on the machines this was written on
// (their install script downloads libtensorflow), so only the fallback from them has been exercised.
const nativeCandidates: Candidate[] = [
  { backend: 'tensorflow', packageName: '@tensorflow/tfjs-node-gpu', load: async () => void require('@tensorflow/tfjs-node-gpu') },
  { backend: 'tensorflow', packageName: '@tensorflow/tfjs-node', load: async () => void require('@tensorflow/tfjs-node') },
];

const wasmCandidate: Candidate = {
  backend: 'wasm',
  packageName: '@tensorflow/tfjs-backend-wasm',
  load: async () => void (await import('@tensorflow/tfjs-backend-wasm')),
};

const cpuCandidate: Candidate = {
  backend: 'cpu',
  packageName: '@tensorflow/tfjs-backend-cpu',
  load: async () => {},
};

function candidatesFor(preference: BackendName): Candidate[] {
  switch (preference) {
    case 'auto':
      return [...nativeCandidates, wasmCandidate, cpuCandidate];
    case 'tensorflow':
      return nativeCandidates;
    case 'wasm':
      return [wasmCandidate];
    case 'cpu':
      return [cpuCandidate];
  }
}

/**
 * Loads and activates a tfjs backend: with `auto`, the native TensorFlow backend when its package is installed
 * and loads, else WASM, else the pure-JS CPU backend. A forced backend that cannot load raises
 * RINGTRAIN_ERR_BACKEND naming the package and the reason. Logs the backend chosen and why others were skipped.
 */
export async function selectBackend(preference: BackendName, logger: Logger): Promise<SelectedBackend> {
  const skipped: string[] = [];
  // Production mode silences tfjs's console banners (the choice is logged below instead) and skips
  // debug-only checks, which ringtrain never turns on.
  tf.enableProdMode();

  for (const candidate of candidatesFor(preference)) {
    try {
      await candidate.load();
      const activated = await tf.setBackend(candidate.backend);
      if (!activated) throw new Error(`tf.setBackend('${candidate.backend}') returned false`);
      await tf.ready();
      const selected = { name: tf.getBackend(), packageName: candidate.packageName, skipped };
      logger.info({ backend: selected.name, package: selected.packageName, skipped }, 'tfjs backend selected');
      return selected;
    } catch (error) {
      const reason = error instanceof Error ? error.message.split('\n')[0] : String(error);
      skipped.push(`${candidate.packageName}: ${reason}`);
      logger.debug({ package: candidate.packageName, reason }, 'tfjs backend unavailable');
    }
  }

  throw new RingtrainError(
    'RINGTRAIN_ERR_BACKEND',
    `backend '${preference}' could not be loaded (${skipped.join('; ')}); ` +
      `install the package it needs or pass --backend auto`,
  );
}
