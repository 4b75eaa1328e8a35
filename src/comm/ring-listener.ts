/**
 * The listening side of ring links. A worker opens it before joining the coordinator, so its next neighbour
 * can dial in as soon as the ring is assigned. Connections that arrive before `Ring.connect` wait here.
 * It accepts on a TCP port and, unless `localTransport` is tcp, on a Unix socket for neighbours on the same
 * node. Both feed one HTTP server, so the handshake and the links are the same on either.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import type { Logger } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { RingtrainError } from '../errors.js';
import {
  CLOSE_REJECTED,
  MAX_HANDSHAKE_BYTES,
  RING_PATH,
  describeMismatch,
  encodeHandshake,
  parseHandshake,
  toCloseReason,
  type ExpectedPeer,
  type RingHandshake,
} from './ring-hello.js';
import type { RingPeerAddress } from './ring-dial.js';
import { SendLink } from './ring-link.js';
import { UnixEndpoint, nodeIdentity, type LinkTransport, type LocalTransport } from './ring-unix-socket.js';
import { tokenVerifier } from './token.js';

/** Options of `RingListener.listen`. */
export interface RingListenOptions {
  /** Address to bind, e.g. 127.0.0.1. */
  host: string;
  /** Port to bind; 0 (the default) picks a free port. */
  port?: number;
  logger: Logger;
  /** A connection that sends no hello within this time is closed; default 10000 ms. */
  helloTimeoutMs?: number;
  /** Connections with a hello that wait for `Ring.connect` beyond this count are rejected; default 16. */
  maxPendingConnections?: number;
  /** Run token every dialer must present; null (the default) accepts any dialer. */
  token?: string | null;
  /**
   * Transport to neighbours on the same node. `unix` (the default) also opens a Unix socket here and lets
   * `Ring.connect` dial such neighbours on theirs. `tcp` uses TCP for every link.
   */
  localTransport?: LocalTransport;
  /** Directory that receives the Unix socket's private directory; default the OS temp directory (TMPDIR). */
  socketDirectory?: string;
  /** This node's identity; default `nodeIdentity()`, which is node index 0. */
  nodeId?: string;
}

interface PendingConnection {
  socket: WebSocket;
  hello: RingHandshake;
  remote: string;
  transport: LinkTransport;
}

interface Claim {
  expected: ExpectedPeer;
  localRank: number;
  resolve: (link: SendLink) => void;
  reject: (error: Error) => void;
}

/** A claim on the next neighbour's connection; `cancel` ends the wait and rejects `link`. */
export interface PendingAccept {
  link: Promise<SendLink>;
  cancel(reason: Error): void;
}

/** A WebSocket server that accepts ring links from the next neighbour rank. */
export class RingListener {
  readonly host: string;
  readonly port: number;
  /** The Unix socket that neighbours on this node dial, or null when none is open. */
  readonly unixSocketPath: string | null;
  readonly nodeId: string;
  readonly localTransport: LocalTransport;
  private readonly unixEndpoint: UnixEndpoint | null;
  private readonly logger: Logger;
  private readonly server: Server;
  private readonly wss: WebSocketServer;
  private readonly helloTimeoutMs: number;
  private readonly maxPending: number;
  private readonly sockets = new Set<WebSocket>();
  private pending: PendingConnection[] = [];
  private claim: Claim | null = null;
  private closing = false;

  private constructor(server: Server, wss: WebSocketServer, options: Required<RingListenOptions>, port: number, unixEndpoint: UnixEndpoint | null) {
    this.server = server;
    this.wss = wss;
    this.host = options.host;
    this.port = port;
    this.unixEndpoint = unixEndpoint;
    this.unixSocketPath = unixEndpoint?.path ?? null;
    this.nodeId = options.nodeId;
    this.localTransport = options.localTransport;
    this.logger = options.logger;
    this.helloTimeoutMs = options.helloTimeoutMs;
    this.maxPending = options.maxPendingConnections;
    wss.on('connection', (socket: WebSocket, request: IncomingMessage) => this.handleConnection(socket, request));
  }

  /**
   * Binds a listener and resolves once it accepts connections; `port` is then the bound port. When the Unix
   * socket cannot be opened, it logs a warning and accepts on TCP alone.
   */
  static async listen(options: RingListenOptions): Promise<RingListener> {
    const resolved: Required<RingListenOptions> = {
      port: 0,
      helloTimeoutMs: 10_000,
      maxPendingConnections: 16,
      token: null,
      ...options,
      localTransport: options.localTransport ?? 'unix',
      socketDirectory: options.socketDirectory ?? tmpdir(),
      nodeId: options.nodeId ?? nodeIdentity(),
    };
    const token = resolved.token;
    const server = createServer((request, response) => {
      response.writeHead(426, { 'content-type': 'text/plain' }).end('ringtrain ring listener: WebSocket only\n');
    });
    const wss = new WebSocketServer({
      server,
      path: RING_PATH,
      perMessageDeflate: false,
      maxPayload: MAX_HANDSHAKE_BYTES,
      clientTracking: false,
      verifyClient: tokenVerifier(token, 'ring listener', options.logger),
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(resolved.port, resolved.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // Errors of the listening socket after bind are logged; errors of accepted sockets go to their link.
    server.on('error', (error) => options.logger.error({ err: error }, 'ring listener server error'));
    wss.on('error', (error) => options.logger.error({ err: error }, 'ring listener WebSocket server error'));
    const port = (server.address() as AddressInfo).port;
    let unixEndpoint: UnixEndpoint | null = null;
    if (resolved.localTransport === 'unix') {
      try {
        // Sockets accepted here go through the same HTTP server, so the upgrade and token check are shared.
        unixEndpoint = await UnixEndpoint.open(resolved.socketDirectory, (socket) => server.emit('connection', socket));
      } catch (error) {
        options.logger.warn({ err: error, host: resolved.host, port }, 'ring listener opened no Unix socket; its links use TCP');
      }
    }
    options.logger.info({ host: resolved.host, port, unixSocketPath: unixEndpoint?.path ?? null }, 'ring listener open');
    return new RingListener(server, wss, resolved, port, unixEndpoint);
  }

  /** Returns the address that neighbours dial, with `host` as the TCP host (the advertised address). */
  peerAddress(host: string): Required<RingPeerAddress> {
    return { host, port: this.port, unixSocketPath: this.unixSocketPath, nodeId: this.nodeId };
  }

  /**
   * Claims the connection of the peer `expected`, which must have dialed or dial within `timeoutMs`.
   * Waiting connections from anyone else are rejected with close code 1008. Only one claim may be active.
   */
  accept(expected: ExpectedPeer, localRank: number, timeoutMs: number): PendingAccept {
    if (this.closing) {
      throw new Error(`ring listener on ${this.host}:${this.port} is closed; open a new one with RingListener.listen`);
    }
    if (this.claim !== null) {
      throw new Error(`ring listener on ${this.host}:${this.port} already waits for rank ${this.claim.expected.rank}`);
    }
    let timer: NodeJS.Timeout | undefined;
    const link = new Promise<SendLink>((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.claim = null;
      };
      this.claim = {
        expected,
        localRank,
        resolve: (value) => {
          finish();
          resolve(value);
        },
        reject: (error) => {
          finish();
          reject(error);
        },
      };
      timer = setTimeout(() => {
        this.claim?.reject(
          new RingtrainError(
            'RINGTRAIN_ERR_COLLECTIVE_TIMEOUT',
            `rank ${localRank} waited ${timeoutMs} ms on ${this.host}:${this.port} for its next neighbour rank ` +
              `${expected.rank} of run ${expected.runId} to connect; check that rank ${expected.rank} is running ` +
              'and got this address, or raise allreduce.timeoutMs',
          ),
        );
      }, timeoutMs);
    });
    const waiting = this.pending;
    this.pending = [];
    for (const connection of waiting) {
      this.offer(connection);
    }
    return {
      link,
      cancel: (reason) => {
        if (this.claim !== null) {
          this.claim.reject(reason);
        }
      },
    };
  }

  /** Stops accepting, ends a waiting claim and destroys every socket this listener accepted, including ring links. */
  async close(): Promise<void> {
    if (this.closing) {
      return;
    }
    this.closing = true;
    this.claim?.reject(new Error(`ring listener on ${this.host}:${this.port} was closed while a ring was connecting`));
    for (const socket of this.sockets) {
      socket.terminate();
    }
    this.pending = [];
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.wss.close();
    this.server.closeAllConnections();
    await Promise.all([closed, this.unixEndpoint?.close()]);
    this.logger.info({ host: this.host, port: this.port, unixSocketPath: this.unixSocketPath }, 'ring listener closed');
  }

  private handleConnection(socket: WebSocket, request: IncomingMessage): void {
    const transport: LinkTransport = this.unixEndpoint?.owns(request.socket) === true ? 'unix' : 'tcp';
    const remote =
      transport === 'unix'
        ? `unix:${this.unixSocketPath}`
        : `${request.socket.remoteAddress ?? '?'}:${request.socket.remotePort ?? '?'}`;
    if (this.closing) {
      socket.terminate();
      return;
    }
    this.sockets.add(socket);
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.pending = this.pending.filter((connection) => connection.socket !== socket);
    });
    socket.on('error', (error: Error) => {
      this.logger.warn({ err: error, remote }, 'ring listener connection error');
    });
    const helloTimer = setTimeout(() => {
      this.reject(socket, remote, `no hello within ${this.helloTimeoutMs} ms`);
    }, this.helloTimeoutMs);
    socket.once('message', (data: Buffer, isBinary: boolean) => {
      clearTimeout(helloTimer);
      let hello: RingHandshake;
      try {
        hello = parseHandshake(data, isBinary, 'hello', `ring dialer ${remote}`);
      } catch (error) {
        this.reject(socket, remote, (error as Error).message);
        return;
      }
      // The dialer waits for the welcome, so a further frame before it is a protocol violation.
      socket.on('message', () => this.reject(socket, remote, 'sent data before the welcome'));
      this.offer({ socket, hello, remote, transport });
    });
    socket.once('close', () => clearTimeout(helloTimer));
  }

  /** Hands `connection` to the active claim, rejects it, or keeps it until `accept` is called. */
  private offer(connection: PendingConnection): void {
    const claim = this.claim;
    if (claim === null) {
      if (this.pending.length >= this.maxPending) {
        this.reject(connection.socket, connection.remote, `more than ${this.maxPending} connections wait for Ring.connect`);
        return;
      }
      this.pending.push(connection);
      return;
    }
    const mismatch = describeMismatch(connection.hello, claim.expected);
    if (mismatch !== null) {
      this.reject(connection.socket, connection.remote, mismatch);
      return;
    }
    const link = new SendLink(connection.socket, {
      peerRank: connection.hello.rank,
      localRank: claim.localRank,
      role: 'next',
      remote: connection.remote,
      transport: connection.transport,
      logger: this.logger,
    });
    // The link replaced the listener's handlers, so keep the listener's set of sockets current again.
    connection.socket.on('close', () => this.sockets.delete(connection.socket));
    connection.socket.send(
      encodeHandshake('welcome', claim.expected.runId, claim.localRank, claim.expected.worldSize),
    );
    claim.resolve(link);
  }

  private reject(socket: WebSocket, remote: string, reason: string): void {
    this.logger.warn({ remote, reason }, 'ring listener rejected a connection');
    socket.close(CLOSE_REJECTED, toCloseReason(reason));
    // A peer that never replies to the close frame must not keep the socket open.
    setTimeout(() => socket.terminate(), 1000).unref();
  }
}
