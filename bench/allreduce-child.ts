/**
 * A benchmark worker process that talks JSON lines: the parent writes one command per line on its stdin,
 * and the worker answers with one JSON object per line on its stdout. The ringtrain worker
 * (allreduce-worker.ts) and the gloo worker (gloo_allreduce.py) both speak this protocol.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

/** A line that a worker printed; `type` is "ready", "connected", "result" or "error". */
export interface WorkerLine {
  type: string;
  [field: string]: unknown;
}

/** Time between SIGTERM and SIGKILL when a worker is stopped. */
const KILL_GRACE_MS = 3000;

/** One spawned worker process with a queue of the JSON lines it printed. */
export class BenchChild {
  readonly label: string;
  private readonly child: ChildProcess;
  private readonly lines: WorkerLine[] = [];
  private waiter: (() => void) | null = null;
  private exited = false;
  private stderrTail = '';

  private constructor(label: string, child: ChildProcess) {
    this.label = label;
    this.child = child;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        this.lines.push(JSON.parse(line) as WorkerLine);
      } catch {
        this.lines.push({ type: 'error', message: `printed a line that is not JSON: ${line.slice(0, 200)}` });
      }
      this.wake();
    });
    child.stderr!.on('data', (chunk: Buffer) => {
      // Keep the end of stderr for error messages; workers print nothing there unless they fail.
      this.stderrTail = (this.stderrTail + chunk.toString('utf8')).slice(-2000);
    });
    child.on('exit', () => {
      this.exited = true;
      this.wake();
    });
  }

  /** Spawns `command` with `args`; `env` entries are added to this process's environment. */
  static start(label: string, command: string, args: string[], env: Record<string, string> = {}): BenchChild {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    return new BenchChild(label, child);
  }

  /** Writes `command` as one JSON line to the worker's stdin. */
  send(command: object): void {
    if (!this.exited) {
      this.child.stdin!.write(`${JSON.stringify(command)}\n`);
    }
  }

  /**
   * Waits for the next line of type `type`. Raises when the worker prints an error line, exits, or prints
   * nothing of that type within `timeoutMs`.
   */
  async next(type: string, timeoutMs: number): Promise<WorkerLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.lines.shift();
      if (line !== undefined) {
        if (line.type === 'error') {
          throw new Error(`${this.label} failed: ${String(line.message)}${this.describeStderr()}`);
        }
        if (line.type === type) {
          return line;
        }
        continue;
      }
      if (this.exited) {
        throw new Error(`${this.label} exited before printing a ${type} line${this.describeStderr()}`);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new Error(`${this.label} printed no ${type} line within ${timeoutMs} ms; raise --timeout-ms if the machine is slow`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.waiter = null;
    }
  }

  /** Asks the worker to exit, then sends SIGTERM and later SIGKILL if it is still running. */
  async stop(): Promise<void> {
    if (this.exited) {
      return;
    }
    this.send({ type: 'exit' });
    this.child.stdin!.end();
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    const graceful = await Promise.race([exited.then(() => true), delay(KILL_GRACE_MS).then(() => false)]);
    if (!graceful && !this.exited) {
      this.child.kill('SIGTERM');
      const terminated = await Promise.race([exited.then(() => true), delay(KILL_GRACE_MS).then(() => false)]);
      if (!terminated && !this.exited) {
        this.child.kill('SIGKILL');
        await exited;
      }
    }
  }

  /** Kills the worker at once; used when the parent itself is interrupted. */
  kill(): void {
    if (!this.exited) {
      this.child.kill('SIGKILL');
    }
  }

  private wake(): void {
    this.waiter?.();
  }

  private describeStderr(): string {
    const tail = this.stderrTail.trim();
    return tail.length > 0 ? `; its stderr ends with: ${tail}` : '';
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
