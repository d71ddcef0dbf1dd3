/**
 * Held-out text given by the user, as documents: a `.txt` file whose documents are
 * separated by blank lines, or a `.jsonl` file with one JSON object per line whose
 * `textField` holds the document. The file's sha256 and UTF-8 size come with the
 * documents, so callers can cache what they derive from it by content and report bits
 * per byte.
 */
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { extname, resolve } from "node:path";
import { PmaError } from "../common/errors.js";

export interface TextDocuments {
  file: string;
  format: "txt" | "jsonl";
  /** sha256 of the file's bytes. */
  sha256: string;
  documents: string[];
  /** UTF-8 bytes of the documents' text (separators not counted). */
  bytes: number;
}

export interface ReadTextOptions {
  /** JSONL: the field holding each document's text (default "text"). */
  textField?: string;
}

export function textFormatOf(file: string): "txt" | "jsonl" {
  const ext = extname(file).toLowerCase();
  if (ext === ".txt" || ext === ".text") return "txt";
  if (ext === ".jsonl" || ext === ".ndjson") return "jsonl";
  throw new PmaError(
    "USAGE",
    `${file}: held-out data must be a .txt file (documents separated by blank lines) or a .jsonl file (one JSON object per line), got '${ext || "no extension"}'`,
    { file },
  );
}

export function readTextDocuments(path: string, opts: ReadTextOptions = {}): TextDocuments {
  const file = resolve(path);
  const format = textFormatOf(file);
  let raw: Buffer;
  try {
    raw = readFileSync(file);
  } catch (e) {
    throw new PmaError("IO", `${file}: cannot read the held-out data (${(e as Error).message})`, {
      file,
      cause: e,
    });
  }
  const sha256 = createHash("sha256").update(raw).digest("hex");
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
  } catch (e) {
    throw new PmaError(
      "FORMAT_UNSUPPORTED",
      `${file}: not valid UTF-8 text; save the held-out data as UTF-8`,
      { file, cause: e },
    );
  }
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  const documents =
    format === "txt" ? txtDocuments(text) : jsonlDocuments(text, file, opts.textField ?? "text");
  if (documents.length === 0)
    throw new PmaError(
      "DATA_INVALID",
      `${file}: no text in the held-out data (the file is empty or only whitespace); give a file with at least one document`,
      { file },
    );
  const enc = new TextEncoder();
  let bytes = 0;
  for (const d of documents) bytes += enc.encode(d).length;
  return { file, format, sha256, documents, bytes };
}

/** Documents are runs of lines separated by one or more blank (whitespace-only) lines. */
function txtDocuments(text: string): string[] {
  return text
    .replace(/\r\n?/g, "\n")
    .split(/\n[ \t]*\n(?:[ \t]*\n)*/)
    .map((d) => d.trim())
    .filter((d) => d !== "");
}

function jsonlDocuments(text: string, file: string, field: string): string[] {
  const out: string[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "") continue;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch (e) {
      throw new PmaError(
        "FORMAT_UNSUPPORTED",
        `${file}:${i + 1}: not valid JSON (${(e as Error).message}); a .jsonl file holds one JSON object per line`,
        { file, cause: e },
      );
    }
    if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
      throw new PmaError(
        "FORMAT_UNSUPPORTED",
        `${file}:${i + 1}: expected a JSON object with a "${field}" field`,
        { file },
      );
    }
    const value = (obj as Record<string, unknown>)[field];
    if (typeof value !== "string") {
      const keys = Object.keys(obj).slice(0, 8).join(", ");
      throw new PmaError(
        "FORMAT_UNSUPPORTED",
        `${file}:${i + 1}: no string field "${field}" (${value === undefined ? "absent" : `it is ${value === null ? "null" : typeof value}`}; fields: ${keys || "none"}); name the text field with --text-field`,
        { file },
      );
    }
    if (value.trim() !== "") out.push(value);
  }
  return out;
}
