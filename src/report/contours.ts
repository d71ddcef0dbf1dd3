/**
 * Iso-lines of a function sampled on a rectangular grid, by marching squares: in each
 * cell, the level crosses an edge where its two corners lie on opposite sides, at the
 * linearly interpolated point; crossings are joined pairwise. A saddle cell (four
 * crossings) is resolved by the cell's mean value, so lines never cross each other.
 */

export interface IsoGrid {
  xs: readonly number[];
  ys: readonly number[];
  /** z[j][i] at (xs[i], ys[j]). */
  z: readonly (readonly number[])[];
}

export interface Segment {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  level: number;
}

type Point = [number, number];

export function isoLines(g: IsoGrid, levels: readonly number[]): Segment[] {
  const out: Segment[] = [];
  for (const level of levels) {
    for (let j = 0; j + 1 < g.ys.length; j++) {
      for (let i = 0; i + 1 < g.xs.length; i++) {
        const x0 = g.xs[i]!;
        const x1 = g.xs[i + 1]!;
        const y0 = g.ys[j]!;
        const y1 = g.ys[j + 1]!;
        // Corners counter-clockwise from bottom-left: a (x0,y0), b (x1,y0), c (x1,y1), d (x0,y1).
        const a = g.z[j]![i]!;
        const b = g.z[j]![i + 1]!;
        const c = g.z[j + 1]![i + 1]!;
        const d = g.z[j + 1]![i]!;
        const cross = (za: number, zb: number, pa: Point, pb: Point): Point | null => {
          if (za >= level === zb >= level) return null;
          const t = (level - za) / (zb - za);
          return [pa[0] + t * (pb[0] - pa[0]), pa[1] + t * (pb[1] - pa[1])];
        };
        const bottom = cross(a, b, [x0, y0], [x1, y0]);
        const right = cross(b, c, [x1, y0], [x1, y1]);
        const top = cross(d, c, [x0, y1], [x1, y1]);
        const left = cross(a, d, [x0, y0], [x0, y1]);
        const found = [bottom, right, top, left].filter((p): p is Point => p !== null);
        const push = (p: Point, q: Point): void => {
          out.push({ x1: p[0], y1: p[1], x2: q[0], y2: q[1], level });
        };
        if (found.length === 2) push(found[0]!, found[1]!);
        else if (found.length === 4) {
          // Corners on the other side than the centre are cut off by their own segment.
          const centreAbove = (a + b + c + d) / 4 >= level;
          if (b >= level !== centreAbove) {
            push(bottom!, right!);
            push(top!, left!);
          } else {
            push(left!, bottom!);
            push(right!, top!);
          }
        }
      }
    }
  }
  return out;
}
