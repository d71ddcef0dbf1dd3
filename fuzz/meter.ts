/**
 * Counts the bytes of every typed array, ArrayBuffer and Buffer that the code under test
 * allocates, and refuses one that would pass a budget before it is made. A reader that
 * sizes a buffer from a number in the file (a header length, an element count) rather
 * than from the bytes the file really has shows up here as a finding with a stack
 * trace, instead of as a machine that swaps or an allocation that happens to fail.
 *
 * The constructors are replaced by proxies on globalThis, so `new Uint8Array(n)` in any
 * module is seen; `instanceof` still works because a proxy forwards `prototype`. Node's
 * own internals use saved originals and are not counted (their reads are sized by the
 * caller's buffers, which are).
 */
export class AllocationBudgetError extends Error {
  constructor(
    readonly requested: number,
    readonly budget: number,
  ) {
    super(
      `allocation of ${requested} bytes would pass this input's budget of ${budget} bytes (allocated so far included)`,
    );
    this.name = "AllocationBudgetError";
  }
}

let allocated = 0;
let budget = Number.POSITIVE_INFINITY;
let installed = false;
/** Kept apart from the throw: a reader that catches everything must not hide it. */
let violation: AllocationBudgetError | null = null;

function charge(bytes: number): void {
  if (!Number.isFinite(bytes) || bytes <= 0) return;
  if (allocated + bytes > budget) {
    violation ??= new AllocationBudgetError(bytes, budget);
    throw violation;
  }
  allocated += bytes;
}

const TYPED = [
  "Int8Array",
  "Uint8Array",
  "Uint8ClampedArray",
  "Int16Array",
  "Uint16Array",
  "Int32Array",
  "Uint32Array",
  "Float32Array",
  "Float64Array",
  "BigInt64Array",
  "BigUint64Array",
] as const;

type Ctor = new (...args: unknown[]) => object;

/** Installs the proxies once per process; budgets are then set per execution. */
export function installMeter(): void {
  if (installed) return;
  installed = true;
  const g = globalThis as unknown as Record<string, Ctor>;
  for (const name of TYPED) {
    const original = g[name]!;
    const width = (original as unknown as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT;
    g[name] = new Proxy(original, {
      construct(target, args: unknown[], newTarget) {
        // Only a length allocates; views over an existing buffer and copies of an
        // existing array cost what already exists.
        if (typeof args[0] === "number") charge(args[0] * width);
        return Reflect.construct(target, args, newTarget === g[name] ? target : newTarget) as object;
      },
    });
  }
  for (const name of ["ArrayBuffer", "SharedArrayBuffer"] as const) {
    const original = g[name]!;
    g[name] = new Proxy(original, {
      construct(target, args: unknown[], newTarget) {
        if (typeof args[0] === "number") charge(args[0]);
        return Reflect.construct(target, args, newTarget === g[name] ? target : newTarget) as object;
      },
    });
  }
  for (const name of ["alloc", "allocUnsafe", "allocUnsafeSlow"] as const) {
    const original = Buffer[name] as (size: number, ...rest: unknown[]) => Buffer;
    Object.defineProperty(Buffer, name, {
      value: (size: number, ...rest: unknown[]) => {
        charge(size);
        return original.call(Buffer, size, ...rest);
      },
      configurable: true,
      writable: true,
    });
  }
}

/** Starts counting for one execution with the given budget in bytes. */
export function resetMeter(limit: number): void {
  allocated = 0;
  budget = limit;
  violation = null;
}

/** The first allocation refused since the last reset, if any. */
export function meterViolation(): AllocationBudgetError | null {
  return violation;
}

/** Stops enforcing (between executions: the harness itself may allocate freely). */
export function pauseMeter(): number {
  const used = allocated;
  budget = Number.POSITIVE_INFINITY;
  return used;
}

/**
 * What one input may allocate: a small multiple of its size (a reader may hold a file's
 * bytes and a decoded copy) plus a constant for fixed scratch buffers (inspect's 1M-
 * element statistics window, the GGUF reader's 1 MiB window).
 */
export const FIXED_ALLOWANCE = 16 * 1024 * 1024;
export const PER_INPUT_BYTE = 8;

export function budgetFor(inputBytes: number): number {
  return PER_INPUT_BYTE * inputBytes + FIXED_ALLOWANCE;
}
