/**
 * A decoder-only transformer over character ids that returns next-character logits at every position.
 *
 * The input is the sum of token embeddings (a one-hot product) and learned position embeddings. `layers`
 * pre-norm blocks follow, each adding causal multi-head self-attention and then a ReLU feed-forward layer to the
 * residual stream. A final layer norm and an output projection with its own kernel and bias (not tied to the
 * token embedding) give the logits. When training, dropout applies to the embedding sum and to the output of
 * every attention and feed-forward layer before the residual add. Attention probabilities get no dropout.
 *
 * The whole forward pass is differentiable with `tf.variableGrads` on the cpu and wasm backends: no op in it
 * lacks a gradient on either, and matrix-product gradients follow the backend active at each call.
 */
import * as tf from '@tensorflow/tfjs';

import { mixSeed } from '../random.js';
import { createBatchMatMul, createDense, createMatMul, preferredStrategy } from './fast-matmul.js';
import type { BatchMatMul, Dense, MatMul2D, MatMulStrategy } from './fast-matmul.js';
import { addToEveryRow, causalKeyBias, embedRows } from './char-transformer-ops.js';
import {
  CHAR_PARAMETER_NAMES,
  charTransformerParameters,
  type CharTransformerOptions,
} from './char-transformer-params.js';
import { createLayerNorm, type LayerNorm } from './tagger-ops.js';

export type { CharTransformerOptions } from './char-transformer-params.js';

/** A named trainable tensor. */
export interface NamedVariable {
  /** Unique name such as `block0/attention/query/kernel`. */
  name: string;
  variable: tf.Variable;
  /** False for embeddings, biases and norm gains, which AdamW should leave undecayed. */
  decay: boolean;
}

/** The kernels of one matrix-product strategy. */
interface Kernels {
  strategy: MatMulStrategy;
  dense: Dense;
  matMul: MatMul2D;
  batchMatMul: BatchMatMul;
  layerNorm: LayerNorm;
}

/** Per-call values shared by every block. */
interface ForwardContext {
  kernels: Kernels;
  batch: number;
  time: number;
  /** [1, time, time] additive causal mask. */
  keyBias: tf.Tensor3D;
  training: boolean;
}

/** A decoder-only character language model whose `forward` is its whole differentiable path. */
export class CharTransformer {
  /** Every parameter in a fixed order that depends only on the options. */
  readonly variables: NamedVariable[];
  readonly options: CharTransformerOptions;

  private readonly byName: Map<string, tf.Variable>;
  private readonly kernelsByStrategy = new Map<MatMulStrategy, Kernels>();
  /** Count of dropout masks drawn so far, mixed into the seed of each new mask so that masks differ between calls. */
  private dropoutDraws = 0;

  /** Creates the parameters from `options.seed`. Throws a ConfigError when an option is invalid. */
  constructor(options: CharTransformerOptions) {
    this.options = { ...options };
    this.variables = charTransformerParameters(this.options).map((entry) => ({
      name: entry.spec.name,
      // Variables stay unnamed in tfjs because tfjs names are global to the engine and two models may coexist.
      variable: tf.tidy(() => tf.variable(tf.tensor(entry.initialise(), entry.spec.shape), true)),
      decay: entry.spec.decay,
    }));
    this.byName = new Map(this.variables.map((entry) => [entry.name, entry.variable]));
  }

  /**
   * Returns logits float32 [batch, time, vocabularySize] for `tokens`, int32 [batch, time] with
   * 1 <= time <= contextLength and values in [0, vocabularySize). Position t depends only on positions <= t.
   * Dropout applies only when `training` is true. Throws when `tokens` has the wrong dtype, shape or values.
   */
  forward(inputs: { tokens: tf.Tensor }, training: boolean): tf.Tensor {
    const tokens = inputs.tokens;
    const ids = this.checkTokens(tokens);
    const [batch, time] = tokens.shape as [number, number];
    const { dModel, vocabularySize, layers } = this.options;
    const kernels = this.kernels(preferredStrategy());

    return tf.tidy(() => {
      const context: ForwardContext = { kernels, batch, time, keyBias: causalKeyBias(time), training };

      const embedded = embedRows(ids, this.weight2(CHAR_PARAMETER_NAMES.token), kernels.strategy);
      let positions = this.weight2(CHAR_PARAMETER_NAMES.position);
      if (time < this.options.contextLength) {
        positions = tf.slice(positions, [0, 0], [time, dModel]);
      }
      // Each sequence is one row of [batch, time * dModel], so the position table is a single broadcast row.
      const summed = addToEveryRow(
        tf.reshape(embedded, [batch, time * dModel]),
        tf.reshape(positions, [1, time * dModel]),
        kernels.strategy,
      );
      let hidden = this.dropout(tf.reshape(summed, [batch * time, dModel]), context);

      for (let block = 0; block < layers; block++) {
        hidden = this.block(hidden, `block${block}`, context);
      }

      const normed = this.norm(hidden, 'final/norm', kernels);
      const logits = kernels.dense(
        normed,
        this.weight2(CHAR_PARAMETER_NAMES.outputKernel),
        this.weight1(CHAR_PARAMETER_NAMES.outputBias),
      );
      return tf.reshape(logits, [batch, time, vocabularySize]);
    });
  }

  /** Disposes every variable. */
  dispose(): void {
    tf.dispose(this.variables.map((entry) => entry.variable));
  }

  /**
   * Returns the ids of `tokens`, and throws unless it is int32 [batch, time] with 1 <= time <= contextLength and
   * every id in [0, vocabularySize).
   */
  private checkTokens(tokens: tf.Tensor): Int32Array {
    const { contextLength, vocabularySize } = this.options;
    if (tokens.dtype !== 'int32' || tokens.rank !== 2) {
      throw new Error(
        `tokens must be an int32 tensor of shape [batch, time] (got ${tokens.dtype} [${tokens.shape.join(', ')}]); ` +
          "build it with tf.tensor2d(ids, [batch, time], 'int32')",
      );
    }
    const [batch, time] = tokens.shape as [number, number];
    if (batch < 1 || time < 1 || time > contextLength) {
      throw new Error(
        `tokens shape [${batch}, ${time}] is invalid: expected batch >= 1 and 1 <= time <= contextLength ` +
          `(${contextLength}); cut sequences to at most contextLength characters`,
      );
    }
    // The one-hot embedding is built from these ids in JavaScript, and an id out of range would select nothing.
    const ids = tokens.dataSync() as Int32Array;
    for (let i = 0; i < ids.length; i++) {
      if (!(ids[i] >= 0 && ids[i] < vocabularySize)) {
        throw new Error(
          `token id ${ids[i]} at flat index ${i} is outside [0, ${vocabularySize}); ` +
            'encode characters with the same vocabulary the model was built for',
        );
      }
    }
    return ids;
  }

  /** Returns the kernels of `strategy`, created on first use. */
  private kernels(strategy: MatMulStrategy): Kernels {
    let kernels = this.kernelsByStrategy.get(strategy);
    if (kernels === undefined) {
      kernels = {
        strategy,
        dense: createDense(strategy),
        matMul: createMatMul(strategy),
        batchMatMul: createBatchMatMul(strategy),
        layerNorm: createLayerNorm(strategy),
      };
      this.kernelsByStrategy.set(strategy, kernels);
    }
    return kernels;
  }

  /** Runs one pre-norm block on the residual stream `hidden` [batch * time, dModel]. */
  private block(hidden: tf.Tensor2D, prefix: string, context: ForwardContext): tf.Tensor2D {
    const { kernels } = context;
    const attentionInput = this.norm(hidden, `${prefix}/attention/norm`, kernels);
    const attention = this.attention(attentionInput, `${prefix}/attention`, context);
    const afterAttention = tf.add(hidden, this.dropout(attention, context)) as tf.Tensor2D;

    const feedForwardInput = this.norm(afterAttention, `${prefix}/feedforward/norm`, kernels);
    const expanded = tf.relu(this.affine(feedForwardInput, `${prefix}/feedforward/hidden`, kernels));
    const feedForward = this.affine(expanded, `${prefix}/feedforward/output`, kernels);
    return tf.add(afterAttention, this.dropout(feedForward, context)) as tf.Tensor2D;
  }

  /**
   * Returns causal multi-head self-attention of `x` [batch * time, dModel], projected back to dModel.
   * Each head slices its columns out of the shared kernels, so the activations stay 2-D and 3-D and need no
   * 4-D transpose to split them into heads.
   */
  private attention(x: tf.Tensor2D, prefix: string, context: ForwardContext): tf.Tensor2D {
    const { kernels, batch, time } = context;
    const { dModel, heads } = this.options;
    const headDim = dModel / heads;
    const scale = tf.scalar(1 / Math.sqrt(headDim));
    const toSequences = (rows: tf.Tensor2D) => tf.reshape(rows, [batch, time, headDim]) as tf.Tensor3D;

    const headProjection = (projection: string, head: number): tf.Tensor3D => {
      const kernel = this.weight2(`${prefix}/${projection}/kernel`);
      const bias = this.weight1(`${prefix}/${projection}/bias`);
      const headKernel = heads === 1 ? kernel : tf.slice(kernel, [0, head * headDim], [dModel, headDim]);
      const headBias = heads === 1 ? bias : tf.slice(bias, [head * headDim], [headDim]);
      return toSequences(kernels.dense(x, headKernel as tf.Tensor2D, headBias as tf.Tensor1D));
    };

    const outputKernel = this.weight2(`${prefix}/output/kernel`);
    let output: tf.Tensor2D | undefined;
    for (let head = 0; head < heads; head++) {
      const query = tf.mul(headProjection('query', head), scale) as tf.Tensor3D;
      const key = headProjection('key', head);
      const value = headProjection('value', head);
      const scores = tf.add(kernels.batchMatMul(query, key, true), context.keyBias) as tf.Tensor3D;
      const mixed = kernels.batchMatMul(tf.softmax(scores) as tf.Tensor3D, value, false);
      const mixedRows = tf.reshape(mixed, [batch * time, headDim]) as tf.Tensor2D;

      const headOutputKernel =
        heads === 1 ? outputKernel : (tf.slice(outputKernel, [head * headDim, 0], [headDim, dModel]) as tf.Tensor2D);
      // The output bias rides on head 0's product, which avoids a separate broadcast add and its column sum.
      const projected =
        head === 0
          ? kernels.dense(mixedRows, headOutputKernel, this.weight1(`${prefix}/output/bias`))
          : kernels.matMul(mixedRows, headOutputKernel);
      output = output === undefined ? projected : (tf.add(output, projected) as tf.Tensor2D);
    }
    return output as tf.Tensor2D;
  }

  /** Returns `x` with dropout applied when training and the rate is positive, otherwise `x` itself. */
  private dropout(x: tf.Tensor2D, context: ForwardContext): tf.Tensor2D {
    const rate = this.options.dropout;
    if (!context.training || rate === 0) {
      return x;
    }
    this.dropoutDraws += 1;
    // NOTE: the seed does not depend on the rank, so every rank draws the same masks at the same step.
    return tf.dropout(x, rate, undefined, mixSeed(this.options.seed, this.dropoutDraws)) as tf.Tensor2D;
  }

  private norm(x: tf.Tensor2D, prefix: string, kernels: Kernels): tf.Tensor2D {
    return kernels.layerNorm(x, this.weight1(`${prefix}/gain`), this.weight1(`${prefix}/bias`));
  }

  private affine(x: tf.Tensor2D, prefix: string, kernels: Kernels): tf.Tensor2D {
    return kernels.dense(x, this.weight2(`${prefix}/kernel`), this.weight1(`${prefix}/bias`));
  }

  private weight2(name: string): tf.Tensor2D {
    return this.weight(name) as tf.Tensor as tf.Tensor2D;
  }

  private weight1(name: string): tf.Tensor1D {
    return this.weight(name) as tf.Tensor as tf.Tensor1D;
  }

  private weight(name: string): tf.Variable {
    const variable = this.byName.get(name);
    if (variable === undefined) {
      throw new Error(`char transformer parameter "${name}" does not exist; expected one of the names in variables`);
    }
    return variable;
  }
}
