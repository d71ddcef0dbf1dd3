/**
 * Sentences and words of plain running text, for building zero-shot items. Corpus
 * documents carry no sentence marks (Brown's layout puts one sentence per line, but the
 * plain text joins a paragraph's sentences with spaces), so sentences are found again:
 * a stop (. ! ?), optionally closed by quotes or brackets, then whitespace, then an
 * upper-case letter (possibly after an opening quote or bracket). A stop after a known
 * abbreviation or a single-letter initial ("Mr.", "J. F. Kennedy") does not end one.
 * Occasional mistakes only cost an item; they cannot leak test text into training.
 */

export interface Sentence {
  /** The sentence with runs of whitespace collapsed to one space. */
  readonly text: string;
  /** Index of the paragraph (blank-line separated block) in the document. */
  readonly paragraph: number;
  /** Index of the sentence in the document. */
  readonly index: number;
}

const ABBREVIATIONS = new Set([
  "mr",
  "mrs",
  "ms",
  "dr",
  "st",
  "jr",
  "sr",
  "messrs",
  "mme",
  "mlle",
  "gen",
  "col",
  "lt",
  "sgt",
  "capt",
  "cmdr",
  "adm",
  "maj",
  "rev",
  "prof",
  "gov",
  "sen",
  "rep",
  "pres",
  "supt",
  "inc",
  "co",
  "corp",
  "ltd",
  "bros",
  "no",
  "nos",
  "vs",
  "etc",
  "viz",
  "cf",
  "e.g",
  "i.e",
  "u.s",
  "u.n",
  "u.s.a",
  "ft",
  "ave",
  "blvd",
  "mt",
  "ref",
  "fig",
  "figs",
  "vol",
  "ch",
  "pp",
  "ca",
  "approx",
  "dept",
  "univ",
  "jan",
  "feb",
  "mar",
  "apr",
  "aug",
  "sept",
  "sep",
  "oct",
  "nov",
  "dec",
  "ala",
  "ariz",
  "calif",
  "colo",
  "conn",
  "del",
  "fla",
  "ga",
  "ill",
  "ind",
  "kan",
  "ky",
  "la",
  "md",
  "mass",
  "mich",
  "minn",
  "miss",
  "mo",
  "mont",
  "neb",
  "nev",
  "okla",
  "ore",
  "pa",
  "tenn",
  "tex",
  "va",
  "vt",
  "wash",
  "wis",
  "wyo",
]);

/** A candidate boundary: stop, closing quotes/brackets, whitespace, then a capital (maybe after an opener). */
const BOUNDARY = /([.!?])(["')\]]*)\s+(?=["'(\[]?[A-Z])/g;

/** The sentences of one document, in order, each with its paragraph index. */
export function splitSentences(text: string): Sentence[] {
  const out: Sentence[] = [];
  const paragraphs = text.split(/\n\s*\n/);
  paragraphs.forEach((raw, paragraph) => {
    const p = raw.replace(/\s+/g, " ").trim();
    if (p === "") return;
    let start = 0;
    BOUNDARY.lastIndex = 0;
    for (let m = BOUNDARY.exec(p); m !== null; m = BOUNDARY.exec(p)) {
      const stopAt = m.index;
      if (m[1] === "." && m[2] === "" && isAbbreviation(p, start, stopAt)) continue;
      const end = stopAt + m[1]!.length + m[2]!.length;
      push(out, p.slice(start, end), paragraph);
      start = m.index + m[0].length;
    }
    push(out, p.slice(start), paragraph);
  });
  return out;
}

function push(out: Sentence[], text: string, paragraph: number): void {
  const t = text.trim();
  if (t !== "") out.push({ text: t, paragraph, index: out.length });
}

/** Whether the word ending just before the stop at `stopAt` is an abbreviation or an initial. */
function isAbbreviation(p: string, start: number, stopAt: number): boolean {
  let i = stopAt;
  while (i > start && !/[\s"'(\[]/.test(p[i - 1]!)) i--;
  const word = p.slice(i, stopAt).toLowerCase();
  if (/^[a-z]$/.test(word)) return true; // an initial: "J. Edward Hackstaff"
  return ABBREVIATIONS.has(word);
}

/** The space-separated chunks of a sentence (words with their punctuation attached). */
export function chunks(sentence: string): string[] {
  return sentence.split(" ").filter((c) => c !== "");
}

/** A chunk that is a bare word: letters only, so moving or removing it leaves no stray punctuation. */
export function isBareWord(chunk: string): boolean {
  return /^[A-Za-z]+$/.test(chunk);
}

/**
 * The last word of a sentence when the sentence ends "... word." (or ! ?, maybe with
 * closing quotes or brackets before or after the stop): the word, the text before it
 * (no trailing space), and the punctuation after it. Null when the final chunk is not
 * a word followed by such punctuation.
 */
export function lastWord(sentence: string): { context: string; word: string; tail: string } | null {
  const m = /^(.*\S) ([A-Za-z]+)(["')\]]*[.!?]["')\]]*)$/.exec(sentence);
  if (m === null) return null;
  return { context: m[1]!, word: m[2]!, tail: m[3]! };
}

/**
 * The bare words of a text (exact case), as counted for word frequencies: each
 * whitespace-separated chunk with its surrounding punctuation removed, kept when only
 * letters remain ("harm." counts as "harm"; "don't" and "1961" are not words here).
 */
export function* bareWords(text: string): Generator<string> {
  const re = /\S+/g;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    const w = m[0].replace(/^[^A-Za-z]+|[^A-Za-z]+$/g, "");
    if (w !== "" && isBareWord(w)) yield w;
  }
}
