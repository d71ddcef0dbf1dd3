/**
 * The byte level of a GPT-2 style tokenizer: the printable stand-in character for each byte
 * (so every token is a printable string in tokenizer.json) and the pre-tokenisation pattern
 * that cuts text into words, numbers, punctuation runs and whitespace before BPE runs.
 */

/**
 * GPT-2's bytes_to_unicode: bytes that are printable Latin-1 ('!'..'~', '¡'..'¬', '®'..'ÿ')
 * stand for themselves; the other 68 map, in byte order, to U+0100 onwards (space -> 'Ġ').
 */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const out = new Array<string>(256);
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    out[b] = String.fromCharCode(printable ? b : next++);
  }
  return out;
})();

export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/** A token's byte-level string (as in tokenizer.json) from its bytes. */
export function bytesToTokenString(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += BYTE_TO_CHAR[b]!;
  return s;
}

/** The bytes of a byte-level token string, or undefined if a character is not a byte stand-in. */
export function tokenStringToBytes(token: string): Uint8Array | undefined {
  const out = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const b = CHAR_TO_BYTE.get(token[i]!);
    if (b === undefined) return undefined;
    out[i] = b;
  }
  return out;
}

/**
 * GPT-2's pre-tokenisation pattern, as the Hugging Face `tokenizers` library (Oniguruma)
 * reads it. Written into tokenizer.json verbatim.
 */
export const GPT2_PATTERN =
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/**
 * The same pattern for JavaScript. Oniguruma's \s is Unicode White_Space (it includes U+0085
 * and excludes U+FEFF), JavaScript's \s is not, so \s is spelled out as \p{White_Space} to
 * cut text exactly where the `tokenizers` library does. (\p{L} and \p{N} follow each engine's
 * Unicode tables, so letters added in a Unicode version one engine lacks may still differ.)
 */
export const GPT2_REGEX_SOURCE = GPT2_PATTERN.replace(/\\s/g, "\\p{White_Space}").replace(
  /\\S/g,
  "\\P{White_Space}",
);

/** A fresh global regex (regexes with the g flag carry lastIndex state, so never share one). */
export function preTokenRegex(): RegExp {
  return new RegExp(GPT2_REGEX_SOURCE, "gu");
}

/** The pre-tokens of a text, in order; their concatenation is the text. */
export function preTokenize(text: string): string[] {
  return text.match(preTokenRegex()) ?? [];
}
