/**
 * JSON as Python writes it: `json.dumps` (and so the Hugging Face Trainer's
 * trainer_state.json) emits bare NaN, Infinity and -Infinity for a diverged loss or an
 * overflowed grad norm, which `JSON.parse` rejects. Those are exactly the runs PMA-init
 * is for, so every reader of training states and logs goes through this parser. Text
 * past the shape limits (json-shape.ts) is refused before parsing, as before.
 */

import { checkJsonShape, LOG_JSON_LIMITS, type JsonShapeLimits } from "./json-shape.js";

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
export function parseJsonLenient(text: string, limits: JsonShapeLimits = LOG_JSON_LIMITS): unknown {
  const shape = checkJsonShape(text, limits);
  if (shape) throw new JsonSyntaxError(`${shape.what} (at character ${shape.position})`, null, null);
  try {
    return JSON.parse(text);
  } catch (e) {
    const quoted = quoteNonFinite(text);
    if (quoted !== null) {
      try {
        return JSON.parse(quoted, (_k, v: unknown) =>
          typeof v === "string" && v in NONFINITE ? NONFINITE[v] : v,
        );
      } catch {
        // Report the error of the original text: positions refer to what the user has.
      }
    }
    throw locate(text, (e as Error).message);
  }
}
