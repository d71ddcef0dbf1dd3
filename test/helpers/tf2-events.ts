/**
 * Event files the way TF2's tf.summary.scalar writes them (Keras' TensorBoard callback):
 * each value a rank-0 DT_FLOAT tensor in `tensor_content`, with summary metadata naming
 * the "scalars" plugin; built byte by byte from the protobuf and TFRecord specs, without
 * pma's writer, so the Keras fixtures are what Keras writes and not what pma writes.
 */
import { mkdir, writeFile } from "node:fs/promises";
import { dirname } from "node:path";

function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

const masked = (crc: number) => (((crc >>> 15) | (crc << 17)) + 0xa282ead8) >>> 0;

function varint(v: number): number[] {
  const out: number[] = [];
  let x = v;
  do {
    const b = x % 128;
    x = Math.floor(x / 128);
    out.push(x > 0 ? b | 128 : b);
  } while (x > 0);
  return out;
}

const key = (field: number, wire: number) => varint(field * 8 + wire);
const len = (field: number, payload: number[]) => [...key(field, 2), ...varint(payload.length), ...payload];
const utf8 = (s: string) => [...new TextEncoder().encode(s)];
const le = (n: number, bytes: number, set: (d: DataView) => void) => {
  const b = new Uint8Array(bytes);
  set(new DataView(b.buffer));
  return [...b];
};
const f64 = (x: number) => le(x, 8, (d) => d.setFloat64(0, x, true));
const f32 = (x: number) => le(x, 4, (d) => d.setFloat32(0, x, true));
const u32 = (x: number) => le(x, 4, (d) => d.setUint32(0, x, true));

function record(data: number[]): number[] {
  const header = [...u32(data.length), 0, 0, 0, 0];
  return [
    ...header,
    ...u32(masked(crc32c(Uint8Array.from(header)))),
    ...data,
    ...u32(masked(crc32c(Uint8Array.from(data)))),
  ];
}

export interface Tf2Scalar {
  tag: string;
  step: number;
  value: number;
}

/** The bytes of a TF2 event file: the version event, then one event per scalar. */
export function tf2EventFile(scalars: readonly Tf2Scalar[], wallTime = 1_700_000_000): Uint8Array {
  const out: number[] = record([...key(1, 1), ...f64(wallTime), ...len(3, utf8("brain.Event:2"))]);
  const metadata = len(9, len(1, len(1, utf8("scalars")))); // SummaryMetadata{plugin_data{plugin_name}}
  for (const s of scalars) {
    const tensor = [...key(1, 0), 1 /* DT_FLOAT */, ...len(2, []), ...len(4, f32(s.value))];
    const value = [...len(1, utf8(s.tag)), ...metadata, ...len(8, tensor)];
    out.push(
      ...record([
        ...key(1, 1),
        ...f64(wallTime + s.step),
        ...key(2, 0),
        ...varint(s.step),
        ...len(5, len(1, value)),
      ]),
    );
  }
  return Uint8Array.from(out);
}

export async function writeTf2EventFile(path: string, scalars: readonly Tf2Scalar[]): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, tf2EventFile(scalars));
}
