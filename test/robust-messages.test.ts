/**
 * What a user sees when the input is not what it seems: a Git LFS pointer under a model's
 * name, a GGUF with a corrupt 1.7 MB key, a safetensors file given by name, a log with
 * evaluation-only entries, GGUF files without tensors.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { isPmaError } from "../src/common/errors.js";
import { quoted, safeMessage } from "../src/common/quote.js";
import { openCheckpointTensors } from "../src/formats/checkpoint-files.js";
import { GgufFile } from "../src/formats/gguf.js";
import { readTensorboardFile } from "../src/formats/tensorboard.js";
import { Bytes, f32Bytes, GT, preamble, simpleFile, VT } from "./formats-gguf-fixtures.js";
import { tempDir } from "./helpers/fixtures.js";
import { PMA_CLI } from "./helpers/processes.js";
import { lossCurve, TOKENS_PER_STEP, writeSpikyRun } from "./helpers/spiky-run.js";

const pma = (...args: string[]) => spawnSync(process.execPath, [PMA_CLI, ...args], { encoding: "utf8" });

/** A pointer as git-lfs writes it (spec v1): version, oid, size, each line ending in \n. */
const LFS_POINTER =
  "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 4943162240\n";

describe("messages for inputs that are not what they seem", () => {
  let tmp: Awaited<ReturnType<typeof tempDir>>;
  before(async () => {
    tmp = await tempDir("pma-messages-");
  });
  after(() => tmp.cleanup());

  test("a Git LFS pointer saved as model.safetensors, a .gguf or an event file is named as one, with how to fetch the file", async () => {
    const dir = join(tmp.dir, "lfs");
    await mkdir(dir);
    const files = ["model.safetensors", "model-q8.gguf", "events.out.tfevents.1700000000.host"];
    for (const f of files) await writeFile(join(dir, f), LFS_POINTER);
    const isPointerError = (file: string) => (e: unknown) => {
      assert.ok(isPmaError(e, "FORMAT_UNSUPPORTED"), String(e));
      assert.equal(e.file, join(dir, file));
      assert.match(e.message, /is a Git LFS pointer .*standing for a 4943162240-byte file.*git lfs pull/);
      assert.doesNotMatch(e.message, /header length|CRC/i);
      return true;
    };
    await assert.rejects(openCheckpointTensors(dir), isPointerError("model.safetensors"));
    await assert.rejects(GgufFile.open(join(dir, "model-q8.gguf")), isPointerError("model-q8.gguf"));
    await assert.rejects(readTensorboardFile(join(dir, files[2]!)), isPointerError(files[2]!));
    const r = pma("inspect", join(dir, "model.safetensors"));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /model\.safetensors: is a Git LFS pointer/);
  });

  test("a GGUF whose key is 1.7 MB of binary garbage: pma inspect prints a short, escaped error", async () => {
    const garbage = new Uint8Array(1_700_000);
    for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919 + 13) % 128; // ASCII, controls included: valid UTF-8
    garbage.set([0x1b, 0x5b, 0x32, 0x4a, 0x07, 0x0d], 0); // ESC [2J (clear screen), BEL, CR
    const b = new Bytes();
    preamble(b, 0, 1).str(garbage).u32(99); // value type 99: not a GGUF type
    const path = join(tmp.dir, "corrupt-key.gguf");
    await writeFile(path, b.build());
    const r = pma("inspect", path);
    assert.equal(r.status, 1);
    assert.ok(r.stderr.length < 1000, `stderr is ${r.stderr.length} characters`);
    assert.match(
      r.stderr,
      /corrupt-key\.gguf: key "\\u001b\[2J\\u0007\\r.*\.\.\." \(\d+ characters\) value type is 99/,
    );
    assert.doesNotMatch(r.stderr, /[\u0000-\u0009\u000b-\u001f\u007f]/, "no raw control characters");
  });

  test("quoted and safeMessage escape and cut", () => {
    assert.equal(quoted("a\u202eb"), '"a\\u202eb"');
    assert.equal(quoted("x".repeat(300)), `"${"x".repeat(200)}..." (300 characters)`);
    assert.equal(safeMessage("a\u001b[31mb\nc"), "a\\u001b[31mb\nc");
    assert.match(safeMessage("y".repeat(50), 10), /^y{10}\.\.\. \(message cut at 10 of 50 characters\)$/);
  });

  test("pma inspect FILE.safetensors names the file, not its folder", async () => {
    const run = join(tmp.dir, "run-inspect");
    const [ck] = await writeSpikyRun({
      dir: run,
      checkpoints: 1,
      stepInterval: 100,
      curve: lossCurve(100, {}),
      log: "pma-jsonl",
    });
    const file = join(ck!, "model.safetensors");
    const r = pma("inspect", file);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(r.stdout.startsWith(`${file}: safetensors, 1 file(s)`), r.stdout.split("\n")[0]);
    const d = pma("inspect", ck!);
    assert.ok(d.stdout.startsWith(`${ck}: safetensors`), d.stdout.split("\n")[0]);
  });

  test("pma init counts training steps, not evaluation-only entries", async () => {
    const run = join(tmp.dir, "run-eval");
    await writeSpikyRun({
      dir: run,
      checkpoints: 3,
      stepInterval: 100,
      curve: lossCurve(300, {}),
      log: "pma-jsonl",
    });
    const lines: string[] = [];
    for (const p of lossCurve(300, {})) {
      if (p.step % 10 !== 0)
        lines.push(
          JSON.stringify({
            type: "step",
            step: p.step,
            tokens: p.step * TOKENS_PER_STEP,
            loss: p.loss,
            grad_norm: p.gradNorm,
            lr: 3e-4,
          }),
        );
      else
        lines.push(
          JSON.stringify({
            type: "eval",
            step: p.step,
            tokens: p.step * TOKENS_PER_STEP,
            val_loss: p.loss + 0.1,
          }),
        );
    }
    await writeFile(join(run, "log.jsonl"), lines.join("\n") + "\n");
    const r = pma("init", run, "--out", join(tmp.dir, "never"));
    assert.equal(r.status, 2, r.stderr);
    assert.match(
      r.stderr,
      /no unrecovered loss spike or divergence found in 270 logged training step\(s\) \(and 30 evaluation-only entries\)/,
    );
  });

  test("merging GGUF files that hold no tensors is refused, naming the file", async () => {
    const a = join(tmp.dir, "vocab-a.gguf");
    const b = join(tmp.dir, "vocab-b.gguf");
    await writeFile(a, simpleFile([]).bytes);
    await writeFile(b, simpleFile([]).bytes);
    const r = pma("merge", a, b, "--out", join(tmp.dir, "out.gguf"));
    assert.equal(r.status, 1);
    assert.match(r.stderr, /vocab-a\.gguf: holds no tensors .*no weights to merge/);
    // With tensors, the same files merge.
    const t = [{ name: "w", dims: [2], type: GT.F32, data: f32Bytes([1, 2]) }];
    await writeFile(a, simpleFile(t).bytes);
    await writeFile(b, simpleFile(t).bytes);
    assert.equal(pma("merge", a, b, "--out", join(tmp.dir, "out.gguf")).status, 0);
    void VT;
  });
});
