import test from 'ava';
import { firstSlurmHost, readSchedulerEnvironment } from '../src/launcher/scheduler-env.js';
import { parseLaunchArgs } from '../src/launcher/args.js';

test('firstSlurmHost expands compressed lists', (t) => {
  t.is(firstSlurmHost('node07'), 'node07');
  t.is(firstSlurmHost('a1,b2'), 'a1');
  t.is(firstSlurmHost('gpu[03-05,09],cpu1'), 'gpu03');
  t.is(firstSlurmHost('gpu[12,14]'), 'gpu12');
  t.is(firstSlurmHost('login1,gpu[1-4]'), 'login1');
});

test('torchrun variables set nodes and coordinator', (t) => {
  const settings = readSchedulerEnvironment({ NNODES: '3', NODE_RANK: '2', MASTER_ADDR: '10.1.2.3', MASTER_PORT: '12345' });
  t.is(settings.nodeCount, 3);
  t.is(settings.nodeRank, 2);
  t.deepEqual(settings.coordinator, { host: '10.1.2.3', port: 12345 });
});

test('Slurm variables set nodes and coordinator', (t) => {
  const settings = readSchedulerEnvironment({ SLURM_NNODES: '4', SLURM_NODEID: '1', SLURM_JOB_NODELIST: 'gpu[07-10]' });
  t.is(settings.nodeCount, 4);
  t.is(settings.nodeRank, 1);
  t.deepEqual(settings.coordinator, { host: 'gpu07', port: 29400 });
});

test('Kubernetes index sets node rank', (t) => {
  const settings = readSchedulerEnvironment({ JOB_COMPLETION_INDEX: '5' });
  t.is(settings.nodeRank, 5);
  t.is(settings.nodeCount, undefined);
});

test('torchrun variables win over Slurm', (t) => {
  const settings = readSchedulerEnvironment({ NODE_RANK: '0', SLURM_NODEID: '3', MASTER_ADDR: 'head', SLURM_JOB_NODELIST: 'gpu[1-2]' });
  t.is(settings.nodeRank, 0);
  t.is(settings.coordinator?.host, 'head');
});

test('invalid scheduler variable rejected', (t) => {
  const error = t.throws(() => readSchedulerEnvironment({ SLURM_NODEID: 'first' }));
  t.regex(error?.message ?? '', /SLURM_NODEID must be a non-negative integer \(got 'first'\)/);
});

test('flags override scheduler variables', (t) => {
  const variables = { NNODES: '2', NODE_RANK: '1', MASTER_ADDR: '127.0.0.9', MASTER_PORT: '2000', RINGTRAIN_TOKEN: 'x' };
  const fromEnvironment = parseLaunchArgs([], {}, variables);
  t.is(fromEnvironment.nodeCount, 2);
  t.is(fromEnvironment.nodeRank, 1);
  t.deepEqual(fromEnvironment.coordinator, { host: '127.0.0.9', port: 2000 });
  const fromFlags = parseLaunchArgs(['--node-rank', '0', '--coordinator', '127.0.0.1:3000'], {}, variables);
  t.is(fromFlags.nodeRank, 0);
  t.deepEqual(fromFlags.coordinator, { host: '127.0.0.1', port: 3000 });
});
