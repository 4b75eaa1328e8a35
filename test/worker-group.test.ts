import test from 'ava';
import { workerExecArgv } from '../src/launcher/worker-group.js';

test('workerExecArgv adds the heap flag', (t) => {
  t.deepEqual(workerExecArgv(['--enable-source-maps']), ['--enable-source-maps', '--initial-old-space-size=256']);
});

test('workerExecArgv keeps a given heap flag', (t) => {
  t.deepEqual(workerExecArgv(['--initial-old-space-size=1024']), ['--initial-old-space-size=1024']);
});
