/**
 * The one error class of pma. Expected failures (bad input, usage, a full disk)
 * carry a stable `code` so callers and tests can branch on it, and a message that
 * says what is wrong, where (file / tensor), and what to do. The CLI prints the
 * message without a stack trace and exits 1 (2 for usage errors).
 */
export type PmaErrorCode =
  | "USAGE"
  | "IO"
  | "EXISTS"
  | "HEADER_TOO_LARGE"
  | "HEADER_INVALID"
  | "FILE_TOO_SHORT"
  | "DTYPE_UNKNOWN"
  | "DTYPE_UNSUPPORTED"
  | "FORMAT_UNSUPPORTED"
  | "TENSOR_SIZE_MISMATCH"
  | "OFFSETS_INVALID"
  | "DATA_LENGTH_MISMATCH"
  | "DUPLICATE_NAME"
  | "METADATA_INVALID"
  | "INDEX_INVALID"
  | "PATH_UNSAFE"
  | "TENSOR_NOT_FOUND"
  | "RANGE_INVALID"
  | "SOURCE_CHANGED"
  | "CHECKPOINT_MISMATCH"
  | "NONFINITE"
  | "NONFLOAT_DIFFERS"
  | "WEIGHTS_INVALID"
  | "INTERRUPTED"
  | "LOCKED"
  | "CONFIG_INVALID"
  | "GGUF_INVALID"
  | "LOG_INVALID"
  | "DATA_INVALID"
  | "BACKEND_UNAVAILABLE"
  | "PLATFORM_UNSUPPORTED"
  | "PARTS_INCOMPLETE"
  | "PARTS_MISMATCH"
  | "INTERNAL";

export class PmaError extends Error {
  readonly code: PmaErrorCode;
  /** The file the problem is in, when there is one. */
  readonly file?: string;

  constructor(code: PmaErrorCode, message: string, options?: { file?: string; cause?: unknown }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "PmaError";
    this.code = code;
    if (options?.file !== undefined) this.file = options.file;
  }
}

export function isPmaError(e: unknown, code?: PmaErrorCode): e is PmaError {
  return e instanceof PmaError && (code === undefined || e.code === code);
}

/**
 * A failed file-system call as pma's IO error. A full disk or quota is said in words
 * with what to do, since the raw "ENOSPC ... write" on a temporary file's name does not.
 */
export function fsError(path: string, what: string, e: unknown): PmaError {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  const detail = e instanceof Error ? e.message : String(e);
  if (code === "ENOSPC" || code === "EDQUOT") {
    return new PmaError(
      "IO",
      `${path}: ${what} failed: no space left on the device${code === "EDQUOT" ? " (disk quota reached)" : ""}; free some space or write the output elsewhere.`,
      { file: path, cause: e },
    );
  }
  return new PmaError("IO", `${path}: ${what} failed: ${detail}`, { file: path, cause: e });
}
