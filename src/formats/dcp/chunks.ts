/**
 * The geometry of a sharded tensor: chunks are boxes (offsets, sizes) in the global
 * shape, and together they must tile it exactly once. Everything here works on element
 * coordinates only, so it is shared by every DCP layout (torch.save segments,
 * safetensors inside DCP, Hugging Face files with DCP_SHARDING_INFO).
 */
import { PmaError } from "../../common/errors.js";
import { numel } from "../../tensor/shape.js";

export interface ChunkBox {
  offsets: number[];
  sizes: number[];
}

function overlaps(a: ChunkBox, b: ChunkBox): boolean {
  for (let d = 0; d < a.offsets.length; d++) {
    if (a.offsets[d]! + a.sizes[d]! <= b.offsets[d]! || b.offsets[d]! + b.sizes[d]! <= a.offsets[d]!)
      return false;
  }
  return true;
}

const describe = (c: ChunkBox) => `offsets [${c.offsets.join(", ")}] sizes [${c.sizes.join(", ")}]`;

/**
 * Checks that `chunks` tile `shape` exactly once: each lies inside the shape, no two
 * overlap, and their volumes add up to the whole (which, with no overlap, means no
 * holes). A checkpoint that breaks this would give some elements two values or none.
 */
export function checkTiling(
  name: string,
  shape: readonly number[],
  chunks: readonly ChunkBox[],
  where: string,
): void {
  const bad = (what: string): never => {
    throw new PmaError(
      "METADATA_INVALID",
      `${where}: tensor "${name}" ${what}; the checkpoint is damaged or was not written by torch.distributed.checkpoint.`,
      {
        file: where,
      },
    );
  };
  if (chunks.length === 0 && numel(shape) > 0) bad("has no chunks");
  for (const c of chunks) {
    if (c.offsets.length !== shape.length || c.sizes.length !== shape.length) {
      bad(`has a chunk (${describe(c)}) whose rank differs from the tensor's shape [${shape.join(", ")}]`);
    }
    for (let d = 0; d < shape.length; d++) {
      const o = c.offsets[d]!;
      const s = c.sizes[d]!;
      if (!Number.isSafeInteger(o) || !Number.isSafeInteger(s) || o < 0 || s < 0 || o + s > shape[d]!) {
        bad(`has a chunk (${describe(c)}) outside its shape [${shape.join(", ")}]`);
      }
    }
  }
  // Sorting by the first coordinate lets the overlap scan stop early: boxes sharded
  // along one axis, the common case, are then checked in near-linear time.
  const order = [...chunks]
    .filter((c) => numel(c.sizes) > 0)
    .sort((a, b) => (a.offsets[0] ?? 0) - (b.offsets[0] ?? 0));
  for (let i = 0; i < order.length; i++) {
    const a = order[i]!;
    const end0 = shape.length === 0 ? Infinity : a.offsets[0]! + a.sizes[0]!;
    for (let j = i + 1; j < order.length; j++) {
      const b = order[j]!;
      if (shape.length > 0 && b.offsets[0]! >= end0) break;
      if (overlaps(a, b)) bad(`has overlapping chunks (${describe(a)} and ${describe(b)})`);
    }
  }
  let covered = 0;
  for (const c of order) covered += numel(c.sizes);
  const total = numel(shape);
  if (covered !== total) bad(`has chunks covering ${covered} of its ${total} elements (a hole)`);
}

/** Row-major element strides of a shape. */
export function rowMajorStrides(shape: readonly number[]): number[] {
  const strides = new Array<number>(shape.length);
  let s = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    strides[d] = s;
    s *= shape[d]!;
  }
  return strides;
}

/** A run of consecutive global elements that is also consecutive inside one chunk. */
export interface Run {
  chunk: number;
  /** Element index in the chunk's own row-major order. */
  chunkElement: number;
  /** Element index in the global row-major order. */
  globalElement: number;
  length: number;
}

/**
 * Finds which chunk holds each element of the global range [start, start + count) and
 * yields maximal runs, so a reader issues one positional read per run. A chunk that
 * spans the full extent of its trailing dimensions gives runs longer than one row.
 */
export function* globalRuns(
  shape: readonly number[],
  chunks: readonly ChunkBox[],
  start: number,
  count: number,
): Generator<Run> {
  const rank = shape.length;
  const gStrides = rowMajorStrides(shape);
  // For each chunk, the outermost dimension k such that the chunk covers dims > k fully.
  const fullFrom = chunks.map((c) => {
    let k = rank - 1;
    while (k > 0 && c.sizes[k] === shape[k] && c.offsets[k] === 0) k--;
    return k;
  });
  const cStrides = chunks.map((c) => rowMajorStrides(c.sizes));
  const p = new Array<number>(rank).fill(0);
  let g = start;
  const end = start + count;
  let hint = 0;
  while (g < end) {
    let rest = g;
    for (let d = 0; d < rank; d++) {
      p[d] = Math.floor(rest / gStrides[d]!);
      rest -= p[d]! * gStrides[d]!;
    }
    let ci = -1;
    for (let t = 0; t < chunks.length; t++) {
      const i = (hint + t) % chunks.length;
      const c = chunks[i]!;
      let inside = numel(c.sizes) > 0;
      for (let d = 0; d < rank && inside; d++)
        inside = p[d]! >= c.offsets[d]! && p[d]! < c.offsets[d]! + c.sizes[d]!;
      if (inside) {
        ci = i;
        break;
      }
    }
    if (ci < 0)
      throw new PmaError(
        "INTERNAL",
        `element ${g} of a tensor of shape [${shape.join(", ")}] lies in no chunk; tiling was not checked`,
      );
    hint = ci;
    const c = chunks[ci]!;
    let chunkElement = 0;
    for (let d = 0; d < rank; d++) chunkElement += (p[d]! - c.offsets[d]!) * cStrides[ci]![d]!;
    let length = 1;
    if (rank > 0) {
      const k = fullFrom[ci]!;
      // Elements left in the chunk's contiguous block along dims k..rank-1 from p.
      let within = 0;
      for (let d = k + 1; d < rank; d++) within += p[d]! * gStrides[d]!;
      length = (c.offsets[k]! + c.sizes[k]! - p[k]!) * gStrides[k]! - within;
    }
    length = Math.min(length, end - g);
    yield { chunk: ci, chunkElement, globalElement: g, length };
    g += length;
  }
}

/** Whether two tensors are split into the same boxes, in the same order. */
export function sameChunking(a: readonly ChunkBox[], b: readonly ChunkBox[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    if (
      a[i]!.offsets.join(",") !== b[i]!.offsets.join(",") ||
      a[i]!.sizes.join(",") !== b[i]!.sizes.join(",")
    )
      return false;
  }
  return true;
}
