import * as assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { loadPickle, toJson } from "../src/formats/dcp/pickle-values.js";

/** Pickle opcodes by hand (the format's spec, Lib/pickletools.py), so each case is exactly what it says. */
const P = (...parts: (number | string | Buffer)[]) =>
  Buffer.concat(
    parts.map((p) =>
      typeof p === "number" ? Buffer.of(p) : typeof p === "string" ? Buffer.from(p, "latin1") : p,
    ),
  );
const str = (s: string) => P(0x8c, s.length, s);
const refuses = (bytes: Buffer, pattern: RegExp) =>
  assert.throws(
    () => loadPickle(bytes, "/ck/.metadata"),
    (e: unknown) =>
      isPmaError(e, "METADATA_INVALID") && pattern.test(e.message) && e.message.includes("/ck/.metadata"),
  );

describe("the inert pickle interpreter", () => {
  it("builds containers and numbers as Python would, including LONG1 beyond 2^53 and negative", () => {
    // {'a': [1, -2, 2**62, -(2**63)], 'b': (0.5, None, True)}
    const big = Buffer.alloc(8);
    big.writeBigInt64LE(1n << 62n);
    const min = Buffer.alloc(8);
    min.writeBigInt64LE(-(1n << 63n));
    const bytes = P(
      0x80,
      2,
      0x7d,
      0x28,
      str("a"),
      0x5d,
      0x28,
      0x4b,
      1,
      0x4a,
      "\xfe\xff\xff\xff",
      0x8a,
      8,
      big.toString("latin1"),
      0x8a,
      8,
      min.toString("latin1"),
      0x65,
      str("b"),
      0x47,
      "\x3f\xe0\x00\x00\x00\x00\x00\x00",
      0x4e,
      0x88,
      0x87,
      0x75,
      0x2e,
    );
    assert.deepEqual(toJson(loadPickle(bytes, "t")), {
      a: [1, -2, (1n << 62n).toString(), (-(1n << 63n)).toString()],
      b: [0.5, null, true],
    });
  });

  it("refuses globals outside the allowlist by name, through GLOBAL and STACK_GLOBAL, and runs nothing", () => {
    refuses(P(0x80, 2, 0x63, "os\nsystem\n", str("echo"), 0x85, 0x52, 0x2e), /"os\.system"/);
    refuses(P(0x80, 4, str("builtins"), str("eval"), 0x93, 0x2e), /"builtins\.eval"/);
    refuses(P(0x80, 4, str("subprocess"), str("Popen"), 0x93, 0x2e), /"subprocess\.Popen"/);
  });

  it("refuses truncated input, unknown opcodes, unset memo slots and odd stacks", () => {
    refuses(P(0x80, 2, 0x8c, 10, "abc"), /ends early/);
    refuses(P(0x80, 2, 0xff), /opcode 0xff/);
    refuses(P(0x80, 2, 0x68, 7, 0x2e), /memo slot 7/);
    refuses(P(0x80, 2, 0x2e), /empty stack/);
    refuses(P(0x80, 2, 0x7d, 0x4e, 0x61, 0x2e), /not a list/);
    // APPEND to an object whose BUILD state is a dict (a fuzzer's find): an error, not a crash.
    refuses(
      P(0x80, 4, str("torch"), str("Size"), 0x93, 0x29, 0x81, 0x7d, 0x62, 0x4e, 0x61, 0x2e),
      /state is not a list/,
    );
  });

  it("keeps within its budgets", () => {
    assert.throws(
      () =>
        loadPickle(P(0x80, 2, 0x28, ...Array.from({ length: 40 }, () => 0x4e), 0x2e), "t", {
          maxMemo: 4,
          maxStack: 16,
          maxString: 8,
          maxItems: 100,
        }),
      (e: unknown) => isPmaError(e, "METADATA_INVALID") && /stack grows past 16/.test(e.message),
    );
    assert.throws(
      () =>
        loadPickle(P(0x80, 2, 0x8c, 9, "123456789", 0x2e), "t", {
          maxMemo: 4,
          maxStack: 16,
          maxString: 8,
          maxItems: 100,
        }),
      /string of 9 bytes/,
    );
    assert.throws(
      () =>
        loadPickle(P(0x80, 2, 0x4e, ...[0, 1, 2, 3, 4].flatMap((i) => [0x71, i]), 0x2e), "t", {
          maxMemo: 4,
          maxStack: 16,
          maxString: 8,
          maxItems: 100,
        }),
      /memo grows past 4/,
    );
  });
});
