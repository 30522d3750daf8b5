// tests/unit/redact.test.ts — the redaction policy: defaults identical to the SQL 'ingest' config row,
// policyFromConfig validation, key rules (redact / hash) and every value pattern, each shown to fire
// on what it should and to leave look-alikes alone.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  compileRedaction,
  DEFAULT_INGEST_CONFIG,
  DEFAULT_REDACTION_POLICY,
  policyFromConfig,
  redactAttributes,
  type RedactionPolicy,
  Redactor,
  VALUE_PATTERNS,
} from "../../functions/_shared/redact.ts";

const MIGRATION = new URL("../../supabase/migrations/20261125000300_config.sql", import.meta.url);

/** The SQL string literals that follow `'key',` in the config_keys insert: [spec, defaults, description…]. */
function sqlLiteralsAfter(sql: string, key: string): string[] {
  const at = sql.indexOf(`'${key}',`);
  if (at < 0) throw new Error(`no '${key}' row in the migration`);
  const out: string[] = [];
  let i = at + key.length + 3;
  while (out.length < 2) {
    const open = sql.indexOf("'", i);
    let j = open + 1;
    let text = "";
    for (;;) {
      const q = sql.indexOf("'", j);
      text += sql.slice(j, q);
      if (sql[q + 1] === "'") {
        text += "'";
        j = q + 2;
      } else {
        i = q + 1;
        break;
      }
    }
    out.push(text);
  }
  return out;
}

const sha12 = (s: string) => "sha256:" + createHash("sha256").update(s).digest("hex").slice(0, 12);
const only = (...patterns: string[]): RedactionPolicy => ({
  redactKeys: [],
  hashKeys: [],
  redactValuePatterns: patterns,
});

describe("DEFAULT_INGEST_CONFIG", () => {
  it("is identical to the 'ingest' defaults in the config migration", () => {
    const [spec, defaults] = sqlLiteralsAfter(readFileSync(MIGRATION, "utf8"), "ingest");
    expect(DEFAULT_INGEST_CONFIG).toEqual(JSON.parse(defaults));
    expect(Object.keys(JSON.parse(spec)).sort()).toEqual(Object.keys(DEFAULT_INGEST_CONFIG).sort());
  });

  it("gives the default policy", () => {
    expect(DEFAULT_REDACTION_POLICY).toEqual({
      redactKeys: DEFAULT_INGEST_CONFIG.redact_keys,
      hashKeys: DEFAULT_INGEST_CONFIG.hash_keys,
      redactValuePatterns: DEFAULT_INGEST_CONFIG.redact_value_patterns,
    });
    expect([...VALUE_PATTERNS].sort()).toEqual([...DEFAULT_INGEST_CONFIG.redact_value_patterns].sort());
  });
});

describe("policyFromConfig", () => {
  it("maps the config document and ignores its other fields", () => {
    expect(policyFromConfig({
      max_body_bytes: 1024,
      redact_keys: ["pin"],
      hash_keys: ["User.Id"],
      redact_value_patterns: ["email"],
    })).toEqual({ redactKeys: ["pin"], hashKeys: ["User.Id"], redactValuePatterns: ["email"] });
  });

  it("fills missing fields from the defaults", () => {
    expect(policyFromConfig({ redact_keys: [] })).toEqual({ ...DEFAULT_REDACTION_POLICY, redactKeys: [] });
    expect(policyFromConfig(null)).toEqual(DEFAULT_REDACTION_POLICY);
  });

  it("refuses an unknown value pattern by name", () => {
    expect(() => policyFromConfig({ redact_value_patterns: ["email", "phone"] })).toThrow(
      /unknown pattern "phone" \(known: sql_literals, bearer, email, card_number, ipv6, ipv4\)/,
    );
    expect(() => new Redactor(only("ssn"))).toThrow(/unknown redaction value pattern "ssn"/);
  });

  it("refuses a malformed document", () => {
    expect(() => policyFromConfig({ redact_keys: "password" })).toThrow(/redact_keys/);
    expect(() => policyFromConfig({ hash_keys: [1] })).toThrow(/hash_keys\.0/);
  });
});

describe("key rules", () => {
  const r = compileRedaction(DEFAULT_REDACTION_POLICY);

  it.each([
    "http.request.header.authorization",
    "Authorization",
    "http.request.header.cookie",
    "http.response.header.set-cookie",
    "db.password",
    "app.client_secret",
    "oauth.access_token",
    "x-api-key",
    "aws.credentials",
    "tls.private_key",
    "app.session",
  ])("redacts %s", (key) => {
    expect(r.value(key, "s3cr3t")).toBe("[REDACTED]");
    expect(r.value(key, 12345)).toBe("[REDACTED]");
    expect(r.value(key, { nested: "x" })).toBe("[REDACTED]");
  });

  it("matches the last dotted segment, so a sensitive word in a namespace does not redact", () => {
    expect(r.value("session.id", "abc")).toBe("abc");
    expect(r.value("app.authorization.result", "denied")).toBe("denied");
    expect(r.value("http.route", "/login")).toBe("/login");
  });

  it("matches an entry containing a dot against the whole key", () => {
    const custom = compileRedaction({ redactKeys: ["payment.card"], hashKeys: [], redactValuePatterns: [] });
    expect(custom.value("app.payment.card.holder", "Ann")).toBe("[REDACTED]");
    expect(custom.value("app.payment.amount", 5)).toBe(5);
  });

  it("hashes hash_keys by exact, case-insensitive key", () => {
    expect(r.value("client.address", "203.0.113.9")).toBe(sha12("203.0.113.9"));
    expect(r.value("Client.Address", "203.0.113.9")).toBe(sha12("203.0.113.9"));
    expect(r.value("enduser.id", 42)).toBe(sha12("42"));
    expect(r.value("user.email", null)).toBeNull();
    // Not an exact key: falls through to the value patterns instead.
    expect(r.value("client.address.port", "203.0.113.9")).toBe("203.0.113.x");
  });

  it("redaction wins over hashing", () => {
    const both = compileRedaction({
      redactKeys: ["email"],
      hashKeys: ["user.email"],
      redactValuePatterns: [],
    });
    expect(both.value("user.email", "a@b.io")).toBe("[REDACTED]");
  });

  it("judges nested keys by their dotted path", () => {
    expect(redactAttributes({
      "http.request.headers": { authorization: "Basic x", accept: "json", deep: { cookie: "c" } },
      list: ["ann@example.com", 3],
    }, DEFAULT_REDACTION_POLICY)).toEqual({
      "http.request.headers": { authorization: "[REDACTED]", accept: "json", deep: { cookie: "[REDACTED]" } },
      list: ["[email]", 3],
    });
  });

  it("compiles a policy once", () => {
    expect(compileRedaction(DEFAULT_REDACTION_POLICY)).toBe(r);
  });
});

describe("value patterns", () => {
  it("email", () => {
    const r = compileRedaction(only("email"));
    expect(r.scrub("mail ann.lee+tag@mail.example.co.uk and bob@x.io now")).toBe(
      "mail [email] and [email] now",
    );
    expect(r.scrub("not@an-email and user@localhost")).toBe("not@an-email and user@localhost");
  });

  it("bearer", () => {
    const r = compileRedaction(only("bearer"));
    expect(r.scrub("Authorization: Bearer eyJhbGciOi.eyJzdWIi.sig-_x== ok")).toBe(
      "Authorization: Bearer [REDACTED] ok",
    );
    expect(r.scrub("bearer abc123")).toBe("Bearer [REDACTED]");
    expect(r.scrub("BEARER opaque")).toBe("Bearer [REDACTED]");
    expect(r.scrub("the bearer of bad news")).toBe("the bearer of bad news");
    expect(r.scrub("Basic dXNlcg==")).toBe("Basic dXNlcg==");
  });

  it("ipv4: masks the last octet", () => {
    const r = compileRedaction(only("ipv4"));
    expect(r.scrub("from 10.1.2.3 to 192.168.100.254:8080")).toBe("from 10.1.2.x to 192.168.100.x:8080");
    expect(r.scrub("255.255.255.255")).toBe("255.255.255.x");
    expect(r.scrub("1.2.3.4.5 and 300.1.1.1 and v10.1.2")).toBe("1.2.3.4.5 and 300.1.1.1 and v10.1.2");
    // A four-part version number is not an address.
    expect(r.value("service.version", "1.2.3.4")).toBe("1.2.3.4");
    expect(r.value("telemetry.sdk.version", "1.2.3.4")).toBe("1.2.3.4");
    expect(r.value("net.host.ip", "1.2.3.4")).toBe("1.2.3.x");
  });

  it("ipv6: keeps the first four groups", () => {
    const r = compileRedaction(only("ipv6"));
    expect(r.scrub("2001:0db8:85a3:0000:0000:8a2e:0370:7334")).toBe("2001:0db8:85a3:0000::x");
    expect(r.scrub("peer [2001:db8::1]:443")).toBe("peer [2001:db8:0:0::x]:443");
    expect(r.scrub("fe80::1ff:fe23:4567:890a%eth0")).toBe("fe80:0:0:0::x%eth0");
    expect(r.scrub("at 12:34:56, mac 00:1a:2b:3c:4d:5e, Foo::bar")).toBe(
      "at 12:34:56, mac 00:1a:2b:3c:4d:5e, Foo::bar",
    );
  });

  it("sql_literals: only in db.statement / db.query.text", () => {
    const r = compileRedaction(only("sql_literals"));
    expect(
      r.value("db.statement", "SELECT * FROM t1 WHERE name = 'O''Brien' AND age > 42 AND x = $1 LIMIT 10"),
    )
      .toBe("SELECT * FROM t1 WHERE name = ? AND age > ? AND x = $1 LIMIT ?");
    expect(r.value("db.query.text", `UPDATE "users" SET score = -1.5e3, tag = $$it's$$ WHERE id = 0x1F`))
      .toBe(`UPDATE "users" SET score = -?, tag = ? WHERE id = ?`);
    expect(r.value("db.statement", "insert into t values ('a\\'b', 3.5)")).toBe(
      "insert into t values (?, ?)",
    );
    expect(r.value("app.note", "name = 'bob' and 42")).toBe("name = 'bob' and 42");
    // Cut off by maxAttributeValueLength inside a literal: the open tail is still removed.
    expect(r.value("db.statement", "SELECT 1 FROM t WHERE token = 'abc12")).toBe(
      "SELECT ? FROM t WHERE token = ?",
    );
  });

  it("card_number: 13-19 digits passing the Luhn check", () => {
    const r = compileRedaction(only("card_number"));
    expect(r.scrub("card 4111 1111 1111 1111 ok")).toBe("card [card] ok");
    expect(r.scrub("4012-8888-8888-1881")).toBe("[card]");
    expect(r.scrub("amex 378282246310005.")).toBe("amex [card].");
    expect(r.scrub("order 4111111111111112")).toBe("order 4111111111111112"); // fails Luhn
    expect(r.scrub("id 411111111111")).toBe("id 411111111111"); // 12 digits
    expect(r.scrub("at 10.1.2.3 4111111111111111 x")).toBe("at 10.1.2.3 [card] x");
    expect(r.scrub("ratio 0.4111111111111111")).toBe("ratio 0.4111111111111111");
  });

  it("applies only the configured patterns", () => {
    const r = compileRedaction(only());
    const text = "ann@example.com Bearer t 10.1.2.3 4111111111111111 2001:db8::1";
    expect(r.scrub(text)).toBe(text);
    expect(compileRedaction(DEFAULT_REDACTION_POLICY).scrub(text)).toBe(
      "[email] Bearer [REDACTED] 10.1.2.x [card] 2001:db8:0:0::x",
    );
  });

  it("gives the same answer on a repeated value (result cache)", () => {
    const r = compileRedaction(only("email"));
    for (let i = 0; i < 3; i++) expect(r.scrub("to ann@example.com")).toBe("to [email]");
  });
});
