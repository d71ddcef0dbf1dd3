import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { alignedCuts, partitionWork, type ElementRange, type WorkItem } from "../src/merge/partition.js";

const costOf = (t: WorkItem) => t.elements * t.bytesPerElement;

/** Checks the partition's promises on one input, against a walk of its own. */
function checkPartition(items: WorkItem[], count: number, parts: ElementRange[][]): void {
  assert.equal(parts.length, count);
  // Concatenated in part order, the ranges are every element of every item once, in order.
  const flat = parts.flat();
  let k = 0;
  for (const item of items) {
    if (item.elements === 0) continue;
    let next = 0;
    while (next < item.elements) {
      const r = flat[k++];
      assert.ok(r !== undefined, `${item.name}: elements from ${next} are in no part`);
      assert.equal(r.name, item.name);
      assert.equal(r.start, next, `${item.name}: a gap or an overlap at ${next}`);
      assert.ok(r.end > r.start);
      next = r.end;
    }
    assert.equal(next, item.elements);
  }
  assert.equal(k, flat.length, "no range beyond the items");
  // Cuts inside an item only where it may be cut.
  const byName = new Map(items.map((t) => [t.name, t]));
  for (const r of flat) {
    const item = byName.get(r.name)!;
    for (const edge of [r.start, r.end]) {
      if (edge === 0 || edge === item.elements) continue;
      assert.ok(item.cut !== null, `${item.name} may not be cut, but is at ${edge}`);
      assert.equal(
        (edge - item.cut.phase) % item.cut.stride,
        0,
        `${item.name}: cut at ${edge} is not on the allowed grid`,
      );
    }
  }
  // Each cut is within the stated distance of the ideal k/count of the total.
  const total = items.reduce((s, t) => s + costOf(t), 0);
  const share = total / count;
  const slack = Math.max(
    0,
    ...items.map((t) =>
      t.cut === null || costOf(t) <= share ? costOf(t) / 2 : (t.cut.stride * t.bytesPerElement) / 2,
    ),
  );
  let before = 0;
  for (let p = 0; p < count - 1; p++) {
    before += parts[p]!.reduce((s, r) => s + (r.end - r.start) * byName.get(r.name)!.bytesPerElement, 0);
    const ideal = (total * (p + 1)) / count;
    assert.ok(
      Math.abs(before - ideal) <= slack * (1 + 1e-9) + 1e-6,
      `cut ${p + 1}: at ${before}, ideal ${ideal}, slack ${slack}`,
    );
  }
}

test("partition: ranges cover every element once, in order, on the cut grid, near the ideal cuts (property)", () => {
  const item = fc.record({
    elements: fc.integer({ min: 0, max: 5000 }),
    bytesPerElement: fc.integer({ min: 1, max: 40 }),
    cut: fc.option(
      fc.record({ stride: fc.integer({ min: 1, max: 700 }), phase: fc.integer({ min: 0, max: 699 }) }),
      { nil: null },
    ),
  });
  fc.assert(
    fc.property(
      fc.array(item, { minLength: 0, maxLength: 30 }),
      fc.integer({ min: 1, max: 12 }),
      (raw, count) => {
        const items: WorkItem[] = raw.map((t, i) => ({
          name: `t${i}`,
          ...t,
          cut: t.cut === null ? null : { stride: t.cut.stride, phase: t.cut.phase % t.cut.stride },
        }));
        const parts = partitionWork(items, count);
        checkPartition(items, count, parts);
        assert.deepEqual(partitionWork(items, count), parts, "deterministic");
      },
    ),
    { numRuns: 400, seed: 7 },
  );
});

test("partition: small tensors stay whole, a tensor larger than a share is cut, shares balance", () => {
  // A Llama-3-8B-like stack: one big embedding (128256 x 4096), many layer matrices, small norms.
  const items: WorkItem[] = [
    { name: "embed", elements: 128256 * 4096, bytesPerElement: 10 * 2 + 2, cut: alignedCuts(1000, 2, 4096) },
    ...Array.from({ length: 64 }, (_, i) => ({
      name: `layer${i}`,
      elements: 4096 * 4096,
      bytesPerElement: 22,
      cut: alignedCuts(0, 2, 4096),
    })),
    ...Array.from({ length: 32 }, (_, i) => ({
      name: `norm${i}`,
      elements: 4096,
      bytesPerElement: 22,
      cut: alignedCuts(0, 2, 4096),
    })),
  ];
  const parts = partitionWork(items, 8);
  checkPartition(items, 8, parts);
  const cost = (rs: ElementRange[]) => rs.reduce((s, r) => s + (r.end - r.start) * 22, 0);
  const total = items.reduce((s, t) => s + costOf(t), 0);
  for (const p of parts)
    assert.ok(Math.abs(cost(p) - total / 8) <= 4096 * 4096 * 22, "within one layer matrix of a fair share");
  const embedParts = parts.filter((p) => p.some((r) => r.name === "embed")).length;
  assert.ok(embedParts >= 2, "the embedding, bigger than a share, is cut");
  for (const name of ["layer5", "norm3"])
    assert.equal(parts.filter((p) => p.some((r) => r.name === name)).length, 1, `${name} stays whole`);
  // Cuts inside the embedding fall on 4096-byte boundaries of the output file.
  for (const r of parts.flat().filter((r) => r.name === "embed")) {
    for (const e of [r.start, r.end])
      if (e !== 0 && e !== items[0]!.elements) assert.equal((1000 + e * 2) % 4096, 0);
  }
});

test("partition: more parts than tensors leaves some parts empty, never splits a small tensor", () => {
  const items: WorkItem[] = [
    { name: "a", elements: 10, bytesPerElement: 4, cut: { stride: 1, phase: 0 } },
    { name: "b", elements: 10, bytesPerElement: 4, cut: null },
  ];
  const parts = partitionWork(items, 5);
  checkPartition(items, 5, parts);
  assert.equal(
    parts.flat().length,
    4,
    "'a' is larger than a share (8 of 80 bytes), so it is cut; 'b' is whole",
  );
  assert.equal(partitionWork([], 3).flat().length, 0);
  assert.throws(() => partitionWork(items, 0), /positive integer/);
});

test("alignedCuts: positions where the output byte offset is a multiple of the alignment", () => {
  assert.deepEqual(alignedCuts(8, 2, 4096), { stride: 2048, phase: 2044 });
  assert.deepEqual(alignedCuts(4096, 4, 4096), { stride: 1024, phase: 0 });
  // A tensor not element-aligned in its file: multiples of the alignment into the tensor.
  assert.deepEqual(alignedCuts(3, 2, 4096), { stride: 2048, phase: 0 });
});
