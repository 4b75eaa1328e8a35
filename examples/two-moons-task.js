/**
 * Example task: classify points of two interleaving half circles ("two moons") with a small tfjs-layers network.
 * It uses only ringtrain's public API. Train it on two workers with its config (batch size, epochs, learning rate):
 *
 *   npm run launch -- --gpus 2 --config examples/two-moons.json
 *
 * The model has dropout (active only in training) and batch normalisation (whose moving statistics are
 * non-trainable weights). Its initialisers draw from tfjs's own random source, so every rank builds different
 * initial values, and ringtrain copies rank 0's values to every rank before the first step.
 */
import { defineTask } from 'ringtrain';

/** Returns a deterministic pseudo-random generator (mulberry32) so every thread makes the same points. */
function generator(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Makes `count` noisy two-moons points: features [x, y] and labels 0 or 1. */
function makeMoons(count, noise, random) {
  const features = new Float32Array(count * 2);
  const labels = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const label = i % 2;
    const angle = Math.PI * random();
    const x = label === 0 ? Math.cos(angle) : 1 - Math.cos(angle);
    const y = label === 0 ? Math.sin(angle) : 0.5 - Math.sin(angle);
    features[2 * i] = x + noise * (random() * 2 - 1);
    features[2 * i + 1] = y + noise * (random() * 2 - 1);
    labels[i] = label;
  }
  return { features, labels };
}

export default defineTask({
  name: 'two-moons',

  // Runs in each worker's data-loading threads. Options come from the config's taskOptions.
  load({ options, seed }) {
    const trainSize = Number(options.trainSize ?? 2000);
    const evalSize = Number(options.evalSize ?? 500);
    const noise = Number(options.noise ?? 0.2);
    const random = generator(seed);
    return { train: makeMoons(trainSize, noise, random), eval: makeMoons(evalSize, noise, random) };
  },

  describe(data) {
    return { trainSize: data.train.labels.length, evalSize: data.eval.labels.length, classNames: ['upper', 'lower'] };
  },

  // Builds one batch as named typed arrays; they move to the training thread without copying.
  batch(data, split, indices) {
    const source = data[split];
    const inputs = new Float32Array(indices.length * 2);
    const labels = new Int32Array(indices.length);
    indices.forEach((index, row) => {
      inputs[2 * row] = source.features[2 * index];
      inputs[2 * row + 1] = source.features[2 * index + 1];
      labels[row] = source.labels[index];
    });
    return { inputs: { data: inputs, shape: [indices.length, 2] }, labels: { data: labels, shape: [indices.length] } };
  },

  // Runs on the training thread; `tf` is the TensorFlow.js instance ringtrain trains with.
  model({ tf, options }) {
    const hidden = Number(options.hidden ?? 32);
    const model = tf.sequential();
    model.add(tf.layers.dense({ inputShape: [2], units: hidden, activation: 'relu' }));
    model.add(tf.layers.batchNormalization());
    model.add(tf.layers.dropout({ rate: 0.1 }));
    model.add(tf.layers.dense({ units: hidden, activation: 'relu' }));
    model.add(tf.layers.dense({ units: 2 }));
    return model;
  },

  loss: 'softmax-cross-entropy',
  metrics: ['classification'],
});
