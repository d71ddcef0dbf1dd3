/**
 * A distributed checkpoint as pma sees it, whatever layout wrote it: each tensor has a
 * global shape and dtype and is stored as chunks (boxes of that shape), each chunk a
 * run of little-endian row-major elements at a known position in a known file.
 * Non-tensor items (BYTE_IO) are kept as byte ranges and are never interpreted unless a
 * caller asks for a specific one.
 */
import type { DType } from "../../tensor/dtype.js";
import type { ChunkBox } from "./chunks.js";

/** How the checkpoint's bytes are laid out on disk. */
export type DcpLayout =
  /** `.metadata` + `.distcp` files whose items are torch.save zips (FileSystemWriter's default). */
  | "torch-save"
  /** `.metadata` + `.distcp` files that are whole safetensors files (SerializationFormat.SAFETENSORS). */
  | "safetensors"
  /** `*.safetensors` with `DCP_SHARDING_INFO` (HuggingFaceStorageWriter), no `.metadata`. */
  | "hf-storage";

export interface DcpChunk extends ChunkBox {
  /** Absolute path of the file holding the chunk. */
  file: string;
  /** Absolute position of the chunk's first element in `file`. */
  dataOffset: number;
  byteLength: number;
  /**
   * For torch.save segments: the zip record that holds the data, so a writer replacing
   * the bytes can also fix the record's CRC-32.
   */
  record?: ZipRecordRef;
}

/** Where a stored zip record's CRC-32 is kept (central directory and data descriptor). */
export interface ZipRecordRef {
  /** Absolute position and length of the record's stored bytes (the whole storage, which may be more than the chunk). */
  dataOffset: number;
  length: number;
  /** Absolute positions of the 4-byte CRC-32 fields to rewrite. */
  crcFields: number[];
}

export interface DcpTensor {
  name: string;
  dtype: DType;
  shape: number[];
  /** Chunks in metadata order; they tile `shape` exactly once (checked on open). */
  chunks: DcpChunk[];
}

export interface DcpBytesItem {
  name: string;
  file: string;
  offset: number;
  length: number;
}

export interface DcpCheckpoint {
  /** Absolute path of the checkpoint folder. */
  root: string;
  layout: DcpLayout;
  tensors: Map<string, DcpTensor>;
  bytesItems: Map<string, DcpBytesItem>;
  /** Every data file, relative to `root`, sorted. */
  dataFiles: string[];
}
