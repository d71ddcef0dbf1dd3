/**
 * Brown corpus form C (one file per document, `word/tag` tokens) back to readable text.
 *
 * The file layout carries the structure: a block of non-blank lines is a paragraph and each
 * line in it is one sentence. Headlines (tags ending in `-hl`) sit in the same block as the
 * sentence after them, so they become a paragraph of their own. Detokenising puts no space
 * before closing punctuation and none after opening punctuation; the corpus writes double
 * quotes as `` and '' (also inside words: 10'' for inches) and single quotes as a bare ',
 * which opens and closes in turn within a paragraph.
 */

/** Bump when the text produced for the same input changes: it is part of every cache key. */
export const BROWN_TEXT_VERSION = 1;

const CLOSERS = new Set([",", ".", ";", ":", "?", "!", ")", "]", "}", "''"]);
const OPENERS = new Set(["(", "[", "{", "``"]);
/** The corpus spells dashes `--`; typeset text joins them to both neighbours. */
const JOINERS = new Set(["--"]);

export interface TaggedToken {
  readonly word: string;
  readonly tag: string;
}

/** `word/tag`, split at the last slash: words may contain slashes (`and/or/cc`, `1/2/cd`). */
export function splitTagged(token: string): TaggedToken {
  const i = token.lastIndexOf("/");
  if (i <= 0) return { word: token, tag: "" };
  return { word: token.slice(0, i), tag: token.slice(i + 1) };
}

/** Paragraphs of sentences of tagged tokens, as laid out in the file. */
export function parseBrownFile(source: string): TaggedToken[][][] {
  return paragraphsOf(source, (t) => splitTagged(t));
}

/** Readable text of one tagged file: paragraphs separated by a blank line. */
export function brownToText(source: string): string {
  const paragraphs: string[][] = [];
  for (const p of paragraphsOf(source, stripTag)) {
    // Sentences of a paragraph run on; Array.prototype.flat is several times slower here.
    const words: string[] = [];
    for (const sentence of p) for (const w of sentence) words.push(w);
    // The corpus sometimes wraps a sentence's final stop or comma onto a block of its own
    // (37 times); it belongs to the end of the paragraph before.
    const previous = paragraphs[paragraphs.length - 1];
    let lead = 0;
    if (previous !== undefined)
      while (lead < words.length && CLOSERS.has(words[lead]!)) previous.push(words[lead++]!);
    if (lead < words.length) paragraphs.push(lead === 0 ? words : words.slice(lead));
  }
  return paragraphs.map(detokenize).join("\n\n");
}

function stripTag(token: string): string {
  const i = token.lastIndexOf("/");
  return i <= 0 ? token : token.slice(0, i);
}

/** The block structure of a file, each token passed through `convert`. */
function paragraphsOf<T>(source: string, convert: (token: string) => T): T[][][] {
  const paragraphs: T[][][] = [];
  let current: T[][] = [];
  for (const line of source.split("\n")) {
    const parts = line.split(SEPARATORS);
    const sentence: T[] = [];
    let hl = 0;
    for (const p of parts) {
      if (p.length === 0) continue;
      sentence.push(convert(p));
      if (p.endsWith("-hl")) hl++;
    }
    if (sentence.length === 0) {
      if (current.length > 0) paragraphs.push(current);
      current = [];
    } else if (hl * 2 > sentence.length) {
      // A headline: most tokens tagged -hl (headlines mix in a few -tl title tags).
      if (current.length > 0) paragraphs.push(current);
      paragraphs.push([sentence]);
      current = [];
    } else {
      current.push(sentence);
    }
  }
  if (current.length > 0) paragraphs.push(current);
  return paragraphs;
}

const SEPARATORS = /[ \t\r]/;

/** Joins the words of one paragraph with the spacing of ordinary English typesetting. */
export function detokenize(words: readonly string[]): string {
  const out: string[] = [];
  let last = "";
  // Whether the next word attaches to what came before without a space.
  let glueNext = true;
  let singleOpen = false;
  for (const w of words) {
    let text = w;
    let glueBefore: boolean;
    let glueAfter = false;
    if (w === "``" || w === "''") {
      text = '"';
      glueBefore = w === "''";
      glueAfter = w === "``";
    } else if (w === "'") {
      singleOpen = !singleOpen;
      glueBefore = !singleOpen;
      glueAfter = singleOpen;
    } else if (JOINERS.has(w)) {
      glueBefore = true;
      glueAfter = true;
    } else {
      glueBefore = CLOSERS.has(w);
      glueAfter = OPENERS.has(w);
      // Inches inside words (`10''`) are the same ASCII-ised double quote.
      if (w.includes("''")) text = w.replaceAll("''", '"');
    }
    // An abbreviation ending a sentence absorbs the full stop ("Jr." + "." -> "Jr.").
    if (w === "." && last.length > 1 && last.endsWith(".")) continue;
    if (out.length > 0 && !glueNext && !glueBefore) out.push(" ");
    out.push(text);
    last = w;
    glueNext = glueAfter;
  }
  return out.join("");
}
