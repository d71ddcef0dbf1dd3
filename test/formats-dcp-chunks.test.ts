import * as assert from "node:assert/strict";
import { describe, it } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { checkTiling, globalRuns, rowMajorStrides, type ChunkBox } from "../src/formats/dcp/chunks.js";
import { rng } from "./helpers/fixtures.js";

/** Per element, by brute force: which chunk holds it and at which index in the chunk's own order. */
function bruteLocate(shape: number[], chunks: ChunkBox[], g: number): [number, number] {
  const gs = rowMajorStrides(shape);
  const p = shape.map((_, d) => Math.floor(g / gs[d]!) % shape[d]!);
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i]!;
    if (p.every((x, d) => x >= c.offsets[d]! && x < c.offsets[d]! + c.sizes[d]!)) {
      const cs = rowMajorStrides(c.sizes);
      return [i, p.reduce((s, x, d) => s + (x - c.offsets[d]!) * cs[d]!, 0)];
    }
  }
  throw new Error("no chunk");
}

/** A random grid split of `shape`: every dimension cut at random points. */
function randomGrid(shape: number[], next: () => number): ChunkBox[] {
  const cuts = shape.map((n) => {
    const pts = new Set([0, n]);
    const k = Math.floor(next() * 3);
    for (let i = 0; i < k; i++) pts.add(Math.floor(next() * n));
    return [...pts].sort((a, b) => a - b);
  });
  let boxes: ChunkBox[] = [{ offsets: [], sizes: [] }];
  for (const c of cuts) {
    const nextBoxes: ChunkBox[] = [];
    for (const b of boxes) {
      for (let i = 0; i + 1 < c.length; i++) {
        if (c[i + 1]! > c[i]!)
          nextBoxes.push({ offsets: [...b.offsets, c[i]!], sizes: [...b.sizes, c[i + 1]! - c[i]!] });
      }
    }
    boxes = nextBoxes;
  }
  // Metadata lists chunks in any order.
  return boxes.sort(() => next() - 0.5);
}

describe("DCP chunk geometry", () => {
  it("globalRuns agrees with a per-element brute force on random grid splits", () => {
    const next = rng(7);
    for (let trial = 0; trial < 200; trial++) {
      const rank = 1 + Math.floor(next() * 3);
      const shape = Array.from({ length: rank }, () => 1 + Math.floor(next() * 6));
      const chunks = randomGrid(shape, next);
      checkTiling("t", shape, chunks, "test");
      const total = shape.reduce((a, b) => a * b, 1);
      const start = Math.floor(next() * total);
      const count = Math.floor(next() * (total - start + 1));
      let g = start;
      for (const run of globalRuns(shape, chunks, start, count)) {
        assert.equal(run.globalElement, g);
        assert.ok(run.length > 0);
        for (let k = 0; k < run.length; k++)
          assert.deepEqual(bruteLocate(shape, chunks, g + k), [run.chunk, run.chunkElement + k]);
        g += run.length;
      }
      assert.equal(g, start + count);
    }
  });

  it("a chunk that spans its trailing dimensions is read in one run", () => {
    const runs = [
      ...globalRuns(
        [4, 3, 2],
        [
          { offsets: [0, 0, 0], sizes: [2, 3, 2] },
          { offsets: [2, 0, 0], sizes: [2, 3, 2] },
        ],
        0,
        24,
      ),
    ];
    assert.deepEqual(
      runs.map((r) => r.length),
      [12, 12],
    );
  });

  it("a 0-dim tensor is one element in one run", () => {
    checkTiling("s", [], [{ offsets: [], sizes: [] }], "test");
    assert.deepEqual(
      [...globalRuns([], [{ offsets: [], sizes: [] }], 0, 1)],
      [{ chunk: 0, chunkElement: 0, globalElement: 0, length: 1 }],
    );
  });

  const refuses = (shape: number[], chunks: ChunkBox[], pattern: RegExp) =>
    assert.throws(
      () => checkTiling("w", shape, chunks, "/ck/.metadata"),
      (e: unknown) =>
        isPmaError(e, "METADATA_INVALID") && pattern.test(e.message) && e.message.includes("/ck/.metadata"),
    );

  it("refuses overlapping chunks, holes, chunks outside the shape and rank mismatches", () => {
    refuses(
      [4, 2],
      [
        { offsets: [0, 0], sizes: [3, 2] },
        { offsets: [2, 0], sizes: [2, 2] },
      ],
      /overlapping/,
    );
    refuses(
      [4, 2],
      [
        { offsets: [0, 0], sizes: [2, 2] },
        { offsets: [3, 0], sizes: [1, 2] },
      ],
      /hole/,
    );
    refuses(
      [4, 2],
      [
        { offsets: [0, 0], sizes: [4, 2] },
        { offsets: [4, 0], sizes: [1, 2] },
      ],
      /outside/,
    );
    refuses([4, 2], [{ offsets: [0], sizes: [4] }], /rank/);
    refuses([4, 2], [{ offsets: [-1, 0], sizes: [4, 2] }], /outside/);
    refuses([4, 2], [], /no chunks/);
    // Same volume as the shape, but one box twice: an overlap, not a tiling.
    refuses(
      [4, 2],
      [
        { offsets: [0, 0], sizes: [2, 2] },
        { offsets: [0, 0], sizes: [2, 2] },
      ],
      /overlapping/,
    );
  });
});
