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

export type PythonJsonType = "int" | "float" | "str" | "bool" | "None" | "list" | "dict";

/**
 * The Python type json.loads gives each top-level value of a JSON object: a number token
 * with a '.', 'e' or 'E' is a float, otherwise an int. Only what the config tests need:
 * a well-formed object (JSON.parse is asked first).
 */
export function pythonTopLevelTypes(text: string): Map<string, PythonJsonType> {
  JSON.parse(text);
  const out = new Map<string, PythonJsonType>();
  let i = text.indexOf("{") + 1;
  const skipWs = () => {
    while (/\s/.test(text[i] ?? "")) i++;
  };
  const readString = (): string => {
    const start = i;
    for (i++; text[i] !== '"'; i++) if (text[i] === "\\") i++;
    i++;
    return JSON.parse(text.slice(start, i)) as string;
  };
  const skipContainer = () => {
    let depth = 0;
    do {
      const c = text[i];
      if (c === '"') {
        readString();
        continue;
      }
      if (c === "{" || c === "[") depth++;
      else if (c === "}" || c === "]") depth--;
      i++;
    } while (depth > 0);
  };
  for (;;) {
    skipWs();
    if (text[i] === "}") return out;
    const key = readString();
    skipWs();
    i++; // ':'
    skipWs();
    const c = text[i]!;
    if (c === '"') {
      readString();
      out.set(key, "str");
    } else if (c === "{" || c === "[") {
      out.set(key, c === "{" ? "dict" : "list");
      skipContainer();
    } else {
      const m = /^(true|false|null|-?[0-9.eE+-]+)/.exec(text.slice(i))!;
      const tok = m[1]!;
      out.set(
        key,
        tok === "null"
          ? "None"
          : tok === "true" || tok === "false"
            ? "bool"
            : /[.eE]/.test(tok)
              ? "float"
              : "int",
      );
      i += tok.length;
    }
    skipWs();
    if (text[i] === ",") i++;
  }
}
