/**
 * Unix domain sockets for ring links between ranks on one node. A ring listener opens one next to its TCP
 * port, and a dialer connects to it instead of loopback TCP when its previous neighbour runs on the same
 * node and the socket file is visible. Both transports carry the same WebSocket handshake and frames.
 * docs/ring-wire.md#transport describes the choice.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';

/** Values of `allreduce.localTransport`, the transport to a neighbour on the same node. */
export const LOCAL_TRANSPORTS = ['unix', 'tcp'] as const;

/** Transport of the links between ranks on one node. Links between nodes use TCP in every case. */
export type LocalTransport = (typeof LOCAL_TRANSPORTS)[number];

/** The socket type that one ring link runs over. */
export type LinkTransport = 'unix' | 'tcp';

/**
 * Longest Unix socket path in bytes. The sun_path field of sockaddr_un has 108 bytes on Linux and 104 on
 * macOS and the BSDs, and one byte stays free for the terminating NUL. Node 20.20 binds a truncated path
 * instead of failing when the path is longer, so the length must be checked before binding.
 */
export const MAX_UNIX_SOCKET_PATH_BYTES = process.platform === 'linux' ? 107 : 103;

/** Name prefix of the private directory (mode 0700) that contains one listener's socket. */
const DIRECTORY_PREFIX = 'ringtrain-';
const SOCKET_FILE = 'ring.sock';

/** Socket directories of open endpoints in this process; the exit handler removes those that were not closed. */
const openDirectories = new Set<string>();
let exitHandlerInstalled = false;

/**
 * Returns the identity of this node for the transport choice: the host name, the kernel's boot id where
 * Linux provides one, and the launcher's node index. Ranks with equal identities run under one kernel, so
 * a Unix socket can connect them. The node index keeps launchers that simulate several nodes on one
 * machine (as test/multi-node.test.ts does) on TCP between their nodes.
 */
export function nodeIdentity(node = 0): string {
  let bootId = 'no-boot-id';
  try {
    bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    // Only Linux has this file. Elsewhere the host name alone names the machine.
  }
  return `${hostname()}/${bootId}/node-${node}`;
}

/** A Unix socket server whose connections a ring listener handles like its TCP ones. */
export class UnixEndpoint {
  readonly path: string;
  private readonly directory: string;
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private closed = false;

  private constructor(directory: string, server: Server) {
    this.directory = directory;
    this.path = join(directory, SOCKET_FILE);
    this.server = server;
  }

  /**
   * Creates a private directory in `parent`, listens on a socket in it and passes every accepted socket to
   * `onConnection`. The directory is removed by `close()`, or when the process exits without it. A process
   * killed by SIGKILL leaves it behind. Raises an Error naming the reason and the fix when the platform has
   * no Unix sockets, the path is too long, or the directory or the socket cannot be created.
   */
  static async open(parent: string, onConnection: (socket: Socket) => void): Promise<UnixEndpoint> {
    if (process.platform === 'win32') {
      throw new Error(
        'Unix domain socket files are not available to Node on win32, which maps socket paths to named pipes; ' +
          'set allreduce.localTransport=tcp to silence this warning',
      );
    }
    const planned = join(parent, `${DIRECTORY_PREFIX}XXXXXX`, SOCKET_FILE);
    const plannedBytes = Buffer.byteLength(planned, 'utf8');
    if (plannedBytes > MAX_UNIX_SOCKET_PATH_BYTES) {
      throw new Error(
        `the Unix socket path ${planned} would be ${plannedBytes} bytes, above the limit of ` +
          `${MAX_UNIX_SOCKET_PATH_BYTES} bytes on ${process.platform}; point TMPDIR to a shorter directory, ` +
          'or set allreduce.localTransport=tcp',
      );
    }
    let directory: string;
    try {
      directory = mkdtempSync(join(parent, DIRECTORY_PREFIX));
    } catch (error) {
      throw new Error(
        `could not create a directory for the Unix socket in ${parent}: ${(error as Error).message}; ` +
          'point TMPDIR to a writable directory, or set allreduce.localTransport=tcp',
        { cause: error },
      );
    }
    trackDirectory(directory);
    const server = createServer();
    const endpoint = new UnixEndpoint(directory, server);
    server.on('connection', (socket: Socket) => {
      endpoint.sockets.add(socket);
      socket.once('close', () => endpoint.sockets.delete(socket));
      onConnection(socket);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(endpoint.path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (error) {
      removeDirectory(directory);
      throw new Error(
        `could not listen on the Unix socket ${endpoint.path}: ${(error as Error).message}; ` +
          'set allreduce.localTransport=tcp if this platform does not support Unix sockets',
        { cause: error },
      );
    }
    return endpoint;
  }

  /** Reports whether `socket` was accepted on this endpoint. */
  owns(socket: unknown): boolean {
    return this.sockets.has(socket as Socket);
  }

  /** Stops listening, destroys the accepted sockets and removes the socket file and its directory. */
  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closed = true;
    const stopped = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const socket of this.sockets) {
      socket.destroy();
    }
    await stopped;
    removeDirectory(this.directory);
  }
}

/**
 * The target of a dial: the neighbour's Unix socket, or TCP with the reason why. `unexpected` marks a
 * neighbour on the same node whose socket file is missing here, which suggests separate file systems.
 */
export type DialTarget = { transport: 'unix'; socketPath: string } | { transport: 'tcp'; reason: string; unexpected: boolean };

/** The fields of a ring address that the transport choice reads. */
export interface UnixReachability {
  unixSocketPath?: string | null;
  nodeId?: string;
}

/**
 * Picks the transport for dialing `address`: its Unix socket when `localTransport` is unix, the address
 * carries the same node identity as `localNodeId` and its socket file exists here, else TCP.
 */
export function chooseDialTarget(address: UnixReachability, localTransport: LocalTransport, localNodeId: string): DialTarget {
  if (localTransport === 'tcp') {
    return { transport: 'tcp', reason: 'allreduce.localTransport is tcp', unexpected: false };
  }
  if (address.unixSocketPath === undefined || address.unixSocketPath === null) {
    return { transport: 'tcp', reason: 'the neighbour opened no Unix socket', unexpected: false };
  }
  if (address.nodeId !== localNodeId) {
    return { transport: 'tcp', reason: 'the neighbour runs on another node', unexpected: false };
  }
  if (!existsSync(address.unixSocketPath)) {
    return {
      transport: 'tcp',
      reason: `the neighbour's Unix socket ${address.unixSocketPath} does not exist on this node`,
      unexpected: true,
    };
  }
  return { transport: 'unix', socketPath: address.unixSocketPath };
}

function trackDirectory(directory: string): void {
  openDirectories.add(directory);
  if (!exitHandlerInstalled) {
    exitHandlerInstalled = true;
    process.on('exit', () => {
      for (const open of openDirectories) {
        removeDirectory(open);
      }
    });
  }
}

function removeDirectory(directory: string): void {
  openDirectories.delete(directory);
  rmSync(directory, { recursive: true, force: true });
}
