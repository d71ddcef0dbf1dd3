/**
 * Sizes and token counts as people write them on a command line: "5GB", "128MiB",
 * "8B" tokens, "1.5T", "2e9". Parsing is exact (decimal digits in BigInt, no float
 * multiply-and-floor), so "0.3KiB" is refused instead of quietly becoming 307 bytes,
 * and malformed text is an error rather than a prefix that happens to parse.
 */
import { PmaError } from "./errors.js";

/** Digits with optional "_" separators, a fraction, and a decimal exponent, then a unit. */
const NUMBER_AND_UNIT = /^(\d(?:_?\d)*)(?:\.(\d(?:_?\d)*))?(?:[eE]([+-]?\d+))?\s*([A-Za-z]*)$/;

const SI_PREFIX: Record<string, bigint> = {
  k: 10n ** 3n,
  m: 10n ** 6n,
  g: 10n ** 9n,
  t: 10n ** 12n,
  p: 10n ** 15n,
};
const IEC_PREFIX: Record<string, bigint> = {
  k: 2n ** 10n,
  m: 2n ** 20n,
  g: 2n ** 30n,
  t: 2n ** 40n,
  p: 2n ** 50n,
};
/** Token counts follow the papers: "8B tokens" is eight billion. */
const COUNT_SUFFIX: Record<string, bigint> = {
  k: 10n ** 3n,
  m: 10n ** 6n,
  b: 10n ** 9n,
  g: 10n ** 9n,
  t: 10n ** 12n,
};

const BYTES_HINT = "write e.g. 4096, 128MiB (2^20 bytes each) or 5GB (10^9 bytes each)";
const TOKENS_HINT = "write e.g. 500000, 400M, 8B or 1.5T (K = 10^3, M = 10^6, B = 10^9, T = 10^12)";

/**
 * A byte count: a plain number, or one with an SI (kB/KB, MB, GB, TB, PB: powers of
 * 1000, as Hugging Face shard sizes are) or IEC (KiB, MiB, GiB, TiB, PiB) unit; the
 * trailing B may be left out ("5G", "5Gi"). `what` names the flag or field in errors.
 */
export function parseBytes(text: string, what = "size"): number {
  const m = NUMBER_AND_UNIT.exec(text.trim());
  const unit = m?.[4];
  if (m === null || unit === undefined) throw invalid(text, what, "is not a byte count", BYTES_HINT);
  const u = /^([kmgtp])(i?)(b?)$/i.exec(unit);
  let factor: bigint | undefined;
  if (unit === "" || unit === "B") factor = 1n;
  else if (u !== null) {
    // Some tools read a lowercase b as bits ("5Gb" = 5 gigabits); refuse the guess.
    if (u[3] === "b") throw invalid(text, what, "is ambiguous (lowercase b can mean bits)", BYTES_HINT);
    factor = (u[2] === "" ? SI_PREFIX : IEC_PREFIX)[u[1]!.toLowerCase()];
  }
  if (factor === undefined) throw invalid(text, what, `has an unknown unit '${unit}'`, BYTES_HINT);
  return exactInteger(m, factor, text, what, "a whole number of bytes", BYTES_HINT);
}

/** A token count: a plain number or one with a K, M, B (or G), T suffix, case-insensitive. */
export function parseTokens(text: string, what = "token count"): number {
  const m = NUMBER_AND_UNIT.exec(text.trim());
  const unit = m?.[4];
  if (m === null || unit === undefined) throw invalid(text, what, "is not a token count", TOKENS_HINT);
  const factor = unit === "" ? 1n : COUNT_SUFFIX[unit.toLowerCase()];
  if (factor === undefined) throw invalid(text, what, `has an unknown suffix '${unit}'`, TOKENS_HINT);
  return exactInteger(m, factor, text, what, "a whole number of tokens", TOKENS_HINT);
}

// maximumSignificantDigits 21 (the most Intl allows) keeps every safe integer exact,
// so what pma prints can be pasted back into a flag and parse to the same count.
const COMPACT = new Intl.NumberFormat("en-US", { notation: "compact", maximumSignificantDigits: 21 });

/** A token count in the short form parseTokens reads back exactly: 8000000000 -> "8B". */
export function formatTokens(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new PmaError(
      "INTERNAL",
      `formatTokens: ${n} is not a non-negative whole number of tokens; this is a bug in the caller`,
    );
  }
  return COMPACT.format(n);
}

function exactInteger(
  m: RegExpExecArray,
  factor: bigint,
  text: string,
  what: string,
  needs: string,
  hint: string,
): number {
  const whole = m[1]!.replaceAll("_", "");
  const fraction = (m[2] ?? "").replaceAll("_", "");
  const exponent = m[3] === undefined ? 0 : Number(m[3]);
  // Exponents beyond a few dozen can only give 0 < x < 1 or numbers past 2^53; refuse
  // them before BigInt is asked for 10^1000000.
  if (Math.abs(exponent) > 30) throw invalid(text, what, "is out of range", hint);
  let numerator = BigInt(whole + fraction) * factor;
  let denominator = 10n ** BigInt(fraction.length);
  if (exponent >= 0) numerator *= 10n ** BigInt(exponent);
  else denominator *= 10n ** BigInt(-exponent);
  if (numerator % denominator !== 0n) throw invalid(text, what, `is not ${needs}`, hint);
  const value = numerator / denominator;
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(text, what, "is too large", hint);
  return Number(value);
}

function invalid(text: string, what: string, problem: string, hint: string): PmaError {
  return new PmaError("USAGE", `${what}: '${text}' ${problem}; ${hint}`);
}
