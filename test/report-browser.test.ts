// The report page in a real headless browser (the system's Chromium, driven by
// playwright-core; never a downloaded browser): it opens from disk with no console
// errors, requests nothing but itself, shows every figure with a non-empty box, has
// unique element ids with every url(#id) resolvable, and every figure's SVG file parses
// as a standalone XML document. CI installs Chromium with `apt-get install chromium`;
// set CHROMIUM_PATH to use another binary.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { test } from "node:test";
import { chromium } from "playwright-core";
import { writeReport } from "../src/report/write.js";
import { tempDir } from "./helpers/fixtures.js";
import { syntheticReport } from "./helpers/synthetic-report.js";

function chromiumPath(): string {
  const candidates = [process.env["CHROMIUM_PATH"], "/usr/bin/chromium", "/usr/bin/chromium-browser"].filter(
    (p): p is string => p !== undefined && p !== "",
  );
  const found = candidates.find((p) => existsSync(p));
  assert.ok(
    found !== undefined,
    `no Chromium found (tried ${candidates.join(", ")}); install it with \`apt-get install chromium\` or set CHROMIUM_PATH`,
  );
  return found;
}

interface PageFacts {
  figures: number;
  svgs: { id: string; width: number; height: number; visible: boolean; texts: number; inner: string[] }[];
  duplicateIds: string[];
  unresolved: string[];
  resultsTitle: string;
  claimRows: number;
}

// Runs in the page (as a string: the library is compiled without DOM types).
const FACTS = `(() => {
  const figures = [...document.querySelectorAll("figure")];
  const svgs = figures.map((f) => {
    const svg = f.querySelector("svg");
    const r = svg ? svg.getBoundingClientRect() : { width: 0, height: 0 };
    const style = svg ? getComputedStyle(svg) : null;
    const inner = svg ? [...svg.querySelectorAll("[id]")].map((e) => e.id) : [];
    return { id: f.id, width: r.width, height: r.height, visible: !!style && style.display !== "none" && style.visibility !== "hidden", texts: svg ? svg.querySelectorAll("text").length : 0, inner };
  });
  const ids = [...document.querySelectorAll("[id]")].map((e) => e.id);
  const duplicateIds = ids.filter((id, i) => ids.indexOf(id) !== i);
  const unresolved = [];
  for (const el of document.querySelectorAll("svg *")) {
    for (const a of el.getAttributeNames()) {
      const m = /url\\(#([^)]+)\\)/.exec(el.getAttribute(a) || "");
      if (m && !document.getElementById(m[1])) unresolved.push(m[1]);
    }
  }
  const data = JSON.parse(document.getElementById("results-data").textContent);
  return { figures: figures.length, svgs, duplicateIds, unresolved, resultsTitle: data.title, claimRows: document.querySelector("table.claims").querySelectorAll(":scope > tbody > tr").length };
})()`;

test("index.html opens in headless Chromium from disk: no console errors, every figure visible", async () => {
  const executablePath = chromiumPath();
  const tmp = await tempDir("pma-report-browser-");
  const report = syntheticReport();
  const dir = join(tmp.dir, "lab-report");
  await writeReport(dir, report);
  const context = await chromium.launchPersistentContext(join(tmp.dir, "profile"), {
    executablePath,
    headless: true,
    // Root in CI needs --no-sandbox; the rest keeps a fresh profile quiet and offline.
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  try {
    const page = await context.newPage();
    const problems: string[] = [];
    const requests: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("request", (r) => requests.push(r.url()));
    const url = pathToFileURL(join(dir, "index.html")).href;
    await page.goto(url, { waitUntil: "load" });
    const facts = (await page.evaluate(FACTS)) as PageFacts;
    assert.deepEqual(problems, []);
    assert.deepEqual(requests, [url], "the page loads nothing but itself");
    assert.equal(facts.figures, report.figures.length);
    assert.deepEqual(
      facts.svgs.map((s) => s.id),
      report.figures.map((f) => `fig-${f.id}`),
    );
    for (const s of facts.svgs) {
      assert.ok(
        s.visible && s.width > 100 && s.height > 100,
        `${s.id}: ${s.width} x ${s.height}, visible ${s.visible}`,
      );
      assert.ok(s.texts >= 5, `${s.id}: ${s.texts} text elements`);
      // Ids inside a figure are scoped to it, so figures rendered apart cannot clash.
      for (const id of s.inner)
        assert.ok(id.startsWith(`${s.id.slice("fig-".length)}-`), `${s.id} holds id ${id}`);
    }
    assert.deepEqual(facts.duplicateIds, []);
    assert.deepEqual(facts.unresolved, []);
    assert.equal(facts.resultsTitle, report.title, "the embedded results parse");
    assert.equal(facts.claimRows, report.claims.length);

    // Each SVG file on its own, through the browser's strict XML parser.
    for (const f of report.figures) {
      await page.goto(pathToFileURL(join(dir, "figures", `${f.id}.svg`)).href);
      const root = (await page.evaluate(
        `[document.documentElement.localName, document.getElementsByTagName("parsererror").length]`,
      )) as [string, number];
      assert.deepEqual(root, ["svg", 0], `${f.id}.svg`);
    }
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    await tmp.cleanup();
  }
});
