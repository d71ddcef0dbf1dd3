import { PMA_VERSION } from "../common/version.js";

/**
 * How the output's safetensors files are laid out: shard size, file names and the
 * metadata in every header (what made it). A whole merge and the parts of a
 * partitioned one use the same, so their files are the same bytes.
 */
export function outputWriterOptions(ctx: {
  method: string;
  coefficients: number[];
  inputs: unknown[];
  shardSize?: number;
  adapter?: boolean;
}): { shardSize?: number; fileBaseName?: string; metadata: Record<string, string> } {
  return {
    ...(ctx.shardSize !== undefined ? { shardSize: ctx.shardSize } : {}),
    // PEFT loads one adapter_model.safetensors.
    ...(ctx.adapter === true ? { fileBaseName: "adapter_model", shardSize: Number.MAX_SAFE_INTEGER } : {}),
    metadata: {
      pma_version: PMA_VERSION,
      pma_method: ctx.method,
      pma_coefficients: JSON.stringify(ctx.coefficients),
      pma_inputs: String(ctx.inputs.length),
    },
  };
}
