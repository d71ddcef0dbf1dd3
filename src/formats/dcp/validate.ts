import * as fs from "node:fs";
import { PmaError } from "../../common/errors.js";
import { tensorByteLength } from "../tensor-bytes.js";
import { checkTiling } from "./chunks.js";
import { numel } from "../../tensor/shape.js";
import type { DcpCheckpoint } from "./model.js";

/**
 * The checks every DCP layout shares, run once on open so that no later read can go
 * wrong: every chunk's byte size matches its box and dtype, every byte range lies inside
 * its file, and each tensor's chunks tile its shape exactly once. `where` names the
 * file that described the layout (`.metadata`, or the safetensors file).
 */
export async function validateCheckpoint(ckpt: DcpCheckpoint, where: string): Promise<void> {
  const sizes = new Map<string, number>();
  const sizeOf = async (file: string): Promise<number> => {
    let s = sizes.get(file);
    if (s === undefined) {
      try {
        const st = await fs.promises.stat(file);
        if (!st.isFile())
          throw new PmaError("METADATA_INVALID", `${where}: data file ${file} is not a regular file.`, {
            file: where,
          });
        s = st.size;
      } catch (e) {
        if (e instanceof PmaError) throw e;
        throw new PmaError(
          "METADATA_INVALID",
          `${where}: names data file ${file}, which cannot be read (${(e as Error).message}); the checkpoint is incomplete.`,
          {
            file: where,
            cause: e,
          },
        );
      }
      sizes.set(file, s);
    }
    return s;
  };
  const pastEnd = (what: string, file: string, offset: number, length: number, size: number): never => {
    throw new PmaError(
      "METADATA_INVALID",
      `${where}: ${what} lies at bytes [${offset}, ${offset + length}) of ${file}, past its end (${size} bytes); the checkpoint is truncated or its metadata is damaged.`,
      { file: where },
    );
  };
  for (const t of ckpt.tensors.values()) {
    checkTiling(t.name, t.shape, t.chunks, where);
    for (const c of t.chunks) {
      const expect = tensorByteLength(t.dtype, c.sizes);
      if (!expect.ok || expect.byteLength !== c.byteLength) {
        throw new PmaError(
          "METADATA_INVALID",
          `${where}: a chunk of tensor "${t.name}" (${numel(c.sizes)} elements of ${t.dtype}) is stored as ${c.byteLength} bytes; its dtype or size disagrees with the data.`,
          { file: where },
        );
      }
      const size = await sizeOf(c.file);
      if (!Number.isSafeInteger(c.dataOffset) || c.dataOffset < 0 || c.dataOffset + c.byteLength > size) {
        pastEnd(`a chunk of tensor "${t.name}"`, c.file, c.dataOffset, c.byteLength, size);
      }
    }
  }
  for (const b of ckpt.bytesItems.values()) {
    const size = await sizeOf(b.file);
    if (
      !Number.isSafeInteger(b.offset) ||
      !Number.isSafeInteger(b.length) ||
      b.offset < 0 ||
      b.length < 0 ||
      b.offset + b.length > size
    ) {
      pastEnd(`item "${b.name}"`, b.file, b.offset, b.length, size);
    }
  }
}
