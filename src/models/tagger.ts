/**
 * A transformer encoder that tags every token of a sentence.
 *
 * Input: each token's word, suffix (one row per suffix length), shape and learned position embeddings are
 * summed. The sums of the token and of `contextWindow` neighbours on each side are concatenated and projected
 * to dModel, which gives every token its local context before attention. Then `layers` pre-LN blocks of
 * multi-head self-attention (padded keys get an additive bias of -1e9) and a ReLU feed-forward block, a final
 * layer norm, and a per-token softmax over the classes. The loss is the summed cross-entropy over real tokens.
 *
 * The input layer runs in JavaScript outside the gradient tape (see tagger-embedding.ts): the tape returns the
 * gradient with respect to the window input, and JavaScript adds it into the embedding rows that were read.
 */
import * as tf from '@tensorflow/tfjs';

import type { GradientResult, Model, ParameterSpec } from './model.js';
import type { TaggerBatch } from './tagger-batch.js';
import { createBatchMatMul, createDense, createMatMul, preferredStrategy } from './fast-matmul.js';
import type { BatchMatMul, Dense, MatMul2D, MatMulStrategy } from './fast-matmul.js';
import { createLayerNorm, maskedCrossEntropy, type LayerNorm } from './tagger-ops.js';
import {
  scatterEmbeddingGradient,
  sumEmbeddings,
  neighbourPosition,
  windowGradient,
  windowInput,
  type EmbeddingOffsets,
  type EmbeddingTables,
} from './tagger-embedding.js';
import { EMBEDDING_NAMES, taggerParameters, type TaggerConfig } from './tagger-params.js';

export type { TaggerConfig } from './tagger-params.js';

/** Additive attention bias of padded keys; exp() of it underflows to exactly 0 in float32. */
const MASKED_KEY_BIAS = -1e9;

/** Per-call constants of one batch. */
interface BatchTensors {
  /** [size, 1, length]: 0 for real keys, MASKED_KEY_BIAS for padding. */
  keyBias: tf.Tensor3D;
  /** [positions, classes] one-hot gold classes; all zero at padding. */
  targets: tf.Tensor2D;
  /** [positions, 1]: 1 for real tokens, 0 for padding. */
  rowMask: tf.Tensor2D;
}

/** The kernels the forward pass uses, chosen for the backend that was active at construction. */
interface Kernels {
  dense: Dense;
  matMul: MatMul2D;
  batchMatMul: BatchMatMul;
  layerNorm: LayerNorm;
}

/** A transformer token tagger that implements the data-parallel `Model` contract. */
export class TransformerTagger implements Model<TaggerBatch> {
  readonly specs: readonly ParameterSpec[];
  readonly variables: readonly tf.Variable[];
  /** Number of scalar parameters, the length of a full gradient buffer. */
  readonly parameterCount: number;
  readonly config: TaggerConfig;

  /** Start of each parameter in the flat gradient buffer, in specs order. */
  private readonly offsets: number[];
  private readonly byName: Map<string, tf.Variable>;
  /** Indices (in specs order) of the parameters differentiated on the tape: everything but the embeddings. */
  private readonly tapeIndices: number[];
  /** Indices (in specs order) of the embedding tables, which the input layer reads in JavaScript. */
  private readonly embeddingIndices: number[];
  private readonly kernels: Kernels;
  /** The trainer's flat parameter values, kept current by the trainer; see `useHostValues`. */
  private hostValues: Float32Array | null = null;
  /** Copies of the embedding tables with the variable data they were read from. */
  private readonly tableCache = new Map<string, { dataId: object; values: Float32Array }>();

  /**
   * Creates the parameters from `config.seed`. `strategy` picks the matrix-product gradients; by default it
   * follows the active tfjs backend (see `preferredStrategy`).
   */
  constructor(config: TaggerConfig, strategy: MatMulStrategy = preferredStrategy()) {
    this.config = config;
    const entries = taggerParameters(config);
    this.specs = entries.map((entry) => entry.spec);
    // Variables stay unnamed: tfjs names are global to the engine, and two taggers may live in one process.
    this.variables = entries.map((entry) =>
      tf.tidy(() => tf.variable(tf.tensor(entry.initialise(), entry.spec.shape), true)),
    );
    this.byName = new Map(this.variables.map((variable, index) => [this.specs[index].name, variable]));

    this.offsets = [];
    let offset = 0;
    for (const spec of this.specs) {
      this.offsets.push(offset);
      offset += spec.shape.reduce((product, size) => product * size, 1);
    }
    this.parameterCount = offset;

    const embeddingNames = new Set<string>(Object.values(EMBEDDING_NAMES));
    this.tapeIndices = this.specs.flatMap((spec, index) => (embeddingNames.has(spec.name) ? [] : [index]));
    this.embeddingIndices = this.specs.flatMap((spec, index) => (embeddingNames.has(spec.name) ? [index] : []));

    this.kernels = {
      dense: createDense(strategy),
      matMul: createMatMul(strategy),
      batchMatMul: createBatchMatMul(strategy),
      layerNorm: createLayerNorm(strategy),
    };
  }

  /**
   * Runs forward and backward on `batch`, writes d(lossSum)/dθ into `gradients` in specs order and returns the
   * summed loss and the real-token count. Throws when `gradients` is shorter than `parameterCount`.
   */
  computeGradients(batch: TaggerBatch, gradients: Float32Array): GradientResult {
    if (gradients.length < this.parameterCount) {
      throw new Error(
        `gradient buffer has ${gradients.length} elements but the tagger has ${this.parameterCount} parameters; ` +
          'allocate a buffer of at least parameterCount elements',
      );
    }
    this.checkBatch(batch);

    const tapeVariables = this.tapeIndices.map((index) => this.variables[index]);
    const results = tf.tidy(() => {
      const constants = this.batchTensors(batch);
      const input = this.inputTensor(batch);
      const lossOf = (...inputs: tf.Tensor[]): tf.Scalar => {
        const weights = new Map<string, tf.Tensor>();
        this.tapeIndices.forEach((specIndex, i) => weights.set(this.specs[specIndex].name, inputs[i + 1]));
        const logits = this.logitsFrom(inputs[0] as tf.Tensor2D, batch, constants, (name) => weights.get(name)!);
        return maskedCrossEntropy(logits, constants.targets, constants.rowMask);
      };
      const { value, grads } = tf.valueAndGrads(lossOf)([input, ...tapeVariables]);
      return [value, ...grads];
    });

    // Reading after the tidy avoids copying typed arrays out of a tidy scope, which is slow on WASM.
    const lossSum = results[0].dataSync()[0];
    this.scatterInputGradient(batch, results[1].dataSync() as Float32Array, gradients);
    this.tapeIndices.forEach((specIndex, i) => {
      gradients.set(results[i + 2].dataSync() as Float32Array, this.offsets[specIndex]);
    });
    tf.dispose(results);
    return { lossSum, count: batch.tokenCount };
  }

  /** Returns the arg-max class of every position of `batch`, -1 at padding. */
  predict(batch: TaggerBatch): Int32Array {
    this.checkBatch(batch);
    const classes = tf.tidy(() => {
      const constants = this.batchTensors(batch);
      const logits = this.logitsFrom(this.inputTensor(batch), batch, constants, (name) => this.parameter(name));
      return tf.argMax(logits, -1);
    });
    const predicted = new Int32Array(classes.dataSync());
    classes.dispose();
    for (let i = 0; i < predicted.length; i++) {
      if (batch.labels[i] < 0) {
        predicted[i] = -1;
      }
    }
    return predicted;
  }

  /**
   * Returns the summed loss of `batch` as a scalar computed entirely from the variables, embedding lookups
   * included. Under `tf.variableGrads` it yields every gradient on backends that differentiate `tf.gather`
   * (cpu, not wasm); tests compare `computeGradients` with it.
   */
  lossTensor(batch: TaggerBatch): tf.Scalar {
    this.checkBatch(batch);
    return tf.tidy(() => {
      const constants = this.batchTensors(batch);
      const input = this.windowOnTape(batch, this.embedOnTape(batch));
      const logits = this.logitsFrom(input, batch, constants, (name) => this.parameter(name));
      return maskedCrossEntropy(logits, constants.targets, constants.rowMask);
    });
  }

  /** Disposes every variable. */
  dispose(): void {
    this.tableCache.clear();
    tf.dispose(this.variables as tf.Variable[]);
  }

  /** Throws when a batch is longer than the position table or its arrays do not match its size. */
  private checkBatch(batch: TaggerBatch): void {
    if (batch.length > this.config.maxLength) {
      throw new Error(
        `batch length ${batch.length} exceeds the ${this.config.maxLength} learned positions; ` +
          'split sentences with data.maxSentenceTokens or build the tagger with a larger maxLength',
      );
    }
    if (batch.wordIds.length !== batch.size * batch.length || batch.suffixCount !== this.config.suffixCount) {
      throw new Error(
        `batch arrays do not match size ${batch.size} x length ${batch.length} with ${this.config.suffixCount} ` +
          'suffix ids per token; build batches with makeTaggerBatch',
      );
    }
  }

  private parameter(name: string): tf.Variable {
    const variable = this.byName.get(name);
    if (variable === undefined) {
      throw new Error(`tagger parameter "${name}" does not exist; expected one of the names in specs`);
    }
    return variable;
  }

  /** Builds the per-batch constants: key bias, one-hot targets and the real-token mask. */
  private batchTensors(batch: TaggerBatch): BatchTensors {
    const positions = batch.size * batch.length;
    const classes = this.config.classCount;
    const keyBias = new Float32Array(positions);
    const targets = new Float32Array(positions * classes);
    const rowMask = new Float32Array(positions);
    for (let i = 0; i < positions; i++) {
      const label = batch.labels[i];
      if (label < 0) {
        keyBias[i] = MASKED_KEY_BIAS;
      } else {
        targets[i * classes + label] = 1;
        rowMask[i] = 1;
      }
    }
    return {
      keyBias: tf.tensor3d(keyBias, [batch.size, 1, batch.length]),
      targets: tf.tensor2d(targets, [positions, classes]),
      rowMask: tf.tensor2d(rowMask, [positions, 1]),
    };
  }

  /**
   * Returns the summed embeddings [positions, dModel] built with `tf.gather`, which is differentiable on the
   * cpu backend but not on wasm.
   */
  private embedOnTape(batch: TaggerBatch): tf.Tensor2D {
    const positions = batch.size * batch.length;
    const positionIds = new Int32Array(positions);
    for (let i = 0; i < positions; i++) {
      positionIds[i] = i % batch.length;
    }

    let sum = tf.add(
      tf.gather(this.parameter(EMBEDDING_NAMES.word), tf.tensor1d(batch.wordIds, 'int32')),
      tf.gather(this.parameter(EMBEDDING_NAMES.shape), tf.tensor1d(batch.shapeIds, 'int32')),
    );
    sum = tf.add(sum, tf.gather(this.parameter(EMBEDDING_NAMES.position), tf.tensor1d(positionIds, 'int32')));
    const suffixTable = this.parameter(EMBEDDING_NAMES.suffix);
    for (let s = 0; s < batch.suffixCount; s++) {
      const ids = new Int32Array(positions);
      for (let i = 0; i < positions; i++) {
        ids[i] = batch.suffixIds[i * batch.suffixCount + s];
      }
      sum = tf.add(sum, tf.gather(suffixTable, tf.tensor1d(ids, 'int32')));
    }
    return sum as tf.Tensor2D;
  }

  /** Returns the encoder input [positions, (2 * contextWindow + 1) * dModel], computed in JavaScript. */
  private inputTensor(batch: TaggerBatch): tf.Tensor2D {
    const { dModel, contextWindow } = this.config;
    const tables: EmbeddingTables = {
      word: this.tableValues(EMBEDDING_NAMES.word),
      suffix: this.tableValues(EMBEDDING_NAMES.suffix),
      shape: this.tableValues(EMBEDDING_NAMES.shape),
      position: this.tableValues(EMBEDDING_NAMES.position),
    };
    const embedded = sumEmbeddings(batch, tables, dModel);
    const input = contextWindow > 0 ? windowInput(batch, embedded, dModel, contextWindow) : embedded;
    return tf.tensor2d(input, [batch.size * batch.length, (2 * contextWindow + 1) * dModel]);
  }

  /** Writes the embedding-table gradients that follow from the gradient of the encoder input. */
  private scatterInputGradient(batch: TaggerBatch, inputGradient: Float32Array, gradients: Float32Array): void {
    const { dModel, contextWindow } = this.config;
    const embeddedGradient =
      contextWindow > 0 ? windowGradient(batch, inputGradient, dModel, contextWindow) : inputGradient;
    const offsets = {} as EmbeddingOffsets;
    const sizes = {} as EmbeddingOffsets;
    for (const table of Object.keys(EMBEDDING_NAMES) as Array<keyof EmbeddingTables>) {
      const index = this.specs.findIndex((spec) => spec.name === EMBEDDING_NAMES[table]);
      offsets[table] = this.offsets[index];
      sizes[table] = this.specs[index].shape[0] * dModel;
    }
    scatterEmbeddingGradient(batch, embeddedGradient, gradients, offsets, sizes, dModel);
  }

  /**
   * Reads the embedding tables from views of `values` from now on, and returns their indices: with host
   * values, only `lossTensor` reads their variables. See `Model.useHostValues`.
   */
  useHostValues(values: Float32Array): readonly number[] {
    if (values.length < this.parameterCount) {
      throw new Error(
        `host parameter array has ${values.length} values but the tagger has ${this.parameterCount}; pass the flat parameters in specs order`,
      );
    }
    this.hostValues = values;
    return this.embeddingIndices;
  }

  /**
   * Returns the values of an embedding table: a view of the host values when the trainer provides them, else a
   * copy of the variable. The copy is read again only when the variable got new data (assign() replaces a
   * variable's dataId), so evaluation reads each table once.
   */
  private tableValues(name: string): Float32Array {
    if (this.hostValues !== null) {
      const index = this.specs.findIndex((spec) => spec.name === name);
      const start = this.offsets[index] as number;
      const size = (this.specs[index] as ParameterSpec).shape.reduce((product, length) => product * length, 1);
      return this.hostValues.subarray(start, start + size);
    }
    const variable = this.parameter(name);
    const cached = this.tableCache.get(name);
    if (cached !== undefined && cached.dataId === variable.dataId) {
      return cached.values;
    }
    const values = variable.dataSync() as Float32Array;
    this.tableCache.set(name, { dataId: variable.dataId, values });
    return values;
  }

  /** Builds the window input of `inputTensor` with differentiable ops (`tf.gather` from a zero-padded copy). */
  private windowOnTape(batch: TaggerBatch, embedded: tf.Tensor2D): tf.Tensor2D {
    const window = this.config.contextWindow;
    if (window === 0) {
      return embedded;
    }
    const positions = batch.size * batch.length;
    const padded = tf.concat([embedded, tf.zeros([1, this.config.dModel])], 0);
    const blocks: tf.Tensor2D[] = [];
    for (let offset = -window; offset <= window; offset++) {
      const indices = new Int32Array(positions).fill(positions);
      for (let i = 0; i < positions; i++) {
        if (batch.labels[i] >= 0) {
          const source = neighbourPosition(batch, i, offset);
          indices[i] = source >= 0 ? source : positions;
        }
      }
      blocks.push(tf.gather(padded, tf.tensor1d(indices, 'int32')) as tf.Tensor2D);
    }
    return tf.concat(blocks, 1);
  }

  /** Runs the encoder and classifier on the encoder input, reading parameters through `weight`. */
  private logitsFrom(
    input: tf.Tensor2D,
    batch: TaggerBatch,
    constants: BatchTensors,
    weight: (name: string) => tf.Tensor,
  ): tf.Tensor2D {
    const { dense, matMul, batchMatMul, layerNorm } = this.kernels;
    const { dModel, heads } = this.config;
    const headDim = dModel / heads;
    const positions = batch.size * batch.length;
    const scale = tf.scalar(1 / Math.sqrt(headDim));
    const w2 = (name: string) => weight(name) as tf.Tensor2D;
    const w1 = (name: string) => weight(name) as tf.Tensor1D;
    const norm = (x: tf.Tensor2D, prefix: string) => layerNorm(x, w1(`${prefix}/gain`), w1(`${prefix}/bias`));
    const affine = (x: tf.Tensor2D, prefix: string) => dense(x, w2(`${prefix}/kernel`), w1(`${prefix}/bias`));
    const toBatch = (x: tf.Tensor2D) => tf.reshape(x, [batch.size, batch.length, headDim]) as tf.Tensor3D;

    let hidden = this.config.contextWindow > 0 ? affine(input, 'input/window') : input;
    for (let layer = 0; layer < this.config.layers; layer++) {
      const prefix = `layer${layer}`;
      const normed = norm(hidden, `${prefix}/attention/norm`);

      let attention: tf.Tensor2D | undefined;
      for (let head = 0; head < heads; head++) {
        const headPrefix = `${prefix}/attention/head${head}`;
        const query = tf.mul(toBatch(affine(normed, `${headPrefix}/query`)), scale) as tf.Tensor3D;
        const key = toBatch(affine(normed, `${headPrefix}/key`));
        const value = toBatch(affine(normed, `${headPrefix}/value`));
        const scores = tf.add(batchMatMul(query, key, true), constants.keyBias);
        const context = batchMatMul(tf.softmax(scores) as tf.Tensor3D, value, false);
        const contextRows = tf.reshape(context, [positions, headDim]) as tf.Tensor2D;
        // The output bias rides on head 0's product, which avoids a broadcast add and its slow column sum.
        const projected =
          head === 0
            ? dense(contextRows, w2(`${headPrefix}/output/kernel`), w1(`${prefix}/attention/output/bias`))
            : matMul(contextRows, w2(`${headPrefix}/output/kernel`));
        attention = attention === undefined ? projected : (tf.add(attention, projected) as tf.Tensor2D);
      }
      hidden = tf.add(hidden, attention!) as tf.Tensor2D;

      const feedForwardInput = norm(hidden, `${prefix}/feedforward/norm`);
      const expanded = tf.relu(affine(feedForwardInput, `${prefix}/feedforward/hidden`));
      hidden = tf.add(hidden, affine(expanded, `${prefix}/feedforward/output`)) as tf.Tensor2D;
    }

    return affine(norm(hidden, 'final/norm'), 'classifier');
  }
}
