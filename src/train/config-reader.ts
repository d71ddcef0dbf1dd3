/**
 * Typed reads of one section of a YAML/JSON training config, each failure a
 * CONFIG_INVALID error that names the file and the dotted field ("run.yaml:
 * schedule.lr must be a number >= 0, got "fast""), so a user never has to guess
 * which line was wrong. Unknown keys are refused: a typo must not fall back to a
 * default silently.
 */
import { PmaError } from "../common/errors.js";
import { parseTokens } from "../common/units.js";

export function configError(where: string, field: string, problem: string): PmaError {
  return new PmaError("CONFIG_INVALID", `${where}: ${field} ${problem}`);
}

function show(v: unknown): string {
  return v === undefined ? "nothing" : JSON.stringify(v);
}

export class SectionReader {
  private readonly o: Record<string, unknown>;

  constructor(
    private readonly where: string,
    private readonly section: string,
    value: unknown,
    allowed: readonly string[],
  ) {
    if (value === undefined || value === null) {
      this.o = {};
      return;
    }
    if (typeof value !== "object" || Array.isArray(value)) {
      throw configError(where, section, `must be a mapping of fields, got ${show(value)}`);
    }
    this.o = value as Record<string, unknown>;
    for (const k of Object.keys(this.o)) {
      // null means "default" (saved configs write absent schedule fields as null).
      if (!allowed.includes(k) && this.o[k] !== null)
        throw configError(where, `${section}.${k}`, `is not a known field (known: ${allowed.join(", ")})`);
    }
  }

  has(key: string): boolean {
    return this.o[key] !== undefined && this.o[key] !== null;
  }

  private fail(key: string, problem: string): never {
    throw configError(this.where, `${this.section}.${key}`, `${problem}, got ${show(this.o[key])}`);
  }

  number(
    key: string,
    fallback: number,
    opts: { min?: number; above?: number; max?: number; below?: number } = {},
  ): number {
    if (!this.has(key)) return fallback;
    const v = this.o[key];
    if (typeof v !== "number" || !Number.isFinite(v)) this.fail(key, "must be a finite number");
    if (opts.min !== undefined && v < opts.min) this.fail(key, `must be >= ${opts.min}`);
    if (opts.above !== undefined && !(v > opts.above)) this.fail(key, `must be > ${opts.above}`);
    if (opts.max !== undefined && v > opts.max) this.fail(key, `must be <= ${opts.max}`);
    if (opts.below !== undefined && !(v < opts.below)) this.fail(key, `must be < ${opts.below}`);
    return v;
  }

  integer(key: string, fallback: number, min: number): number {
    if (!this.has(key)) return fallback;
    const v = this.o[key];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min)
      this.fail(key, `must be an integer >= ${min}`);
    return v;
  }

  /** An integer field that may be left null to mean "derive it" (returns the fallback then). */
  optionalInteger(key: string, fallback: number | null, min: number): number | null {
    return this.has(key) ? this.integer(key, 0, min) : fallback;
  }

  /** A token count: an integer, or a string such as "100k", "4M", "1.5B". */
  tokens(key: string, fallback: number): number {
    if (!this.has(key)) return fallback;
    const v = this.o[key];
    if (typeof v === "number") {
      if (!Number.isSafeInteger(v) || v < 0) this.fail(key, "must be a whole number of tokens >= 0");
      return v;
    }
    if (typeof v !== "string") this.fail(key, 'must be a token count such as 204800 or "4M"');
    try {
      return parseTokens(v, `${this.section}.${key}`);
    } catch (e) {
      throw new PmaError("CONFIG_INVALID", `${this.where}: ${(e as Error).message}`);
    }
  }

  boolean(key: string, fallback: boolean): boolean {
    if (!this.has(key)) return fallback;
    const v = this.o[key];
    if (typeof v !== "boolean") this.fail(key, "must be true or false");
    return v;
  }

  choice<T extends string>(key: string, fallback: T, choices: readonly T[]): T {
    if (!this.has(key)) return fallback;
    const v = this.o[key];
    if (typeof v !== "string" || !(choices as readonly string[]).includes(v))
      this.fail(key, `must be one of ${choices.join(", ")}`);
    return v as T;
  }
}
