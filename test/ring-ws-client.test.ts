import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { WebSocketServer, type WebSocket } from 'ws';
import { RingClientSocket, type BinarySink, type ClientSocketError, type ClientSocketHandler } from '../src/comm/ring-ws-client.js';

/** Events the client reported, in the order they arrived. */
interface Recorded {
  texts: string[];
  binaries: Buffer[];
  closed: Promise<{ code: number; reason: string; error: ClientSocketError | null }>;
}

/** Returns a handler that collects messages; binary messages are read in pieces of at most `pieceBytes`. */
function recordingHandler(pieceBytes = 7): { handler: ClientSocketHandler; recorded: Recorded } {
  let resolveClosed: (value: { code: number; reason: string; error: ClientSocketError | null }) => void = () => undefined;
  const recorded: Recorded = {
    texts: [],
    binaries: [],
    closed: new Promise((resolve) => {
      resolveClosed = resolve;
    }),
  };
  const handler: ClientSocketHandler = {
    text: (text) => recorded.texts.push(text),
    binary: (): BinarySink => {
      const pieces: Buffer[] = [];
      let piece = Buffer.alloc(pieceBytes);
      return {
        buffer: () => piece,
        wrote: (bytes) => {
          pieces.push(Buffer.from(piece.subarray(0, bytes)));
          piece = Buffer.alloc(pieceBytes);
        },
        end: () => recorded.binaries.push(Buffer.concat(pieces)),
      };
    },
    closed: (code, reason, error) => resolveClosed({ code, reason, error }),
  };
  return { handler, recorded };
}

/** Starts a ws server on 127.0.0.1 that hands each connection to `onConnection`; it is closed after the test. */
async function startServer(t: ExecutionContext, onConnection: (socket: WebSocket) => void): Promise<number> {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  server.on('connection', onConnection);
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const client of server.clients) {
          client.terminate();
        }
        server.close(() => resolve());
      }),
  );
  await new Promise<void>((resolve) => server.once('listening', () => resolve()));
  return (server.address() as AddressInfo).port;
}

function connectClient(t: ExecutionContext, port: number, handler: ClientSocketHandler, maxPayload = 1 << 20): ReturnType<typeof RingClientSocket.connect> {
  const connection = RingClientSocket.connect({ host: '127.0.0.1', port, path: '/', maxPayload, maxTextBytes: 4096 }, handler);
  t.teardown(() => connection.socket.terminate());
  return connection;
}

test('client reads fragmented binary message', async (t) => {
  const payload = Buffer.from(Array.from({ length: 300 }, (_, i) => i % 251));
  const port = await startServer(t, (socket) => {
    // Three fragments of one message: 100, 150 and 50 bytes, the first two with fin unset.
    socket.send(payload.subarray(0, 100), { binary: true, fin: false });
    socket.send(payload.subarray(100, 250), { binary: true, fin: false });
    socket.send(payload.subarray(250), { binary: true, fin: true });
    socket.send('after', { binary: false });
  });
  const { handler, recorded } = recordingHandler();
  const { opened } = connectClient(t, port, handler);
  await opened;
  for (let attempt = 0; attempt < 100 && recorded.texts.length === 0; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  t.is(recorded.binaries.length, 1);
  t.true(recorded.binaries[0]?.equals(payload), 'the reassembled message differs from the sent bytes');
  t.deepEqual(recorded.texts, ['after']);
});

test('client reads in pieces over unix socket', async (t) => {
  const directory = mkdtempSync(join(tmpdir(), 'rt-ws-unix-'));
  t.teardown(() => rmSync(directory, { recursive: true, force: true }));
  const socketPath = join(directory, 'ws.sock');
  const large = Buffer.from(Array.from({ length: 200_003 }, (_, i) => (i * 7) % 256));
  const small = Buffer.from('tail frame');
  const httpServer = createHttpServer();
  const server = new WebSocketServer({ server: httpServer, perMessageDeflate: false });
  server.on('connection', (socket: WebSocket) => {
    socket.send(large, { binary: true });
    socket.send(small, { binary: true });
    socket.send('after', { binary: false });
  });
  await new Promise<void>((resolve) => httpServer.listen(socketPath, resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const client of server.clients) {
          client.terminate();
        }
        server.close();
        httpServer.close(() => resolve());
      }),
  );

  // Pieces of 4093 bytes never line up with the frame boundaries, so reads must stop at each frame's end.
  const { handler, recorded } = recordingHandler(4093);
  const connection = RingClientSocket.connect(
    { host: 'localhost', port: 0, socketPath, path: '/', maxPayload: 1 << 20, maxTextBytes: 4096 },
    handler,
  );
  t.teardown(() => connection.socket.terminate());
  await connection.opened;
  for (let attempt = 0; attempt < 200 && recorded.texts.length === 0; attempt += 1) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  t.is(recorded.binaries.length, 2);
  t.true(recorded.binaries[0]?.equals(large), 'the large message differs from the sent bytes');
  t.true(recorded.binaries[1]?.equals(small), 'the small message differs from the sent bytes');
  t.deepEqual(recorded.texts, ['after']);
});

test('client answers ping with pong', async (t) => {
  const pong = new Promise<Buffer>((resolve) => {
    void startServer(t, (socket) => {
      socket.on('pong', (data: Buffer) => resolve(data));
      socket.ping(Buffer.from('are you there'));
    }).then((port) => {
      const { handler } = recordingHandler();
      connectClient(t, port, handler);
    });
  });
  t.is((await pong).toString(), 'are you there');
});

test('client echoes server close code', async (t) => {
  const serverClose = new Promise<number>((resolve) => {
    void startServer(t, (socket) => {
      socket.on('close', (code: number) => resolve(code));
      socket.close(4000, 'rank 3 aborted');
    }).then((port) => {
      const { handler } = recordingHandler();
      connectClient(t, port, handler);
    });
  });
  t.is(await serverClose, 4000);
});

test('client reports server close reason', async (t) => {
  const port = await startServer(t, (socket) => socket.close(1000, 'rank 1 closed the ring; completed collectives: 5'));
  const { handler, recorded } = recordingHandler();
  connectClient(t, port, handler);
  const closed = await recorded.closed;
  t.is(closed.code, 1000);
  t.is(closed.reason, 'rank 1 closed the ring; completed collectives: 5');
  t.is(closed.error, null);
});

test('client closes oversized message with 1009', async (t) => {
  const serverClose = new Promise<number>((resolve) => {
    void startServer(t, (socket) => {
      socket.on('close', (code: number) => resolve(code));
      socket.send(Buffer.alloc(100));
    }).then((port) => {
      const { handler } = recordingHandler();
      // 100 bytes against a limit of 64 bytes.
      connectClient(t, port, handler, 64);
    });
  });
  t.is(await serverClose, 1009);
});

test('client rejects HTTP error response', async (t) => {
  const server = createHttpServer((request, response) => response.writeHead(426).end('WebSocket only\n'));
  server.on('upgrade', (request, socket: Socket) => socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n'));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { handler } = recordingHandler();
  const { opened } = connectClient(t, (server.address() as AddressInfo).port, handler);
  const error = (await t.throwsAsync(opened)) as ClientSocketError | undefined;
  t.is(error?.kind, 'http');
  t.regex(error?.message ?? '', /HTTP 400/);
});

test('client rejects masked server frame', async (t) => {
  // A hand-written server: it completes the upgrade, then sends a masked frame, which RFC 6455 forbids.
  const closeCodes: number[] = [];
  const server = createTcpServer((socket) => {
    let request = '';
    socket.on('data', (chunk: Buffer) => {
      if (request.endsWith('\r\n\r\n')) {
        // The client's close frame: byte 1 has the mask bit and length, then 4 mask bytes, then the code.
        const mask = chunk.subarray(2, 6);
        closeCodes.push(((chunk[6] ^ mask[0]) << 8) | (chunk[7] ^ mask[1]));
        socket.destroy();
        return;
      }
      request += chunk.toString('latin1');
      if (!request.endsWith('\r\n\r\n')) {
        return;
      }
      const key = /Sec-WebSocket-Key: (.+)\r\n/.exec(request)?.[1] ?? '';
      const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
      socket.write(Buffer.from([0x82, 0x81, 1, 2, 3, 4, 0x55]));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { handler, recorded } = recordingHandler();
  const { opened } = connectClient(t, (server.address() as AddressInfo).port, handler);
  await opened;
  const closed = await recorded.closed;
  t.is(closed.error?.kind, 'protocol');
  t.regex(closed.error?.message ?? '', /masked frame/);
  t.deepEqual(closeCodes, [1002]);
});
