import { stat } from "node:fs/promises";
import { join } from "node:path";
import { isPmaError } from "../common/errors.js";
import { isDcpFolder, openDcp } from "../formats/dcp/open.js";
import { dcpProgress } from "../formats/dcp/progress.js";
import { numel } from "../tensor/shape.js";

/** OLMo-core keeps the distributed checkpoint of `stepN/` in this subfolder, beside `train/`. */
export const OLMO_CORE_SUBFOLDER = "model_and_optim";

export interface DcpRunCheckpoint {
  /** The distributed checkpoint folder itself (`iter_0000100/`, `step-300/`, `step300/model_and_optim/`). */
  path: string;
  parameters: number;
  tokens?: number;
  step?: number;
  /** "path:size" of every data file, to notice a checkpoint still being written. */
  sizes: string;
}

/**
 * A run's checkpoint folder as a distributed checkpoint (Megatron torch_dist
 * `iter_XXXXXXX/`, torchtitan `step-N/`, OLMo-core `stepN/model_and_optim/`), or null when
 * it is not one. A folder that is one but does not open (half-written, damaged) throws,
 * so the caller can skip it with the reason.
 */
export async function openRunDcp(dir: string): Promise<DcpRunCheckpoint | null> {
  for (const path of [dir, join(dir, OLMO_CORE_SUBFOLDER)]) {
    if (!(await stat(path).catch(() => null))?.isDirectory()) continue;
    if (!(await isDcpFolder(path).catch((e: unknown) => (isPmaError(e) ? true : Promise.reject(e))))) continue;
    const ckpt = await openDcp(path);
    let parameters = 0;
    for (const t of ckpt.tensors.values()) if (!/^(optimizer|optim)\./.test(t.name)) parameters += numel(t.shape);
    const p = dcpProgress(ckpt);
    const sizes = await Promise.all(ckpt.dataFiles.map(async (f) => `${join(ckpt.root, f)}:${(await stat(join(ckpt.root, f))).size}`));
    return { path, parameters, ...(p.tokens !== undefined ? { tokens: p.tokens } : {}), ...(p.step !== undefined ? { step: p.step } : {}), sizes: sizes.join("|") };
  }
  return null;
}
