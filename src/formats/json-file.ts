/**
 * Reading a small JSON state file that may be absent (trainer_state.json, pma_state.json):
 * missing means null, anything else that is not one JSON object is an error naming the
 * file. Python's NaN / Infinity / -Infinity are accepted (json-python.ts): the Trainer
 * writes them for a run whose loss overflowed. The shape is measured before parsing (json-shape.ts), so a hostile file fails
 * fast instead of costing minutes or ending the process.
 */
import { readFile } from "node:fs/promises";
import { PmaError, type PmaErrorCode } from "../common/errors.js";
import { parseJsonLenient } from "./json-python.js";
import { checkJsonShape, LOG_JSON_LIMITS, type JsonShapeLimits } from "./json-shape.js";

export interface JsonFileOptions {
  /** Error code for content that is not a JSON object (I/O errors are always IO). */
  code: PmaErrorCode;
  /** What the file should be, for messages: "a trainer state". */
  what: string;
  limits?: JsonShapeLimits;
}

/** The JSON object in `path`, or null when the file does not exist. */
export async function readJsonObjectFile(
  path: string,
  o: JsonFileOptions,
): Promise<Record<string, unknown> | null> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new PmaError("IO", `${path}: cannot read (${(e as Error).message})`, { file: path, cause: e });
  }
  const shape = checkJsonShape(text, o.limits ?? LOG_JSON_LIMITS);
  if (shape)
    throw new PmaError(o.code, `${path}: has ${shape.what} (at character ${shape.position}); not ${o.what}`, {
      file: path,
    });
  let raw: unknown;
  try {
    raw = parseJsonLenient(text, o.limits ?? LOG_JSON_LIMITS);
  } catch (e) {
    throw new PmaError(o.code, `${path}: not valid JSON (${(e as Error).message}); not ${o.what}`, {
      file: path,
      cause: e,
    });
  }
  // JSON.parse("null") is valid JSON: without this, reading a field would be a TypeError.
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new PmaError(o.code, `${path}: expected a JSON object; not ${o.what}`, { file: path });
  }
  return raw as Record<string, unknown>;
}
