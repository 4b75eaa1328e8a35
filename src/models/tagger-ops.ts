/**
 * Layer normalisation and masked cross-entropy for the tagger, each with a hand-written gradient that takes
 * fewer tfjs kernels than differentiating the forward ops one by one.
 */
import * as tf from '@tensorflow/tfjs';

import { columnSums, customGradient, type MatMulStrategy } from './fast-matmul.js';

/** Variance offset of layer normalisation. */
const LAYER_NORM_EPSILON = 1e-5;

/** Layer normalisation over the last axis of `x` [rows, width], with gain and bias of shape [width]. */
export type LayerNorm = (x: tf.Tensor2D, gain: tf.Tensor1D, bias: tf.Tensor1D) => tf.Tensor2D;

/**
 * Returns a layer normalisation whose gradient is, with x̂ the normalised input and r = 1 / std:
 * dgain = Σrows dy·x̂, dbias = Σrows dy, dx = r · (g − mean(g) − x̂ · mean(g·x̂)) where g = dy·gain.
 */
export function createLayerNorm(strategy: MatMulStrategy): LayerNorm {
  const layerNorm = customGradient(([x, gain, bias], save) => {
    const mean = tf.mean(x, -1, true);
    const centred = tf.sub(x, mean);
    const variance = tf.mean(tf.square(centred), -1, true);
    const inverseStd = tf.rsqrt(tf.add(variance, LAYER_NORM_EPSILON));
    const normalised = tf.mul(centred, inverseStd);
    save([normalised, inverseStd, gain]);

    return {
      value: tf.add(tf.mul(normalised, gain), bias),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [savedNormalised, savedInverseStd, savedGain] = saved;
        const dyMatrix = dy as tf.Tensor2D;
        const gainGradient = columnSums(tf.mul(dyMatrix, savedNormalised) as tf.Tensor2D, strategy);
        const biasGradient = columnSums(dyMatrix, strategy);

        const scaled = tf.mul(dyMatrix, savedGain);
        const meanScaled = tf.mean(scaled, -1, true);
        const meanProjection = tf.mean(tf.mul(scaled, savedNormalised), -1, true);
        const inner = tf.sub(tf.sub(scaled, meanScaled), tf.mul(savedNormalised, meanProjection));
        return [tf.mul(inner, savedInverseStd), gainGradient, biasGradient];
      },
    };
  });
  return layerNorm as LayerNorm;
}

/**
 * Returns the summed softmax cross-entropy of `logits` [rows, classes] against `targets`, a one-hot matrix of
 * the same shape whose all-zero rows (padding) add nothing to the loss and get a zero gradient.
 *
 * `rowMask` [rows, 1] is 1 for real rows and 0 for padding. The gradient with respect to the logits is
 * (softmax · rowMask − targets) · dy; `targets` and `rowMask` are constants and get no gradient.
 */
export function maskedCrossEntropy(logits: tf.Tensor2D, targets: tf.Tensor2D, rowMask: tf.Tensor2D): tf.Scalar {
  const loss = customGradient(([input], save) => {
    const logProbabilities = tf.logSoftmax(input);
    // Saving the constants too keeps them alive when the caller's tidy scope ends before backpropagation.
    save([logProbabilities, targets, rowMask]);
    return {
      value: tf.neg(tf.sum(tf.mul(targets, logProbabilities))),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [savedLogProbabilities, savedTargets, savedRowMask] = saved;
        const probabilities = tf.mul(tf.exp(savedLogProbabilities), savedRowMask);
        return tf.mul(tf.sub(probabilities, savedTargets), dy);
      },
    };
  });
  return loss(logits) as tf.Scalar;
}
