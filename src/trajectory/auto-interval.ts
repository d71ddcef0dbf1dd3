/**
 * `--interval auto`: V from the model itself (its parameter count and whether it is
 * MoE), for pma plan, pma merge --run and pma watch alike. It lives in the library
 * rather than the CLI because watch resolves it inside the watcher, when the run's
 * first complete checkpoint appears.
 */
import { recommendInterval, type IntervalRecommendation } from "./interval.js";

export interface AutoInterval extends IntervalRecommendation {
  /** The checkpoint the model size was read from. */
  checkpoint: string;
  parameters: number;
  moe: boolean;
}

/** MoE checkpoints name their experts (Mixtral's block_sparse_moe, or `.experts.<i>.`). */
export async function isMoeCheckpoint(path: string): Promise<boolean> {
  // Loaded lazily: the format readers are not needed when V is given as a number.
  const { openCheckpointTensors, openRemoteCheckpointTensors } =
    await import("../formats/checkpoint-files.js");
  const { isRemoteUri, resolveRemote } = await import("../sources/location.js");
  const ck = isRemoteUri(path)
    ? await openRemoteCheckpointTensors(await resolveRemote(path))
    : await openCheckpointTensors(path);
  try {
    return [...ck.tensors.keys()].some((n) => /\.experts\.\d+\./.test(n) || /block_sparse_moe/.test(n));
  } finally {
    await ck.close();
  }
}

/** The paper-based V for the model whose checkpoint this is. */
export async function autoInterval(checkpoint: {
  path: string;
  name: string;
  parameters: number;
}): Promise<AutoInterval> {
  const moe = await isMoeCheckpoint(checkpoint.path);
  return {
    ...recommendInterval(checkpoint.parameters, moe),
    checkpoint: checkpoint.name,
    parameters: checkpoint.parameters,
    moe,
  };
}
