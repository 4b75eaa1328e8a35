import test from 'ava';
import { ShardBalancer } from '../coordinator/balancer.js';
import { shardSizes } from '../src/data/batch-plan.js';

const TOLERANCE = 1e-9;

function sum(values: readonly number[]): number {
  return values.reduce((total, value) => total + value, 0);
}

test('ShardBalancer starts with equal weights', (t) => {
  t.deepEqual(new ShardBalancer(3).weights(), [1, 1, 1]);
});

test('ShardBalancer weights follow throughput', (t) => {
  const balancer = new ShardBalancer(2);
  balancer.record(0, 100, 100);
  balancer.record(1, 100, 200);
  // Rates 1 and 0.5 examples/ms scaled to sum 2: 2 * [1, 0.5] / 1.5 = [4/3, 2/3]; tolerance 1e-9.
  const weights = balancer.weights();
  t.true(Math.abs((weights[0] as number) - 4 / 3) < TOLERANCE, `weights ${weights.join(',')}`);
  t.true(Math.abs((weights[1] as number) - 2 / 3) < TOLERANCE, `weights ${weights.join(',')}`);
});

test('ShardBalancer clamps slow rank', (t) => {
  const balancer = new ShardBalancer(4);
  for (let rank = 0; rank < 3; rank++) balancer.record(rank, 100, 100);
  balancer.record(3, 1, 1000);
  // Rank 3 runs at 0.001 examples/ms, far below 0.25 of the equal share, so it gets the floor 0.25. The
  // others split the remaining 3.75 equally, 1.25 each. Tolerance 1e-9.
  const weights = balancer.weights();
  t.true(Math.abs((weights[3] as number) - 0.25) < TOLERANCE, `weights ${weights.join(',')}`);
  for (let rank = 0; rank < 3; rank++) t.true(Math.abs((weights[rank] as number) - 1.25) < TOLERANCE, `rank ${rank}: ${weights.join(',')}`);
});

test('ShardBalancer clamps fast rank', (t) => {
  const balancer = new ShardBalancer(4, { maxShare: 2 });
  balancer.record(0, 1000, 10);
  for (let rank = 1; rank < 4; rank++) balancer.record(rank, 10, 10);
  // Unclamped, rank 0 would get 4 * 100 / 103 = 3.9 equal shares; the cap is 2, and the other three split
  // the remaining 2 equally (2/3 each, above the 0.25 floor); tolerance 1e-9.
  const weights = balancer.weights();
  t.true(Math.abs((weights[0] as number) - 2) < TOLERANCE, `weights ${weights.join(',')}`);
  for (let rank = 1; rank < 4; rank++) t.true(Math.abs((weights[rank] as number) - 2 / 3) < TOLERANCE, `rank ${rank}: ${weights.join(',')}`);
});

test('ShardBalancer weights sum to worldSize', (t) => {
  const balancer = new ShardBalancer(5, { minShare: 0.5, maxShare: 1.5 });
  const busy = [10, 13, 40, 7, 1000];
  busy.forEach((ms, rank) => balancer.record(rank, 50, ms));
  const weights = balancer.weights();
  t.true(Math.abs(sum(weights) - 5) < 1e-6, `weights ${weights.join(',')}`);
  t.true(
    weights.every((weight) => weight >= 0.5 && weight <= 1.5),
    `weights ${weights.join(',')}`,
  );
});

test('ShardBalancer converges to slow share', (t) => {
  const balancer = new ShardBalancer(2);
  for (let i = 0; i < 5; i++) {
    balancer.record(0, 100, 100);
    balancer.record(1, 100, 100);
  }
  t.true(Math.abs((balancer.weights()[1] as number) - 1) < TOLERANCE);

  // Rank 1 slows to 0.25 examples/ms. After one record its busy average is 0.7 * 100 + 0.3 * 400 = 190 ms,
  // rate 100 / 190 = 0.53, weight 2 * 0.53 / 1.53 = 0.69: still far from the slow share.
  balancer.record(0, 100, 100);
  balancer.record(1, 100, 400);
  const afterOne = balancer.weights()[1] as number;
  t.true(afterOne > 0.6, `weight after one record ${afterOne}`);

  // After ten records the busy average is 400 - 300 * 0.7^10 = 391.5 ms, rate 0.2554, weight 0.407; the
  // steady weight is 2 * 0.25 / 1.25 = 0.4. Tolerance 0.01.
  for (let i = 1; i < 10; i++) {
    balancer.record(0, 100, 100);
    balancer.record(1, 100, 400);
  }
  const afterTen = balancer.weights()[1] as number;
  t.true(Math.abs(afterTen - 0.4) < 0.01, `weight after ten records ${afterTen}`);
});

test('ShardBalancer fills unmeasured ranks', (t) => {
  const balancer = new ShardBalancer(3);
  balancer.record(0, 100, 100);
  balancer.record(1, 50, 100);
  // Rank 2 counts at the mean 0.75 examples/ms: 3 * [1, 0.5, 0.75] / 2.25 = [4/3, 2/3, 1]; tolerance 1e-9.
  const weights = balancer.weights();
  [4 / 3, 2 / 3, 1].forEach((expected, rank) => t.true(Math.abs((weights[rank] as number) - expected) < TOLERANCE, `rank ${rank}: ${weights.join(',')}`));
});

test('ShardBalancer ignores empty records', (t) => {
  const balancer = new ShardBalancer(2);
  balancer.record(0, 0, 50);
  balancer.record(1, 10, 0);
  t.deepEqual(balancer.weights(), [1, 1]);
});

test('ShardBalancer is deterministic', (t) => {
  const records: [number, number, number][] = [
    [0, 30, 12.5],
    [1, 34, 40.25],
    [2, 30, 9],
    [0, 28, 11],
    [1, 31, 39.5],
  ];
  const first = new ShardBalancer(3);
  const second = new ShardBalancer(3);
  for (const [rank, examples, busyMs] of records) {
    first.record(rank, examples, busyMs);
    second.record(rank, examples, busyMs);
  }
  t.deepEqual(first.weights(), second.weights());
});

test('ShardBalancer weights size shards', (t) => {
  const balancer = new ShardBalancer(2);
  balancer.record(0, 100, 100);
  balancer.record(1, 100, 200);
  // Weights [4/3, 2/3] split 120 examples into 80 and 40.
  t.deepEqual(shardSizes(120, balancer.weights()), [80, 40]);
});

test('ShardBalancer rejects invalid arguments', (t) => {
  t.throws(() => new ShardBalancer(0), { instanceOf: RangeError });
  t.throws(() => new ShardBalancer(2, { minShare: 0 }), { instanceOf: RangeError });
  t.throws(() => new ShardBalancer(2, { minShare: 1.5 }), { instanceOf: RangeError });
  t.throws(() => new ShardBalancer(2, { maxShare: 0.5 }), { instanceOf: RangeError });
  t.throws(() => new ShardBalancer(2, { smoothing: 0 }), { instanceOf: RangeError });
  const balancer = new ShardBalancer(2);
  t.throws(() => balancer.record(2, 10, 10), { instanceOf: RangeError, message: /got 2/ });
  t.throws(() => balancer.record(0, -1, 10), { instanceOf: RangeError, message: /got -1/ });
  t.throws(() => balancer.record(0, 10, Number.NaN), { instanceOf: RangeError, message: /got NaN/ });
});
