import { Session } from "node:inspector";

/**
 * Coverage feedback from V8's own block coverage (the profiler behind `c8` and
 * `NODE_V8_COVERAGE`), read after every execution through an in-process inspector
 * session. Nothing is instrumented at build time, so the code fuzzed is exactly the
 * code shipped.
 *
 * A feature is a (function or block, hit-count bucket) pair, as in AFL and libFuzzer:
 * an input is kept when it reaches a block no earlier input reached, or runs a block a
 * new order of magnitude of times. V8 reports a block only when its count differs from
 * its parent's, so a block seen once with count 0 and later absent from the report has
 * run; that is tracked per function.
 */
interface Range {
  startOffset: number;
  endOffset: number;
  count: number;
}
interface FunctionCoverage {
  ranges: Range[];
}
interface ScriptCoverage {
  url: string;
  functions: FunctionCoverage[];
}

function bucket(count: number): number {
  if (count <= 3) return count;
  if (count <= 7) return 4;
  if (count <= 15) return 5;
  if (count <= 31) return 6;
  if (count <= 127) return 7;
  return 8;
}

export class Coverage {
  private readonly session = new Session();
  private readonly scriptIds = new Map<string, number>();
  /** Per function: blocks ever reported with count 0. */
  private readonly zeroBlocks = new Map<string, Set<string>>();
  private readonly seen = new Set<string>();

  /** `include`: which scripts count (the code under test, not the harness). */
  constructor(private readonly include: (url: string) => boolean) {
    this.session.connect();
    this.post("Profiler.enable");
    this.post("Profiler.startPreciseCoverage", { callCount: true, detailed: true });
  }

  // A session on the main thread answers synchronously; the callback has run on return.
  private post(method: string, params?: object): unknown {
    let result: unknown;
    let error: Error | null = null;
    this.session.post(method, params, (e, r) => {
      error = e;
      result = r;
    });
    if (error !== null) throw error;
    return result;
  }

  /** Features of everything run since the last call (counters are reset by taking them). */
  take(): string[] {
    const { result } = this.post("Profiler.takePreciseCoverage") as { result: ScriptCoverage[] };
    const features: string[] = [];
    for (const script of result) {
      if (!this.include(script.url)) continue;
      let id = this.scriptIds.get(script.url);
      if (id === undefined) {
        id = this.scriptIds.size;
        this.scriptIds.set(script.url, id);
      }
      for (const fn of script.functions) {
        const top = fn.ranges[0];
        if (top === undefined || top.count === 0) continue;
        const f = `${id}:${top.startOffset}`;
        features.push(`${f}#${bucket(top.count)}`);
        let known = this.zeroBlocks.get(f);
        const zeroNow = new Set<string>();
        for (let i = 1; i < fn.ranges.length; i++) {
          const r = fn.ranges[i]!;
          const block = `${r.startOffset}-${r.endOffset}`;
          if (r.count === 0) {
            zeroNow.add(block);
            if (known === undefined) {
              known = new Set();
              this.zeroBlocks.set(f, known);
            }
            known.add(block);
          } else {
            features.push(`${f}:${block}#${bucket(r.count)}`);
          }
        }
        if (known !== undefined)
          for (const block of known) if (!zeroNow.has(block)) features.push(`${f}:${block}#ran`);
      }
    }
    return features;
  }

  /** Records `features`; returns how many were new. */
  add(features: readonly string[]): number {
    let fresh = 0;
    for (const x of features) {
      if (!this.seen.has(x)) {
        this.seen.add(x);
        fresh++;
      }
    }
    return fresh;
  }

  /** Would any of these be new? (Without recording them.) */
  isNovel(features: readonly string[]): boolean {
    for (const x of features) if (!this.seen.has(x)) return true;
    return false;
  }

  get size(): number {
    return this.seen.size;
  }

  close(): void {
    this.post("Profiler.stopPreciseCoverage");
    this.session.disconnect();
  }
}
