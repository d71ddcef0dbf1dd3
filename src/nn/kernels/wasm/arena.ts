import { PmaError } from "../../../common/errors.js";

const PAGE = 65536;
/** wasm32 addresses 4 GiB; a shared memory must declare its maximum up front. */
export const MAX_PAGES = 65536;
/** 64-byte alignment keeps every buffer on its own cache lines (no false sharing between threads). */
const ALIGN = 64;

interface Block {
  start: number;
  end: number;
}

/**
 * First-fit allocator over one shared WebAssembly.Memory.
 *
 * A shared memory never moves when it grows: the SharedArrayBuffer behind an earlier
 * view keeps its length and stays valid, only `memory.buffer` returns a longer one. So
 * arrays handed out before a grow keep working, and callers never re-create views.
 *
 * Which arrays are ours is known from the buffer objects our views were made on. V8 may
 * hand out a fresh SharedArrayBuffer object for the same memory at any time (after any
 * shared memory in the process grows, every isolate's buffer objects are replaced), so
 * "the buffer memory.buffer returned at the last grow" is not a reliable test.
 */
export class SharedArena {
  readonly memory: WebAssembly.Memory;
  /** Every SharedArrayBuffer object a view of ours was made on. */
  private readonly buffers = new WeakSet<ArrayBufferLike>();
  /** Free blocks sorted by address; the last one always ends at the memory's top. */
  private free: Block[] = [];
  private readonly live = new Map<number, number>();

  constructor(initialBytes = 16 * PAGE) {
    const pages = Math.max(1, Math.ceil(initialBytes / PAGE));
    this.memory = new WebAssembly.Memory({ initial: pages, maximum: MAX_PAGES, shared: true });
    // Address 0 stays unused so that a zero address can never be a real buffer.
    this.free.push({ start: ALIGN, end: pages * PAGE });
  }

  /** True when `arr` lies in this arena's memory (so kernels can address it directly). */
  owns(arr: Float32Array): boolean {
    if (this.buffers.has(arr.buffer)) return true;
    if (arr.buffer !== this.memory.buffer) return false;
    this.buffers.add(arr.buffer);
    return true;
  }

  get bytes(): number {
    return this.memory.buffer.byteLength;
  }

  /** A zero-filled Float32Array of n elements in the shared memory. */
  alloc(n: number): Float32Array {
    if (!Number.isSafeInteger(n) || n < 0)
      throw new PmaError("RANGE_INVALID", `alloc: length ${n} is not a count`);
    const start = this.allocBytes(Math.max(n, 1) * 4);
    const buffer = this.memory.buffer;
    this.buffers.add(buffer);
    const view = new Float32Array(buffer, start, n);
    view.fill(0);
    return view;
  }

  /** Raw bytes (64-byte aligned) for kernel scratch; returns the byte address. */
  allocBytes(size: number): number {
    const want = Math.ceil(size / ALIGN) * ALIGN;
    let i = this.free.findIndex((b) => b.end - b.start >= want);
    if (i < 0) {
      this.grow(want);
      i = this.free.length - 1;
    }
    const b = this.free[i]!;
    const start = b.start;
    b.start += want;
    if (b.start === b.end && i !== this.free.length - 1) this.free.splice(i, 1);
    this.live.set(start, want);
    return start;
  }

  /** Returns an array from `alloc` (or an address from `allocBytes`) to the free list. */
  release(arrOrAddress: Float32Array | number): void {
    const start = typeof arrOrAddress === "number" ? arrOrAddress : arrOrAddress.byteOffset;
    if (typeof arrOrAddress !== "number" && !this.owns(arrOrAddress)) {
      throw new PmaError("RANGE_INVALID", "free: the array was not allocated by this backend");
    }
    const size = this.live.get(start);
    if (size === undefined)
      throw new PmaError("RANGE_INVALID", `free: no live buffer starts at byte ${start}`);
    this.live.delete(start);
    const end = start + size;
    let i = 0;
    while (i < this.free.length && this.free[i]!.start < start) i++;
    const prev = this.free[i - 1];
    const next = this.free[i];
    if (prev !== undefined && prev.end === start) {
      prev.end = end;
      if (next !== undefined && next.start === end) {
        prev.end = next.end;
        this.free.splice(i, 1);
      }
    } else if (next !== undefined && next.start === end) {
      next.start = start;
    } else {
      this.free.splice(i, 0, { start, end });
    }
  }

  private grow(want: number): void {
    const top = this.memory.buffer.byteLength;
    const last = this.free[this.free.length - 1];
    // The top free block (possibly empty) extends into the new pages.
    const tail = last !== undefined && last.end === top ? last : undefined;
    const needed = want - (tail === undefined ? 0 : tail.end - tail.start);
    const have = top / PAGE;
    // Grow by at least a quarter to keep the number of grows logarithmic.
    const pages = Math.min(MAX_PAGES - have, Math.max(Math.ceil(needed / PAGE), Math.ceil(have / 4)));
    if (pages * PAGE < needed) {
      throw new PmaError(
        "RANGE_INVALID",
        `wasm backend: cannot allocate ${(want / 2 ** 20).toFixed(1)} MiB: its shared memory is limited to 4 GiB ` +
          `(${(top / 2 ** 20).toFixed(0)} MiB in use or free); free unused buffers or use the blas backend`,
      );
    }
    this.memory.grow(pages);
    if (tail !== undefined) tail.end = top + pages * PAGE;
    else this.free.push({ start: top, end: top + pages * PAGE });
  }
}
