import { PmaError } from "../common/errors.js";
import { convertDcpToSafetensors, type DcpToSafetensorsResult } from "../convert/dcp-to-safetensors.js";
import { convertTorchSaveToSafetensors, isTorchSaveFolder } from "../convert/torch-save-to-safetensors.js";
import type { MergeRecord } from "../merge/merger.js";
import { isInteractive } from "./terminal.js";
import { convertToGguf, type ConvertToGgufResult, type GgufWeightDtype } from "../convert/to-gguf.js";
import { parseCommandArgs, type Command } from "./command.js";
import { byteProgress } from "./progress.js";

const usage = `usage: pma convert CKPT --to gguf [--out FILE] [--dtype f32|f16|bf16] [--force] [--json]
       pma convert DCP_FOLDER --to safetensors [--out DIR] [--include-optimizer] [--force] [--json]
       pma convert BIN_FOLDER --to safetensors [--out DIR] [--force] [--json]

Converts a Llama or Mixtral checkpoint folder (pma training checkpoints, pma merge
outputs, Hugging Face folders with a byte-level BPE tokenizer.json) to one GGUF file
that llama.cpp loads: u32/f32 hyper-parameter keys, q/k rows permuted for llama.cpp's
rotary layout, Mixtral experts stacked, tied embeddings without output.weight, and the
tokenizer as a "gpt2" vocabulary (no BOS/EOS added).

options:
  --to FORMAT      gguf, or safetensors for a distributed checkpoint (torch.distributed.checkpoint,
                   Megatron torch_dist, torchtitan, FSDP): a flat Hugging Face-style folder
                   of its model tensors under their DCP names (optimizer state left out
                   unless --include-optimizer; non-tensor items are not tensors and are listed),
                   or for a torch.save folder (pytorch_model.bin or a sharded .bin index): the
                   same folder as safetensors, every tensor bit for bit, config and tokenizer copied
  --out FILE       output file (default: CKPT-<DTYPE>.gguf beside the folder)
  --dtype D        weight matrices as f32 | f16 | bf16 (default: as stored); norms and
                   the MoE router stay f32
  --force          replace an existing output file
  --json           print the result as JSON

example:
  pma convert run/checkpoint-1000 --to gguf --dtype bf16 --out model.gguf
  pma convert run/iter_0001000 --to safetensors --out iter_0001000-hf
  pma convert pythia-160m-step143000 --to safetensors --out pythia-160m-st
  pma eval model.gguf --engine llama.cpp`;

const DTYPES: Record<string, GgufWeightDtype> = { f32: "F32", f16: "F16", bf16: "BF16" };

/** The GGUF weight type a --dtype flag names (undefined when the flag is absent). */
export function parseGgufDtype(flag: string | undefined): GgufWeightDtype | undefined {
  if (flag === undefined) return undefined;
  const d = DTYPES[flag.toLowerCase()];
  if (d === undefined) throw new PmaError("USAGE", `--dtype must be f32, f16 or bf16 (got '${flag}')`);
  return d;
}

export const command: Command = {
  usage,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        to: { type: "string" },
        out: { type: "string", short: "o" },
        dtype: { type: "string" },
        force: { type: "boolean" },
        json: { type: "boolean" },
        "include-optimizer": { type: "boolean" },
      },
      usage,
    );
    if (positionals.length !== 1)
      throw new PmaError("USAGE", `give exactly one checkpoint folder\n\n${usage}`);
    const to = (values.to ?? "gguf").toLowerCase();
    if (to === "safetensors")
      return isTorchSaveFolder(positionals[0]!)
        ? convertTorchSaveCommand(positionals[0]!, values)
        : convertDcpCommand(positionals[0]!, values);
    if (to !== "gguf") throw new PmaError("USAGE", `--to must be gguf or safetensors (got '${values.to}')`);
    const dtype = parseGgufDtype(values.dtype);
    const bar = byteProgress("convert", values.json !== true && isInteractive());
    let r: ConvertToGgufResult;
    try {
      r = await convertToGguf(positionals[0]!, {
        ...(values.out !== undefined ? { out: values.out } : {}),
        ...(dtype !== undefined ? { dtype } : {}),
        force: values.force ?? false,
        onProgress: (done, total) => bar.update(done, total),
      });
    } finally {
      bar.stop();
    }
    process.stdout.write(values.json === true ? JSON.stringify(r, null, 2) + "\n" : describeConversion(r));
    return 0;
  },
};

async function convertTorchSaveCommand(
  input: string,
  values: { out?: string; force?: boolean; json?: boolean; dtype?: string; "include-optimizer"?: boolean },
): Promise<number> {
  if (values.dtype !== undefined || values["include-optimizer"] === true)
    throw new PmaError(
      "USAGE",
      "--dtype and --include-optimizer do not apply to a torch.save folder: --to safetensors keeps every tensor's dtype",
    );
  const out = values.out ?? `${input.replace(/\/+$/, "")}-safetensors`;
  const bar = byteProgress("convert", values.json !== true && isInteractive());
  let r: MergeRecord;
  try {
    r = await convertTorchSaveToSafetensors(input, {
      out,
      force: values.force ?? false,
      onProgress: (done, total) => bar.update(done, total),
    });
  } finally {
    bar.stop();
  }
  process.stdout.write(
    values.json === true
      ? JSON.stringify(r, null, 2) + "\n"
      : `${out}: ${r.tensors} tensors, ${r.parameters.toLocaleString("en-US")} parameters, ${(r.bytes_written / 2 ** 20).toFixed(2)} MiB in ${r.files.length} file(s) from a torch.save checkpoint\n`,
  );
  return 0;
}

async function convertDcpCommand(
  input: string,
  values: { out?: string; force?: boolean; json?: boolean; dtype?: string; "include-optimizer"?: boolean },
): Promise<number> {
  if (values.dtype !== undefined)
    throw new PmaError("USAGE", "--dtype applies to --to gguf; --to safetensors keeps every tensor's dtype");
  const bar = byteProgress("convert", values.json !== true && isInteractive());
  let r: DcpToSafetensorsResult;
  try {
    r = await convertDcpToSafetensors(input, {
      out: values.out ?? `${input.replace(/\/+$/, "")}-safetensors`,
      force: values.force ?? false,
      includeOptimizer: values["include-optimizer"] ?? false,
      onProgress: (done, total) => bar.update(done, total),
    });
  } finally {
    bar.stop();
  }
  if (values.json === true) process.stdout.write(JSON.stringify(r, null, 2) + "\n");
  else {
    const skipped = r.skippedTensors > 0 ? `; left out ${r.skippedTensors} optimizer tensor(s)` : "";
    const items =
      r.skippedItems.length > 0
        ? `; ${r.skippedItems.length} non-tensor item(s) not converted (${r.skippedItems.slice(0, 4).join(", ")}${r.skippedItems.length > 4 ? ", ..." : ""})`
        : "";
    process.stdout.write(
      `${r.out}: ${r.tensors} tensors, ${r.parameters.toLocaleString("en-US")} parameters, ${(r.bytes / 2 ** 20).toFixed(2)} MiB in ${r.files.length} file(s) from a ${r.layout} distributed checkpoint${skipped}${items}\n`,
    );
  }
  return 0;
}

export function describeConversion(r: ConvertToGgufResult): string {
  return (
    `${r.out}: ${r.architecture} as GGUF (llama), ${r.dtype} weights, ${r.tensors} tensors, ` +
    `${r.parameters.toLocaleString("en-US")} parameters, vocabulary of ${r.vocabSize}, ` +
    `${(r.bytes / 2 ** 20).toFixed(2)} MiB in ${r.seconds.toFixed(2)} s\n`
  );
}
