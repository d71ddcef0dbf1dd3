/**
 * Text helpers for training-log readers: CSV/TSV rows, and (re-exported from
 * formats/json-python.ts) JSON as Python writes it, with bare NaN and Infinity.
 */

export { JsonSyntaxError, parseJsonLenient } from "../formats/json-python.js";

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
