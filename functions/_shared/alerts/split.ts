// functions/_shared/alerts/split.ts — packs message blocks into Telegram-sized parts (4096 characters per message).
// Splits only between blocks, else between lines, so no cut ever falls inside a tag or an entity; a single line
// longer than the limit (it cannot happen with the formatter's field caps) loses its markup and is cut safely.
import { cutHtmlText, stripTags } from "./html.ts";

/** Telegram's sendMessage limit: 1-4096 characters of text after entity parsing. Raw HTML is never shorter. */
export const TELEGRAM_LIMIT = 4096;

/**
 * Packs `blocks` (each a list of lines) into parts of at most `limit` characters, blocks separated by a blank line.
 * A part never starts or ends in the middle of a line.
 */
export function splitMessage(blocks: string[][], limit = TELEGRAM_LIMIT): string[] {
  const parts: string[] = [];
  let current = "";
  const push = (text: string, sep: string) => {
    if (current === "") current = text;
    else if (current.length + sep.length + text.length <= limit) current += sep + text;
    else {
      parts.push(current);
      current = text;
    }
  };
  for (const block of blocks) {
    const lines = block.map((l) => (l.length <= limit ? l : cutHtmlText(stripTags(l), limit)));
    const text = lines.join("\n");
    if (text.length <= limit) {
      push(text, "\n\n");
      continue;
    }
    // A block bigger than a whole part: go line by line.
    lines.forEach((line, i) => push(line, i === 0 ? "\n\n" : "\n"));
  }
  if (current !== "") parts.push(current);
  return parts;
}
