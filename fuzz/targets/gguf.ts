import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { inspectGguf } from "../../src/formats/gguf-inspect.js";
import { gguf, type GgufMetadata } from "../../src/formats/gguf-values.js";
import { writeGguf, type GgufTensorData } from "../../src/formats/gguf-writer.js";
import { openMergeInput } from "../../src/merge/inputs.js";
import type { FuzzTarget } from "../target.js";

function f32(values: number[]): Uint8Array {
  return new Uint8Array(Float32Array.from(values).buffer);
}

/** Metadata of every value type, nested arrays, and the keys a llama GGUF carries. */
function metadata(): GgufMetadata {
  return new Map([
    ["general.architecture", gguf.string("llama")],
    ["general.name", gguf.string("seed ✓")],
    ["general.alignment", gguf.u32(32)],
    ["llama.context_length", gguf.u32(128)],
    ["llama.embedding_length", gguf.u32(4)],
    ["llama.attention.layer_norm_rms_epsilon", gguf.f32(1e-5)],
    ["llama.rope.freq_base", gguf.f64(10000)],
    ["t.u8", gguf.u8(255)],
    ["t.i8", gguf.i8(-128)],
    ["t.u16", gguf.u16(65535)],
    ["t.i16", gguf.i16(-32768)],
    ["t.i32", gguf.i32(-1)],
    ["t.u64", gguf.u64(1n << 40n)],
    ["t.i64", gguf.i64(-(1n << 40n))],
    ["t.bool", gguf.bool(true)],
    ["tokenizer.ggml.model", gguf.string("gpt2")],
    ["tokenizer.ggml.tokens", gguf.strings(["<s>", "a", "b", "ab", "\u00e9"])],
    ["tokenizer.ggml.scores", gguf.f32s([0, -1, -2, -3, -4])],
    ["tokenizer.ggml.token_type", gguf.i32s([3, 1, 1, 1, 1])],
    ["t.u32s", gguf.u32s([1, 2, 3])],
    ["t.f64s", gguf.f64s([0.5, -0.25])],
    ["t.bools", { type: "array", elementType: "bool", values: [true, false] }],
    ["t.u64s", { type: "array", elementType: "u64", values: BigUint64Array.of(1n, 2n) }],
    [
      "t.nested",
      {
        type: "array",
        elementType: "array",
        values: [{ type: "array", elementType: "u8", values: Uint8Array.of(1, 2) }],
      },
    ],
  ]);
}

const TENSORS: GgufTensorData[] = [
  {
    name: "token_embd.weight",
    type: "F32",
    dims: [4, 6],
    data: f32(Array.from({ length: 24 }, (_, i) => i / 10 - 1)),
  },
  {
    name: "output_norm.weight",
    type: "F16",
    dims: [4],
    data: new Uint8Array(Uint16Array.of(0x3c00, 0x4000, 0xbc00, 0x7c00).buffer),
  },
  { name: "blk.0.attn_q.weight", type: "BF16", dims: [4, 4], data: new Uint8Array(32).fill(0x3f) },
  { name: "blk.0.ffn_down.weight", type: "Q8_0", dims: [32], data: new Uint8Array(34) },
];

export const ggufTarget: FuzzTarget = {
  name: "gguf",
  description:
    "a .gguf file: inspect --stats (header, key/values, tensor infos, data) and openMergeInput (split and quantization checks)",
  dictionary: [
    "GGUF",
    "general.alignment",
    "split.count",
    "general.architecture",
    "tokenizer.ggml.tokens",
    "blk.0.attn_q.weight",
  ],
  async seeds(work) {
    const dir = join(work, "seeds");
    await mkdir(dir, { recursive: true });
    const paths = [
      await writeGguf(join(dir, "full.gguf"), metadata(), TENSORS),
      await writeGguf(
        join(dir, "floats.gguf"),
        new Map([["general.architecture", gguf.string("llama")]]),
        TENSORS.slice(0, 3),
      ),
      await writeGguf(join(dir, "no-tensors.gguf"), new Map([["general.alignment", gguf.u32(64)]]), []),
    ];
    return Promise.all(paths.map((p) => readFile(p)));
  },
  async setup(work) {
    const dir = join(work, "gguf");
    await mkdir(dir, { recursive: true });
    const file = join(dir, "checkpoint-100.gguf");
    return async (data) => {
      await writeFile(file, data);
      await inspectGguf(file, { stats: true });
      const input = await openMergeInput(file);
      await input.checkpoint.close();
    };
  },
};
