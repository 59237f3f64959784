import { createServer, connect, type Server, type Socket } from 'node:net';

/**
 * A TCP proxy on a free local port in front of a real server, to script what a network does to a connection:
 * drop it on a given command, or stop carrying bytes without closing anything (a partition, a host that died).
 */
export class TcpProxy {
  /** Connections accepted so far. */
  accepted = 0;
  /** Connections closed by `dropOn`. */
  dropped = 0;
  private hung = false;
  private drop: Buffer | null = null;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
    // Connections arrive only after listen, once the proxy exists.
    const server = createServer((client) => proxy.pipe(client, targetHost, targetPort));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    if (address === null || typeof address === 'string') throw new Error('the proxy has no port');
    const proxy = new TcpProxy(server, address.port);
    return proxy;
  }

  /** From now on no byte is carried either way, on open connections and new ones, and none is closed. */
  hang(): void {
    this.hung = true;
  }

  /** The next connection that sends `marker` towards the server is closed instead, before the server sees it. */
  dropOn(marker: string): void {
    this.drop = Buffer.from(marker);
  }

  private pipe(client: Socket, host: string, port: number): void {
    this.accepted++;
    const server = connect(port, host);
    for (const s of [client, server]) {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => {});
    }
    const end = (): void => {
      client.destroy();
      server.destroy();
    };
    client.on('close', end);
    server.on('close', end);
    client.on('data', (chunk: Buffer) => {
      if (this.hung) return;
      if (this.drop !== null && chunk.includes(this.drop)) {
        this.drop = null;
        this.dropped++;
        end();
        return;
      }
      server.write(chunk);
    });
    server.on('data', (chunk: Buffer) => {
      if (!this.hung) client.write(chunk);
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
