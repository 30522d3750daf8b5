// tests/unit/alerts-delivery.test.ts — the pure delivery rules: webhook signatures, payload shapes (generic and
// Alertmanager v4), backoff with jitter, Retry-After, outcome classification, secret redaction, and that the
// `alerts` config defaults in the migration satisfy the dispatcher's schema.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { backoffMs, honourRetryAfterMs, parseRetryAfter } from "../../functions/_shared/alerts/backoff.ts";
import { classifyTelegram, classifyWebhook } from "../../functions/_shared/alerts/classify.ts";
import { alertmanagerPayload, genericPayload } from "../../functions/_shared/alerts/payloads.ts";
import { redactSecrets } from "../../functions/_shared/alerts/redact.ts";
import { signWebhook, verifyWebhookSignature } from "../../functions/_shared/alerts/sign.ts";
import { AlertsConfig } from "../../functions/_shared/alerts/types.ts";
import { anomaly, claim } from "./alerts-fixtures.ts";

describe("webhook signatures", () => {
  it("signs t.<body> with HMAC-SHA256 and verifies it", async () => {
    const header = await signWebhook("s3cret", 1764064800, '{"a":1}');
    expect(header).toMatch(/^t=1764064800,v1=[0-9a-f]{64}$/);
    expect(await verifyWebhookSignature("s3cret", header, '{"a":1}', 1764064800)).toBe(true);
  });

  it("rejects a changed body, a wrong secret, a stale timestamp and a missing header", async () => {
    const header = await signWebhook("s3cret", 1764064800, '{"a":1}');
    expect(await verifyWebhookSignature("s3cret", header, '{"a":2}', 1764064800)).toBe(false);
    expect(await verifyWebhookSignature("other", header, '{"a":1}', 1764064800)).toBe(false);
    expect(await verifyWebhookSignature("s3cret", header, '{"a":1}', 1764064800 + 301)).toBe(false);
    expect(await verifyWebhookSignature("s3cret", undefined, '{"a":1}', 1764064800)).toBe(false);
  });

  it("matches an independent HMAC implementation (node:crypto)", async () => {
    const { createHmac } = await import("node:crypto");
    const expected = createHmac("sha256", "k").update("42.body").digest("hex");
    expect(await signWebhook("k", 42, "body")).toBe(`t=42,v1=${expected}`);
  });
});

describe("payloads", () => {
  it("builds the Alertmanager webhook v4 shape", () => {
    const done = anomaly({ status: "RESOLVED", resolved_at: "2026-11-25T10:20:00.000Z" });
    const firing = alertmanagerPayload(
      claim({ channel: { ...claim().channel, kind: "webhook" } }),
      "2026-11-25T10:00:00Z",
    );
    expect(firing).toMatchObject({
      version: "4",
      status: "firing",
      receiver: "ops",
      truncatedAlerts: 0,
      groupKey: `{}:{incident_id="${anomaly().incident_id}"}`,
      groupLabels: { incident_id: anomaly().incident_id },
      externalURL: "https://sentinel.example.com",
    });
    const [alert] = firing.alerts;
    expect(alert.status).toBe("firing");
    expect(alert.labels).toMatchObject({
      alertname: "TraceSentinelLATENCY",
      severity: "critical",
      service: "checkout",
    });
    expect(alert.annotations.summary).toBe("CRITICAL LATENCY p95 on checkout POST /inventory/reserve");
    expect(alert.startsAt).toBe("2026-11-25T09:55:00.000Z");
    expect(alert.endsAt).toBe("0001-01-01T00:00:00Z");
    expect(alert.generatorURL).toBe(`https://sentinel.example.com/anomalies/${anomaly().id}`);
    expect(alert.fingerprint).toMatch(/^[0-9a-f]{16}$/);
    expect(firing.commonLabels.service).toBe("checkout");

    const resolved = alertmanagerPayload(claim({ event: "resolved" }, [done]));
    expect(resolved.status).toBe("resolved");
    expect(resolved.alerts[0].endsAt).toBe("2026-11-25T10:20:00.000Z");
  });

  it("builds the generic shape with facts and links", () => {
    const body = genericPayload(claim(), "2026-11-25T10:00:00Z");
    expect(body).toMatchObject({ version: "1", id: "ts-abc", status: "firing", channel: "ops" });
    expect(body.anomalies[0]).toMatchObject({
      severity: "CRITICAL",
      service: "checkout",
      observed: 68.4,
      expected: 13.2,
      culprit: "inventory POST /inventory/reserve self-time 3.40 -> 23.0 ms per trace",
      exemplar_trace_id: "58aa91bffaeb569c874cd7e2a2d88453",
    });
    expect(body.anomalies[0].links.trace).toContain("https://grafana.example.com/explore?");
  });
});

describe("backoff", () => {
  it("doubles from the base up to the cap, with the upper half random", () => {
    expect(backoffMs(1, 1000, 60_000, () => 0)).toBe(500);
    expect(backoffMs(1, 1000, 60_000, () => 1)).toBe(1000);
    expect(backoffMs(4, 1000, 60_000, () => 1)).toBe(8000);
    expect(backoffMs(30, 1000, 60_000, () => 1)).toBe(60_000);
    const spread = new Set(Array.from({ length: 50 }, () => backoffMs(3, 1000, 60_000)));
    expect(spread.size).toBeGreaterThan(10);
    for (const v of spread) expect(v).toBeGreaterThanOrEqual(2000);
  });

  it("honours retry_after with at most 10 % jitter and parses Retry-After headers", () => {
    expect(honourRetryAfterMs(7000, () => 0)).toBe(7000);
    expect(honourRetryAfterMs(7000, () => 1)).toBe(7700);
    expect(parseRetryAfter("3")).toBe(3000);
    expect(parseRetryAfter("Wed, 25 Nov 2026 10:00:10 GMT", Date.parse("2026-11-25T10:00:00Z"))).toBe(10_000);
    expect(parseRetryAfter("soon")).toBeUndefined();
    expect(parseRetryAfter(null)).toBeUndefined();
  });
});

describe("outcome classification", () => {
  it("Telegram: ok, 429 with retry_after, 5xx and timeouts retried; 400/401/403 permanent with the reason", () => {
    expect(classifyTelegram(200, { ok: true, result: {} }).kind).toBe("delivered");
    expect(classifyTelegram(429, {
      ok: false,
      error_code: 429,
      description: "Too Many Requests: retry after 7",
      parameters: { retry_after: 7 },
    })).toEqual({
      kind: "retry",
      statusCode: 429,
      error: "Too Many Requests: retry after 7",
      retryAfterMs: 7000,
    });
    expect(classifyTelegram(502, "Bad Gateway").kind).toBe("retry");
    expect(classifyTelegram(null, undefined, { timedOut: true, message: "no answer within 10 ms" }).kind)
      .toBe("retry");
    expect(classifyTelegram(400, { ok: false, error_code: 400, description: "Bad Request: chat not found" }))
      .toEqual({ kind: "permanent", statusCode: 400, error: "Bad Request: chat not found" });
    expect(
      classifyTelegram(403, {
        ok: false,
        error_code: 403,
        description: "Forbidden: bot was blocked by the user",
      }),
    )
      .toMatchObject({ kind: "permanent", error: "Forbidden: bot was blocked by the user" });
    expect(classifyTelegram(401, { ok: false, error_code: 401, description: "Unauthorized" }).kind).toBe(
      "permanent",
    );
    expect(
      classifyTelegram(400, {
        ok: false,
        error_code: 400,
        description: "Bad Request: group chat was upgraded to a supergroup chat",
        parameters: { migrate_to_chat_id: -1009 },
      }).error,
    ).toContain("set telegram_chat_id to it");
  });

  it("webhooks: 2xx delivered, 408/429/5xx/timeouts retried, other 4xx permanent", () => {
    expect(classifyWebhook(204, "").kind).toBe("delivered");
    expect(classifyWebhook(429, "slow down", 3000)).toMatchObject({ kind: "retry", retryAfterMs: 3000 });
    expect(classifyWebhook(408, "").kind).toBe("retry");
    expect(classifyWebhook(503, "").kind).toBe("retry");
    expect(classifyWebhook(null, "", undefined, { timedOut: false, message: "ECONNREFUSED" }).kind).toBe(
      "retry",
    );
    expect(classifyWebhook(404, "no such hook")).toMatchObject({
      kind: "permanent",
      error: "HTTP 404: no such hook",
    });
    expect(classifyWebhook(410, "").kind).toBe("permanent");
  });
});

describe("secrets stay out of errors", () => {
  it("redacts given secrets and anything shaped like a Bot API token path", () => {
    const msg =
      "error sending request for url (https://api.telegram.org/bot123456:AAH-x_y/sendMessage): refused";
    expect(redactSecrets(msg)).toBe(
      "error sending request for url (https://api.telegram.org/bot[REDACTED]/sendMessage): refused",
    );
    expect(redactSecrets("hmac key hunter22 leaked", ["hunter22"])).toBe("hmac key [REDACTED] leaked");
  });
});

describe("config drift", () => {
  it("the alerts defaults in the migration parse with the dispatcher's schema", () => {
    const sql = readFileSync(
      new URL("../../supabase/migrations/20261125001100_alert_tables.sql", import.meta.url),
      "utf8",
    );
    const defaults = /'(\{"enabled": true[^']*)'/.exec(sql)?.[1];
    expect(defaults).toBeDefined();
    const parsed = AlertsConfig.parse(JSON.parse(defaults!));
    expect(parsed.max_attempts).toBe(8);
    expect(parsed.backoff_base_seconds).toBe(5);
  });
});
