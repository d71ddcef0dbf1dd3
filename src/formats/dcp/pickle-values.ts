/**
 * A pickle interpreter that builds inert data only, for the pickles a distributed
 * checkpoint holds: `.metadata`, each segment's `data.pkl`, and BYTE_IO values. Globals
 * are names checked against an allowlist, never resolved or called: an allowed class or
 * function becomes a PyObject record (its name, arguments and BUILD state), and any other
 * global is refused with an error that names it. Memo, stack and sizes are bounded, so a
 * hostile pickle costs at most those budgets.
 */
import { PmaError } from "../../common/errors.js";

export interface PyGlobal {
  kind: "global";
  name: string;
}
/** A call of an allowed global (REDUCE / NEWOBJ), with the state BUILD gave it. */
export interface PyObject {
  kind: "object";
  cls: string;
  args: PyValue[];
  state?: PyValue;
  /** BUILD's state when the object already held items (SETITEMS / APPENDS) before it. */
  attributes?: PyValue;
}
export interface PyDict {
  kind: "dict";
  entries: [PyValue, PyValue][];
}
export interface PyPersistent {
  kind: "persid";
  pid: PyValue;
}
export type PyValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PyValue[]
  | PyDict
  | PyObject
  | PyGlobal
  | PyPersistent;

/** Globals a DCP checkpoint's pickles may name: DCP's metadata classes (old and new paths), tensor rebuilding, dtypes, plain containers. */
const DCP_MODULES = [
  "torch.distributed.checkpoint.metadata",
  "torch.distributed.checkpoint.filesystem",
  "torch.distributed._shard.sharded_tensor.metadata",
  "torch.distributed._shard.metadata",
  "torch.distributed.checkpoint._hf_utils",
];
const DTYPES = new Set([
  "float32",
  "float16",
  "bfloat16",
  "float64",
  "int64",
  "int32",
  "int16",
  "int8",
  "uint8",
  "bool",
  "float8_e4m3fn",
  "float8_e5m2",
]);
const STORAGES = /^torch\.(Float|Half|BFloat16|Double|Long|Int|Short|Char|Byte|Bool|Untyped)Storage$/;
const FIXED = new Set([
  "torch.Size",
  "torch.serialization._get_layout",
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_tensor",
  "collections.OrderedDict",
  "pathlib.PosixPath",
  "pathlib.WindowsPath",
  "pathlib.PurePosixPath",
  "pathlib.PureWindowsPath",
  "pathlib.Path",
  "builtins.set",
  "builtins.frozenset",
]);

export function isAllowedGlobal(name: string): boolean {
  if (FIXED.has(name) || STORAGES.test(name)) return true;
  if (name.startsWith("torch.") && DTYPES.has(name.slice(6))) return true;
  const dot = name.lastIndexOf(".");
  return DCP_MODULES.includes(name.slice(0, dot));
}

export interface PickleBudget {
  maxMemo: number;
  maxStack: number;
  /** Longest single string or bytes object. */
  maxString: number;
  /** Total elements in all containers. */
  maxItems: number;
}

export const DEFAULT_PICKLE_BUDGET: PickleBudget = {
  maxMemo: 1 << 20,
  maxStack: 1 << 16,
  maxString: 64 << 20,
  maxItems: 1 << 24,
};

const MARK = Symbol("mark");
type Slot = PyValue | typeof MARK;

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Runs `bytes` as a pickle and returns the value it builds. `where` names the file (and
 * item) in every error.
 */
export function loadPickle(
  bytes: Uint8Array,
  where: string,
  budget: PickleBudget = DEFAULT_PICKLE_BUDGET,
  alsoAllowed?: (name: string) => boolean,
): PyValue {
  const fail = (what: string): never => {
    throw new PmaError("METADATA_INVALID", `${where}: ${what}`, { file: where.split(" (")[0]! });
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const need = (n: number) => {
    if (n < 0 || pos + n > bytes.length)
      fail(`the pickle ends early (at byte ${pos}, needing ${n} more); the file is truncated or damaged.`);
  };
  const u8 = () => (need(1), bytes[pos++]!);
  const u16 = () => (need(2), (pos += 2), view.getUint16(pos - 2, true));
  const u32 = () => (need(4), (pos += 4), view.getUint32(pos - 4, true));
  const u64 = (): number => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(bytes.length)) fail(`a length of ${v} bytes exceeds the pickle.`);
    return Number(v);
  };
  const take = (n: number): Uint8Array => {
    if (n > budget.maxString) fail(`a string of ${n} bytes exceeds the limit of ${budget.maxString}.`);
    need(n);
    pos += n;
    return bytes.subarray(pos - n, pos);
  };
  const text = (n: number) => {
    try {
      return utf8.decode(take(n));
    } catch (e) {
      if (e instanceof PmaError) throw e;
      return fail("a string is not valid UTF-8.");
    }
  };
  const line = (): string => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail("a text argument has no end of line.");
    const s = new TextDecoder("latin1").decode(bytes.subarray(pos, end));
    pos = end + 1;
    return s;
  };
  const stack: Slot[] = [];
  const memo = new Map<number, PyValue>();
  let items = 0;
  const count = (n: number) => {
    items += n;
    if (items > budget.maxItems) fail(`containers hold more than ${budget.maxItems} items.`);
  };
  const push = (v: Slot) => {
    if (stack.length >= budget.maxStack) fail(`the pickle stack grows past ${budget.maxStack} entries.`);
    stack.push(v);
  };
  const pop = (): PyValue => {
    const v = stack.pop();
    if (v === undefined || v === MARK) return fail("an opcode pops an empty stack or a mark.");
    return v;
  };
  const top = (): PyValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v === MARK) return fail("an opcode needs a value on the stack.");
    return v;
  };
  const popMark = (): PyValue[] => {
    const i = stack.lastIndexOf(MARK);
    if (i < 0) fail("an opcode needs a mark that is not there.");
    const vals = stack.splice(i) as PyValue[];
    vals.shift();
    return vals;
  };
  const global = (name: string): PyGlobal => {
    if (!isAllowedGlobal(name) && !(alsoAllowed?.(name) ?? false)) {
      fail(
        `the pickle names the global "${name}", which pma never allows in a checkpoint; pma refuses it and runs nothing from the file. The checkpoint may be malicious.`,
      );
    }
    return { kind: "global", name };
  };
  const call = (fn: PyValue, args: PyValue): PyObject => {
    if (typeof fn !== "object" || fn === null || !("kind" in fn) || fn.kind !== "global")
      return fail("REDUCE or NEWOBJ applies something that is not an allowed class.");
    if (!Array.isArray(args)) return fail(`arguments to "${fn.name}" are not a tuple.`);
    return { kind: "object", cls: fn.name, args };
  };
  const setItems = (target: PyValue, kv: PyValue[]) => {
    if (kv.length % 2 !== 0) fail("SETITEMS has an odd number of values.");
    const entries = dictEntries(target, fail);
    count(kv.length / 2);
    for (let i = 0; i < kv.length; i += 2) entries.push([kv[i]!, kv[i + 1]!]);
  };
  const appendTo = (target: PyValue, vals: PyValue[]) => {
    count(vals.length);
    if (Array.isArray(target)) target.push(...vals);
    else if (typeof target === "object" && target !== null && "kind" in target && target.kind === "object") {
      // list subclasses, and set/frozenset built empty then filled.
      if (target.state === undefined) target.state = [];
      if (!Array.isArray(target.state)) fail("APPEND to an object whose state is not a list.");
      (target.state as PyValue[]).push(...vals);
    } else fail("APPEND to something that is not a list.");
  };
  const memoPut = (i: number, v: PyValue) => {
    if (memo.size >= budget.maxMemo && !memo.has(i)) fail(`the memo grows past ${budget.maxMemo} entries.`);
    memo.set(i, v);
  };
  const memoGet = (i: number): PyValue => {
    const v = memo.get(i);
    if (v === undefined) return fail(`the pickle reads memo slot ${i}, which was never set.`);
    return v;
  };

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail("the pickle uses a protocol above 5.");
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        return pop();
      case 0x28: // MARK
        push(MARK);
        break;
      case 0x30: // POP
        stack.pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        push(top());
        break;
      case 0x4e: // NONE
        push(null);
        break;
      case 0x88: // NEWTRUE
        push(true);
        break;
      case 0x89: // NEWFALSE
        push(false);
        break;
      case 0x4b: // BININT1
        push(u8());
        break;
      case 0x4d: // BININT2
        push(u16());
        break;
      case 0x4a: // BININT
        need(4);
        push(view.getInt32(pos, true));
        pos += 4;
        break;
      case 0x8a: // LONG1
      case 0x8b: {
        // LONG4
        const n = op === 0x8a ? u8() : u32();
        if (n > 64) fail(`an integer of ${n} bytes is larger than any checkpoint needs.`);
        const b = take(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
        if (n > 0 && (b[n - 1]! & 0x80) !== 0) v -= 1n << BigInt(8 * n);
        push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: // BINFLOAT
        need(8);
        push(view.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x8c: // SHORT_BINUNICODE
        push(text(u8()));
        break;
      case 0x58: // BINUNICODE
        push(text(u32()));
        break;
      case 0x8d: // BINUNICODE8
        push(text(u64()));
        break;
      case 0x43: // SHORT_BINBYTES
        push(take(u8()).slice());
        break;
      case 0x42: // BINBYTES
        push(take(u32()).slice());
        break;
      case 0x8e: // BINBYTES8
        push(take(u64()).slice());
        break;
      case 0x29: // EMPTY_TUPLE
        push([]);
        break;
      case 0x85: // TUPLE1
        push([pop()]);
        break;
      case 0x86: {
        // TUPLE2
        const b = pop();
        push([pop(), b]);
        break;
      }
      case 0x87: {
        // TUPLE3
        const c = pop();
        const b = pop();
        push([pop(), b, c]);
        break;
      }
      case 0x74: // TUPLE
      case 0x6c: {
        // LIST
        const vals = popMark();
        count(vals.length);
        push(vals);
        break;
      }
      case 0x5d: // EMPTY_LIST
        push([]);
        break;
      case 0x7d: // EMPTY_DICT
        push({ kind: "dict", entries: [] });
        break;
      case 0x64: {
        // DICT
        const d: PyDict = { kind: "dict", entries: [] };
        setItems(d, popMark());
        push(d);
        break;
      }
      case 0x8f: // EMPTY_SET
        push({ kind: "object", cls: "builtins.set", args: [], state: [] });
        break;
      case 0x90: {
        // ADDITEMS
        const vals = popMark();
        appendTo(top(), vals);
        break;
      }
      case 0x91: // FROZENSET
        push({ kind: "object", cls: "builtins.frozenset", args: [], state: popMark() });
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        appendTo(top(), [v]);
        break;
      }
      case 0x65: {
        // APPENDS
        const vals = popMark();
        appendTo(top(), vals);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x71: // BINPUT
        memoPut(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memoPut(u32(), top());
        break;
      case 0x94: // MEMOIZE
        memoPut(memo.size, top());
        break;
      case 0x68: // BINGET
        push(memoGet(u8()));
        break;
      case 0x6a: // LONG_BINGET
        push(memoGet(u32()));
        break;
      case 0x63: {
        // GLOBAL
        const mod = line();
        push(global(`${mod}.${line()}`));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const mod = pop();
        if (typeof mod !== "string" || typeof name !== "string") fail("STACK_GLOBAL needs two strings.");
        push(global(`${mod as string}.${name as string}`));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        push(call(pop(), args));
        break;
      }
      case 0x81: {
        // NEWOBJ
        const args = pop();
        push(call(pop(), args));
        break;
      }
      case 0x92: {
        // NEWOBJ_EX
        pop(); // kwargs: none of the allowed classes take any that matter here
        const args = pop();
        push(call(pop(), args));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = top();
        if (
          typeof obj !== "object" ||
          obj === null ||
          !("kind" in obj) ||
          (obj.kind !== "object" && obj.kind !== "dict")
        )
          fail("BUILD on something that is not an object.");
        if ((obj as PyObject | PyDict).kind === "object") {
          // An OrderedDict filled by SETITEMS keeps its items; BUILD then only sets attributes
          // (an nn.Module state dict's `_metadata`), as Python's BUILD does.
          const o = obj as PyObject;
          if (o.state === undefined) o.state = state;
          else o.attributes = state;
        }
        break;
      }
      case 0x51: // BINPERSID
        push({ kind: "persid", pid: pop() });
        break;
      default:
        fail(
          `the pickle uses opcode 0x${op.toString(16).padStart(2, "0")} at byte ${pos - 1}, which no checkpoint metadata needs; refusing it.`,
        );
    }
  }
}

function dictEntries(target: PyValue, fail: (what: string) => never): [PyValue, PyValue][] {
  if (typeof target === "object" && target !== null && "kind" in target) {
    if (target.kind === "dict") return target.entries;
    // OrderedDict() and similar dict subclasses get their items through SETITEMS.
    if (target.kind === "object") {
      if (target.state === undefined) target.state = { kind: "dict", entries: [] };
      const s = target.state;
      if (typeof s === "object" && s !== null && "kind" in s && s.kind === "dict") return s.entries;
    }
  }
  return fail("SETITEM on something that is not a dict.");
}

// ---- Accessors: read the inert values with checks, for the decoders built on them. ----

export function isObject(v: PyValue, cls?: (name: string) => boolean): v is PyObject {
  return (
    typeof v === "object" &&
    v !== null &&
    !Array.isArray(v) &&
    !(v instanceof Uint8Array) &&
    v.kind === "object" &&
    (cls === undefined || cls(v.cls))
  );
}

export function isDict(v: PyValue): v is PyDict {
  return (
    typeof v === "object" &&
    v !== null &&
    !Array.isArray(v) &&
    !(v instanceof Uint8Array) &&
    v.kind === "dict"
  );
}

/** The entries of a dict, or of an OrderedDict built by REDUCE + SETITEMS. */
export function entriesOf(v: PyValue): [PyValue, PyValue][] | null {
  if (isDict(v)) return v.entries;
  if (isObject(v) && v.cls === "collections.OrderedDict")
    return v.state !== undefined && isDict(v.state) ? v.state.entries : [];
  return null;
}

/** A string-keyed view of a dict (a BUILD state, usually). */
export function fieldsOf(v: PyValue | undefined): Map<string, PyValue> | null {
  if (v === undefined) return null;
  const e = entriesOf(v);
  if (e === null) return null;
  const m = new Map<string, PyValue>();
  for (const [k, x] of e) if (typeof k === "string") m.set(k, x);
  return m;
}

/** Plain JSON for a BYTE_IO value: tuples become lists, dicts objects, and objects their class name. */
export function toJson(v: PyValue): unknown {
  if (v === null || typeof v === "boolean" || typeof v === "number" || typeof v === "string") return v;
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Uint8Array) return Buffer.from(v).toString("base64");
  if (Array.isArray(v)) return v.map(toJson);
  const e = entriesOf(v);
  if (e !== null)
    return Object.fromEntries(e.map(([k, x]) => [typeof k === "string" ? k : String(toJson(k)), toJson(x)]));
  if (v.kind === "global") return v.name;
  if (v.kind === "persid") return { persistent_id: toJson(v.pid) };
  const o = v as PyObject;
  return {
    class: o.cls,
    args: o.args.map(toJson),
    ...(o.state !== undefined ? { state: toJson(o.state) } : {}),
  };
}
