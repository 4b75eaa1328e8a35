/**
 * Wraps a user's model (a tfjs-layers LayersModel, or named variables and a forward pass) and loss into the
 * Model interface that the data-parallel trainer drives: flat gradients of the summed loss, in a fixed order.
 */
import * as tf from '@tensorflow/tfjs';
import type { ArrayBatch, LossFunction, LossName, NamedVariable, VariableModel } from '../tasks/api.js';
import { RingtrainError } from '../errors.js';
import type { GradientResult, Model, ParameterSpec } from './model.js';

/** Result of evaluating one batch. */
export interface BatchEvaluation {
  /** Predicted and gold class per labelled position (-1 at padding); null when the task has no classes. */
  predictions: Int32Array | null;
  labels: Int32Array | null;
  lossSum: number;
  count: number;
}

/** Settings that compare the model's outputs to the labels. */
export interface TensorModelOptions {
  inputs?: readonly string[];
  labels: string;
  loss: LossName | LossFunction;
  classification: boolean;
}

/** Reports whether a model factory returned a tfjs-layers model rather than a VariableModel. */
function isLayersModel(model: unknown): model is tf.LayersModel {
  return model instanceof tf.LayersModel;
}

/**
 * A user's model in the form the trainer drives. Trainable weights are the parameters; the non-trainable weights of a
 * LayersModel (batch-normalisation statistics) are buffers, which rank 0 sends to every rank after each step.
 */
export class TensorModel implements Model<ArrayBatch> {
  readonly specs: ParameterSpec[];
  readonly variables: tf.Variable[];
  /** Non-trainable state that training may change; kept equal on every rank by copying rank 0's values. */
  readonly buffers: tf.Variable[];
  private readonly forward: (inputs: Record<string, tf.Tensor>, training: boolean) => tf.Tensor;
  private readonly disposeModel: () => void;

  constructor(
    model: tf.LayersModel | VariableModel,
    private readonly options: TensorModelOptions,
  ) {
    if (isLayersModel(model)) {
      const named: NamedVariable[] = model.trainableWeights.map((weight) => ({ name: weight.name, variable: weight.read() as tf.Variable }));
      this.specs = named.map((entry) => specOf(entry));
      this.variables = named.map((entry) => entry.variable);
      this.buffers = model.nonTrainableWeights.map((weight) => weight.read() as tf.Variable);
      this.forward = (inputs, training) => {
        const names = this.inputNames(inputs);
        const tensors = names.map((name) => inputs[name] as tf.Tensor);
        return model.apply(tensors.length === 1 ? (tensors[0] as tf.Tensor) : tensors, { training }) as tf.Tensor;
      };
      this.disposeModel = () => model.dispose();
    } else {
      if (!Array.isArray(model.variables) || typeof model.forward !== 'function') {
        throw new RingtrainError(
          'RINGTRAIN_ERR_CONFIG',
          'the task model must be a tf.LayersModel or an object with `variables` (named tf.Variables) and `forward(inputs, training)`',
        );
      }
      this.specs = model.variables.map((entry) => specOf(entry));
      this.variables = model.variables.map((entry) => entry.variable);
      this.buffers = [];
      this.forward = (inputs, training) => model.forward(inputs, training);
      this.disposeModel = () => model.dispose?.();
    }
    const seen = new Set<string>();
    for (const spec of this.specs) {
      if (seen.has(spec.name)) {
        throw new RingtrainError('RINGTRAIN_ERR_CONFIG', `the model has two parameters named '${spec.name}'; give every variable a unique name`);
      }
      seen.add(spec.name);
    }
  }

  /** Number of float32 values in all buffers together. */
  get bufferSize(): number {
    return this.buffers.reduce((sum, buffer) => sum + buffer.size, 0);
  }

  computeGradients(batch: ArrayBatch, gradients: Float32Array): GradientResult {
    let count = 0;
    const { value, grads } = tf.variableGrads(() => {
      const tensors = toTensors(batch);
      const outputs = this.forward(withoutLabels(tensors, this.options.labels), true);
      const loss = this.lossOf(outputs, tensors, batch, 'training');
      count = loss.count;
      return loss.sum;
    }, this.variables);
    const lossSum = value.dataSync()[0] as number;
    value.dispose();
    let offset = 0;
    for (const variable of this.variables) {
      const gradient = grads[variable.name];
      // A parameter that the loss does not reach gets no entry; its gradient is zero, as the caller filled it.
      if (gradient !== undefined) {
        gradients.set(gradient.dataSync() as Float32Array, offset);
        gradient.dispose();
      }
      offset += variable.size;
    }
    return { lossSum, count };
  }

  predict(batch: ArrayBatch): Int32Array {
    return this.evaluate(batch).predictions ?? new Int32Array(0);
  }

  /** Runs the model in inference mode and returns the summed loss and, for classification, the predictions. */
  evaluate(batch: ArrayBatch): BatchEvaluation {
    const tensors = toTensors(batch);
    let outputs: tf.Tensor | null = null;
    try {
      const result = tf.tidy(() => this.forward(withoutLabels(tensors, this.options.labels), false));
      outputs = result;
      let count = 0;
      // The tidy also frees the intermediate tensors of a custom loss.
      const sum = tf.tidy(() => {
        const loss = this.lossOf(result, tensors, batch, 'evaluation');
        count = loss.count;
        return loss.sum;
      });
      const lossSum = sum.dataSync()[0] as number;
      sum.dispose();
      let predictions: Int32Array | null = null;
      let labels: Int32Array | null = null;
      if (this.options.classification) {
        const predicted = tf.tidy(() => tf.argMax(result, -1));
        predictions = Int32Array.from(predicted.dataSync());
        predicted.dispose();
        labels = Int32Array.from(labelArray(batch, this.options.labels).data);
      }
      return { predictions, labels, lossSum, count };
    } finally {
      outputs?.dispose();
      for (const tensor of Object.values(tensors)) tensor.dispose();
    }
  }

  dispose(): void {
    this.disposeModel();
  }

  private inputNames(inputs: Record<string, tf.Tensor>): string[] {
    return this.options.inputs === undefined ? Object.keys(inputs) : [...this.options.inputs];
  }

  private lossOf(outputs: tf.Tensor, tensors: Record<string, tf.Tensor>, batch: ArrayBatch, phase: Phase): { sum: tf.Scalar; count: number } {
    const loss = this.options.loss;
    if (typeof loss === 'function') {
      const result = loss(outputs, tensors, batch);
      if (!(result.sum instanceof tf.Tensor) || !Number.isFinite(result.count)) {
        throw new RingtrainError('RINGTRAIN_ERR_CONFIG', 'a custom loss must return { sum: tf.Scalar, count: number } (the summed loss and its number of terms)');
      }
      return result;
    }
    const labels = labelArray(batch, this.options.labels);
    const labelTensor = tensors[this.options.labels] as tf.Tensor;
    if (loss === 'mean-squared-error') {
      if (labels.data.length !== outputs.size) {
        throw new RingtrainError(
          'RINGTRAIN_ERR_DATA',
          `the model returned ${outputs.size} outputs (shape [${outputs.shape.join(', ')}]) for ${labels.data.length} labels; mean-squared-error needs one label per output`,
        );
      }
      return { sum: tf.tidy(() => tf.sum(tf.squaredDifference(outputs, labelTensor.reshape(outputs.shape)))) as tf.Scalar, count: labels.data.length };
    }
    const classes = outputs.shape[outputs.shape.length - 1] as number;
    checkClassLabels(labels.data, classes, this.options.labels, phase);
    if (labels.data.length * classes !== outputs.size) {
      throw new RingtrainError(
        'RINGTRAIN_ERR_DATA',
        `the model returned outputs of shape [${outputs.shape.join(', ')}] for ${labels.data.length} labels; ${this.options.loss} needs one row of ${classes} scores per label`,
      );
    }
    let count = 0;
    for (const label of labels.data) if (label >= 0) count++;
    const sum = tf.tidy(() => {
      const flat = outputs.reshape([-1, classes]);
      // One-hot of a padding label (-1) is all zeros, so padding adds nothing to the sum.
      const oneHot = tf.oneHot(tf.cast(labelTensor, 'int32').reshape([-1]), classes);
      const logProbabilities = loss === 'softmax-cross-entropy' ? tf.logSoftmax(flat) : tf.log(tf.clipByValue(flat, 1e-7, 1));
      return tf.neg(tf.sum(tf.mul(oneHot, logProbabilities))) as tf.Scalar;
    });
    return { sum, count };
  }
}

/** Returns the parameter spec of a named variable: rank-1 tensors (biases, gains) are not decayed by default. */
function specOf(entry: NamedVariable): ParameterSpec {
  if (typeof entry.name !== 'string' || !(entry.variable instanceof tf.Variable)) {
    throw new RingtrainError('RINGTRAIN_ERR_CONFIG', 'every model variable must be { name: string, variable: tf.Variable }');
  }
  if (entry.variable.dtype !== 'float32') {
    throw new RingtrainError('RINGTRAIN_ERR_CONFIG', `model variable '${entry.name}' has dtype ${entry.variable.dtype}; trainable variables must be float32`);
  }
  return { name: entry.name, shape: [...entry.variable.shape], decay: entry.decay ?? entry.variable.shape.length >= 2 };
}

function toTensors(batch: ArrayBatch): Record<string, tf.Tensor> {
  const tensors: Record<string, tf.Tensor> = {};
  for (const [name, array] of Object.entries(batch)) {
    checkBatchArray(name, array);
    tensors[name] = tf.tensor(array.data, array.shape, array.data instanceof Int32Array ? 'int32' : 'float32');
  }
  return tensors;
}

/** Throws a RingtrainError naming the batch array when its data does not fill its shape. */
function checkBatchArray(name: string, array: unknown): void {
  const { data, shape } = (array ?? {}) as { data?: unknown; shape?: unknown };
  const problem = (text: string): never => {
    throw new RingtrainError('RINGTRAIN_ERR_DATA', `batch() returned array '${name}' ${text}; each array must be { data: Float32Array | Int32Array, shape: number[] } with data.length equal to the product of shape`);
  };
  if (!(data instanceof Float32Array) && !(data instanceof Int32Array)) problem(`whose data is not a Float32Array or Int32Array`);
  if (!Array.isArray(shape) || shape.some((size) => !Number.isSafeInteger(size) || size < 0)) problem(`whose shape ${JSON.stringify(shape)} is not a list of sizes`);
  const size = (shape as number[]).reduce((product, extent) => product * extent, 1);
  if ((data as Float32Array).length !== size) problem(`with ${(data as Float32Array).length} values for shape [${(shape as number[]).join(', ')}] (${size} values)`);
}

/** Whether a batch is being trained on or evaluated, for messages. */
type Phase = 'training' | 'evaluation';

/** Throws a RingtrainError naming the first label outside [-1, classes), which the one-hot encoding would drop. */
function checkClassLabels(labels: Float32Array | Int32Array, classes: number, name: string, phase: Phase): void {
  for (let index = 0; index < labels.length; index++) {
    const label = labels[index] as number;
    if (!(Number.isInteger(label) && label >= -1 && label < classes)) {
      const split = phase === 'training' ? "'train'" : "'eval'";
      throw new RingtrainError(
        'RINGTRAIN_ERR_DATA',
        `batch() of the ${split} split (${phase}) returned '${name}' value ${label} at position ${index} of this rank's batch, ` +
          `outside 0..${classes - 1} (the model has ${classes} outputs; -1 marks padding); ` +
          'class ids must count from 0, and the last layer needs one unit per class',
      );
    }
  }
}

function withoutLabels(tensors: Record<string, tf.Tensor>, labels: string): Record<string, tf.Tensor> {
  const inputs = { ...tensors };
  delete inputs[labels];
  return inputs;
}

function labelArray(batch: ArrayBatch, name: string): { data: Float32Array | Int32Array } {
  const labels = batch[name];
  if (labels === undefined) {
    throw new RingtrainError(
      'RINGTRAIN_ERR_DATA',
      `the batch has no '${name}' array (it has ${Object.keys(batch).join(', ')}); return the labels under that name or set the task's labels field`,
    );
  }
  return labels;
}
