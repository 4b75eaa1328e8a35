import test from 'ava';

import { defaultConfig } from '../src/config/defaults.js';
import type { RunConfig } from '../src/config/types.js';
import { hasCode } from '../src/errors.js';
import type { ParameterSpec } from '../src/models/model.js';
import { samplerPositionAfterStep, type Checkpoint } from '../src/checkpoint/checkpoint.js';
import { checkCompatible } from '../src/checkpoint/compatibility.js';
import { CONFIG_SECTIONS, hashConfig } from '../src/checkpoint/config-hash.js';

const specs: ParameterSpec[] = [
  { name: 'embedding/table', shape: [10, 4], decay: true },
  { name: 'layer0/ffn/kernel', shape: [4, 8], decay: true },
  { name: 'layer0/ffn/bias', shape: [8], decay: false },
];

/** Builds a checkpoint after 30 steps of a 2-rank run with the default config and 12 batches per epoch. */
function makeCheckpoint(): Checkpoint {
  // 40 + 32 + 8 = 80 elements.
  return {
    specs,
    parameters: new Float32Array(80),
    optimizer: { step: 30, firstMoment: new Float32Array(80), secondMoment: new Float32Array(80) },
    totalSteps: 120,
    sampler: samplerPositionAfterStep(30, 12),
    seed: defaultConfig().seed,
    worldSize: 2,
    config: hashConfig(defaultConfig()),
    metadata: {},
  };
}

function configWith(change: (config: RunConfig) => void): RunConfig {
  const config = defaultConfig();
  change(config);
  return config;
}

/** Returns the error that `check` throws, or null. */
function thrown(check: () => unknown): Error | null {
  try {
    check();
    return null;
  } catch (error) {
    return error as Error;
  }
}

test('matching run passes without notes', (t) => {
  const report = checkCompatible(makeCheckpoint(), { specs, configHash: hashConfig(defaultConfig()), worldSize: 2, totalSteps: 120, batchesPerEpoch: 12 });
  t.deepEqual(report.notes, []);
});

test('changed shape names the parameter', (t) => {
  const resized = specs.map((spec) => (spec.name === 'layer0/ffn/kernel' ? { ...spec, shape: [4, 16] } : spec));
  const error = thrown(() => checkCompatible(makeCheckpoint(), { specs: resized, configHash: hashConfig(defaultConfig()), worldSize: 2 }));
  t.true(hasCode(error, 'RINGTRAIN_ERR_CHECKPOINT'));
  t.true(
    error?.message.startsWith(
      'checkpoint step-000030.ckpt does not fit this run: parameter layer0/ffn/kernel has shape [4, 8] in the checkpoint but [4, 16] in this model;',
    ),
    error?.message,
  );
});

test('renamed parameter names both', (t) => {
  const renamed = specs.map((spec, index) => (index === 1 ? { ...spec, name: 'layer0/mlp/kernel' } : spec));
  const error = thrown(() => checkCompatible(makeCheckpoint(), { specs: renamed, configHash: hashConfig(defaultConfig()), worldSize: 2, source: 'runs/a/x.ckpt' }));
  t.regex(error?.message ?? '', /^checkpoint runs\/a\/x\.ckpt does not fit this run: parameter 1 is layer0\/ffn\/kernel in the checkpoint but layer0\/mlp\/kernel in this model;/);
});

test('extra parameter is named', (t) => {
  const longer = [...specs, { name: 'output/kernel', shape: [8, 3], decay: true }];
  const error = thrown(() => checkCompatible(makeCheckpoint(), { specs: longer, configHash: hashConfig(defaultConfig()), worldSize: 2 }));
  t.regex(error?.message ?? '', /the checkpoint has 3 parameters but this model has 4; the first one missing from the checkpoint is output\/kernel/);
});

test('decay flag change is rejected', (t) => {
  const flipped = specs.map((spec, index) => (index === 2 ? { ...spec, decay: true } : spec));
  const error = thrown(() => checkCompatible(makeCheckpoint(), { specs: flipped, configHash: hashConfig(defaultConfig()), worldSize: 2 }));
  t.regex(error?.message ?? '', /parameter layer0\/ffn\/bias has decay=false in the checkpoint but decay=true in this model/);
});

test('changed config names key and values', (t) => {
  const cases: Array<[string, (config: RunConfig) => void, string]> = [
    ['optimizer.lr', (config) => (config.optimizer.lr = 0.001), 'config key optimizer.lr is 0.003 in the checkpoint but 0.001 in this run'],
    ['model.ffDim', (config) => (config.model.ffDim = 512), 'config key model.ffDim is 192 in the checkpoint but 512 in this run'],
    ['data.corpus', (config) => (config.data.corpus = 'corpora/brown'), 'config key data.corpus is "brown" in the checkpoint but "corpora/brown" in this run'],
    ['seed', (config) => (config.seed = 99), 'config key seed is 1234 in the checkpoint but 99 in this run'],
    ['task', (config) => (config.task = 'other'), 'config key task is "brown-pos" in the checkpoint but "other" in this run'],
    ['train.globalBatchSize', (config) => (config.train.globalBatchSize = 32), 'config key train.globalBatchSize is 128 in the checkpoint but 32 in this run'],
  ];
  for (const [label, change, expected] of cases) {
    const error = thrown(() => checkCompatible(makeCheckpoint(), { specs, configHash: hashConfig(configWith(change)), worldSize: 2 }));
    t.true(hasCode(error, 'RINGTRAIN_ERR_CHECKPOINT'), label);
    t.true(error?.message.includes(expected), `${label}: ${error?.message}`);
  }
});

test('unhashed config keys keep digest', (t) => {
  // Keys that change neither the saved state nor the batch plan; run length is checked through totalSteps.
  const changed = configWith((config) => {
    config.train.epochs = 9;
    config.train.maxSteps = 5;
    config.train.logEvery = 1;
    config.train.checksumEvery = 0;
    config.backend = 'cpu';
    config.allreduce.timeoutMs = 5;
    config.coordinator.port = 4000;
  });
  t.is(hashConfig(changed).digest, hashConfig(defaultConfig()).digest);
});

test('each hashed section changes digest', (t) => {
  const base = hashConfig(defaultConfig());
  const changes: Record<(typeof CONFIG_SECTIONS)[number], (config: RunConfig) => void> = {
    task: (config) => (config.task = 'x'),
    taskOptions: (config) => (config.taskOptions = { width: 3 }),
    seed: (config) => (config.seed = 1),
    model: (config) => (config.model.heads = 4),
    data: (config) => (config.data.minWordCount = 3),
    optimizer: (config) => (config.optimizer.beta2 = 0.99),
    train: (config) => (config.train.globalBatchSize = 8),
  };
  for (const section of CONFIG_SECTIONS) {
    const changed = hashConfig(configWith(changes[section]));
    t.not(changed.digest, base.digest, `${section} changes the digest`);
    t.not(changed.sections[section], base.sections[section], `${section} changes its section hash`);
    const others = CONFIG_SECTIONS.filter((other) => other !== section && changed.sections[other] !== base.sections[other]);
    t.deepEqual(others, [], `${section} leaves the other section hashes alone`);
  }
});

test('config digest is stable', (t) => {
  // Two separately built configs with equal values give the same digest, so the hash depends on values only.
  t.deepEqual(hashConfig(defaultConfig()), hashConfig(structuredClone(defaultConfig())));
  t.regex(hashConfig(defaultConfig()).digest, /^[0-9a-f]{64}$/);
});

test('other run length is rejected', (t) => {
  const error = thrown(() => checkCompatible(makeCheckpoint(), { specs, configHash: hashConfig(defaultConfig()), worldSize: 2, totalSteps: 240 }));
  t.true(hasCode(error, 'RINGTRAIN_ERR_CHECKPOINT'));
  t.regex(error?.message ?? '', /it was written for a run of 120 steps but this run plans 240/);
});

test('sampler mismatch names both positions', (t) => {
  // 30 steps at 12 batches per epoch end at epoch 2 batch 6; at 10 per epoch they would end at epoch 3 batch 0.
  const error = thrown(() => checkCompatible(makeCheckpoint(), { specs, configHash: hashConfig(defaultConfig()), worldSize: 2, batchesPerEpoch: 10 }));
  t.regex(error?.message ?? '', /after 30 steps the checkpoint continues at epoch 2 batch 6, but with 10 batches per epoch this run would continue at epoch 3 batch 0/);
});

test('other world size gives note', (t) => {
  const report = checkCompatible(makeCheckpoint(), { specs, configHash: hashConfig(defaultConfig()), worldSize: 4 });
  t.is(report.notes.length, 1);
  t.regex(report.notes[0] ?? '', /written by 2 ranks and this run has 4/);
});

test('strict world size is rejected', (t) => {
  const error = thrown(() =>
    checkCompatible(makeCheckpoint(), { specs, configHash: hashConfig(defaultConfig()), worldSize: 4, requireSameWorldSize: true }),
  );
  t.true(hasCode(error, 'RINGTRAIN_ERR_CHECKPOINT'));
  t.regex(error?.message ?? '', /it was written by 2 ranks but this run has 4; start the run with 2 ranks/);
});

test('sampler position after steps', (t) => {
  // Steps count from 1 and an epoch has 5 batches: step 5 ends epoch 0, so the run continues at epoch 1 batch 0.
  t.deepEqual(samplerPositionAfterStep(0, 5), { epoch: 0, nextBatch: 0 });
  t.deepEqual(samplerPositionAfterStep(4, 5), { epoch: 0, nextBatch: 4 });
  t.deepEqual(samplerPositionAfterStep(5, 5), { epoch: 1, nextBatch: 0 });
  t.deepEqual(samplerPositionAfterStep(13, 5), { epoch: 2, nextBatch: 3 });
  t.throws(() => samplerPositionAfterStep(3, 0), { instanceOf: RangeError });
});
