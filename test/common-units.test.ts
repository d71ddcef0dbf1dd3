import { test } from "node:test";
import assert from "node:assert/strict";
import { formatTokens, parseBytes, parseTokens } from "../src/common/units.js";
import { isPmaError } from "../src/common/errors.js";
import { rng } from "./helpers/fixtures.js";

test("parseBytes: SI units are powers of 1000, IEC units powers of 1024", () => {
  const cases: [string, number][] = [
    ["0", 0],
    ["4096", 4096],
    ["4096B", 4096],
    ["1kB", 1000],
    ["1KB", 1000],
    ["5GB", 5 * 1000 ** 3],
    ["5G", 5 * 1000 ** 3],
    ["5 GB", 5 * 1000 ** 3],
    ["  2TB ", 2 * 1000 ** 4],
    ["1PB", 1000 ** 5],
    ["1KiB", 1024],
    ["128MiB", 128 * 1024 ** 2],
    ["128Mi", 128 * 1024 ** 2],
    ["5GiB", 5 * 1024 ** 3],
    ["1.5KiB", 1536],
    ["1.005kB", 1005],
    ["2.5GB", 2_500_000_000],
    ["0.5MiB", 524288],
    ["1e9", 1e9],
    ["1.25e3KB", 1_250_000],
    ["5e-1KB", 500],
    ["1_000_000", 1e6],
    ["7PiB", 7 * 1024 ** 5],
  ];
  for (const [text, expected] of cases) assert.equal(parseBytes(text), expected, text);
});

test("parseBytes: refuses what it cannot read exactly, naming the flag and a fix", () => {
  const bad = [
    "",
    "GB",
    "-1GB",
    "+5GB",
    "5 gigs",
    "5GiBB",
    "5XB",
    "5Gb",
    "5kb",
    "0.3KiB",
    "1.5",
    "1e-4KB",
    "5gib",
    "1e400",
    "1_",
    "5..0",
    ".5GB",
    "10PiB",
    "1e30",
  ];
  for (const text of bad) {
    assert.throws(
      () => parseBytes(text, "--shard-size"),
      (e) => isPmaError(e, "USAGE") && e.message.startsWith("--shard-size:") && e.message.includes("MiB"),
      text,
    );
  }
});

test("parseTokens: K, M, B (or G) and T are powers of 1000", () => {
  const cases: [string, number][] = [
    ["500000", 500_000],
    ["100k", 100_000],
    ["400M", 400_000_000],
    ["8B", 8_000_000_000],
    ["8b", 8_000_000_000],
    ["8G", 8_000_000_000],
    ["1.5T", 1_500_000_000_000],
    ["0.25B", 250_000_000],
    ["2e9", 2_000_000_000],
    ["9007T", 9_007_000_000_000_000],
  ];
  for (const [text, expected] of cases) assert.equal(parseTokens(text), expected, text);
  for (const text of ["", "8 billion", "8BT", "1.5", "0.0001k", "-8B", "10000T"]) {
    assert.throws(
      () => parseTokens(text, "--interval"),
      (e) => isPmaError(e, "USAGE") && e.message.startsWith("--interval:"),
      text,
    );
  }
});

test("formatTokens: short, and parseTokens reads every output back exactly", () => {
  assert.equal(formatTokens(8e9), "8B");
  assert.equal(formatTokens(400e6), "400M");
  assert.equal(formatTokens(1.5e12), "1.5T");
  assert.equal(formatTokens(999), "999");
  const next = rng(5);
  for (let i = 0; i < 5000; i++) {
    // Magnitudes from 1 to 2^53, uniformly in log scale.
    const n = Math.floor(2 ** (next() * 53));
    assert.equal(parseTokens(formatTokens(n)), n, String(n));
  }
  assert.equal(parseTokens(formatTokens(Number.MAX_SAFE_INTEGER)), Number.MAX_SAFE_INTEGER);
  for (const bad of [-1, 1.5, Number.NaN, 2 ** 53]) {
    assert.throws(
      () => formatTokens(bad),
      (e) => isPmaError(e, "INTERNAL"),
      String(bad),
    );
  }
});
