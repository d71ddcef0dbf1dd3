/**
 * Figures to files: Vega-Lite compiles to Vega, Vega renders to an SVG string headless
 * (View.toSVG needs no canvas), and resvg rasterises the SVG to PNG with the system's
 * fonts (Debian: fonts-dejavu-core). Both renderers are deterministic for a given spec.
 */
import { Resvg } from "@resvg/resvg-js";
import { parse, View, Warn, type Spec as VegaSpec } from "vega";
import { compile } from "vega-lite";
import { PmaError } from "../common/errors.js";
import type { FigureSpec } from "./types.js";

/** The Vega spec of a figure (Vega-Lite compiled; raw Vega as is). */
export function toVega(fig: FigureSpec): VegaSpec {
  if (fig.kind === "vega") return fig.spec;
  try {
    return compile(fig.spec).spec;
  } catch (e) {
    throw new PmaError("USAGE", `figure spec does not compile as Vega-Lite: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/** Renders a figure to a standalone SVG document. */
export async function renderSvg(fig: FigureSpec): Promise<string> {
  const view = new View(parse(toVega(fig)), { renderer: "none", logLevel: Warn });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

export interface PngOptions {
  /** Pixels per SVG unit; default 2 (sharp on high-density screens and in print). */
  scale?: number;
}

/** Rasterises an SVG document to PNG bytes. */
export function svgToPng(svg: string, opts: PngOptions = {}): Uint8Array {
  const scale = opts.scale ?? 2;
  const r = new Resvg(svg, {
    fitTo: { mode: "zoom", value: scale },
    font: { loadSystemFonts: true, defaultFontFamily: "DejaVu Sans", sansSerifFamily: "DejaVu Sans" },
  });
  return new Uint8Array(r.render().asPng());
}
