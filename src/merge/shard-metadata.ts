import { PMA_VERSION } from "../common/version.js";

/**
 * The metadata in every output shard's header: what made it. A whole merge and the
 * parts of a partitioned one write the same, so their files are the same bytes.
 */
export function shardMetadata(ctx: { method: string; coefficients: number[]; inputs: unknown[] }): Record<string, string> {
  return {
    pma_version: PMA_VERSION,
    pma_method: ctx.method,
    pma_coefficients: JSON.stringify(ctx.coefficients),
    pma_inputs: String(ctx.inputs.length),
  };
}
