// The layering of src/: a folder may import only from itself and from folders above it in
// LAYERS (the list in the README's Layout section), and no two folders import each other,
// directly or through others. Imports are read with the TypeScript compiler's own
// pre-processor, so `import type`, `export ... from` and `import()` all count.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import ts from "typescript";

/** Top to bottom: each folder may import from the folders before it. Not all need exist yet. */
const LAYERS = [
  "common",
  "tensor",
  "sources",
  "formats",
  "data",
  "merge",
  "trajectory",
  "nn",
  "train",
  "convert",
  "eval",
  "tune",
  "analysis",
  "lab",
  "report",
  "cli",
] as const;

/** Files directly in src/ (the library entry point) and ambient declarations sit outside the order. */
const UNLAYERED = new Set(["", "types"]);

interface Import {
  file: string;
  from: string;
  to: string;
}

interface Violation {
  file: string;
  target: string;
  why: string;
}

const srcDir = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "src");

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith(".ts") ? [p] : [];
  });
}

/** The top folder of a path inside src/ ("" for files directly in src/). */
function folderOf(path: string): string {
  const parts = relative(srcDir, path).split(sep);
  return parts.length > 1 ? parts[0]! : "";
}

/** Every relative import of every file, as (file, its folder, the imported folder). */
function importsOf(files: string[], read: (file: string) => string): Import[] {
  return files.flatMap((file) =>
    ts
      .preProcessFile(read(file), true, true)
      .importedFiles.map((f) => f.fileName)
      .filter((spec) => spec.startsWith("."))
      .map((spec) => ({ file, from: folderOf(file), to: folderOf(resolve(dirname(file), spec)) })),
  );
}

function layerViolations(imports: Import[]): Violation[] {
  const rank = new Map<string, number>(LAYERS.map((l, i) => [l, i]));
  const out: Violation[] = [];
  for (const { file, from, to } of imports) {
    if (from === to || UNLAYERED.has(from)) continue;
    const rf = rank.get(from);
    const rt = rank.get(to);
    const where = relative(srcDir, file);
    if (rf === undefined)
      out.push({
        file: where,
        target: to,
        why: `folder ${from}/ is not in the layer order; add it to LAYERS and the README`,
      });
    else if (rt === undefined)
      out.push({ file: where, target: to, why: `imports ${to}/, which is not in the layer order` });
    else if (rt > rf)
      out.push({
        file: where,
        target: to,
        why: `${from}/ imports ${to}/, which comes after it in the layer order`,
      });
  }
  return out;
}

/** Folder-level cycles (each as a path a -> b -> ... -> a), found by depth-first search. */
function folderCycles(imports: Import[]): string[][] {
  const edges = new Map<string, Set<string>>();
  for (const { from, to } of imports) {
    if (from === to) continue;
    if (!edges.has(from)) edges.set(from, new Set());
    edges.get(from)!.add(to);
  }
  const cycles: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (n: string): void => {
    state.set(n, "open");
    stack.push(n);
    for (const m of [...(edges.get(n) ?? [])].sort()) {
      if (state.get(m) === "open") cycles.push([...stack.slice(stack.indexOf(m)), m]);
      else if (state.get(m) === undefined) visit(m);
    }
    stack.pop();
    state.set(n, "done");
  };
  for (const n of [...edges.keys()].sort()) if (state.get(n) === undefined) visit(n);
  return cycles;
}

describe("architecture: the layer order of src/", () => {
  const files = sourceFiles(srcDir);
  const imports = importsOf(files, (f) => readFileSync(f, "utf8"));

  test("reads the imports of every file", () => {
    assert.ok(files.length > 100, `${files.length} files`);
    // Every top folder that holds code is placed in the order.
    for (const f of new Set(files.map(folderOf)))
      assert.ok(UNLAYERED.has(f) || (LAYERS as readonly string[]).includes(f), `src/${f}/ is not in LAYERS`);
    assert.ok(imports.some((i) => i.from === "cli" && i.to === "merge"));
  });

  test("no folder imports a folder below it", () => {
    const v = layerViolations(imports);
    assert.deepEqual(v, [], v.map((x) => `${x.file}: ${x.why}`).join("\n"));
  });

  test("no cycle between folders", () => {
    const c = folderCycles(imports);
    assert.deepEqual(c, [], c.map((x) => x.join(" -> ")).join("\n"));
  });

  test("the README's Layout section lists the same order", () => {
    const readme = readFileSync(join(srcDir, "..", "README.md"), "utf8");
    const layout = readme.slice(readme.indexOf("## Layout"));
    const listed = [...layout.matchAll(/^src\/([a-z]+)\//gm)].map((m) => m[1]!);
    assert.deepEqual(
      listed,
      LAYERS.filter((l) => listed.includes(l)),
      "README Layout order differs from LAYERS",
    );
    assert.deepEqual(
      LAYERS.filter((l) => files.some((f) => folderOf(f) === l)).filter((l) => !listed.includes(l)),
      [],
      "folders missing from the README's Layout",
    );
  });

  test("the checks catch an upward import, an unknown folder, and a cycle", () => {
    const fake = (path: string, body: string) => ({ path: join(srcDir, path), body });
    const tree = [
      fake("merge/a.ts", `import { x } from "../train/loop.js";`),
      fake("common/b.ts", `export type { T } from "../tensor/dtype.js";`),
      fake("tensor/c.ts", `const m = await import("../common/errors.js");`),
      fake("widgets/d.ts", `import "../common/errors.js";`),
      fake("report/e.ts", `import type { L } from "../lab/lab.js";`),
    ];
    const body = new Map(tree.map((t) => [t.path, t.body]));
    const imp = importsOf(
      tree.map((t) => t.path),
      (f) => body.get(f)!,
    );
    const v = layerViolations(imp).map((x) => `${x.file} ${x.target}`);
    assert.deepEqual(v, [`merge${sep}a.ts train`, `common${sep}b.ts tensor`, `widgets${sep}d.ts common`]);
    assert.deepEqual(folderCycles(imp), [["common", "tensor", "common"]]);
  });
});
