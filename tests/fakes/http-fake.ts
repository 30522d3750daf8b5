// tests/fakes/http-fake.ts — what the fake receivers share: a Node HTTP server on 127.0.0.1 that can go down and come
// back on the same port (connections refused meanwhile), and a queue of scripted faults for the next requests.
import http from "node:http";
import type net from "node:net";

/** A scripted answer for one upcoming request: an HTTP error, a slow answer, or a dropped connection. */
export type Fault =
  | { kind: "status"; status: number; body?: unknown; headers?: Record<string, string> }
  | { kind: "delay"; ms: number }
  | { kind: "drop" };

export class FakeHttpServer {
  #server?: http.Server;
  #sockets = new Set<net.Socket>();
  #port: number;
  readonly faults: Fault[] = [];
  /** Every request that arrived, faults included. */
  hits = 0;

  constructor(
    private readonly handler: (
      req: http.IncomingMessage,
      body: string,
      res: http.ServerResponse,
    ) => Promise<void> | void,
    port = 0,
  ) {
    this.#port = port;
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  get listening(): boolean {
    return this.#server?.listening ?? false;
  }

  /** Starts listening (again, on the same port after stop()). */
  async start(): Promise<this> {
    if (this.listening) return this;
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        this.#serve(req, body, res).catch((err) => {
          if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
          res.end(String(err));
        });
      });
    });
    server.on("connection", (s) => {
      this.#sockets.add(s);
      s.on("close", () => this.#sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.#port, "127.0.0.1", () => resolve());
    });
    this.#port = (server.address() as net.AddressInfo).port;
    this.#server = server;
    return this;
  }

  /** Stops listening and cuts open connections: clients get ECONNREFUSED until start(). */
  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      for (const s of this.#sockets) s.destroy();
    });
  }

  async #serve(req: http.IncomingMessage, body: string, res: http.ServerResponse): Promise<void> {
    this.hits++;
    const fault = this.faults.shift();
    if (fault?.kind === "drop") {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === "delay") await new Promise((r) => setTimeout(r, fault.ms));
    if (fault?.kind === "status") {
      res.writeHead(fault.status, { "content-type": "application/json", ...fault.headers });
      res.end(typeof fault.body === "string" ? fault.body : JSON.stringify(fault.body ?? {}));
      return;
    }
    if (res.destroyed) return;
    await this.handler(req, body, res);
  }
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}
