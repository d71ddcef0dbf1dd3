import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { writeSafetensors } from "../src/formats/safetensors-writer.js";
import { merge } from "../src/merge/merger.js";
import { rng, tempDir, toBytes, treeHash } from "./helpers/fixtures.js";
import { PMA_CLI } from "./helpers/processes.js";

/**
 * The Kubernetes recipe without a cluster: the manifests have the shape an Indexed Job
 * needs, and each pod's command, run by sh with the variables Kubernetes sets
 * (JOB_COMPLETION_INDEX) and the volume's path replaced by a local folder, merges
 * exactly what one process merges. What is not checked here: scheduling, the volume.
 */
const DEPLOY = fileURLToPath(new URL("../../deploy/k8s/", import.meta.url));

interface Container {
  command: string[];
  args?: string[];
  env?: { name: string; value: string }[];
}
interface JobManifest {
  kind: string;
  spec: {
    completionMode?: string;
    completions?: number;
    parallelism?: number;
    template: { spec: { restartPolicy: string; containers: Container[] } };
  };
}

test("k8s Indexed Job: one pod per part, JOB_COMPLETION_INDEX picks the part; finalize publishes the one-process merge", async () => {
  const parts = parse(readFileSync(join(DEPLOY, "merge-indexed-job.yaml"), "utf8")) as JobManifest;
  const finalize = parse(readFileSync(join(DEPLOY, "merge-finalize-job.yaml"), "utf8")) as JobManifest;
  assert.equal(parts.kind, "Job");
  assert.equal(parts.spec.completionMode, "Indexed");
  assert.equal(parts.spec.template.spec.restartPolicy, "Never");
  const count = parts.spec.completions!;
  assert.equal(parts.spec.parallelism, count);
  const pod = parts.spec.template.spec.containers[0]!;
  assert.equal(
    pod.env?.find((e) => e.name === "PMA_PARTS")?.value,
    String(count),
    "PMA_PARTS equals completions",
  );
  assert.deepEqual(pod.command, ["sh", "-c"]);
  const script = pod.args![0]!;
  assert.match(script, /--part "\$JOB_COMPLETION_INDEX\/\$PMA_PARTS"/);
  const out = /--out (\S+)/.exec(script)![1]!;
  assert.deepEqual(finalize.spec.template.spec.containers[0]!.command, ["pma", "merge", "--finalize", out]);

  const tmp = await tempDir("pma-k8s-");
  try {
    // The volume mounted at /data, here: the checkpoints the manifest names, with data.
    const data = join(tmp.dir, "data");
    const local = (s: string) => s.replaceAll("/data/", `${data}/`);
    const checkpoints = [...script.matchAll(/\/data\/run\/\S+/g)].map((m) => local(m[0]));
    assert.ok(checkpoints.length >= 2);
    const r = rng(9);
    for (const dir of checkpoints) {
      await mkdir(dir, { recursive: true });
      const values = Array.from({ length: 300 * 129 }, () => Math.round((r() * 2 - 1) * 128) / 128);
      await writeSafetensors(join(dir, "model.safetensors"), [
        { name: "embed", dtype: "BF16", shape: [300, 129], data: toBytes(values, "BF16") },
        { name: "norm", dtype: "F32", shape: [129], data: toBytes(values.slice(0, 129), "F32") },
      ]);
      writeFileSync(join(dir, "config.json"), "{}");
    }
    const bin = join(tmp.dir, "bin");
    mkdirSync(bin);
    writeFileSync(join(bin, "pma"), `#!/bin/sh\nexec '${process.execPath}' '${PMA_CLI}' "$@"\n`, {
      mode: 0o755,
    });
    const env = {
      ...process.env,
      PATH: `${bin}:${process.env["PATH"] ?? "/usr/bin:/bin"}`,
      PMA_PARTS: String(count),
    };
    for (let i = count - 1; i >= 0; i--) {
      const run = spawnSync("sh", ["-c", local(script).replace(/--threads \d+/, "--threads 1")], {
        env: { ...env, JOB_COMPLETION_INDEX: String(i) },
        encoding: "utf8",
      });
      assert.equal(run.status, 0, `pod ${i}: ${run.stderr}`);
      assert.match(run.stdout, new RegExp(`wrote part ${i}/${count}`));
    }
    const [cmd, ...args] = finalize.spec.template.spec.containers[0]!.command.map(local);
    const fin = spawnSync(cmd!, args, { env, encoding: "utf8" });
    assert.equal(fin.status, 0, fin.stderr);

    const method = /--method (\S+)/.exec(script)![1]!;
    const alpha = Number(/--alpha (\S+)/.exec(script)![1]);
    const reference = join(tmp.dir, "reference");
    await merge({ inputs: checkpoints, out: reference, method: { method: method as "ema", alpha } });
    const a = await treeHash(local(out));
    const b = await treeHash(reference);
    delete a["pma_merge.json"];
    delete b["pma_merge.json"];
    assert.deepEqual(a, b);
  } finally {
    await tmp.cleanup();
  }
});
