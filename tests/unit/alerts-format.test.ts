// tests/unit/alerts-format.test.ts — Telegram messages: HTML escaping, 4096-character parts that the Bot API accepts,
// the facts people act on (severity, where, observed vs expected, since, culprit, attributes, incident, links), and
// resolved notices.
import { describe, expect, it } from "vitest";
import { formatTelegram } from "../../functions/_shared/alerts/format.ts";
import { cutHtmlText, escapeAttr, escapeHtml, truncate } from "../../functions/_shared/alerts/html.ts";
import { splitMessage, TELEGRAM_LIMIT, visibleLength } from "../../functions/_shared/alerts/split.ts";
import { parseTelegramHtml } from "../fakes/telegram-server.ts";
import { anomaly, claim } from "./alerts-fixtures.ts";

const NOW = "2026-11-25T10:07:30.000Z";
const visible = (html: string) => {
  const parsed = parseTelegramHtml(html);
  if ("error" in parsed) throw new Error(`${parsed.error} in ${html}`);
  return parsed.text;
};

describe("escaping for Telegram HTML", () => {
  it("escapes exactly <, > and & in text, and quotes in attributes", () => {
    expect(escapeHtml(`a<b>&c "d"`)).toBe(`a&lt;b&gt;&amp;c "d"`);
    expect(escapeAttr(`x?a=1&b="2"`)).toBe("x?a=1&amp;b=&quot;2&quot;");
  });

  it("truncates plain text with an ellipsis and never cuts an entity in half", () => {
    expect(truncate("abcdef", 4)).toBe("abc…");
    expect(truncate("abc", 4)).toBe("abc");
    expect(cutHtmlText("aaaa&amp;bbbb", 7)).toBe("aaaa…");
  });
});

describe("splitting at 4096 characters", () => {
  it("packs blocks into parts of at most the limit, splitting only between blocks or lines", () => {
    const blocks = Array.from({ length: 30 }, (_, i) => [`<b>block ${i}</b>`, "x".repeat(300)]);
    const parts = splitMessage(blocks);
    expect(parts.length).toBeGreaterThan(1);
    for (const p of parts) {
      expect(visible(p).length).toBeLessThanOrEqual(TELEGRAM_LIMIT); // what Telegram counts, parsed as it does
      expect(visibleLength(p)).toBe(visible(p).length);
    }
    expect(parts.join("\n\n")).toBe(blocks.map((b) => b.join("\n")).join("\n\n"));
  });

  it("breaks a block bigger than a part at line boundaries and defuses a single over-long line", () => {
    const block = [
      "<b>head</b>",
      ...Array.from({ length: 20 }, () => "y".repeat(400)),
      `<i>${"z".repeat(5000)}</i>`,
    ];
    const parts = splitMessage([block], 4096);
    for (const p of parts) expect(visible(p).length).toBeLessThanOrEqual(4096);
    expect(parts.at(-1)!.endsWith("…")).toBe(true);
    parts.forEach(visible);
  });

  it("counts text as Telegram does: link targets and tags are free, an entity is one character", () => {
    const link = `<a href="https://grafana.example.com/explore?left=${"%7B".repeat(500)}">trace</a>`;
    expect(visibleLength(link)).toBe(5);
    expect(visibleLength("a &amp; b &lt;c&gt;")).toBe(9);
    const blocks = Array.from({ length: 8 }, () => [link, "x".repeat(400)]);
    expect(splitMessage(blocks)).toHaveLength(1); // 8 x 405 visible characters fit one message
    expect(splitMessage(blocks)[0].length).toBeGreaterThan(4096);
  });
});

describe("formatTelegram", () => {
  it("states severity, what and where, observed vs expected, since when, culprit, attributes and links", () => {
    const [text, ...rest] = formatTelegram(claim(), NOW);
    expect(rest).toEqual([]);
    const plain = visible(text);
    expect(plain).toContain("CRITICAL LATENCY p95 · checkout POST /inventory/reserve");
    expect(plain).toContain("p95 68.4 ms vs 13.2 ms expected (band 2.30 .. 24.1)");
    expect(plain).toContain("since 2026-11-25 09:55 UTC (12 min)");
    expect(plain).toContain("culprit: inventory POST /inventory/reserve self-time 3.40 -> 23.0 ms per trace");
    expect(plain).toContain("over-represented: service.version=2.0.0 (x4.10)");
    expect(text).toContain(
      '<a href="https://sentinel.example.com/anomalies/11111111-1111-4111-8111-111111111111">',
    );
    expect(text).toContain("https://grafana.example.com/explore?orgId=1&amp;left=");
    expect(decodeURIComponent(text)).toContain('"query":"58aa91bffaeb569c874cd7e2a2d88453"');
  });

  it("escapes hostile service and operation names so Telegram parses the message", () => {
    const hostile = anomaly({ service: "<script>&amp;", operation: "GET /a?b=1&c=<2>" });
    const [text] = formatTelegram(claim({}, [hostile]), NOW);
    expect(text).toContain("&lt;script&gt;&amp;amp;");
    expect(visible(text)).toContain("<script>&amp; GET /a?b=1&c=<2>");
  });

  it("groups an incident into one message with its size and services", () => {
    const root = anomaly();
    const others = ["frontend", "inventory"].map((s, i) =>
      anomaly({ id: `4444444${i}-1111-4111-8111-111111111111`, service: s, severity: "HIGH" })
    );
    const parts = formatTelegram(claim({}, [root, ...others]), NOW);
    expect(parts).toHaveLength(1);
    const plain = visible(parts[0]);
    expect(plain).toMatch(/^🔴 Incident: 3 related anomalies on checkout, frontend, inventory/);
    expect(plain.match(/LATENCY p95/g)).toHaveLength(3);
  });

  it("lists at most max_anomalies_per_message and splits long incidents into valid parts", () => {
    const many = Array.from(
      { length: 40 },
      (_, i) =>
        anomaly({
          id: `5555${String(i).padStart(4, "0")}-1111-4111-8111-111111111111`,
          operation: `op-${i}-${"w".repeat(250)}`,
        }),
    );
    const c = claim({ config: { ...claim().config, max_anomalies_per_message: 25 } }, many);
    const parts = formatTelegram(c, NOW);
    expect(parts.length).toBeGreaterThan(1);
    for (const p of parts) expect(visible(p).length).toBeLessThanOrEqual(4096);
    expect(visible(parts.at(-1)!)).toContain("… and 15 more anomalies");
  });

  it("writes a resolved notice with how long it lasted", () => {
    const done = anomaly({ status: "RESOLVED", resolved_at: "2026-11-25T10:20:00.000Z" });
    const [text] = formatTelegram(claim({ event: "resolved" }, [done]), NOW);
    const plain = visible(text);
    expect(plain).toContain("✅ RESOLVED LATENCY p95 · checkout");
    expect(plain).toContain("lasted 25 min: 2026-11-25 09:55 UTC to 2026-11-25 10:20 UTC");
    expect(plain).not.toContain("culprit");
  });

  it("marks escalations and reminders", () => {
    const c = claim();
    c.anomalies[0].event = "escalated";
    expect(visible(formatTelegram(c, NOW)[0])).toContain("(escalated to CRITICAL)");
    c.anomalies[0].event = "repeat";
    expect(visible(formatTelegram(c, NOW)[0])).toContain("(still open: reminder)");
  });
});
