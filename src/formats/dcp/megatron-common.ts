/**
 * Megatron-LM's `common.pt` beside a torch_dist checkpoint: a torch.save archive of the
 * state every rank shares, with `iteration` and `args` (an `argparse.Namespace`).
 * Namespace and Megatron's enums are outside the metadata allowlist; here, and only
 * here, they are accepted as inert records (class name and state; nothing is
 * constructed or called) so that two numbers can be read: the iteration, and the tokens
 * seen, derived as `args.consumed_train_samples * args.seq_length` (Megatron counts
 * samples, not tokens; with a sequence-length ramp or packing the product is an estimate,
 * which is why pma says where it came from).
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { DEFAULT_PICKLE_BUDGET, fieldsOf, isObject, loadPickle } from "./pickle-values.js";
import { readRecord, readSegmentRecords, segmentRoot } from "./segment-zip.js";

export const MEGATRON_COMMON = "common.pt";
/** common.pt holds arguments and scheduler state, a few KiB to a few MiB; far more is not one. */
const MAX_COMMON_SIZE = 256 << 20;

/** Inert classes a common.pt may name besides the metadata allowlist. */
const COMMON_EXTRA = (name: string) =>
  name === "argparse.Namespace" ||
  name.startsWith("megatron.") ||
  name === "builtins.slice" ||
  name === "types.SimpleNamespace" ||
  /^torch\.(float|bfloat|half|int|uint)\w*$/.test(name);

export interface MegatronCommon {
  iteration?: number;
  tokens?: number;
  /** Which fields were used, for the user. */
  used: string[];
}

/** Reads `dir/common.pt`; null when absent, unreadable or holding neither number (the checkpoint is still usable). */
export function readMegatronCommon(dir: string): MegatronCommon | null {
  const file = join(dir, MEGATRON_COMMON);
  let fd: number;
  try {
    const st = fs.statSync(file);
    if (!st.isFile() || st.size > MAX_COMMON_SIZE) return null;
    fd = fs.openSync(file, "r");
  } catch {
    return null;
  }
  try {
    const size = fs.fstatSync(fd).size;
    const records = readSegmentRecords(fd, file, 0, size, MEGATRON_COMMON);
    const root = segmentRoot(records, file, MEGATRON_COMMON);
    const pkl = records.find((r) => r.name === `${root}data.pkl`)!;
    const value = loadPickle(readRecord(fd, file, pkl), file, DEFAULT_PICKLE_BUDGET, COMMON_EXTRA);
    const top = fieldsOf(value);
    if (top === null) return null;
    const out: MegatronCommon = { used: [] };
    const iteration = top.get("iteration");
    if (typeof iteration === "number" && Number.isSafeInteger(iteration) && iteration >= 0) {
      out.iteration = iteration;
      out.used.push("iteration");
    }
    const args = top.get("args");
    const a =
      args !== undefined && isObject(args, (c) => c.endsWith("Namespace")) ? fieldsOf(args.state) : null;
    const samples = a?.get("consumed_train_samples");
    const seq = a?.get("seq_length");
    if (
      typeof samples === "number" &&
      typeof seq === "number" &&
      samples > 0 &&
      seq > 0 &&
      Number.isSafeInteger(samples * seq)
    ) {
      out.tokens = samples * seq;
      out.used.push("args.consumed_train_samples x args.seq_length");
    }
    return out.used.length > 0 ? out : null;
  } catch {
    // A common.pt pma cannot read leaves progress to the folder name; the weights do not depend on it.
    return null;
  } finally {
    fs.closeSync(fd);
  }
}
