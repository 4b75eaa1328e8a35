/**
 * The log aggregator's server: accepts LogShipper connections over WebSocket, checks their bearer token and
 * appends every received pino line unchanged to `<out>/<run>.jsonl`. Wire format: docs/log-aggregator.md.
 */
import { mkdir } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from 'pino';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';
import { splitFrameLines } from './frame-lines.js';
import { formatLiveLine } from './live-view.js';
import { RunFiles } from './run-files.js';
import { bearerTokenMatches } from '../../comm/token.js';

/** Maximum frame payload accepted. A larger frame closes that connection, and only it, with code 1009. */
export const MAX_FRAME_BYTES = 1024 * 1024;
/** Time connections get to finish their close handshake at shutdown before they are cut. */
const CLOSE_GRACE_MS = 2_000;
/** Characters of a rejected line quoted in the log, enough to recognise it without flooding stderr. */
const SAMPLE_CHARACTERS = 200;

/** Settings of a LogAggregator. */
export interface LogAggregatorOptions {
  port: number;
  host: string;
  /** Directory of the per-run files, created if missing. */
  outDir: string;
  /** Token clients must send as `Authorization: Bearer <token>`. Null accepts every client. */
  token: string | null;
  /** Printer of one formatted line per received log line (the `--live` view). Null prints nothing. */
  printLine: ((text: string) => void) | null;
}

/** Running totals since the aggregator started. */
export interface AggregatorStats {
  acceptedConnections: number;
  rejectedConnections: number;
  linesWritten: number;
  /** Lines that were not a JSON object, counted and logged but not written. */
  invalidLines: number;
  /** Binary frames, which the wire format does not allow, counted and logged but not written. */
  binaryFrames: number;
}

/** State of one accepted client connection. */
interface Connection {
  socket: WebSocket;
  peer: string;
  lines: number;
  invalidLines: number;
  binaryFrames: number;
  /** Files whose buffers are full. Reading from the socket pauses until this is back to 0. */
  pendingDrains: number;
}

/** Returns "address:port" of the peer that sent `request`. */
function peerOf(request: IncomingMessage): string {
  const address = request.socket.remoteAddress ?? 'unknown';
  return `${address}:${request.socket.remotePort ?? '?'}`;
}

/** A running aggregator, created by `LogAggregator.start`. */
export class LogAggregator {
  readonly stats: AggregatorStats = { acceptedConnections: 0, rejectedConnections: 0, linesWritten: 0, invalidLines: 0, binaryFrames: 0 };
  private readonly connections = new Set<Connection>();
  private stopping: Promise<void> | null = null;

  private constructor(
    private readonly options: LogAggregatorOptions,
    private readonly httpServer: Server,
    private readonly wsServer: WebSocketServer,
    private readonly files: RunFiles,
    private readonly logger: Logger,
  ) {
    wsServer.on('connection', (socket, request) => this.accept(socket, request));
    wsServer.on('error', (error) => this.logger.error({ err: error }, 'log aggregator WebSocket server error'));
    httpServer.on('clientError', (error, stream) => {
      const socket = stream as Socket;
      this.logger.warn({ err: error, peer: `${socket.remoteAddress ?? 'unknown'}:${socket.remotePort ?? '?'}` }, 'malformed HTTP request; connection closed');
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
  }

  /** Creates the output directory and listens. Rejects when the port cannot be bound. */
  static async start(options: LogAggregatorOptions, logger: Logger): Promise<LogAggregator> {
    await mkdir(options.outDir, { recursive: true });
    const httpServer = createServer((_request, response) => {
      response.writeHead(426, { 'Content-Type': 'text/plain' });
      response.end('This is a ringtrain log aggregator; connect with a WebSocket client such as LogShipper.\n');
    });
    const token = options.token;
    const wsServer = new WebSocketServer({
      server: httpServer,
      maxPayload: MAX_FRAME_BYTES,
      perMessageDeflate: false,
      verifyClient:
        token === null
          ? undefined
          : (info, respond) => {
              if (bearerTokenMatches(info.req.headers.authorization, token)) {
                respond(true);
                return;
              }
              aggregator.reject(info.req);
              respond(false, 401, 'Unauthorized', { 'WWW-Authenticate': 'Bearer' });
            },
    });
    const files = new RunFiles(options.outDir, logger);
    const aggregator = new LogAggregator(options, httpServer, wsServer, files, logger);

    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', reject);
      httpServer.listen(options.port, options.host, () => {
        httpServer.off('error', reject);
        resolve();
      });
    }).catch(async (error: NodeJS.ErrnoException) => {
      await files.close();
      throw new Error(`log aggregator cannot listen on ${options.host}:${options.port}: ${error.message}; pick another --port or stop the process using it`, {
        cause: error,
      });
    });

    const port = aggregator.address.port;
    logger.info({ host: options.host, port, outDir: options.outDir, url: `ws://${options.host}:${port}`, live: options.printLine !== null }, 'log aggregator listening');
    if (token === null) {
      logger.warn({ host: options.host, port }, 'no token configured: any client that can reach this port may write logs; set RINGTRAIN_TOKEN or --token');
    }
    return aggregator;
  }

  /** The bound address, whose `port` is the real one when 0 was requested. */
  get address(): AddressInfo {
    return this.httpServer.address() as AddressInfo;
  }

  /**
   * Stops accepting connections, sends every client a close frame (code 1001), cuts those that have not closed
   * after 2 s, then flushes and closes every file. Calling it again returns the same promise.
   */
  stop(reason = 'shutdown'): Promise<void> {
    this.stopping ??= this.shutDown(reason);
    return this.stopping;
  }

  private async shutDown(reason: string): Promise<void> {
    this.logger.info({ reason, connections: this.connections.size }, 'log aggregator stopping');
    const serverClosed = new Promise<void>((resolve) => this.httpServer.close(() => resolve()));
    const sockets = [...this.connections].map((connection) => connection.socket);
    await Promise.all(
      sockets.map(
        (socket) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => socket.terminate(), CLOSE_GRACE_MS);
            socket.once('close', () => {
              clearTimeout(timer);
              resolve();
            });
            socket.close(1001, 'aggregator shutting down');
          }),
      ),
    );
    await new Promise<void>((resolve) => this.wsServer.close(() => resolve()));
    this.httpServer.closeAllConnections();
    await serverClosed;
    await this.files.close();
    this.logger.info({ reason, ...this.stats }, 'log aggregator stopped');
  }

  private reject(request: IncomingMessage): void {
    this.stats.rejectedConnections++;
    const presented = request.headers.authorization === undefined ? 'missing' : 'wrong';
    this.logger.warn({ peer: peerOf(request), token: presented, rejectedConnections: this.stats.rejectedConnections }, `rejected a log client: ${presented} token (HTTP 401)`);
  }

  private accept(socket: WebSocket, request: IncomingMessage): void {
    if (this.stopping !== null) {
      socket.close(1001, 'aggregator shutting down');
      return;
    }
    const connection: Connection = { socket, peer: peerOf(request), lines: 0, invalidLines: 0, binaryFrames: 0, pendingDrains: 0 };
    this.connections.add(connection);
    this.stats.acceptedConnections++;
    this.logger.info({ peer: connection.peer, connections: this.connections.size }, 'log client connected');

    socket.on('message', (data, isBinary) => this.receive(connection, data, isBinary));
    socket.on('error', (error) => {
      // ws reports protocol violations here (oversized frame: 1009, invalid UTF-8: 1007) and then closes the socket.
      this.logger.warn({ peer: connection.peer, err: error }, 'log client sent an invalid frame; closing its connection');
    });
    socket.on('close', (code, reason) => {
      this.connections.delete(connection);
      this.logger.info(
        { peer: connection.peer, code, reason: reason.toString(), lines: connection.lines, invalidLines: connection.invalidLines, binaryFrames: connection.binaryFrames },
        'log client disconnected',
      );
    });
  }

  private receive(connection: Connection, data: RawData, isBinary: boolean): void {
    if (isBinary) {
      connection.binaryFrames++;
      this.stats.binaryFrames++;
      if (connection.binaryFrames === 1) {
        this.logger.warn({ peer: connection.peer }, 'log client sent a binary frame; only text frames of JSON lines are accepted, so it was dropped');
      }
      return;
    }

    // ws delivers text frames as one Buffer (binaryType 'nodebuffer', fragments already joined).
    const text = (data as Buffer).toString('utf8');
    const frame = splitFrameLines(text);
    if (frame.invalid.length > 0) {
      if (connection.invalidLines === 0) {
        this.logger.warn(
          { peer: connection.peer, invalidLines: frame.invalid.length, sample: (frame.invalid[0] as string).slice(0, SAMPLE_CHARACTERS) },
          'log client sent lines that are not JSON objects; they are counted and dropped (later ones only in the disconnect summary)',
        );
      }
      connection.invalidLines += frame.invalid.length;
      this.stats.invalidLines += frame.invalid.length;
    }

    for (const [run, lines] of frame.byRun) {
      const accepted = this.files.append(run, lines.join(''), () => this.drained(connection));
      if (!accepted) {
        connection.pendingDrains++;
        connection.socket.pause();
      }
      if (this.options.printLine !== null) {
        for (const line of lines) this.options.printLine(formatLiveLine(run, line));
      }
    }
    connection.lines += frame.validCount;
    this.stats.linesWritten += frame.validCount;
  }

  private drained(connection: Connection): void {
    connection.pendingDrains--;
    if (connection.pendingDrains === 0) connection.socket.resume();
  }
}
