/**
 * Measures the character transformer on one tfjs backend, in one process.
 *
 * Usage:
 *   node dist/bench/char-transformer.js timing [--backend wasm|cpu] [--batch 32] [--repeats 5]
 *     Prints forward+backward milliseconds per step (median of `repeats` after 2 warm-up steps) for context
 *     64/128, dModel 64/96/128, layers 2/3, vocabulary 100, heads dModel / 32, ffDim 4 * dModel, dropout 0.1,
 *     then for variants of the context-64, dModel-64, 2-layer model.
 *   node dist/bench/char-transformer.js train [--steps 400] [--eval-every 50] [--batch 32] [--context 128]
 *       [--d-model 64] [--heads 2] [--layers 2] [--ff-dim 256] [--dropout 0] [--lr 0.003] [--warmup 50]
 *       [--limit-files 0] [--seed 1]
 *     Trains on Brown text with the project's AdamW and prints held-out perplexity per character against steps
 *     and seconds. The text joins the words of each sentence with spaces, one sentence per line, and every 10th
 *     corpus file is held out.
 */
import { parseArgs } from 'node:util';

import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';

import type { OptimizerConfig } from '../src/config/types.js';
import { readCorpus, resolveCorpusFolder } from '../src/data/brown-corpus.js';
import { CharTransformer, type CharTransformerOptions } from '../src/models/char-transformer.js';
import { maskedCrossEntropy } from '../src/models/tagger-ops.js';
import { AdamW } from '../src/optim/adamw.js';
import { SeededRandom } from '../src/random.js';

const { positionals, values } = parseArgs({
  allowPositionals: true,
  options: {
    backend: { type: 'string', default: 'wasm' },
    batch: { type: 'string', default: '32' },
    repeats: { type: 'string', default: '5' },
    steps: { type: 'string', default: '400' },
    'eval-every': { type: 'string', default: '50' },
    context: { type: 'string', default: '128' },
    'd-model': { type: 'string', default: '64' },
    heads: { type: 'string', default: '2' },
    layers: { type: 'string', default: '2' },
    'ff-dim': { type: 'string', default: '256' },
    dropout: { type: 'string', default: '0' },
    lr: { type: 'string', default: '0.003' },
    warmup: { type: 'string', default: '50' },
    'limit-files': { type: 'string', default: '0' },
    seed: { type: 'string', default: '1' },
  },
});

/** Returns the summed cross-entropy of `logits` [batch, time, vocabulary] against next-character ids. */
function summedLoss(logits: tf.Tensor, targets: Int32Array): tf.Scalar {
  const vocabulary = logits.shape[2] as number;
  const rows = targets.length;
  // Filled in JavaScript because the WASM OneHot kernel of tfjs 4.22 writes int32 bits into a float32 output.
  const oneHotValues = new Float32Array(rows * vocabulary);
  targets.forEach((target, row) => {
    oneHotValues[row * vocabulary + target] = 1;
  });
  const oneHot = tf.tensor2d(oneHotValues, [rows, vocabulary]);
  const rowMask = tf.ones([rows, 1]) as tf.Tensor2D;
  return maskedCrossEntropy(tf.reshape(logits, [rows, vocabulary]) as tf.Tensor2D, oneHot, rowMask);
}

/** Runs forward and backward once and reads every gradient back, as a worker would. Returns the summed loss. */
function trainStep(model: CharTransformer, tokens: Int32Array, targets: Int32Array, batch: number, time: number) {
  const tokenTensor = tf.tensor2d(tokens, [batch, time], 'int32');
  const { value, grads } = tf.variableGrads(() => summedLoss(model.forward({ tokens: tokenTensor }, true), targets));
  const loss = value.dataSync()[0];
  const gradients = model.variables.map((entry) => grads[entry.variable.name].dataSync() as Float32Array);
  tf.dispose([tokenTensor, value, ...Object.values(grads)]);
  return { loss, gradients };
}

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Returns the median forward+backward milliseconds of `options` for one batch of random ids. */
function timeStep(options: CharTransformerOptions, batch: number, repeats: number, random: SeededRandom): number {
  const model = new CharTransformer(options);
  const length = batch * options.contextLength;
  const tokens = Int32Array.from({ length }, () => random.nextInt(options.vocabularySize));
  const targets = Int32Array.from({ length }, () => random.nextInt(options.vocabularySize));
  const samples: number[] = [];
  // The first two steps create and cache kernels and are left out of the median.
  for (let i = 0; i < repeats + 2; i++) {
    const start = performance.now();
    trainStep(model, tokens, targets, batch, options.contextLength);
    if (i >= 2) {
      samples.push(performance.now() - start);
    }
  }
  model.dispose();
  return median(samples);
}

function parameterCount(options: CharTransformerOptions): number {
  const model = new CharTransformer(options);
  const count = model.variables.reduce((sum, entry) => sum + entry.variable.size, 0);
  model.dispose();
  return count;
}

function runTiming(): void {
  const batch = Number(values.batch);
  const repeats = Number(values.repeats);
  const random = new SeededRandom(3);
  const base: CharTransformerOptions = {
    vocabularySize: 100,
    contextLength: 64,
    dModel: 64,
    heads: 2,
    layers: 2,
    ffDim: 256,
    dropout: 0.1,
    seed: 1,
  };
  console.log(`backend ${tf.getBackend()}, batch ${batch}, vocabulary ${base.vocabularySize}, median of ${repeats}`);
  console.log('| context | dModel | heads | layers | ffDim | dropout | parameters | ms/step | chars/s |');
  console.log('|---|---|---|---|---|---|---|---|---|');

  const grid: CharTransformerOptions[] = [];
  for (const contextLength of [64, 128]) {
    for (const dModel of [64, 96, 128]) {
      for (const layers of [2, 3]) {
        grid.push({ ...base, contextLength, dModel, heads: dModel / 32, layers, ffDim: 4 * dModel });
      }
    }
  }
  // Variants of the smallest model: head count, no dropout, and a shorter context.
  grid.push({ ...base, heads: 1 }, { ...base, heads: 4 }, { ...base, dropout: 0 }, { ...base, contextLength: 32 });

  for (const options of grid) {
    const ms = timeStep(options, batch, repeats, random);
    const charsPerSecond = Math.round((batch * options.contextLength * 1000) / ms);
    console.log(
      `| ${options.contextLength} | ${options.dModel} | ${options.heads} | ${options.layers} | ${options.ffDim} | ` +
        `${options.dropout} | ${parameterCount(options)} | ${ms.toFixed(0)} | ${charsPerSecond} |`,
    );
  }
}

/** Brown text split by file into training and held-out text, and the character vocabulary of the training text. */
function loadText(limitFiles: number) {
  const files = readCorpus(resolveCorpusFolder('brown'), limitFiles);
  const trainLines: string[] = [];
  const heldOutLines: string[] = [];
  files.forEach((file, index) => {
    const lines = file.sentences.map((sentence) => sentence.words.join(' '));
    ((index + 1) % 10 === 0 ? heldOutLines : trainLines).push(...lines);
  });
  const train = trainLines.join('\n');
  const heldOut = heldOutLines.join('\n');
  // Id 0 is for characters absent from the training text.
  const characters = [...new Set(train)].sort();
  const idOf = new Map(characters.map((character, index) => [character, index + 1]));
  const encode = (text: string) => Int32Array.from(text, (character) => idOf.get(character) ?? 0);
  return { train: encode(train), heldOut: encode(heldOut), vocabularySize: characters.length + 1 };
}

/** Copies windows of `time + 1` ids starting at `starts` into inputs and next-character targets. */
function windows(text: Int32Array, starts: number[], time: number) {
  const tokens = new Int32Array(starts.length * time);
  const targets = new Int32Array(starts.length * time);
  starts.forEach((start, row) => {
    tokens.set(text.subarray(start, start + time), row * time);
    targets.set(text.subarray(start + 1, start + time + 1), row * time);
  });
  return { tokens, targets };
}

/** Returns the held-out mean loss per character (nats) over `batches` fixed, evenly spaced windows. */
function heldOutLoss(model: CharTransformer, text: Int32Array, batch: number, time: number, batches: number): number {
  const count = batch * batches;
  const stride = Math.floor((text.length - time - 1) / count);
  let total = 0;
  for (let b = 0; b < batches; b++) {
    const starts = Array.from({ length: batch }, (_, row) => (b * batch + row) * stride);
    const { tokens, targets } = windows(text, starts, time);
    const loss = tf.tidy(() => {
      const logits = model.forward({ tokens: tf.tensor2d(tokens, [batch, time], 'int32') }, false);
      return summedLoss(logits, targets);
    });
    total += loss.dataSync()[0];
    loss.dispose();
  }
  return total / (count * time);
}

function runTraining(): void {
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  const batch = Number(values.batch);
  const time = Number(values.context);
  const steps = Number(values.steps);
  const evalEvery = Number(values['eval-every']);
  const text = loadText(Number(values['limit-files']));
  console.log(
    `train ${text.train.length} chars, held-out ${text.heldOut.length} chars, vocabulary ${text.vocabularySize}, ` +
      `loaded in ${seconds().toFixed(1)} s`,
  );

  const options: CharTransformerOptions = {
    vocabularySize: text.vocabularySize,
    contextLength: time,
    dModel: Number(values['d-model']),
    heads: Number(values.heads),
    layers: Number(values.layers),
    ffDim: Number(values['ff-dim']),
    dropout: Number(values.dropout),
    seed: Number(values.seed),
  };
  const model = new CharTransformer(options);
  const specs = model.variables.map((entry) => ({ name: entry.name, shape: entry.variable.shape, decay: entry.decay }));
  const optimizerConfig: OptimizerConfig = {
    lr: Number(values.lr),
    beta1: 0.9,
    beta2: 0.99,
    eps: 1e-8,
    weightDecay: 0.01,
    warmupSteps: Number(values.warmup),
    minLrRatio: 0.1,
    clipNorm: 1,
    shardState: false,
  };
  const optimizer = new AdamW(specs, optimizerConfig, steps);
  const sizes = model.variables.map((entry) => entry.variable.size);
  const parameters = new Float32Array(sizes.reduce((sum, size) => sum + size, 0));
  const gradients = new Float32Array(parameters.length);
  let offset = 0;
  for (const entry of model.variables) {
    parameters.set(entry.variable.dataSync() as Float32Array, offset);
    offset += entry.variable.size;
  }
  console.log(`options ${JSON.stringify(options)}, ${parameters.length} parameters, AdamW ${JSON.stringify(optimizerConfig)}`);
  console.log('| step | seconds | train loss | held-out loss | held-out perplexity |');
  console.log('|---|---|---|---|---|');

  const random = new SeededRandom(options.seed + 1);
  const evalBatches = 8;
  let recentLoss = 0;
  let recentSteps = 0;
  let stepSeconds = 0;
  for (let step = 1; step <= steps; step++) {
    const stepStart = performance.now();
    const starts = Array.from({ length: batch }, () => random.nextInt(text.train.length - time - 1));
    const { tokens, targets } = windows(text.train, starts, time);
    const result = trainStep(model, tokens, targets, batch, time);

    // The gradient of the mean loss per character, as a worker gets after dividing the reduced sum.
    offset = 0;
    result.gradients.forEach((values, index) => {
      gradients.set(values, offset);
      offset += sizes[index];
    });
    const scale = 1 / (batch * time);
    for (let i = 0; i < gradients.length; i++) {
      gradients[i] *= scale;
    }
    optimizer.step(parameters, gradients);
    offset = 0;
    model.variables.forEach((entry, index) => {
      const updated = tf.tensor(parameters.subarray(offset, offset + sizes[index]), entry.variable.shape);
      entry.variable.assign(updated);
      updated.dispose();
      offset += sizes[index];
    });
    stepSeconds += (performance.now() - stepStart) / 1000;
    recentLoss += result.loss * scale;
    recentSteps += 1;

    if (step % evalEvery === 0 || step === steps) {
      const loss = heldOutLoss(model, text.heldOut, batch, time, evalBatches);
      console.log(
        `| ${step} | ${seconds().toFixed(0)} | ${(recentLoss / recentSteps).toFixed(3)} | ${loss.toFixed(3)} | ` +
          `${Math.exp(loss).toFixed(2)} |`,
      );
      recentLoss = 0;
      recentSteps = 0;
    }
  }
  console.log(`mean training step ${((stepSeconds / steps) * 1000).toFixed(0)} ms (forward, backward, AdamW, assign)`);
  model.dispose();
}

async function main(): Promise<void> {
  await tf.setBackend(values.backend as string);
  await tf.ready();
  const mode = positionals[0] ?? 'timing';
  if (mode === 'timing') {
    runTiming();
  } else if (mode === 'train') {
    runTraining();
  } else {
    throw new Error(`unknown mode "${mode}"; expected "timing" or "train"`);
  }
}

await main();
