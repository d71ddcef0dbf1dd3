import { PmaError } from "../common/errors.js";
import type { MergeInput } from "./inputs.js";
import type { OutputWriter } from "./outputs.js";

const CHUNK = 1 << 22;

/**
 * Integer, bool and 8-bit float tensors cannot be averaged meaningfully (a step counter,
 * a position-id buffer, an attention mask). They are copied when every checkpoint holds
 * the same bytes, and are an error otherwise. Compared chunk by chunk to bound memory.
 */
export async function copyIdenticalTensor(
  inputs: MergeInput[],
  name: string,
  writer: Pick<OutputWriter, "write">,
): Promise<void> {
  const first = inputs[0]!.checkpoint.tensors.get(name)!;
  for (let off = 0; off < first.byteLength; off += CHUNK) {
    const len = Math.min(CHUNK, first.byteLength - off);
    const ref = await first.file.read(name, off, len);
    for (const other of inputs.slice(1)) {
      const t = other.checkpoint.tensors.get(name)!;
      const bytes = await t.file.read(name, off, len);
      if (
        !Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).equals(
          Buffer.from(ref.buffer, ref.byteOffset, ref.byteLength),
        )
      ) {
        throw new PmaError(
          "NONFLOAT_DIFFERS",
          `${other.path}: ${first.dtype} tensor "${name}" differs from ${inputs[0]!.path}; pma averages only float tensors and copies others when they are identical in every checkpoint`,
          { file: other.path },
        );
      }
    }
    await writer.write(name, off, ref);
  }
}
