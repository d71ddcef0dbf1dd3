/**
 * Text helpers for training-log readers: JSON as Python writes it (bare NaN and
 * Infinity, which `json.dumps` emits for a diverged loss and `JSON.parse` rejects),
 * and CSV/TSV rows.
 */

import { checkJsonShape, LOG_JSON_LIMITS } from "../formats/json-shape.js";

/** Sentinel strings stand in for the non-finite literals during parsing. */
const SENTINEL = "\u0000pma-nonfinite:";
const NONFINITE: Record<string, number> = {
  [`${SENTINEL}NaN`]: Number.NaN,
  [`${SENTINEL}Infinity`]: Number.POSITIVE_INFINITY,
  [`${SENTINEL}-Infinity`]: Number.NEGATIVE_INFINITY,
};

/** Replaces bare NaN / Infinity / -Infinity outside strings with sentinel strings. */
function quoteNonFinite(text: string): string | null {
  let out = "";
  let last = 0;
  let changed = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c /* \ */) i++;
        else if (d === 0x22) break;
      }
      continue;
    }
    for (const lit of ["NaN", "Infinity", "-Infinity"]) {
      if (text.startsWith(lit, i)) {
        // Stringified, so the control character in the sentinel arrives escaped.
        out += text.slice(last, i) + JSON.stringify(SENTINEL + lit);
        i += lit.length - 1;
        last = i + 1;
        changed = true;
        break;
      }
    }
  }
  return changed ? out + text.slice(last) : null;
}

export class JsonSyntaxError extends Error {
  /** 1-based line and column of the problem, when the engine reports a position. */
  constructor(
    message: string,
    readonly line: number | null,
    readonly column: number | null,
  ) {
    super(message);
  }
}

function locate(text: string, message: string): JsonSyntaxError {
  const m = /at position (\d+)/.exec(message);
  // Some engine messages quote the whole input: keep only what names the problem.
  const short = message.split(/[\r\n]/)[0]!.slice(0, 120);
  if (!m) return new JsonSyntaxError(short, null, null);
  const pos = Number(m[1]);
  const before = text.slice(0, pos);
  const line = before.split("\n").length;
  const column = pos - before.lastIndexOf("\n");
  return new JsonSyntaxError(short.replace(/ in JSON at position \d+.*/, ""), line, column);
}

/**
 * JSON.parse that also accepts Python's NaN, Infinity and -Infinity literals. Text
 * nested deeper than Python can write, or with an array too long for V8, is refused
 * before parsing (see json-shape.ts).
 */
export function parseJsonLenient(text: string): unknown {
  const shape = checkJsonShape(text, LOG_JSON_LIMITS);
  if (shape) throw new JsonSyntaxError(`${shape.what} (at character ${shape.position})`, null, null);
  try {
    return JSON.parse(text);
  } catch (e) {
    const quoted = quoteNonFinite(text);
    if (quoted !== null) {
      try {
        return JSON.parse(quoted, (_k, v: unknown) => (typeof v === "string" && v in NONFINITE ? NONFINITE[v] : v));
      } catch {
        // Report the error of the original text: positions refer to what the user has.
      }
    }
    throw locate(text, (e as Error).message);
  }
}

/** Splits one CSV row; quoted fields may contain the delimiter and doubled quotes. */
export function splitCsvRow(line: string, delimiter: string): string[] {
  if (!line.includes('"')) return line.split(delimiter);
  const cells: string[] = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === delimiter) {
      cells.push(cell);
      cell = "";
    } else cell += ch;
  }
  cells.push(cell);
  return cells;
}

/**
 * A number cell: empty means absent; Python's and pandas' spellings of non-finite
 * values are accepted. Returns undefined for empty, null for unparseable.
 */
export function parseNumberCell(cell: string): number | undefined | null {
  const s = cell.trim();
  if (s === "") return undefined;
  switch (s.toLowerCase()) {
    case "nan":
    case "-nan":
      return Number.NaN;
    case "inf":
    case "+inf":
    case "infinity":
    case "+infinity":
      return Number.POSITIVE_INFINITY;
    case "-inf":
    case "-infinity":
      return Number.NEGATIVE_INFINITY;
  }
  const n = Number(s);
  return Number.isNaN(n) ? null : n;
}
