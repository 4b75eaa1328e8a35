/**
 * Ring ranks in processes of their own (test/fixtures/ring-worker.ts), started and read over JSON lines.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { ExecutionContext } from 'ava';
import type { RingPeerAddress } from '../../src/comm/ring-dial.js';
import type { RingWorkerCommand } from '../fixtures/ring-worker.js';

const workerScript = fileURLToPath(new URL('../fixtures/ring-worker.js', import.meta.url));

/** A JSON line that test/fixtures/ring-worker.ts printed. */
export interface WorkerMessage {
  type: string;
  port?: number;
  /** The listener's address with its Unix socket, in the `listening` line. */
  address?: RingPeerAddress;
  /** Link transports, in the `connected` line. */
  previousTransport?: string;
  nextTransport?: string;
  code?: string;
  message?: string;
  ms?: number;
}

/** A ring worker process and the JSON lines it printed, in order. */
export interface WorkerProcess {
  child: ChildProcess;
  next(type: string, timeoutMs: number): Promise<WorkerMessage>;
}

/**
 * Spawns a worker with the fixture's arguments `args`, its local transport and socket directory. The test's
 * teardown kills it if it is still running.
 */
export function spawnWorker(t: ExecutionContext, args: string[] = []): WorkerProcess {
  // A worker that a test kills cannot remove its Unix socket, so its TMPDIR is removed when the test ends.
  const socketParent = mkdtempSync(join(tmpdir(), 'ringtrain-tmp-'));
  t.teardown(() => rmSync(socketParent, { recursive: true, force: true }));
  const child = spawn(process.execPath, [workerScript, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, TMPDIR: socketParent },
  });
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
    }
  });
  const messages: WorkerMessage[] = [];
  const waiters: (() => void)[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    messages.push(JSON.parse(line) as WorkerMessage);
    for (const wake of waiters.splice(0)) {
      wake();
    }
  });
  let read = 0;
  const next = async (type: string, timeoutMs: number): Promise<WorkerMessage> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (read < messages.length) {
        const message = messages[read];
        read += 1;
        if (message.type === type || message.type === 'error') {
          return message;
        }
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new Error(`worker ${child.pid} printed no ${type} line within ${timeoutMs} ms`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  };
  return { child, next };
}

/** Starts N workers with the fixture's arguments `args`, waits for their listeners and sends each its command. */
export async function startWorkers(
  t: ExecutionContext,
  worldSize: number,
  command: (rank: number, ports: number[], addresses: RingPeerAddress[]) => RingWorkerCommand,
  args: string[] = [],
): Promise<WorkerProcess[]> {
  const workers = Array.from({ length: worldSize }, () => spawnWorker(t, args));
  const listening = await Promise.all(workers.map((worker) => worker.next('listening', 20_000)));
  const ports = listening.map((message) => message.port!);
  const addresses = listening.map((message) => message.address!);
  for (const [rank, worker] of workers.entries()) {
    worker.child.stdin!.write(`${JSON.stringify(command(rank, ports, addresses))}\n`);
  }
  return workers;
}
