// tests/fakes/tcp-proxy.ts — a TCP proxy in front of Postgres that a test can cut and restore, to take the database
// away from one client (the alert-dispatch function) at a chosen moment without touching anyone else's connections.
import net from "node:net";

export class TcpProxy {
  #server?: net.Server;
  #sockets = new Set<net.Socket>();
  #port: number;

  constructor(readonly targetHost: string, readonly targetPort: number, port = 0) {
    this.#port = port;
  }

  get port(): number {
    return this.#port;
  }

  /** Starts accepting (again, on the same port after cut()). */
  async start(): Promise<this> {
    if (this.#server) return this;
    const server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.#sockets.add(s);
        s.on("close", () => this.#sockets.delete(s));
        s.on("error", () => {});
      }
      client.pipe(upstream).pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#port, "127.0.0.1", () => resolve());
    });
    this.#port = (server.address() as net.AddressInfo).port;
    this.#server = server;
    return this;
  }

  /** Drops every connection and refuses new ones until start(): the database "goes away" for the proxied client. */
  async cut(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    for (const s of this.#sockets) s.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** The same URL with host and port replaced by the proxy's. */
  urlFor(databaseUrl: string): string {
    const u = new URL(databaseUrl);
    u.hostname = "127.0.0.1";
    u.port = String(this.#port);
    return u.toString();
  }
}
