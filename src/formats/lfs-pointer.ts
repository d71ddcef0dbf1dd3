/**
 * A Git LFS pointer is what a clone without git-lfs (or with GIT_LFS_SKIP_SMUDGE) leaves
 * under a model file's name: ~130 bytes of text, `version https://git-lfs...`, the
 * object's sha256 and size. Read as safetensors it is a "header length" of 8 ASCII
 * bytes (about 8e18); as an event file, a CRC mismatch. Say what it is instead.
 */
import { PmaError } from "../common/errors.js";

const LFS_PREFIX = "version https://git-lfs";
/** Pointer files are small; the spec limits them to 1024 bytes. */
const MAX_POINTER_BYTES = 1024;

/** The pointer error for a file whose first bytes are `head`, or null when it is not a pointer. */
export function lfsPointerError(path: string, head: Uint8Array, fileSize: number): PmaError | null {
  if (fileSize > MAX_POINTER_BYTES || head.length < LFS_PREFIX.length) return null;
  const text = Buffer.from(head.buffer, head.byteOffset, head.byteLength).toString("latin1");
  if (!text.startsWith(LFS_PREFIX)) return null;
  const size = /^size (\d+)$/m.exec(text)?.[1];
  return new PmaError(
    "FORMAT_UNSUPPORTED",
    `${path}: is a Git LFS pointer (${fileSize} bytes of text${size !== undefined ? ` standing for a ${size}-byte file` : ""}), not the file itself; ` +
      `the repository was cloned without Git LFS. Fetch the real file: in the clone run \`git lfs install && git lfs pull\`, ` +
      `or download it directly (e.g. \`huggingface-cli download REPO FILE\`).`,
    { file: path },
  );
}

/** Reads the first bytes of an open file and throws the pointer error if it is one. */
export function checkNotLfsPointer(
  path: string,
  fileSize: number,
  readHead: (into: Uint8Array) => void,
): void {
  if (fileSize > MAX_POINTER_BYTES) return;
  const head = new Uint8Array(Math.min(fileSize, LFS_PREFIX.length));
  readHead(head);
  const e = lfsPointerError(path, head, fileSize);
  if (e !== null) {
    const full = new Uint8Array(fileSize);
    readHead(full);
    throw lfsPointerError(path, full, fileSize) ?? e;
  }
}
