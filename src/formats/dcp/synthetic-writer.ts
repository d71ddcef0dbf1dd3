/**
 * Writes a distributed checkpoint the way torch's FileSystemWriter lays one out, for
 * benchmarks and tests that need checkpoints larger than the fixtures: one
 * `__<rank>_0.distcp` per rank holding that rank's row shard of every tensor as its own
 * torch.save zip (64-byte aligned stored records, CRC-32s set), BYTE_IO items as zips
 * holding only `data.pkl`, and `.metadata` as a pickle of DCP's metadata classes. Tensor
 * bytes come from a callback in pieces, so a checkpoint of any size is written in
 * bounded memory.
 */
import * as fs from "node:fs";
import { join } from "node:path";
import { crc32 } from "node:zlib";
import { writeFullySync } from "../../common/positional-io.js";
import { dtypeBits, type DType } from "../../tensor/dtype.js";
import { numel } from "../../tensor/shape.js";
import { rowMajorStrides, type ChunkBox } from "./chunks.js";

const TORCH_DTYPE: Partial<Record<DType, [string, string]>> = {
  F32: ["float32", "FloatStorage"],
  BF16: ["bfloat16", "BFloat16Storage"],
  F16: ["float16", "HalfStorage"],
  F64: ["float64", "DoubleStorage"],
  I64: ["int64", "LongStorage"],
};

export interface SyntheticTensor {
  name: string;
  dtype: DType;
  shape: number[];
  /** Fills `into` with the bytes of the chunk `box`, starting at byte `offset` of the chunk. */
  fill(box: ChunkBox, offset: number, into: Uint8Array): void;
}

/** A minimal protocol-2 pickler for the values DCP metadata needs. */
class Pickler {
  private parts: Buffer[] = [];
  op(...bytes: number[]): this {
    this.parts.push(Buffer.from(bytes));
    return this;
  }
  raw(b: Buffer): this {
    this.parts.push(b);
    return this;
  }
  global(name: string): this {
    const dot = name.lastIndexOf(".");
    return this.raw(Buffer.from(`c${name.slice(0, dot)}\n${name.slice(dot + 1)}\n`, "latin1"));
  }
  int(n: number): this {
    if (n >= -(2 ** 31) && n < 2 ** 31) {
      const b = Buffer.alloc(5);
      b[0] = 0x4a;
      b.writeInt32LE(n, 1);
      return this.raw(b);
    }
    const b = Buffer.alloc(10);
    b[0] = 0x8a;
    b[1] = 8;
    b.writeBigInt64LE(BigInt(n), 2);
    return this.raw(b);
  }
  str(s: string): this {
    const body = Buffer.from(s, "utf8");
    const head = Buffer.alloc(5);
    head[0] = 0x58;
    head.writeUInt32LE(body.length, 1);
    return this.raw(head).raw(body);
  }
  none(): this {
    return this.op(0x4e);
  }
  bool(v: boolean): this {
    return this.op(v ? 0x88 : 0x89);
  }
  tuple(items: (() => void)[]): this {
    this.op(0x28);
    for (const f of items) f();
    return this.op(0x74);
  }
  /** cls() then BUILD with a dict of fields. */
  object(cls: string, fields: [string, () => void][]): this {
    this.global(cls).op(0x29, 0x81).dict(fields);
    return this.op(0x62);
  }
  dict(fields: [string | (() => void), () => void][]): this {
    this.op(0x7d, 0x28);
    for (const [k, v] of fields) {
      if (typeof k === "string") this.str(k);
      else k();
      v();
    }
    return this.op(0x75);
  }
  list(items: (() => void)[]): this {
    this.op(0x5d, 0x28);
    for (const f of items) f();
    return this.op(0x65);
  }
  size(dims: number[]): this {
    return this.global("torch.Size")
      .tuple([() => this.tuple(dims.map((d) => () => this.int(d)))])
      .op(0x52);
  }
  done(): Buffer {
    this.op(0x2e);
    const b = Buffer.concat([Buffer.from([0x80, 2]), ...this.parts]);
    this.parts = [];
    return b;
  }
}

interface Record_ {
  name: string;
  localAt: number;
  dataAt: number;
  length: number;
  crc: number;
}

/** Writes one torch.save zip at `start` of `fd`: stored records, data 64-byte aligned from `start`. Returns its length. */
function writeZip(
  fd: number,
  file: string,
  start: number,
  records: { name: string; length: number; write(at: number): number }[],
): number {
  let pos = start;
  const written: Record_[] = [];
  for (const r of records) {
    const name = Buffer.from(r.name, "utf8");
    const base = pos - start + 30 + name.length;
    const pad = (64 - ((base + 4) % 64)) % 64;
    const extra = Buffer.alloc(4 + pad);
    extra.writeUInt16LE(0x4246, 0); // "FB", as torch pads
    extra.writeUInt16LE(pad, 2);
    const localAt = pos;
    const dataAt = pos + 30 + name.length + extra.length;
    const crc = r.write(dataAt);
    const h = Buffer.alloc(30);
    h.writeUInt32LE(0x04034b50, 0);
    h.writeUInt16LE(20, 4);
    h.writeUInt32LE(crc >>> 0, 14);
    h.writeUInt32LE(r.length, 18);
    h.writeUInt32LE(r.length, 22);
    h.writeUInt16LE(name.length, 26);
    h.writeUInt16LE(extra.length, 28);
    writeFullySync(fd, file, Buffer.concat([h, name, extra]), localAt);
    written.push({ name: r.name, localAt, dataAt, length: r.length, crc });
    pos = dataAt + r.length;
  }
  const cdAt = pos;
  const cd: Buffer[] = [];
  for (const r of written) {
    const name = Buffer.from(r.name, "utf8");
    const h = Buffer.alloc(46);
    h.writeUInt32LE(0x02014b50, 0);
    h.writeUInt16LE(20, 4);
    h.writeUInt16LE(20, 6);
    h.writeUInt32LE(r.crc >>> 0, 16);
    h.writeUInt32LE(r.length, 20);
    h.writeUInt32LE(r.length, 24);
    h.writeUInt16LE(name.length, 28);
    h.writeUInt32LE(r.localAt - start, 42);
    cd.push(h, name);
  }
  const cdBytes = Buffer.concat(cd);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(written.length, 8);
  end.writeUInt16LE(written.length, 10);
  end.writeUInt32LE(cdBytes.length, 12);
  end.writeUInt32LE(cdAt - start, 16);
  writeFullySync(fd, file, Buffer.concat([cdBytes, end]), cdAt);
  return cdAt + cdBytes.length + 22 - start;
}

function smallRecord(name: string, data: Buffer) {
  return {
    name,
    length: data.length,
    write: (at: number) => data.length,
    data,
  };
}

/**
 * Writes `dir` (created) as a DCP checkpoint of `tensors` row-sharded over `ranks` files,
 * with `items` as BYTE_IO values (ints or strings).
 */
export function writeSyntheticDcp(
  dir: string,
  tensors: SyntheticTensor[],
  items: Record<string, number | string>,
  ranks = 1,
  pieceBytes = 8 << 20,
): void {
  fs.mkdirSync(dir, { recursive: true });
  const p = new Pickler();
  const storage: (() => void)[][] = [];
  const chunksOf = new Map<string, ChunkBox[]>();
  const piece = new Uint8Array(pieceBytes);
  for (let rank = 0; rank < ranks; rank++) {
    const file = join(dir, `__${rank}_0.distcp`);
    const fd = fs.openSync(file, "w");
    let pos = 0;
    const store = (fqn: string, offsets: number[] | null, at: number, length: number) => {
      storage.push([
        () =>
          p.object("torch.distributed.checkpoint.metadata.MetadataIndex", [
            ["fqn", () => p.str(fqn)],
            ...(offsets !== null ? ([["offset", () => p.size(offsets)]] as [string, () => void][]) : []),
            ["index", () => p.none()],
          ]),
        () =>
          p.object("torch.distributed.checkpoint.filesystem._StorageInfo", [
            ["relative_path", () => p.str(`__${rank}_0.distcp`)],
            ["offset", () => p.int(at)],
            ["length", () => p.int(length)],
          ]),
      ]);
    };
    try {
      if (rank === 0) {
        for (const [name, value] of Object.entries(items)) {
          const pkl = new Pickler();
          typeof value === "number" ? pkl.int(value) : pkl.str(value);
          const recs = [
            smallRecord("archive/data.pkl", pkl.done()),
            smallRecord("archive/byteorder", Buffer.from("little")),
            smallRecord("archive/version", Buffer.from("3\n")),
          ];
          const len = writeZip(
            fd,
            file,
            pos,
            recs.map((r) => ({
              ...r,
              write: (at: number) => (writeFullySync(fd, file, r.data, at), crc32(r.data)),
            })),
          );
          store(name, null, pos, len);
          pos += len;
        }
      }
      for (const t of tensors) {
        const [, storageName] = TORCH_DTYPE[t.dtype]!;
        const rows = t.shape[0] ?? 1;
        const r0 = Math.floor((rank * rows) / ranks);
        const r1 = Math.floor(((rank + 1) * rows) / ranks);
        if (t.shape.length > 0 && r1 <= r0) continue;
        const box: ChunkBox =
          t.shape.length === 0
            ? { offsets: [], sizes: [] }
            : { offsets: [r0, ...t.shape.slice(1).map(() => 0)], sizes: [r1 - r0, ...t.shape.slice(1)] };
        if (t.shape.length === 0 && rank > 0) continue;
        (chunksOf.get(t.name) ?? chunksOf.set(t.name, []).get(t.name)!).push(box);
        const elements = numel(box.sizes);
        const bytes = (elements * dtypeBits(t.dtype)) / 8;
        const pkl = new Pickler();
        pkl
          .global("torch._utils._rebuild_tensor_v2")
          .tuple([
            () =>
              pkl
                .tuple([
                  () => pkl.str("storage"),
                  () => pkl.global(`torch.${storageName}`),
                  () => pkl.str("0"),
                  () => pkl.str("cpu"),
                  () => pkl.int(elements),
                ])
                .op(0x51),
            () => pkl.int(0),
            () => pkl.tuple(box.sizes.map((d) => () => pkl.int(d))),
            () => pkl.tuple(rowMajorStrides(box.sizes).map((d) => () => pkl.int(d))),
            () => pkl.bool(false),
            () => pkl.global("collections.OrderedDict").tuple([]).op(0x52),
          ])
          .op(0x52);
        const small = [
          smallRecord("archive/data.pkl", pkl.done()),
          smallRecord("archive/byteorder", Buffer.from("little")),
        ];
        const len = writeZip(fd, file, pos, [
          ...small.map((r) => ({
            ...r,
            write: (at: number) => (writeFullySync(fd, file, r.data, at), crc32(r.data)),
          })),
          {
            name: "archive/data/0",
            length: bytes,
            write: (at: number) => {
              let crc = 0;
              for (let o = 0; o < bytes; o += piece.length) {
                const n = Math.min(piece.length, bytes - o);
                t.fill(box, o, piece.subarray(0, n));
                writeFullySync(fd, file, piece.subarray(0, n), at + o);
                crc = crc32(piece.subarray(0, n), crc);
              }
              return crc;
            },
          },
          {
            ...smallRecord("archive/version", Buffer.from("3\n")),
            write: (at: number) => (
              writeFullySync(fd, file, Buffer.from("3\n"), at),
              crc32(Buffer.from("3\n"))
            ),
          },
        ]);
        store(t.name, box.offsets, pos, len);
        pos += len;
      }
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
  const sdm: [string, () => void][] = [];
  for (const t of tensors) {
    const [torchName] = TORCH_DTYPE[t.dtype]!;
    sdm.push([
      t.name,
      () =>
        p.object("torch.distributed.checkpoint.metadata.TensorStorageMetadata", [
          [
            "properties",
            () =>
              p
                .global("torch.distributed.checkpoint.metadata.TensorProperties")
                .op(0x29, 0x81)
                .tuple([
                  () => p.global(`torch.${torchName}`),
                  () =>
                    p
                      .global("torch.serialization._get_layout")
                      .tuple([() => p.str("torch.strided")])
                      .op(0x52),
                  () => p.bool(false),
                  () =>
                    p
                      .global("torch.distributed.checkpoint.metadata._MEM_FORMAT_ENCODING")
                      .tuple([() => p.int(0)])
                      .op(0x52),
                  () => p.bool(false),
                ])
                .op(0x62),
          ],
          ["size", () => p.size(t.shape)],
          [
            "chunks",
            () =>
              p.list(
                chunksOf.get(t.name)!.map(
                  (c) => () =>
                    p.object("torch.distributed.checkpoint.metadata.ChunkStorageMetadata", [
                      ["offsets", () => p.size(c.offsets)],
                      ["sizes", () => p.size(c.sizes)],
                    ]),
                ),
              ),
          ],
        ]),
    ]);
  }
  for (const name of Object.keys(items))
    sdm.push([name, () => p.object("torch.distributed.checkpoint.metadata.BytesStorageMetadata", [])]);
  p.object("torch.distributed.checkpoint.metadata.Metadata", [
    ["state_dict_metadata", () => p.dict(sdm)],
    [
      "planner_data",
      () =>
        p.dict(
          [...tensors.map((t) => t.name), ...Object.keys(items)].map((n) => [
            n,
            () => p.list([() => p.str(n)]),
          ]),
        ),
    ],
    ["storage_data", () => p.dict(storage.map(([k, v]) => [k, v] as [() => void, () => void]))],
    ["version", () => p.str("1.0.0")],
  ]);
  const meta = join(dir, ".metadata");
  fs.writeFileSync(meta, p.done());
}
