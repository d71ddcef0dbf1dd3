/**
 * JSON the way Python's `json.dumps` writes it (the Hugging Face Trainer writes
 * trainer_state.json with it): NaN, Infinity and -Infinity as bare literals, which
 * JSON.stringify cannot produce (it writes null). Written independently of pma's parser.
 */
const MARK = "@@pma-test-nonfinite@@";

export function pythonJsonDumps(value: unknown, indent = 2): string {
  const text = JSON.stringify(
    value,
    (_k, v: unknown) => {
      if (typeof v !== "number" || Number.isFinite(v)) return v;
      return MARK + (Number.isNaN(v) ? "NaN" : v > 0 ? "Infinity" : "-Infinity");
    },
    indent,
  );
  return text.replace(new RegExp(`"${MARK}(NaN|Infinity|-Infinity)"`, "g"), "$1");
}
