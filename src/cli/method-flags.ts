/**
 * The flags that choose merge coefficients, shared by `pma merge`, `plan`, `init` and
 * `watch`: every flag, its usage line and its check come from merge/methods.ts.
 */
import { PmaError } from "../common/errors.js";
import {
  DEFAULT_METHOD,
  MERGE_METHODS,
  type MethodParam,
  type MethodSpec,
  type NumbersParam,
} from "../merge/methods.js";
import { formatRange, inRange } from "../merge/weights.js";

type TableParam = (typeof MERGE_METHODS)[number]["params"][number];
type FlagOptions = {
  [P in TableParam as P["flag"]]: { type: P extends { kind: "switch-off" } ? "boolean" : "string" };
};
type FlagValues = { method?: string } & {
  [P in TableParam as P["flag"]]?: P extends { kind: "switch-off" } ? boolean : string;
};

const PARAMS: MethodParam[] = [
  ...new Map(MERGE_METHODS.flatMap((m): MethodParam[] => [...m.params]).map((p) => [p.flag, p])).values(),
];

/** A method chosen by one of its parameters' flags (custom: --weights) rather than by --method. */
const selectedBy = (m: (typeof MERGE_METHODS)[number]): NumbersParam | undefined =>
  (m.params as readonly MethodParam[]).find((p): p is NumbersParam => p.kind === "numbers");
const BY_NAME = MERGE_METHODS.filter((m) => selectedBy(m) === undefined).map((m) => m.name);

export const METHOD_OPTIONS = {
  method: { type: "string" },
  ...Object.fromEntries(
    PARAMS.map((p) => [p.flag, { type: p.kind === "switch-off" ? "boolean" : "string" }]),
  ),
} as { method: { type: "string" } } & FlagOptions;

function choices(list: readonly string[], def: string): string {
  return list.map((c) => (c === def ? `${c} (default)` : c)).join(" | ");
}

function usageLine(flag: string, text: string): string {
  return `  ${flag.padEnd(22)}${text}`;
}

function paramUsage(p: MethodParam): string {
  switch (p.kind) {
    case "number":
      return usageLine(`--${p.flag} ${p.placeholder}`, `${p.help}, default ${p.default}`);
    case "choice":
      return usageLine(`--${p.flag} ${p.placeholder}`, `${p.help}: ${choices(p.choices, p.default)}`);
    case "numbers":
      return usageLine(`--${p.flag} ${p.placeholder}`, p.help);
    case "switch-off":
      return usageLine(`--${p.flag}`, p.help);
  }
}

export const METHOD_USAGE = [
  usageLine("--method M", choices(BY_NAME, DEFAULT_METHOD.method)),
  ...PARAMS.map(paramUsage),
].join("\n");

/** One line per method: its name and what it does. */
export const METHODS_HELP = MERGE_METHODS.map((m) => `  ${m.name.padEnd(8)}${m.description}`).join("\n");

/** "a, b, c or d" */
function oneOf(names: readonly string[]): string {
  return names.length === 1 ? names[0]! : `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]!}`;
}

function parseNumbers(p: MethodParam, text: string): number[] {
  return text.split(",").map((w) => {
    const x = Number(w.trim());
    if (w.trim() === "" || !Number.isFinite(x))
      throw new PmaError("USAGE", `--${p.flag}: '${w}' is not a number`);
    return x;
  });
}

/** The value of one parameter from its flag, its default when the flag is absent. */
function paramValue(
  p: MethodParam,
  values: Record<string, string | boolean | undefined>,
): number | string | boolean | number[] {
  const raw = values[p.flag];
  switch (p.kind) {
    case "number": {
      const x = raw === undefined ? p.default : Number(raw);
      if (!inRange(x, p.range))
        throw new PmaError("USAGE", `--${p.flag} must be in ${formatRange(p.range)} (got '${String(raw)}')`);
      return x;
    }
    case "choice": {
      const v = typeof raw === "string" ? raw : p.default;
      if (!p.choices.includes(v))
        throw new PmaError(
          "USAGE",
          `--${p.flag} must be one of ${p.choices.join(", ")} (got '${String(raw)}')`,
        );
      return v;
    }
    case "numbers":
      return parseNumbers(p, String(raw));
    case "switch-off":
      return !(raw === true);
  }
}

function specFor(
  name: string,
  params: readonly MethodParam[],
  values: Record<string, string | boolean | undefined>,
): MethodSpec {
  const spec: Record<string, unknown> = { method: name };
  for (const p of params) spec[p.key] = paramValue(p, values);
  return spec as unknown as MethodSpec;
}

export function methodFromFlags(flags: FlagValues): MethodSpec {
  const values = flags as Record<string, string | boolean | undefined>;
  for (const m of MERGE_METHODS) {
    const by = selectedBy(m);
    if (by === undefined || values[by.flag] === undefined) continue;
    if (flags.method !== undefined && flags.method !== m.name) {
      throw new PmaError(
        "USAGE",
        `--${by.flag} gives ${m.name} weights; it cannot be combined with --method ${flags.method}`,
      );
    }
    return specFor(m.name, m.params, values);
  }
  const name = (flags.method ?? DEFAULT_METHOD.method).toLowerCase();
  const entry = MERGE_METHODS.find((m) => m.name === name);
  if (entry !== undefined) {
    const by = selectedBy(entry);
    if (by !== undefined)
      throw new PmaError("USAGE", `--method ${name} needs --${by.flag} ${by.placeholder}`);
    return specFor(entry.name, entry.params, values);
  }
  throw new PmaError("USAGE", `--method must be ${oneOf(BY_NAME)} (got '${flags.method}')`);
}

/** The flags that reproduce `spec` on a command line. */
export function methodToFlags(spec: MethodSpec): string[] {
  const entry = MERGE_METHODS.find((m) => m.name === spec.method);
  if (entry === undefined) throw new PmaError("INTERNAL", `unknown merge method "${spec.method}"`);
  const by = selectedBy(entry);
  const out = by === undefined ? ["--method", entry.name] : [];
  for (const p of entry.params as readonly MethodParam[]) {
    const v = spec[p.key];
    if (p.kind === "number" || p.kind === "choice") out.push(`--${p.flag}`, String(v ?? p.default));
    else if (p.kind === "numbers") out.push(`--${p.flag}`, ((v as number[] | undefined) ?? []).join(","));
    else if (v === false) out.push(`--${p.flag}`);
  }
  return out;
}
