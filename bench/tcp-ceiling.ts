/**
 * Raw loopback TCP throughput between two Node processes, the ceiling for one ring link: a sender writes
 * the same large Buffer repeatedly with `net`, and a receiver counts bytes from the first to the last.
 *
 *   node dist/bench/tcp-ceiling.js [--mib 1024] [--write-mib 4]
 *
 * bench/allreduce.ts imports `measureTcpCeiling`; the `receive` and `send` arguments run the two roles.
 */
import { createConnection, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BenchChild } from './allreduce-child.js';

/** Result of one ceiling measurement. */
export interface TcpCeiling {
  bytes: number;
  /** Time from the first received byte to the end of the stream, in milliseconds. */
  ms: number;
  /** Throughput in MB/s (10^6 bytes per second). */
  MBps: number;
}

/** Options of `measureTcpCeiling`. */
export interface TcpCeilingOptions {
  /** Bytes to stream. */
  bytes: number;
  /** Size of each `socket.write`, in bytes. */
  writeBytes: number;
  timeoutMs: number;
}

const script = fileURLToPath(import.meta.url);

/** Streams `bytes` from one new Node process to another over 127.0.0.1 and returns the throughput. */
export async function measureTcpCeiling(options: TcpCeilingOptions): Promise<TcpCeiling> {
  const receiver = BenchChild.start('tcp receiver', process.execPath, [script, 'receive']);
  let sender: BenchChild | null = null;
  try {
    const { port } = await receiver.next('ready', options.timeoutMs);
    sender = BenchChild.start('tcp sender', process.execPath, [
      script,
      'send',
      String(port),
      String(options.bytes),
      String(options.writeBytes),
    ]);
    const result = await receiver.next('result', options.timeoutMs);
    const bytes = Number(result.bytes);
    const ms = Number(result.ms);
    if (bytes !== options.bytes) {
      throw new Error(`tcp receiver counted ${bytes} bytes, expected ${options.bytes}`);
    }
    return { bytes, ms, MBps: bytes / (ms / 1000) / 1e6 };
  } finally {
    await Promise.all([receiver.stop(), sender?.stop()]);
  }
}

function emit(message: object): void {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/** Accepts one connection on a free port, counts its bytes and prints the time from first to last byte. */
function receive(): void {
  const server = createServer((socket) => {
    let bytes = 0;
    let first = 0;
    socket.on('data', (chunk: Buffer) => {
      if (bytes === 0) {
        first = performance.now();
      }
      bytes += chunk.length;
    });
    socket.on('end', () => {
      emit({ type: 'result', bytes, ms: performance.now() - first });
      server.close();
      process.exit(0);
    });
  });
  server.listen(0, '127.0.0.1', () => {
    const address = server.address();
    emit({ type: 'ready', port: typeof address === 'object' && address !== null ? address.port : 0 });
  });
}

/** Connects to `port` and writes `total` bytes in writes of `writeBytes`, waiting for drain when the socket is full. */
function send(port: number, total: number, writeBytes: number): void {
  const chunk = Buffer.alloc(writeBytes, 7);
  const socket = createConnection({ host: '127.0.0.1', port, noDelay: true }, () => {
    let remaining = total;
    const pump = (): void => {
      while (remaining > 0) {
        const size = Math.min(writeBytes, remaining);
        remaining -= size;
        if (!socket.write(size === writeBytes ? chunk : chunk.subarray(0, size))) {
          socket.once('drain', pump);
          return;
        }
      }
      socket.end();
    };
    pump();
  });
  socket.on('close', () => process.exit(0));
}

async function runStandalone(): Promise<void> {
  const { values } = parseArgs({
    options: {
      mib: { type: 'string', default: '1024' },
      'write-mib': { type: 'string', default: '4' },
    },
  });
  const bytes = Number(values.mib) * 1024 * 1024;
  const writeBytes = Number(values['write-mib']) * 1024 * 1024;
  const result = await measureTcpCeiling({ bytes, writeBytes, timeoutMs: 60_000 });
  console.log(`tcp ${values.mib} MiB in ${values['write-mib']} MiB writes: ${result.ms.toFixed(1)} ms, ${result.MBps.toFixed(0)} MB/s`);
}

const role = process.argv[2];
if (role === 'receive') {
  receive();
} else if (role === 'send') {
  send(Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]));
} else if (process.argv[1] === script) {
  await runStandalone();
}
