/**
 * Structure-aware mutation of JSON (and of one line of JSONL): parse, change one node,
 * print. Byte mutations of JSON mostly produce syntax errors, which stop at the parser;
 * these keep the text valid and reach the checks behind it (types, ranges, offsets,
 * names, duplicate keys). Values that JSON.stringify cannot print (2^64, 1e400,
 * duplicate keys, deep nesting) are spliced in as raw text through placeholders.
 */
import type { Rng } from "./mutate.js";

const RAW_VALUES = [
  "0",
  "-1",
  "1.5",
  "-0",
  "1e400",
  "-1e400",
  "9007199254740993",
  "18446744073709551616",
  "4294967296",
  "100000001",
  "null",
  "true",
  "false",
  '""',
  "[]",
  "{}",
  "[0]",
  "[0,0]",
  "[-1,1]",
  "[1,0]",
  "[1e20,1e20]",
  "[9007199254740992,9007199254740993]",
  '"F32"',
  '"BF16"',
  '"F4"',
  '"nope"',
  '"\\u0000"',
  '"\\ud800"',
  '"../x"',
  '"/etc/passwd"',
  "NaN",
  "Infinity",
  "[4294967296,4294967296,4294967296]",
  "[0,18446744073709551615]",
  `${"[".repeat(64)}${"]".repeat(64)}`,
];

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

interface Slot {
  parent: Json[] | { [k: string]: Json };
  key: number | string;
}

function slots(v: Json, out: Slot[]): Slot[] {
  if (Array.isArray(v)) v.forEach((x, i) => (out.push({ parent: v, key: i }), slots(x, out)));
  else if (v !== null && typeof v === "object")
    for (const [k, x] of Object.entries(v)) (out.push({ parent: v, key: k }), slots(x, out));
  return out;
}

function get(s: Slot): Json {
  return (s.parent as Record<string | number, Json>)[s.key]!;
}

function set(s: Slot, x: Json): void {
  (s.parent as Record<string | number, Json>)[s.key] = x;
}

/** One mutation of a JSON document, or null when `text` is not JSON. */
export function mutateJsonText(text: string, rng: Rng, dictionary: readonly string[]): string | null {
  let doc: Json;
  try {
    doc = JSON.parse(text) as Json;
  } catch {
    return null;
  }
  const all = slots(doc, []);
  // Now and then the whole document becomes another value: a file holding just "null".
  if (all.length === 0 || rng.below(16) === 0) return rng.pick(RAW_VALUES);
  const raw: string[] = [];
  const placeholder = (r: string): string => `\u0001raw${raw.push(r) - 1}\u0001`;
  const s = rng.pick(all);
  switch (rng.below(7)) {
    case 0:
      set(s, placeholder(rng.pick(RAW_VALUES)));
      break;
    case 1: {
      // A dictionary word as a value, or as the key of this entry.
      const word = dictionary.length > 0 ? rng.pick(dictionary) : '"x"';
      const asString = word.startsWith('"') ? word : JSON.stringify(word);
      if (!Array.isArray(s.parent) && rng.below(2) === 0) {
        const value = get(s);
        delete s.parent[s.key as string];
        s.parent[placeholder(asString)] = value;
      } else set(s, placeholder(asString));
      break;
    }
    case 2:
      if (Array.isArray(s.parent)) s.parent.splice(s.key as number, 1);
      else delete s.parent[s.key as string];
      break;
    case 3: {
      // Copy another node here (an entry of one tensor on another, a record twice).
      set(s, structuredClone(get(rng.pick(all))));
      break;
    }
    case 4: {
      // The same key twice in one object: JSON.parse keeps the last, other readers the first.
      if (Array.isArray(s.parent)) s.parent.push(structuredClone(get(s)));
      else s.parent[placeholder(`${JSON.stringify(s.key)}`) + "\u0002dup"] = structuredClone(get(s));
      break;
    }
    case 5: {
      const n = get(s);
      if (typeof n === "number")
        set(s, rng.pick([n + 1, n - 1, n * 2, -n, n + 0.5, n * 2 ** 32, 2 ** 53 - n]));
      else set(s, placeholder(rng.pick(RAW_VALUES)));
      break;
    }
    default: {
      // Wrap in an array or object (a scalar where a list is expected, and the reverse).
      const n = get(s);
      set(s, rng.below(2) === 0 ? [n] : { v: n });
    }
  }
  let out = JSON.stringify(doc);
  // A duplicated key was stored under a unique name; print it under the original one.
  out = out.replace(/"\\u0001raw(\d+)\\u0001\\u0002dup"/g, (_m, i: string) => raw[Number(i)]!);
  out = out.replace(/"\\u0001raw(\d+)\\u0001"/g, (_m, i: string) => raw[Number(i)]!);
  return out;
}

/** Mutates `text` as JSON, or one line of it as JSONL; null when neither applies. */
export function mutateJsonOrLine(text: string, rng: Rng, dictionary: readonly string[]): string | null {
  const whole = mutateJsonText(text, rng, dictionary);
  if (whole !== null) return whole;
  const lines = text.split("\n");
  if (lines.length < 2) return null;
  const i = rng.below(lines.length);
  const line = mutateJsonText(lines[i]!, rng, dictionary);
  if (line === null) return null;
  lines[i] = line;
  return lines.join("\n");
}
