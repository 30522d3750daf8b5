// functions/_shared/alerts/split.ts — packs message blocks into Telegram-sized parts (4096 characters per message).
// Telegram counts the text after entity parsing (tags and link targets do not count, an entity is one character),
// so parts are measured that way. Splits only between blocks, else between lines, so no cut ever falls inside a tag
// or an entity; a single line longer than the limit (the formatter's field caps prevent it) loses its markup and is
// cut safely.
import { cutHtmlText, stripTags } from "./html.ts";

/** Telegram's sendMessage limit: 1-4096 characters (UTF-16 code units) of text after entity parsing. */
export const TELEGRAM_LIMIT = 4096;

/** Length of Telegram HTML as Telegram counts it: without tags, each entity one character. */
export function visibleLength(html: string): number {
  // a numeric entity may be an astral character (two UTF-16 units): count it as two, to stay on the safe side
  return stripTags(html).replace(/&(?:lt|gt|amp|quot);/g, "&").replace(/&#(?:\d+|x[0-9a-fA-F]+);/g, "&&")
    .length;
}

/**
 * Packs `blocks` (each a list of lines) into parts of at most `limit` characters, blocks separated by a blank line.
 * A part never starts or ends in the middle of a line.
 */
export function splitMessage(blocks: string[][], limit = TELEGRAM_LIMIT): string[] {
  const parts: string[] = [];
  let current = "";
  const push = (text: string, sep: string) => {
    if (current === "") current = text;
    else if (visibleLength(current) + sep.length + visibleLength(text) <= limit) current += sep + text;
    else {
      parts.push(current);
      current = text;
    }
  };
  for (const block of blocks) {
    const lines = block.map((l) => (visibleLength(l) <= limit ? l : cutHtmlText(stripTags(l), limit)));
    const text = lines.join("\n");
    if (visibleLength(text) <= limit) {
      push(text, "\n\n");
      continue;
    }
    // A block bigger than a whole part: go line by line.
    lines.forEach((line, i) => push(line, i === 0 ? "\n\n" : "\n"));
  }
  if (current !== "") parts.push(current);
  return parts;
}
