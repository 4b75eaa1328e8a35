import type * as tf from '@tensorflow/tfjs';
import type { ModelContext } from '../tasks/api.js';

/**
 * Builds the classifier the built-in classification tasks share: dense(model.ffDim, relu), dropout
 * (model.dropout), dense(classes) logits. Initialisers are seeded from `config.seed` so runs repeat.
 */
export function denseClassifier({ tf, config, info }: ModelContext, inputSize: number): tf.LayersModel {
  const classCount = (info.classNames ?? []).length;
  const model = tf.sequential();
  model.add(
    tf.layers.dense({
      inputShape: [inputSize],
      units: config.model.ffDim,
      activation: 'relu',
      kernelInitializer: tf.initializers.glorotUniform({ seed: config.seed }),
      name: 'hidden',
    }),
  );
  // No seed here: a seeded dropout layer draws the same mask at every step.
  model.add(tf.layers.dropout({ rate: config.model.dropout, name: 'dropout' }));
  model.add(
    tf.layers.dense({
      units: classCount,
      kernelInitializer: tf.initializers.glorotUniform({ seed: config.seed + 1 }),
      name: 'logits',
    }),
  );
  return model;
}
