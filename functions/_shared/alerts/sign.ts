// functions/_shared/alerts/sign.ts — webhook signatures: HMAC-SHA256 over `<timestamp>.<body>` with the channel's
// secret, sent as `X-Trace-Sentinel-Signature: t=<unix seconds>,v1=<hex>` (the Stripe scheme: the timestamp inside
// the signed text stops replays). WebCrypto only, so it runs unchanged in Deno, Node and the browser.

export const SIGNATURE_HEADER = "X-Trace-Sentinel-Signature";

const encoder = new TextEncoder();

async function hmacHex(secret: string, text: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(text)));
  return Array.from(mac, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The signature header value for `body` sent at `timestampSeconds`. */
export async function signWebhook(secret: string, timestampSeconds: number, body: string): Promise<string> {
  return `t=${timestampSeconds},v1=${await hmacHex(secret, `${timestampSeconds}.${body}`)}`;
}

/**
 * Checks a signature header as a receiver should: the v1 HMAC matches (constant-time compare) and the timestamp
 * is within `toleranceSeconds` of `nowSeconds`.
 */
export async function verifyWebhookSignature(
  secret: string,
  header: string | null | undefined,
  body: string,
  nowSeconds = Math.floor(Date.now() / 1000),
  toleranceSeconds = 300,
): Promise<boolean> {
  if (!header) return false;
  const fields = new Map(
    header.split(",").map((kv) => {
      const i = kv.indexOf("=");
      return [kv.slice(0, i).trim(), kv.slice(i + 1).trim()] as [string, string];
    }),
  );
  const t = Number(fields.get("t"));
  const v1 = fields.get("v1") ?? "";
  if (!Number.isInteger(t) || Math.abs(nowSeconds - t) > toleranceSeconds) return false;
  const expected = await hmacHex(secret, `${t}.${body}`);
  if (expected.length !== v1.length) return false;
  let diff = 0;
  for (let i = 0; i < expected.length; i++) diff |= expected.charCodeAt(i) ^ v1.charCodeAt(i);
  return diff === 0;
}
