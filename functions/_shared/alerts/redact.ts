// functions/_shared/alerts/redact.ts — keeps secrets out of stored errors and logs. Deno's fetch errors quote the URL,
// and a Telegram URL carries the bot token (/bot<token>/sendMessage), so every error passes through here.

const BOT_TOKEN = /bot\d+:[A-Za-z0-9_-]+/g;

/** Replaces each secret (and anything shaped like a bot token in a Bot API path) with [REDACTED]. */
export function redactSecrets(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) {
    if (secret && secret.length >= 4) out = out.split(secret).join("[REDACTED]");
  }
  return out.replace(BOT_TOKEN, "bot[REDACTED]");
}
