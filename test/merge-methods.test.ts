// The merge-method table and what is derived from it: each default is valid, the flags of
// every method round-trip through a real command-line parse, defaults give the paper's
// coefficients (worked by hand in float64), and pma_merge.json records the parameters.
import assert from "node:assert/strict";
import { parseArgs } from "node:util";
import { describe, test } from "node:test";
import {
  METHOD_OPTIONS,
  METHOD_USAGE,
  METHODS_HELP,
  methodFromFlags,
  methodToFlags,
} from "../src/cli/method-flags.js";
import {
  coefficientsFor,
  DEFAULT_METHOD,
  MERGE_METHODS,
  recordedParams,
  type MethodParam,
  type MethodSpec,
} from "../src/merge/methods.js";
import { formatRange, inRange } from "../src/merge/weights.js";
import { isPmaError } from "../src/common/errors.js";

const params = (): MethodParam[] => MERGE_METHODS.flatMap((m): MethodParam[] => [...m.params]);

function parse(argv: string[]): MethodSpec {
  return methodFromFlags(parseArgs({ args: argv, options: METHOD_OPTIONS, strict: true }).values);
}

function close(actual: number[], expected: number[]): void {
  assert.equal(actual.length, expected.length);
  for (const [i, e] of expected.entries())
    assert.ok(Math.abs(actual[i]! - e) < 1e-15, `c${i} = ${actual[i]}, expected ${e}`);
}

describe("merge methods: one table", () => {
  test("names are unique, each has a description, each default lies in its range or choices", () => {
    assert.equal(new Set(MERGE_METHODS.map((m) => m.name)).size, MERGE_METHODS.length);
    for (const m of MERGE_METHODS) assert.ok(m.description.length > 10, m.name);
    for (const p of params()) {
      if (p.kind === "number")
        assert.ok(
          inRange(p.default, p.range),
          `${p.flag} default ${p.default} outside ${formatRange(p.range)}`,
        );
      if (p.kind === "choice") assert.ok(p.choices.includes(p.default), `${p.flag} default ${p.default}`);
    }
    assert.ok(MERGE_METHODS.some((m) => m.name === DEFAULT_METHOD.method));
  });

  test("every parameter has a flag, a usage line and a place in the option table", () => {
    for (const p of params()) {
      assert.ok(p.flag in METHOD_OPTIONS, p.flag);
      assert.match(METHOD_USAGE, new RegExp(`^  --${p.flag}\\b.*${p.help.replace(/[()]/g, "\\$&")}`, "m"));
    }
    for (const m of MERGE_METHODS)
      assert.match(METHODS_HELP, new RegExp(`^  ${m.name} +${m.description.replace(/[()]/g, "\\$&")}$`, "m"));
  });

  test("defaults give the paper's coefficients: EMA a=0.2, WSM 1-sqrt, SMA without flags", () => {
    // EMA recursion (Eq. 4), N=3, a=0.2: c1=(1-a)^2, c2=a(1-a), c3=a.
    close(coefficientsFor(parse(["--method", "ema"]), 3), [0.64, 0.16, 0.2]);
    // WSM 1-sqrt, N=4: f_k = 1 - sqrt((k-1)/4), c_k = f_k - f_{k+1}, f_5 = 0.
    const f = [1, 1 - Math.sqrt(0.25), 1 - Math.sqrt(0.5), 1 - Math.sqrt(0.75), 0];
    close(coefficientsFor(parse(["--method", "wsm"]), 4), [
      f[0]! - f[1]!,
      f[1]! - f[2]!,
      f[2]! - f[3]!,
      f[3]! - f[4]!,
    ]);
    assert.deepEqual(parse([]), { method: "sma" });
    assert.deepEqual(parse(["--method", "EMA"]), { method: "ema", alpha: 0.2 });
  });

  test("each method's flags round-trip: spec -> flags -> parse -> the same spec", () => {
    const specs: MethodSpec[] = [
      { method: "sma" },
      { method: "wma" },
      { method: "ema", alpha: 0.35 },
      { method: "wsm", decay: "cosine" },
      { method: "custom", weights: [1, 2, 0.5], normalize: true },
      { method: "custom", weights: [1, -1], normalize: false },
    ];
    for (const s of specs) assert.deepEqual(parse(methodToFlags(s)), s, methodToFlags(s).join(" "));
  });

  test("bad values are usage errors naming the flag and the valid values", () => {
    const usage = (argv: string[], re: RegExp) =>
      assert.throws(
        () => parse(argv),
        (e: unknown) => isPmaError(e) && e.code === "USAGE" && re.test(e.message),
        argv.join(" "),
      );
    usage(["--method", "median"], /--method must be sma, wma, ema or wsm \(got 'median'\)/);
    usage(["--method", "ema", "--alpha", "0"], /--alpha must be in \(0, 1\]/);
    usage(["--method", "ema", "--alpha", "x"], /--alpha must be in \(0, 1\]/);
    usage(["--method", "wsm", "--decay", "step"], /--decay must be one of 1-sqrt, linear, cosine/);
    usage(["--method", "custom"], /--method custom needs --weights W1,W2,\.\.\./);
    usage(["--weights", "1,2", "--method", "ema"], /cannot be combined with --method ema/);
    usage(["--weights", "1,,2"], /--weights: '' is not a number/);
  });

  test("pma_merge.json records the valued parameters, defaults filled in, nothing for the others", () => {
    assert.deepEqual(recordedParams({ method: "ema" }), { alpha: 0.2 });
    assert.deepEqual(recordedParams({ method: "wsm", decay: "linear" }), { decay: "linear" });
    assert.deepEqual(recordedParams({ method: "sma" }), {});
    assert.deepEqual(recordedParams({ method: "custom", weights: [1, 2] }), {});
  });
});
