import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import {
  createBlasBackend,
  createJsBackend,
  createWasmBackend,
  describeBackend,
  gemmReference,
  getBackend,
  type BatchedGemmArgs,
  type GemmArgs,
  type MatmulBackend,
  type WasmBackend,
} from "../src/nn/kernels/index.js";

/** Deterministic uniform values in [-1, 1), rounded to f32 so float64 sees the same inputs. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 31 - 1;
  };
}

function fillRandom(a: Float32Array, seed: number): void {
  const r = rng(seed);
  for (let i = 0; i < a.length; i++) a[i] = r();
}

/**
 * C as float64 math says it should be, and the size of the terms summed into each
 * element, which bounds the rounding error any float32 summation order may make:
 * |computed - exact| <= (K + 4) * 2^-24 * (|alpha| sum_k |a_ik b_kj| + |beta c_ij|).
 */
function exact(g: GemmArgs, C0: Float32Array): { value: Float64Array; scale: Float64Array } {
  const { M, N, K, lda, ldb, ldc, A, B } = g;
  const oA = g.offA ?? 0,
    oB = g.offB ?? 0,
    oC = g.offC ?? 0;
  const value = new Float64Array(M * N);
  const scale = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let s = 0;
      let abs = 0;
      for (let k = 0; k < K; k++) {
        const a = g.transA ? A[oA + k * lda + i]! : A[oA + i * lda + k]!;
        const b = g.transB ? B[oB + j * ldb + k]! : B[oB + k * ldb + j]!;
        s += a * b;
        abs += Math.abs(a * b);
      }
      const c = g.beta === 0 ? 0 : g.beta * C0[oC + i * ldc + j]!;
      value[i * N + j] = g.alpha * s + c;
      scale[i * N + j] = Math.abs(g.alpha) * abs + Math.abs(c);
    }
  }
  return { value, scale };
}

/**
 * Asserts C holds the product inside M x N and that every other element of C (or of
 * C[from, to), for one item of a batch) is untouched.
 */
function assertGemm(
  label: string,
  g: GemmArgs,
  C0: Float32Array,
  C: Float32Array,
  from = 0,
  to = C.length,
): void {
  const { value, scale } = exact(g, C0);
  const oC = g.offC ?? 0;
  const tol = (g.K + 4) * 2 ** -24;
  const inside = new Uint8Array(C.length);
  for (let i = 0; i < g.M; i++) {
    for (let j = 0; j < g.N; j++) {
      const at = oC + i * g.ldc + j;
      inside[at] = 1;
      const got = C[at]!;
      const want = value[i * g.N + j]!;
      const err = Math.abs(got - want);
      if (!(err <= tol * scale[i * g.N + j]! + 1e-30)) {
        assert.fail(
          `${label}: C[${i}][${j}] = ${got}, float64 gives ${want} (error ${err}, bound ${tol * scale[i * g.N + j]!})`,
        );
      }
    }
  }
  for (let x = from; x < to; x++) {
    if (!inside[x] && !Object.is(C[x], C0[x]))
      assert.fail(`${label}: C[${x}] outside the product changed from ${C0[x]} to ${C[x]}`);
  }
}

interface Case {
  transA: boolean;
  transB: boolean;
  M: number;
  N: number;
  K: number;
  alpha: number;
  beta: number;
  pad: number;
  off: number;
  nanC: boolean;
}

function layout(b: MatmulBackend, c: Case, seed: number): GemmArgs {
  const lda = (c.transA ? c.M : c.K) + c.pad;
  const ldb = (c.transB ? c.K : c.N) + c.pad;
  const ldc = c.N + c.pad;
  const rowsA = c.transA ? c.K : c.M;
  const rowsB = c.transB ? c.N : c.K;
  const A = b.alloc(c.off + rowsA * lda + 2);
  const B = b.alloc(c.off + rowsB * ldb + 2);
  const C = b.alloc(c.off + c.M * ldc + 3);
  fillRandom(A, seed);
  fillRandom(B, seed + 1);
  fillRandom(C, seed + 2);
  if (c.nanC) for (let i = 0; i < c.M; i++) C.fill(Number.NaN, c.off + i * ldc, c.off + i * ldc + c.N);
  return {
    transA: c.transA,
    transB: c.transB,
    M: c.M,
    N: c.N,
    K: c.K,
    alpha: c.alpha,
    beta: c.beta,
    A,
    offA: c.off,
    lda,
    B,
    offB: c.off + 1,
    ldb,
    C,
    offC: c.off,
    ldc,
  };
}

/** Odd sizes straddle the 4x8 register tile, the 96/256/2048 cache blocks and the thread split. */
const SIZES: [number, number, number][] = [
  [1, 1, 1],
  [3, 5, 7],
  [17, 3, 65],
  [65, 129, 17],
  [129, 65, 3],
  [1, 129, 65],
  [129, 1, 17],
  [97, 33, 300],
  [600, 17, 65],
  [17, 600, 65],
  [5, 2050, 3],
  [200, 130, 257],
];
const SCALES: { alpha: number; beta: number; nanC: boolean }[] = [
  { alpha: 1, beta: 0, nanC: true },
  { alpha: 1, beta: 1, nanC: false },
  { alpha: -0.75, beta: 0.5, nanC: false },
];
const TRANS: [boolean, boolean][] = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
];

function gemmSuite(name: string, make: () => Promise<MatmulBackend> | MatmulBackend): void {
  describe(`${name} backend`, () => {
    let b: MatmulBackend;
    before(async () => {
      b = await make();
    });
    after(() => b.dispose());

    test("all transposes, odd sizes, padded leading dimensions, offsets, alpha and beta", () => {
      let seed = 1;
      for (const [transA, transB] of TRANS) {
        for (const [M, N, K] of SIZES) {
          for (const s of SCALES) {
            const pad = seed % 2 === 0 ? 0 : 3;
            const c: Case = { transA, transB, M, N, K, ...s, pad, off: pad === 0 ? 0 : 5 };
            const g = layout(b, c, seed++);
            const C0 = Float32Array.from(g.C);
            b.gemm(g);
            assertGemm(`${name} ${JSON.stringify(c)}`, g, C0, g.C);
          }
        }
      }
    });

    test("agrees with gemmReference", () => {
      const g = layout(
        b,
        {
          transA: true,
          transB: false,
          M: 70,
          N: 45,
          K: 130,
          alpha: 0.5,
          beta: 1,
          pad: 2,
          off: 3,
          nanC: false,
        },
        99,
      );
      const C0 = Float32Array.from(g.C);
      const ref = Float32Array.from(g.C);
      gemmReference({ ...g, C: ref });
      b.gemm(g);
      assertGemm(`gemmReference`, g, C0, ref);
      assertGemm(`${name}`, g, C0, g.C);
      let worst = 0;
      for (let i = 0; i < g.C.length; i++) worst = Math.max(worst, Math.abs(g.C[i]! - ref[i]!));
      assert.ok(worst < 1e-4, `${name} differs from gemmReference by ${worst}`);
    });

    test("K = 0 and alpha = 0 scale C by beta, and beta = 0 clears NaN", () => {
      for (const [K, alpha] of [
        [0, 1],
        [5, 0],
      ] as const) {
        for (const beta of [0, 1, -2]) {
          const g = layout(
            b,
            { transA: false, transB: true, M: 9, N: 11, K, alpha, beta, pad: 1, off: 2, nanC: beta === 0 },
            7,
          );
          const C0 = Float32Array.from(g.C);
          b.gemm(g);
          assertGemm(`${name} K=${K} alpha=${alpha} beta=${beta}`, g, C0, g.C);
        }
      }
    });

    test("batched: strided items, every transpose, and strideC = 0 accumulating", () => {
      let seed = 500;
      for (const [transA, transB] of TRANS) {
        for (const [M, N, K, batch] of [
          [7, 9, 11, 3],
          [64, 64, 64, 5],
          [33, 17, 129, 2],
        ] as const) {
          for (const s of SCALES) {
            const one = layout(b, { transA, transB, M, N, K, ...s, pad: 1, off: 0, nanC: false }, seed);
            const sA = one.A.length + 2,
              sB = one.B.length + 1,
              sC = one.C.length + 4;
            const A = b.alloc(sA * batch),
              B = b.alloc(sB * batch),
              C = b.alloc(sC * batch);
            fillRandom(A, seed++);
            fillRandom(B, seed++);
            fillRandom(C, seed++);
            if (s.nanC) C.fill(Number.NaN);
            const g: BatchedGemmArgs = {
              ...one,
              A,
              B,
              C,
              offA: 1,
              offB: 0,
              offC: 2,
              batch,
              strideA: sA,
              strideB: sB,
              strideC: sC,
            };
            const C0 = Float32Array.from(C);
            b.gemmBatched(g);
            for (let i = 0; i < batch; i++) {
              const item = { ...g, offA: 1 + i * sA, offB: i * sB, offC: 2 + i * sC };
              const label = `${name} batch item ${i}/${batch} ${transA}/${transB} ${M}x${N}x${K} beta=${s.beta}`;
              assertGemm(label, item, C0, C, i * sC, (i + 1) * sC);
            }
          }
        }
      }
      const A = b.alloc(4 * 50 * 40),
        B = b.alloc(4 * 40 * 30),
        C = b.alloc(50 * 30);
      fillRandom(A, 1);
      fillRandom(B, 2);
      fillRandom(C, 3);
      const C0 = Float32Array.from(C);
      b.gemmBatched({
        transA: false,
        transB: false,
        M: 50,
        N: 30,
        K: 40,
        alpha: 1,
        A,
        lda: 40,
        B,
        ldb: 30,
        beta: 1,
        C,
        ldc: 30,
        batch: 4,
        strideA: 2000,
        strideB: 1200,
        strideC: 0,
      });
      // Same as one gemm with the K dimension of all items laid side by side.
      const Acat = new Float32Array(50 * 160);
      for (let i = 0; i < 50; i++)
        for (let t = 0; t < 4; t++)
          Acat.set(A.subarray(t * 2000 + i * 40, t * 2000 + i * 40 + 40), i * 160 + t * 40);
      const g: GemmArgs = {
        transA: false,
        transB: false,
        M: 50,
        N: 30,
        K: 160,
        alpha: 1,
        A: Acat,
        lda: 160,
        B,
        ldb: 30,
        beta: 1,
        C: C0,
        ldc: 30,
      };
      assertGemm(`${name} strideC = 0`, g, C0, C);
    });

    // The js backend is the unchecked reference loop; the compiled ones address raw memory.
    test("rejects leading dimensions and arrays too small for the shape", { skip: name === "js" }, () => {
      const A = b.alloc(12),
        B = b.alloc(12),
        C = b.alloc(9);
      const ok: GemmArgs = {
        transA: false,
        transB: false,
        M: 3,
        N: 3,
        K: 4,
        alpha: 1,
        A,
        lda: 4,
        B,
        ldb: 3,
        beta: 0,
        C,
        ldc: 3,
      };
      b.gemm(ok);
      for (const bad of [{ lda: 3 }, { ldc: 2 }, { offC: 1 }, { K: 5, lda: 5 }, { M: -1 }, { N: 2.5 }]) {
        assert.throws(
          () => b.gemm({ ...ok, ...bad }),
          (e: unknown) => isPmaError(e, "RANGE_INVALID"),
          JSON.stringify(bad),
        );
      }
    });
  });
}

gemmSuite("js", () => createJsBackend());
gemmSuite("wasm 1-thread", () => createWasmBackend({ threads: 1 }));
gemmSuite("wasm 2-thread", () => createWasmBackend({ threads: 2 }));

function blasOrSkip(): string | undefined {
  try {
    createBlasBackend().dispose();
    return undefined;
  } catch (e) {
    if (!isPmaError(e, "BACKEND_UNAVAILABLE")) throw e;
    return e.message;
  }
}
const blasMissing = blasOrSkip();
if (blasMissing === undefined) {
  gemmSuite("blas", () => createBlasBackend());
} else {
  test("blas backend", { skip: `blas tests skipped: ${blasMissing}` }, () => {});
}

test("blas is available when PMA_REQUIRE_BLAS=1", { skip: process.env.PMA_REQUIRE_BLAS !== "1" }, () => {
  assert.equal(blasMissing, undefined, `PMA_REQUIRE_BLAS=1 but ${blasMissing}`);
});

describe("wasm backend memory", () => {
  let w: WasmBackend;
  before(async () => {
    w = await createWasmBackend({ threads: 2, initialBytes: 1 << 16 });
  });
  after(() => w.dispose());

  test("alloc hands out zero-filled views of the shared memory that survive growth", () => {
    const first = w.alloc(1000);
    assert.ok(w.owns(first) && first.buffer instanceof SharedArrayBuffer);
    assert.ok(first.every((v) => v === 0));
    fillRandom(first, 3);
    const copy = Float32Array.from(first);
    const before = w.memory.buffer.byteLength;
    const big = w.alloc(6_000_000); // 24 MB: far past the initial size, so the memory grows
    assert.ok(w.memory.buffer.byteLength > before);
    assert.ok(w.owns(big) && w.owns(first));
    assert.equal(first.length, 1000);
    assert.deepEqual(first, copy);
    // Old and new views compute together: C (new) = A (old) * B (new).
    const B = w.alloc(100 * 7);
    fillRandom(B, 4);
    const C = big.subarray(12345, 12345 + 10 * 7);
    const g: GemmArgs = {
      transA: false,
      transB: false,
      M: 10,
      N: 7,
      K: 100,
      alpha: 1,
      A: first,
      lda: 100,
      B,
      ldb: 7,
      beta: 0,
      C,
      ldc: 7,
    };
    const C0 = Float32Array.from(C);
    w.gemm(g);
    assertGemm("old view x new view", g, C0, C);
  });

  test("arrays stay recognised as shared after another backend's memory grows", async () => {
    // V8 replaces every isolate's SharedArrayBuffer objects when any shared memory grows;
    // a view made after that must still count as ours (else every gemm copies).
    const other = await createWasmBackend({ threads: 2, initialBytes: 1 << 16 });
    try {
      for (let round = 0; round < 3; round++) {
        const mine = [w.alloc(300_000 * (round + 1)), w.alloc(70_000)];
        const theirs = [other.alloc(500_000 * (round + 1)), other.alloc(90_000)];
        const g: GemmArgs = {
          transA: false,
          transB: false,
          M: 50,
          N: 60,
          K: 70,
          alpha: 1,
          A: theirs[1]!,
          lda: 70,
          B: theirs[0]!,
          ldb: 60,
          beta: 0,
          C: theirs[0]!.subarray(200_000),
          ldc: 60,
        };
        other.gemm(g);
        for (const a of mine)
          assert.ok(
            w.owns(a) && w.owns(a.subarray(5)),
            `round ${round}: an array from alloc is not recognised`,
          );
        for (const a of theirs) assert.ok(other.owns(a) && !w.owns(a), `round ${round}: ownership mixed up`);
        for (const a of mine) w.free!(a);
        for (const a of theirs) other.free!(a);
      }
    } finally {
      other.dispose();
    }
  });

  test("free returns memory for reuse, zero-filled again; foreign arrays are refused", () => {
    const a = w.alloc(4096);
    a.fill(7);
    const at = a.byteOffset;
    w.free!(a);
    const b = w.alloc(4096);
    assert.equal(b.byteOffset, at);
    assert.ok(b.every((v) => v === 0));
    assert.throws(
      () => w.free!(new Float32Array(4)),
      (e: unknown) => isPmaError(e, "RANGE_INVALID"),
    );
    assert.throws(
      () => w.free!(b.subarray(1)),
      (e: unknown) => isPmaError(e, "RANGE_INVALID"),
    );
  });

  test("arrays outside the shared memory are copied in and out", () => {
    for (const [transA, transB] of TRANS) {
      const A = new Float32Array(3 + 130 * 70),
        B = new Float32Array(80 * 70 + 1),
        C = new Float32Array(2 + 130 * 85);
      fillRandom(A, 10);
      fillRandom(B, 11);
      fillRandom(C, 12);
      const g: GemmArgs = {
        transA,
        transB,
        M: 130,
        N: 80,
        K: 70,
        alpha: 2,
        A,
        offA: 3,
        lda: transA ? 130 : 70,
        B,
        offB: 1,
        ldb: transB ? 70 : 80,
        beta: -1,
        C,
        offC: 2,
        ldc: 85,
      };
      const C0 = Float32Array.from(C);
      w.gemm(g);
      assertGemm(`foreign ${transA}/${transB}`, g, C0, C);
    }
  });
});

test("wasm backends start, compute across threads at once, and stop, repeatedly", async () => {
  // A worker must not miss a job posted the moment it reports ready.
  for (let i = 0; i < 8; i++) {
    const w = await createWasmBackend({ threads: 2, initialBytes: 1 << 20 });
    const g = layout(
      w,
      { transA: false, transB: false, M: 256, N: 64, K: 64, alpha: 1, beta: 0, pad: 0, off: 0, nanC: true },
      i,
    );
    const C0 = Float32Array.from(g.C);
    w.gemm(g);
    assertGemm(`start ${i}`, g, C0, g.C);
    w.dispose();
    w.gemm(g); // still correct on the calling thread alone
    assertGemm(`after dispose ${i}`, g, C0, g.C);
  }
});

describe("backend selection", () => {
  const saved = process.env.PMA_BACKEND;
  after(() => {
    if (saved === undefined) delete process.env.PMA_BACKEND;
    else process.env.PMA_BACKEND = saved;
  });

  test("PMA_BACKEND forces a backend, a name argument wins over it, bad names are usage errors", async () => {
    process.env.PMA_BACKEND = "js";
    const js = await getBackend();
    assert.equal(js.name, "js");
    js.dispose();
    const w = await getBackend("wasm");
    assert.equal(w.name, "wasm");
    w.dispose();
    process.env.PMA_BACKEND = "cuda";
    await assert.rejects(getBackend(), (e: unknown) => isPmaError(e, "USAGE"));
  });

  test("without PMA_BACKEND the fastest available backend is chosen", async () => {
    delete process.env.PMA_BACKEND;
    const b = await getBackend();
    assert.equal(b.name, blasMissing === undefined ? "blas" : "wasm");
    const d = describeBackend(b);
    assert.equal(d.name, b.name);
    assert.ok(d.threads >= 1);
    if (b.name === "blas") assert.equal(d.hint, undefined);
    else assert.match(d.hint ?? "", /libopenblas-dev/);
    assert.match(d.summary, new RegExp(`^matmul backend ${b.name} `));
    b.dispose();
  });

  test("an unavailable blas addon is BACKEND_UNAVAILABLE with install instructions", () => {
    assert.throws(
      () => createBlasBackend({ addonPath: "/nonexistent/pma_blas.node" }),
      (e: unknown) =>
        isPmaError(e, "BACKEND_UNAVAILABLE") &&
        /apt-get install libopenblas-dev/.test(e.message) &&
        /npm run build:native/.test(e.message),
    );
  });
});
