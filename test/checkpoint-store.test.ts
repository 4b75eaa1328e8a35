import { spawn } from 'node:child_process';
import { access, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import test from 'ava';
import pino from 'pino';

import { hasCode } from '../src/errors.js';
import type { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { fingerprintValues } from '../src/checkpoint/config-hash.js';
import { encodeCheckpoint } from '../src/checkpoint/format.js';
import { listCheckpoints, readCheckpoint, resolveCheckpoint, writeCheckpoint } from '../src/checkpoint/store.js';
import { rejection, temporaryDirectory } from './helpers/files.js';

const storeModule = fileURLToPath(new URL('../src/checkpoint/store.js', import.meta.url));

/** Builds a checkpoint of `count` parameters in which every parameter is `step`, every m is 2 * step and every v 3 * step. */
function makeCheckpoint(step: number, count = 4): Checkpoint {
  return {
    specs: [{ name: 'weights', shape: [count], decay: true }],
    parameters: new Float32Array(count).fill(step),
    optimizer: { step, firstMoment: new Float32Array(count).fill(2 * step), secondMoment: new Float32Array(count).fill(3 * step) },
    totalSteps: 1000,
    sampler: { epoch: 0, nextBatch: step },
    seed: 7,
    worldSize: 1,
    config: fingerprintValues({ task: 'test', taskOptions: {}, seed: 7, model: {}, data: {}, optimizer: {}, train: {} }),
    metadata: {},
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Collects pino lines so a test can check what the writer logged. */
function capturingLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

test('keep prunes older checkpoints', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-store-');
  let removedByLast: string[] = [];
  for (let step = 1; step <= 6; step++) {
    removedByLast = (await writeCheckpoint(directory, makeCheckpoint(step), { keep: 3 })).removed;
  }
  const steps = (await listCheckpoints(directory)).map((file) => file.step);
  t.deepEqual(steps, [4, 5, 6]);
  t.deepEqual(removedByLast, [join(directory, 'step-000003.ckpt')]);
});

test('keep of one leaves one file', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-store-');
  for (const step of [10, 20, 30]) {
    await writeCheckpoint(directory, makeCheckpoint(step), { keep: 1 });
  }
  t.deepEqual((await readdir(directory)).sort(), ['latest', 'step-000030.ckpt']);
});

test('latest pointer follows each write', async (t) => {
  const runDirectory = await temporaryDirectory(t, 'ringtrain-checkpoint-store-');
  const directory = join(runDirectory, 'checkpoints');
  for (const step of [5, 10, 15]) {
    const { path } = await writeCheckpoint(directory, makeCheckpoint(step), { keep: 2 });
    t.is(await readFile(join(directory, 'latest'), 'utf8'), `step-0000${String(step).padStart(2, '0')}.ckpt\n`);
    t.is(await resolveCheckpoint(runDirectory), path, 'run directory resolves to the newest file');
  }
  t.is((await readCheckpoint(await resolveCheckpoint(runDirectory))).optimizer.step, 15);
});

test('resolve accepts three path kinds', async (t) => {
  const runDirectory = await temporaryDirectory(t, 'ringtrain-checkpoint-store-');
  const directory = join(runDirectory, 'checkpoints');
  const { path } = await writeCheckpoint(directory, makeCheckpoint(8), { keep: 2 });
  t.is(await resolveCheckpoint(runDirectory), path, 'run directory');
  t.is(await resolveCheckpoint(directory), path, 'checkpoint directory');
  t.is(await resolveCheckpoint(path), path, 'checkpoint file');
});

test('resolve without pointer names newest file', async (t) => {
  const runDirectory = await temporaryDirectory(t, 'ringtrain-checkpoint-store-');
  const directory = join(runDirectory, 'checkpoints');
  await mkdir(directory);
  // The state a crash leaves between renaming the very first checkpoint and writing the pointer.
  await writeFile(join(directory, 'step-000004.ckpt'), Buffer.concat(encodeCheckpoint(makeCheckpoint(4))));
  const error = await rejection(resolveCheckpoint(runDirectory));
  t.true(hasCode(error, 'RINGTRAIN_ERR_CHECKPOINT'));
  t.is(
    error?.message,
    `checkpoint ${runDirectory} has no checkpoints/latest pointer: the newest file is ${join(directory, 'step-000004.ckpt')}; pass it to resume from it`,
  );
});

test('resolve of empty run fails', async (t) => {
  const runDirectory = await temporaryDirectory(t, 'ringtrain-checkpoint-store-');
  const error = await rejection(resolveCheckpoint(runDirectory));
  t.is(error?.message, `checkpoint ${runDirectory} has no checkpoints/latest pointer: no checkpoint was written there`);
});

test('resolve of missing path fails', async (t) => {
  const runDirectory = await temporaryDirectory(t, 'ringtrain-checkpoint-store-');
  const missing = join(runDirectory, 'nothing-here');
  const error = await rejection(resolveCheckpoint(missing));
  t.is(error?.message, `checkpoint ${missing} does not exist; pass a run directory or a .ckpt file`);
});

test('pointer to deleted file fails', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-store-');
  const { path } = await writeCheckpoint(directory, makeCheckpoint(40), { keep: 2 });
  await rm(path);
  const error = await rejection(resolveCheckpoint(directory));
  t.true(hasCode(error, 'RINGTRAIN_ERR_CHECKPOINT'));
  t.is(
    error?.message,
    `checkpoint ${join(directory, 'latest')} pointer names step-000040.ckpt, which does not exist; pass an existing .ckpt file from that directory`,
  );
});

test('pointer with other content fails', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-store-');
  await writeCheckpoint(directory, makeCheckpoint(40), { keep: 2 });
  await writeFile(join(directory, 'latest'), '../../etc/passwd\n');
  const error = await rejection(resolveCheckpoint(directory));
  t.true(hasCode(error, 'RINGTRAIN_ERR_CHECKPOINT'));
  t.regex(error?.message ?? '', /pointer contains "\.\.\/\.\.\/etc\/passwd" instead of a file name such as step-000123\.ckpt/);
});

test('crash before rename keeps previous', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-store-');
  const { path: previous } = await writeCheckpoint(directory, makeCheckpoint(10), { keep: 3 });
  // What a writer killed while writing step 20 leaves: half a file under its temporary name, no rename.
  const partial = Buffer.concat(encodeCheckpoint(makeCheckpoint(20)));
  const leftover = join(directory, '.step-000020.ckpt.tmp-99999-0badc0de');
  await writeFile(leftover, partial.subarray(0, partial.length >> 1));

  t.is(await resolveCheckpoint(directory), previous);
  t.is((await readCheckpoint(await resolveCheckpoint(directory))).optimizer.step, 10);
  t.deepEqual((await listCheckpoints(directory)).map((file) => file.step), [10], 'listing ignores the temporary file');

  // The next successful write removes the leftover, since its step is below the new one.
  const { removed } = await writeCheckpoint(directory, makeCheckpoint(30), { keep: 3 });
  t.deepEqual(removed, [leftover]);
  t.false(await exists(leftover));
});

test('crash before pointer keeps previous', async (t) => {
  const directory = await temporaryDirectory(t, 'ringtrain-checkpoint-store-');
  const { path: previous } = await writeCheckpoint(directory, makeCheckpoint(10), { keep: 3 });
  // What a writer killed after renaming step 20 but before updating the pointer leaves.
  await writeFile(join(directory, 'step-000020.ckpt'), Buffer.concat(encodeCheckpoint(makeCheckpoint(20))));
  t.is(await resolveCheckpoint(directory), previous);

  // A run resumed from step 10 writes step 15: the newer step-20 file stays, with a warning, and latest skips it.
  const { logger, lines } = capturingLogger();
  const { removed } = await writeCheckpoint(directory, makeCheckpoint(15), { keep: 3, logger });
  t.deepEqual(removed, []);
  t.true(await exists(join(directory, 'step-000020.ckpt')));
  t.is(await readFile(join(directory, 'latest'), 'utf8'), 'step-000015.ckpt\n');
  t.true(lines.some((line) => line.level === 40 && String(line.msg).includes('newer than the one written')), 'one warning about step 20');
});

test('killed writer leaves readable latest', async (t) => {
  // SIGKILL at three points of a stream of writes. This tests process crashes; the page cache survives them,
  // so it cannot show what a power loss would do to the fsync ordering.
  const root = await temporaryDirectory(t, 'ringtrain-checkpoint-store-');
  const count = 1_000_000; // 4 MB per tensor, 12 MB per file, so a kill often lands inside a write
  for (const delayMs of [0, 60, 250]) {
    const directory = join(root, `kill-after-${delayMs}ms`);
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `
        import { writeCheckpoint } from ${JSON.stringify(storeModule)};
        const count = ${count};
        const config = { digest: 'd', sections: {}, values: {} };
        for (let step = 1; step <= 500; step++) {
          await writeCheckpoint(${JSON.stringify(directory)}, {
            specs: [{ name: 'weights', shape: [count], decay: true }],
            parameters: new Float32Array(count).fill(step),
            optimizer: { step, firstMoment: new Float32Array(count).fill(2 * step), secondMoment: new Float32Array(count).fill(3 * step) },
            totalSteps: 100000, sampler: { epoch: 0, nextBatch: step }, seed: 7, worldSize: 1, config, metadata: {},
          }, { keep: 2 });
        }
        `,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    t.teardown(() => child.kill('SIGKILL'));

    // Waits for the first complete checkpoint, so that every kill has a previous one to fall back to.
    for (let waited = 0; !(await exists(join(directory, 'latest'))) && waited < 20_000; waited += 5) {
      await sleep(5);
    }
    await sleep(delayMs);
    child.kill('SIGKILL');
    await exited;
    t.is(stderr, '', 'writer process printed no error before the kill');

    const checkpoint = await readCheckpoint(await resolveCheckpoint(directory));
    const step = checkpoint.optimizer.step;
    const wrongParameters = checkpoint.parameters.filter((value) => value !== step).length;
    const wrongMoments =
      checkpoint.optimizer.firstMoment.filter((value) => value !== 2 * step).length +
      checkpoint.optimizer.secondMoment.filter((value) => value !== 3 * step).length;
    t.true(step >= 1, `after a kill at ${delayMs} ms latest names step ${step}`);
    t.is(wrongParameters, 0, 'every parameter equals the step');
    t.is(wrongMoments, 0, 'every moment equals 2 or 3 times the step');
    const leftovers = (await readdir(directory)).filter((name) => name.includes('.tmp-'));
    t.log(`kill ${delayMs} ms after the first checkpoint: latest is step ${step}, temporary files left: ${leftovers.length}`);

    // Resuming and writing again clears whatever the killed writer left behind.
    await writeCheckpoint(directory, makeCheckpoint(step + 600, 3), { keep: 2 });
    t.deepEqual((await readdir(directory)).filter((name) => name.includes('.tmp-')), [], 'no temporary file after the next write');
  }
});
