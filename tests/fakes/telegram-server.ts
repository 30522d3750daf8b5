// tests/fakes/telegram-server.ts — a local HTTP server that speaks the Telegram Bot API's sendMessage as documented:
// POST /bot<token>/sendMessage with JSON, answers {"ok":true,"result":Message} or {"ok":false,"error_code",
// "description","parameters"}: 401 for a wrong token, 400 "chat not found" / "message thread not found" / "message is
// too long" (over 4096 characters after entity parsing) / "can't parse entities" (HTML parse mode checked: allowed
// tags, balanced, known entities), 403 "bot was blocked by the user", and scripted faults (429 with retry_after,
// 5xx, slow answers, dropped connections, the server down). Used by tests, the demo and the benchmark.
import type http from "node:http";
import { FakeHttpServer, type Fault, sendJson } from "./http-fake.ts";

export interface TelegramMessage {
  message_id: number;
  chat_id: number | string;
  message_thread_id?: number;
  text: string;
  /** The text as sent (HTML). */
  html: string;
  parse_mode?: string;
  received_at: number;
}

export interface TelegramServerOptions {
  token: string;
  /** Chats that exist (default: any chat id). */
  chats?: (number | string)[];
  /** Chats that blocked the bot (403). */
  blocked?: (number | string)[];
  /** Forum topics per chat (message_thread_id accepted); other thread ids give 400. */
  threads?: Record<string, number[]>;
  port?: number;
}

const ALLOWED_TAGS = new Set([
  "b",
  "strong",
  "i",
  "em",
  "u",
  "ins",
  "s",
  "strike",
  "del",
  "span",
  "tg-spoiler",
  "a",
  "code",
  "pre",
  "blockquote",
  "tg-emoji",
  "tg-time",
]);

/** Parses Telegram HTML the way the Bot API does (enough to reject what it rejects); returns the visible text. */
export function parseTelegramHtml(html: string): { text: string } | { error: string } {
  const stack: string[] = [];
  let text = "";
  let i = 0;
  while (i < html.length) {
    const c = html[i];
    if (c === "<") {
      const end = html.indexOf(">", i);
      if (end < 0) return { error: `Unclosed start tag at byte offset ${i}` };
      const tag = html.slice(i + 1, end);
      const closing = tag.startsWith("/");
      const name = (closing ? tag.slice(1) : tag).trim().split(/\s+/)[0].toLowerCase();
      if (!ALLOWED_TAGS.has(name)) return { error: `Unsupported start tag "${name}" at byte offset ${i}` };
      if (closing) {
        if (stack.pop() !== name) {
          return { error: `Unmatched end tag at byte offset ${i}, expected "</${stack.at(-1) ?? ""}>"` };
        }
      } else {
        if (name === "a" && !/href="[^"]*"/.test(tag)) {
          return { error: `Can't find href in a tag at byte offset ${i}` };
        }
        stack.push(name);
      }
      i = end + 1;
    } else if (c === "&") {
      const m = /^&(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);/.exec(html.slice(i));
      if (!m) return { error: `Unsupported entity at byte offset ${i}` };
      const e = m[1];
      text += e === "lt"
        ? "<"
        : e === "gt"
        ? ">"
        : e === "amp"
        ? "&"
        : e === "quot"
        ? '"'
        : String.fromCodePoint(e.startsWith("#x") ? parseInt(e.slice(2), 16) : Number(e.slice(1)));
      i += m[0].length;
    } else if (c === ">") {
      return { error: `Character '>' is reserved and must be escaped at byte offset ${i}` };
    } else {
      text += c;
      i++;
    }
  }
  if (stack.length) return { error: `Can't find end tag corresponding to start tag "${stack.at(-1)}"` };
  return { text };
}

export class TelegramServer extends FakeHttpServer {
  readonly messages: TelegramMessage[] = [];
  /** Every request that reached sendMessage, including rejected ones. */
  requests = 0;
  #nextId = 1;

  constructor(readonly opts: TelegramServerOptions) {
    super((req, body, res) => this.#handle(req, body, res), opts.port ?? 0);
  }

  /** The Bot API base URL to configure in alert-dispatch (TELEGRAM_API_URL). */
  get apiUrl(): string {
    return this.url;
  }

  /** Queues a 429 Too Many Requests with parameters.retry_after for the next request. */
  rateLimitNext(retryAfterSeconds: number): void {
    this.faults.push({
      kind: "status",
      status: 429,
      body: {
        ok: false,
        error_code: 429,
        description: `Too Many Requests: retry after ${retryAfterSeconds}`,
        parameters: { retry_after: retryAfterSeconds },
      },
    });
  }

  /** Queues any fault for the next request. */
  failNext(fault: Fault): void {
    this.faults.push(fault);
  }

  #handle(req: http.IncomingMessage, body: string, res: http.ServerResponse): void {
    const m = /^\/bot([^/]+)\/(\w+)$/.exec(req.url ?? "");
    const fail = (code: number, description: string, parameters?: unknown) =>
      sendJson(res, code, {
        ok: false,
        error_code: code,
        description,
        ...(parameters ? { parameters } : {}),
      });
    if (!m) return fail(404, "Not Found");
    if (decodeURIComponent(m[1]) !== this.opts.token) return fail(401, "Unauthorized");
    if (m[2].toLowerCase() !== "sendmessage") return fail(404, "Not Found: method not found");
    this.requests++;
    let params: Record<string, unknown>;
    try {
      params = JSON.parse(body);
    } catch {
      return fail(400, "Bad Request: invalid JSON");
    }
    const chat = params.chat_id;
    if (chat === undefined || chat === null || chat === "") return fail(400, "Bad Request: chat_id is empty");
    const key = String(chat);
    if (this.opts.blocked?.map(String).includes(key)) {
      return fail(403, "Forbidden: bot was blocked by the user");
    }
    if (this.opts.chats && !this.opts.chats.map(String).includes(key)) {
      return fail(400, "Bad Request: chat not found");
    }
    const thread = params.message_thread_id as number | undefined;
    if (thread !== undefined && !(this.opts.threads?.[key] ?? []).includes(thread)) {
      return fail(400, "Bad Request: message thread not found");
    }
    const html = typeof params.text === "string" ? params.text : "";
    let text = html;
    if (params.parse_mode === "HTML") {
      const parsed = parseTelegramHtml(html);
      if ("error" in parsed) return fail(400, `Bad Request: can't parse entities: ${parsed.error}`);
      text = parsed.text;
    }
    if (text.trim().length === 0) return fail(400, "Bad Request: message text is empty");
    if (text.length > 4096) return fail(400, "Bad Request: message is too long");
    const message: TelegramMessage = {
      message_id: this.#nextId++,
      chat_id: chat as number | string,
      message_thread_id: thread,
      text,
      html,
      parse_mode: params.parse_mode as string | undefined,
      received_at: Date.now(),
    };
    this.messages.push(message);
    sendJson(res, 200, {
      ok: true,
      result: {
        message_id: message.message_id,
        date: Math.floor(message.received_at / 1000),
        chat: { id: chat, type: typeof chat === "number" && chat < 0 ? "supergroup" : "private" },
        ...(thread !== undefined ? { message_thread_id: thread, is_topic_message: true } : {}),
        text,
      },
    });
  }
}

/** Starts a Telegram Bot API stand-in on 127.0.0.1 (port 0: a free one). */
export function startTelegramServer(opts: TelegramServerOptions): Promise<TelegramServer> {
  return new TelegramServer(opts).start();
}
