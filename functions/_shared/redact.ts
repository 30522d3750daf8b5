// functions/_shared/redact.ts — removes or hashes sensitive attribute values before anything is
// stored (DESIGN §7). The policy comes from the 'ingest' config document; compileRedaction() turns it
// into Sets, RegExps and a per-key decision cache once, so ingest pays a Map lookup per attribute key.

import { createHash } from "node:crypto";
import { z } from "zod";
import type { Attributes, AttributeValue } from "./spans.ts";

/** What to remove. Field names mirror the config document (`redact_keys` → `redactKeys`, …). */
export interface RedactionPolicy {
  /** Case-insensitive substrings of the key's last dotted segment (or of the whole key when the entry has a dot). */
  redactKeys: string[];
  /** Whole keys, case-insensitive; their values become "sha256:<first 12 hex>". */
  hashKeys: string[];
  /** Names from VALUE_PATTERNS, applied to string values of every key. */
  redactValuePatterns: string[];
}

/** The value rules known to policyFromConfig, in the order they are applied. */
export const VALUE_PATTERNS = ["sql_literals", "bearer", "email", "card_number", "ipv6", "ipv4"] as const;
export type ValuePatternName = (typeof VALUE_PATTERNS)[number];

/**
 * Defaults of the 'ingest' config key, identical to its row in
 * supabase/migrations/20261125000300_config.sql (a unit test compares them).
 */
export const DEFAULT_INGEST_CONFIG = {
  max_body_bytes: 16777216,
  max_spans_per_request: 50000,
  max_attribute_value_length: 4096,
  redact_keys: [
    "authorization",
    "cookie",
    "set-cookie",
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "x-api-key",
    "credential",
    "private_key",
    "session",
  ],
  hash_keys: [
    "enduser.id",
    "user.email",
    "email",
    "user.name",
    "client.address",
    "net.peer.ip",
    "net.sock.peer.addr",
    "source.address",
    "http.client_ip",
  ],
  redact_value_patterns: ["email", "bearer", "ipv4", "ipv6", "sql_literals", "card_number"],
} as const;

export type IngestConfig = {
  max_body_bytes: number;
  max_spans_per_request: number;
  max_attribute_value_length: number;
  redact_keys: readonly string[];
  hash_keys: readonly string[];
  redact_value_patterns: readonly string[];
};
DEFAULT_INGEST_CONFIG satisfies IngestConfig;

const PolicyConfig = z.object({
  redact_keys: z.array(z.string()).optional(),
  hash_keys: z.array(z.string()).optional(),
  redact_value_patterns: z.array(z.string()).optional(),
});

/**
 * Maps an 'ingest' config document (as returned by `anomaly.config('ingest')`; other fields are
 * ignored, missing redaction fields take the defaults) to a RedactionPolicy.
 * Throws on a malformed document or an unknown value pattern name.
 */
export function policyFromConfig(cfg: unknown): RedactionPolicy {
  const r = PolicyConfig.safeParse(cfg ?? {});
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new Error(`ingest config ${issue.path.join(".") || "(document)"}: ${issue.message}`);
  }
  const patterns = r.data.redact_value_patterns ?? [...DEFAULT_INGEST_CONFIG.redact_value_patterns];
  for (const p of patterns) {
    if (!(VALUE_PATTERNS as readonly string[]).includes(p)) {
      throw new Error(
        `ingest config redact_value_patterns: unknown pattern "${p}" (known: ${VALUE_PATTERNS.join(", ")})`,
      );
    }
  }
  return {
    redactKeys: r.data.redact_keys ?? [...DEFAULT_INGEST_CONFIG.redact_keys],
    hashKeys: r.data.hash_keys ?? [...DEFAULT_INGEST_CONFIG.hash_keys],
    redactValuePatterns: patterns,
  };
}

export const DEFAULT_REDACTION_POLICY: RedactionPolicy = policyFromConfig(DEFAULT_INGEST_CONFIG);

export const REDACTED = "[REDACTED]";

/** How values under one attribute key are treated. */
export interface KeyAction {
  /** 0 keep (value patterns still apply to strings), 1 replace with "[REDACTED]", 2 hash. */
  readonly mode: 0 | 1 | 2;
  /** Key is db.statement / db.query.text and sql_literals is on. */
  readonly sql: boolean;
  /** ipv4 masking applies (off for keys whose last segment mentions "version": "1.2.3.4" is a version). */
  readonly ipv4: boolean;
}

// ------------------------------------------------------------ value patterns
// Each regex is anchored by look-arounds so it starts only at token boundaries: linear on long input.

const EMAIL_RE = /(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}/g;
const BEARER_RE = /\b(bearer)\s+([A-Za-z0-9\-._~+/]+=*)/gi;
const OCTET = "(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)";
const IPV4_RE = new RegExp(`(?<![\\d.])((?:${OCTET}\\.){3})${OCTET}(?!\\d|\\.\\d)`, "g");
const IPV6_CANDIDATE_RE = /(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:]|\.\d)/g;
const HEX_GROUP_RE = /^[0-9A-Fa-f]{1,4}$/;
// Contiguous digits, or the printed layouts: 4-4-4-4(-1..4) and Amex/Diners 4-6-4/5.
const CARD_RE =
  /(?<![\w.-])(?:\d{13,19}|\d{4}(?:[ -]\d{4}){2,3}(?:[ -]\d{1,4})?|\d{4}[ -]\d{6}[ -]\d{4,5})(?!\w|\.\d)/g;
// Single-quoted strings (with '' or \' escapes), dollar-quoted bodies, then numeric literals that are
// not part of an identifier or a $1 placeholder. Double quotes are identifiers in SQL and are kept.
// A literal left open by truncation runs to the end of the text, so its tail is still replaced.
const SQL_LITERAL_RE =
  /'(?:[^'\\]|\\.|'')*(?:'|$)|\$([A-Za-z_]\w*)?\$[\s\S]*?(?:\$\1\$|$)|(?<![\w$.])(?:0[xX][0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)(?!\w)/g;

function maskIpv6(candidate: string): string {
  const halves = candidate.split("::");
  if (halves.length > 2) return candidate;
  const left = halves[0] === "" ? [] : halves[0].split(":");
  const right = halves.length === 2 ? (halves[1] === "" ? [] : halves[1].split(":")) : [];
  for (const g of left) if (!HEX_GROUP_RE.test(g)) return candidate;
  for (const g of right) if (!HEX_GROUP_RE.test(g)) return candidate;
  let groups: string[];
  if (halves.length === 2) {
    if (left.length + right.length > 7 || left.length + right.length === 0) return candidate;
    groups = [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  } else {
    if (left.length !== 8) return candidate; // "12:34:56" (a time) or a MAC address is not IPv6
    groups = left;
  }
  return `${groups.slice(0, 4).join(":")}::x`;
}

function maskBearer(m: string, word: string, token: string): string {
  // "Bearer <token>" is the auth scheme; "the bearer of …" is English: a lower-case "bearer" needs a
  // token that looks like one (a digit or symbol in it, or 16+ characters).
  if (word === "Bearer" || word === "BEARER" || /[^A-Za-z]/.test(token) || token.length >= 16) {
    return "Bearer [REDACTED]";
  }
  return m;
}

/** A compressed address ("::") or eight colon-separated groups: anything else cannot be IPv6. */
function mayHoldIpv6(s: string): boolean {
  if (s.includes("::")) return true;
  let colons = 0;
  for (let i = s.indexOf(":"); i >= 0; i = s.indexOf(":", i + 1)) if (++colons >= 7) return true;
  return false;
}

function luhn(digits: string): boolean {
  let sum = 0;
  let dbl = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (dbl) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    dbl = !dbl;
  }
  return sum % 10 === 0;
}

function maskCard(m: string): string {
  const digits = m.replace(/[ -]/g, "");
  // Luhn keeps order ids, timestamps and other long numbers (90% of them) out of the net.
  return digits.length >= 13 && digits.length <= 19 && luhn(digits) ? "[card]" : m;
}

const BEARER_HINT = /bearer/i;
const CARD_HINT = /\d{4}/; // every card layout has a run of four digits
const IPV4_HINT = /\d\.\d/;

const KEY_CACHE_LIMIT = 10_000;
const SCRUB_CACHE_LIMIT = 10_000;
const SCRUB_CACHE_MAX_LENGTH = 256;
const HASH_CACHE_LIMIT = 4_096;

/** A compiled policy. Build with compileRedaction(); safe to share across requests. */
export class Redactor {
  readonly policy: RedactionPolicy;
  private readonly redactKeys: string[];
  private readonly dottedRedactKeys: string[];
  private readonly hashKeys: Set<string>;
  private readonly on: Record<ValuePatternName, boolean>;
  private readonly keyCache = new Map<string, KeyAction>();
  private readonly hashCache = new Map<string, string>();
  private readonly scrubCache = [
    new Map<string, string>(),
    new Map<string, string>(),
    new Map<string, string>(),
    new Map<string, string>(),
  ];

  constructor(policy: RedactionPolicy) {
    for (const p of policy.redactValuePatterns) {
      if (!(VALUE_PATTERNS as readonly string[]).includes(p)) {
        throw new Error(`unknown redaction value pattern "${p}" (known: ${VALUE_PATTERNS.join(", ")})`);
      }
    }
    this.policy = policy;
    const keys = policy.redactKeys.map((k) => k.toLowerCase()).filter((k) => k !== "");
    this.redactKeys = keys.filter((k) => !k.includes("."));
    this.dottedRedactKeys = keys.filter((k) => k.includes("."));
    this.hashKeys = new Set(policy.hashKeys.map((k) => k.toLowerCase()));
    const set = new Set(policy.redactValuePatterns);
    this.on = Object.fromEntries(VALUE_PATTERNS.map((p) => [p, set.has(p)])) as Record<
      ValuePatternName,
      boolean
    >;
  }

  /** Decision for an attribute key (full dotted name; nested kvlist keys are "parent.child"). Cached. */
  keyAction(key: string): KeyAction {
    let a = this.keyCache.get(key);
    if (a !== undefined) return a;
    const lower = key.toLowerCase();
    const last = lower.slice(lower.lastIndexOf(".") + 1);
    let mode: 0 | 1 | 2 = 0;
    if (
      this.redactKeys.some((k) => last.includes(k)) || this.dottedRedactKeys.some((k) => lower.includes(k))
    ) {
      mode = 1;
    } else if (this.hashKeys.has(lower)) {
      mode = 2;
    }
    a = {
      mode,
      sql: this.on.sql_literals && (lower === "db.statement" || lower === "db.query.text"),
      ipv4: this.on.ipv4 && !last.includes("version"),
    };
    if (this.keyCache.size >= KEY_CACHE_LIMIT) this.keyCache.clear();
    this.keyCache.set(key, a);
    return a;
  }

  /** Applies the value patterns to one string. `action` defaults to a plain key (no SQL rule). */
  scrub(text: string, action: KeyAction = PLAIN): string {
    if (text.length < 3) return text; // shorter than anything a pattern matches
    // Attribute values repeat a lot (routes, methods, hosts): remember short results per rule set.
    const cache = this.scrubCache[(action.sql ? 2 : 0) + (action.ipv4 ? 1 : 0)];
    const cacheable = text.length <= SCRUB_CACHE_MAX_LENGTH;
    if (cacheable) {
      const hit = cache.get(text);
      if (hit !== undefined) return hit;
    }
    const on = this.on;
    let s = text;
    // Cheap pre-checks keep the full expressions off strings that cannot match.
    if (action.sql) s = s.replace(SQL_LITERAL_RE, "?");
    if (on.bearer && BEARER_HINT.test(s)) s = s.replace(BEARER_RE, maskBearer);
    if (on.email && s.includes("@")) s = s.replace(EMAIL_RE, "[email]");
    if (on.card_number && s.length >= 13 && CARD_HINT.test(s)) s = s.replace(CARD_RE, maskCard);
    if (on.ipv6 && mayHoldIpv6(s)) s = s.replace(IPV6_CANDIDATE_RE, maskIpv6);
    if (on.ipv4 && action.ipv4 && IPV4_HINT.test(s)) s = s.replace(IPV4_RE, "$1x");
    if (cacheable) {
      if (cache.size >= SCRUB_CACHE_LIMIT) cache.clear();
      cache.set(text, s);
    }
    return s;
  }

  /** "sha256:" + the first 12 hex digits of SHA-256 over the value's text (JSON for arrays/objects). */
  hash(value: AttributeValue): string {
    const text = typeof value === "string" ? value : JSON.stringify(value);
    let h = this.hashCache.get(text);
    if (h === undefined) {
      h = "sha256:" + createHash("sha256").update(text).digest("hex").slice(0, 12);
      if (this.hashCache.size >= HASH_CACHE_LIMIT) this.hashCache.clear();
      this.hashCache.set(text, h);
    }
    return h;
  }

  /** Redacts an already-flattened value stored under `key` (nested objects recurse with "key.child"). */
  value(key: string, value: AttributeValue, action: KeyAction = this.keyAction(key)): AttributeValue {
    if (action.mode === 1) return REDACTED;
    if (action.mode === 2) return value === null ? null : this.hash(value);
    if (typeof value === "string") return this.scrub(value, action);
    if (value === null || typeof value !== "object") return value;
    if (Array.isArray(value)) return value.map((v) => this.value(key, v, action));
    const out: Record<string, AttributeValue> = {};
    for (const k of Object.keys(value)) out[k] = this.value(`${key}.${k}`, value[k]);
    return out;
  }

  /** Redacts a flat attribute map (keys as OTLP sends them). Returns a new object. */
  attributes(attrs: Attributes): Attributes {
    const out: Attributes = {};
    for (const k of Object.keys(attrs)) out[k] = this.value(k, attrs[k]);
    return out;
  }
}

const PLAIN: KeyAction = { mode: 0, sql: false, ipv4: true };
const compiled = new WeakMap<RedactionPolicy, Redactor>();

/** Compiles a policy once; the same policy object always gets the same Redactor. */
export function compileRedaction(policy: RedactionPolicy): Redactor {
  let r = compiled.get(policy);
  if (r === undefined) {
    r = new Redactor(policy);
    compiled.set(policy, r);
  }
  return r;
}

/** Convenience for paths that already have flat attributes (Tempo pull, replay). */
export function redactAttributes(attrs: Attributes, policy: RedactionPolicy | Redactor): Attributes {
  return (policy instanceof Redactor ? policy : compileRedaction(policy)).attributes(attrs);
}
