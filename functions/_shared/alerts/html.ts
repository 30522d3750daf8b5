// functions/_shared/alerts/html.ts — escaping for Telegram's HTML parse mode. Only <, > and & must be escaped in
// text (and " inside attribute values); Telegram knows just the named entities &lt; &gt; &amp; &quot;.

/** Escapes text for Telegram HTML (text nodes). */
export function escapeHtml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** Escapes an attribute value (href) for Telegram HTML. */
export function escapeAttr(text: string): string {
  return escapeHtml(text).replace(/"/g, "&quot;");
}

/** Shortens plain text (before escaping) to at most `max` characters, ending with an ellipsis when cut. */
export function truncate(text: string, max: number): string {
  if (text.length <= max) return text;
  return text.slice(0, Math.max(0, max - 1)) + "…";
}

/** Removes tags and any entity cut in half at the end, leaving valid HTML text (last resort for over-long lines). */
export function stripTags(html: string): string {
  return html.replace(/<[^>]*>/g, "");
}

/** Cuts HTML text without tags at `max` characters without splitting an entity. */
export function cutHtmlText(text: string, max: number): string {
  if (text.length <= max) return text;
  let cut = text.slice(0, Math.max(0, max - 1));
  cut = cut.replace(/&[#a-zA-Z0-9]*$/, "");
  return cut + "…";
}
