// tests/fakes/webhook-receiver.ts — a local webhook receiver as a careful integrator would write one: it checks the
// X-Trace-Sentinel-Signature (HMAC-SHA256 over "<t>.<body>") with the shared secret, remembers Idempotency-Key to
// count duplicates, answers 204, and can be scripted to fail (5xx, 408/429 with Retry-After, 4xx, slow, down).
import type http from "node:http";
import { verifyWebhookSignature } from "../../functions/_shared/alerts/sign.ts";
import { FakeHttpServer } from "./http-fake.ts";

export interface ReceivedWebhook {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: unknown;
  raw: string;
  signatureValid: boolean;
  idempotencyKey?: string;
  received_at: number;
}

export class WebhookReceiver extends FakeHttpServer {
  /** Accepted deliveries (2xx answered), in arrival order. */
  readonly received: ReceivedWebhook[] = [];
  /** Every request, including the ones answered with a scripted fault. */
  requests = 0;
  /** Accepted deliveries whose Idempotency-Key had been accepted before. */
  duplicates = 0;
  #seen = new Set<string>();

  constructor(readonly secret: string, port = 0) {
    super((req, body, res) => this.#handle(req, body, res), port);
  }

  override async start(): Promise<this> {
    await super.start();
    return this;
  }

  async #handle(req: http.IncomingMessage, raw: string, res: http.ServerResponse): Promise<void> {
    this.requests++;
    const signatureValid = await verifyWebhookSignature(
      this.secret,
      req.headers["x-trace-sentinel-signature"] as string | undefined,
      raw,
    );
    if (!signatureValid) {
      res.writeHead(401, { "content-type": "text/plain" });
      res.end("bad signature");
      return;
    }
    const key = req.headers["idempotency-key"] as string | undefined;
    if (key && this.#seen.has(key)) this.duplicates++;
    if (key) this.#seen.add(key);
    this.received.push({
      path: req.url ?? "/",
      headers: req.headers,
      body: JSON.parse(raw),
      raw,
      signatureValid,
      idempotencyKey: key,
      received_at: Date.now(),
    });
    res.writeHead(204);
    res.end();
  }
}

/** Starts a webhook receiver on 127.0.0.1 that verifies signatures with `secret`. */
export function startWebhookReceiver(secret: string, port = 0): Promise<WebhookReceiver> {
  return new WebhookReceiver(secret, port).start();
}
