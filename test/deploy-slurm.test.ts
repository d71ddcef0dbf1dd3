import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readdirSync,
  writeFileSync,
} from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { hostname } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { writeSafetensors, type TensorData } from "../src/formats/safetensors-writer.js";
import { merge } from "../src/merge/merger.js";
import { partsDir } from "../src/merge/parts-layout.js";
import { rng, tempDir, toBytes, treeHash } from "./helpers/fixtures.js";
import { PMA_CLI } from "./helpers/processes.js";

/**
 * The Slurm recipe (deploy/slurm/) on a real one-node Slurm cluster started by the
 * test: munged, slurmctld and slurmd from Debian's slurm-wlm and munge, everything
 * (key, sockets, state, ports) private to a temporary folder, so parallel runs and a
 * system Slurm are not disturbed. A 4-task array merges, an afterok job finalizes,
 * and the output must be the one-process merge byte for byte.
 */
const BINARIES = ["munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo"];
const SUBMIT = fileURLToPath(new URL("../../deploy/slurm/submit-merge.sh", import.meta.url));

function which(name: string): string | null {
  for (const dir of ["/usr/sbin", "/usr/bin", "/sbin", "/bin", ...(process.env["PATH"] ?? "").split(":")]) {
    if (dir !== "" && existsSync(join(dir, name))) return join(dir, name);
  }
  return null;
}

/** Why this test cannot run here, or null. Under CI a reason is a failure, not a skip. */
function unavailable(): string | null {
  const missing = BINARIES.filter((b) => which(b) === null);
  if (missing.length > 0)
    return `Slurm/munge binaries not found (${missing.join(", ")}): apt-get install slurm-wlm munge`;
  if (process.getuid?.() !== 0) return "starting slurmd and munged needs root";
  if (spawnSync("id", ["munge"]).status !== 0) return "no 'munge' user (the munge package creates it)";
  return null;
}

const reason = unavailable();
if (reason !== null && process.env["CI"] === "true") {
  test("Slurm recipe on a one-node cluster", () => {
    assert.fail(`CI=true, but the Slurm test cannot run: ${reason}`);
  });
} else {
  describe("Slurm recipe on a one-node cluster", { skip: reason ?? false }, () => {
    let tmp: Awaited<ReturnType<typeof tempDir>>;
    let cluster: Cluster;
    let inputs: string[];
    let reference: string;

    before(async () => {
      tmp = await tempDir("pma-slurm-");
      cluster = await startCluster(tmp.dir);
      inputs = await writeCheckpoints(join(tmp.dir, "run"));
      reference = join(tmp.dir, "reference");
      await merge({ inputs, out: reference, shardSize: 60_000, method: { method: "wma" } });
    });
    after(async () => {
      await cluster?.stop();
      await tmp?.cleanup();
    });

    test("a 4-task array and an afterok finalize write the one-process merge, byte for byte", async () => {
      const out = join(tmp.dir, "merged");
      const { parts, final } = cluster.submit([
        "4",
        out,
        ...inputs,
        "--shard-size",
        "60000",
        "--method",
        "wma",
      ]);
      const state = await cluster.waitForEnd(final, 40_000);
      const logs = cluster.logs();
      assert.equal(state, "COMPLETED", `finalize job ${final} ended ${state}\n${logs}`);
      for (let i = 0; i < 4; i++) assert.equal(cluster.state(`${parts}_${i}`), "COMPLETED", logs);
      const files = await treeHash(out);
      const expected = await treeHash(reference);
      delete files["pma_merge.json"];
      delete expected["pma_merge.json"];
      assert.deepEqual(files, expected);
      const record = JSON.parse(readFileSync(join(out, "pma_merge.json"), "utf8")) as {
        parts: { index: number }[];
      };
      assert.deepEqual(
        record.parts.map((p) => p.index),
        [0, 1, 2, 3],
      );
      assert.ok(!existsSync(partsDir(out)));
    });

    test("a failed part cancels the finalize job instead of leaving it waiting; nothing is published", async () => {
      const out = join(tmp.dir, "failed");
      const { parts, final } = cluster.submit(["2", out, ...inputs, join(tmp.dir, "no-such-checkpoint")]);
      const state = await cluster.waitForEnd(final, 30_000);
      assert.equal(state, "CANCELLED", cluster.logs());
      assert.equal(cluster.state(`${parts}_0`), "FAILED");
      assert.ok(!existsSync(out));
    });
  });
}

interface Cluster {
  submit(args: string[]): { parts: string; final: string };
  state(job: string): string;
  waitForEnd(job: string, ms: number): Promise<string>;
  logs(): string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

async function startCluster(dir: string): Promise<Cluster> {
  // munged runs as the munge user: it must reach its socket folder, and its key must be
  // its own and private.
  chmodSync(dir, 0o755);
  const munge = join(dir, "munge");
  const run = join(dir, "run");
  const uid = Number(execFileSync("id", ["-u", "munge"], { encoding: "utf8" }));
  const gid = Number(execFileSync("id", ["-g", "munge"], { encoding: "utf8" }));
  for (const [d, mode] of [
    [munge, 0o700],
    [run, 0o755],
  ] as const) {
    mkdirSync(d);
    chownSync(d, uid, gid);
    chmodSync(d, mode);
  }
  const key = join(munge, "munge.key");
  writeFileSync(key, randomBytes(1024), { mode: 0o400 });
  chownSync(key, uid, gid);
  const socket = join(run, "munge.sock");
  const pids: string[] = [];
  // Daemons fork and keep running: their output goes to their log files, not to pipes
  // this process would wait on.
  spawnSync(
    "runuser",
    [
      "-u",
      "munge",
      "--",
      "munged",
      `--socket=${socket}`,
      `--key-file=${key}`,
      `--log-file=${join(munge, "munged.log")}`,
      `--pid-file=${join(run, "munged.pid")}`,
      `--seed-file=${join(munge, "munged.seed")}`,
    ],
    { stdio: "ignore" },
  );
  pids.push(join(run, "munged.pid"));
  if (!existsSync(socket))
    throw new Error(`munged did not start:\n${readFileSync(join(munge, "munged.log"), "utf8")}`);

  for (const d of ["state", "spool", "log"]) mkdirSync(join(dir, d));
  const [ctldPort, slurmdPort] = [await freePort(), await freePort()];
  const conf = join(dir, "slurm.conf");
  const host = hostname();
  writeFileSync(
    conf,
    [
      "ClusterName=pmatest",
      `SlurmctldHost=${host}(127.0.0.1)`,
      `SlurmctldPort=${ctldPort}`,
      `SlurmdPort=${slurmdPort}`,
      "SlurmUser=root",
      "AuthType=auth/munge",
      "CredType=cred/munge",
      `AuthInfo=socket=${socket}`,
      `StateSaveLocation=${join(dir, "state")}`,
      `SlurmdSpoolDir=${join(dir, "spool")}`,
      `SlurmctldPidFile=${join(run, "slurmctld.pid")}`,
      `SlurmdPidFile=${join(run, "slurmd.pid")}`,
      `SlurmctldLogFile=${join(dir, "log", "slurmctld.log")}`,
      `SlurmdLogFile=${join(dir, "log", "slurmd.log")}`,
      "ProctrackType=proctrack/linuxproc",
      "TaskPlugin=task/none",
      "MpiDefault=none",
      "SelectType=select/cons_tres",
      "SelectTypeParameters=CR_CPU",
      "ReturnToService=2",
      "MailProg=/bin/true",
      "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
      // In 22.05 kill_invalid_depend is read here only; the recipe also asks per job.
      "DependencyParameters=kill_invalid_depend",
      // Four CPUs whatever the machine has, so the four parts run at once.
      "SlurmdParameters=config_overrides",
      "JobCompType=jobcomp/none",
      "AccountingStorageType=accounting_storage/none",
      `NodeName=pmanode NodeHostname=${host} NodeAddr=127.0.0.1 CPUs=4 RealMemory=1000 State=UNKNOWN`,
      "PartitionName=pma Nodes=pmanode Default=YES MaxTime=INFINITE State=UP",
      "",
    ].join("\n"),
  );
  const env = { ...process.env, SLURM_CONF: conf };
  const bin = join(dir, "bin");
  mkdirSync(bin);
  writeFileSync(join(bin, "pma"), `#!/bin/sh\nexec '${process.execPath}' '${PMA_CLI}' "$@"\n`, {
    mode: 0o755,
  });
  // One CPU per part: four parts run at once on the four CPUs the node has.
  const jobEnv = { ...env, PATH: `${bin}:${process.env["PATH"] ?? "/usr/bin:/bin"}`, PMA_CPUS_PER_PART: "1" };

  const cluster: Cluster = {
    submit(args) {
      const r = spawnSync(SUBMIT, args, { cwd: dir, env: jobEnv, encoding: "utf8" });
      assert.equal(r.status, 0, `submit-merge.sh failed: ${r.stderr}`);
      const m = /parts are job (\d+) .*finalize is job (\d+)/.exec(r.stdout);
      assert.ok(m, r.stdout);
      return { parts: m[1]!, final: m[2]! };
    },
    state(job) {
      const r = spawnSync("scontrol", ["show", "job", "-o", job], { env, encoding: "utf8" });
      return /JobState=(\S+)/.exec(r.stdout)?.[1] ?? `unknown (${r.stderr.trim()})`;
    },
    async waitForEnd(job, ms) {
      const until = Date.now() + ms;
      for (;;) {
        const s = cluster.state(job);
        if (!["PENDING", "RUNNING", "CONFIGURING", "COMPLETING"].includes(s)) return s;
        if (Date.now() > until) {
          const show = spawnSync("scontrol", ["show", "job"], { env, encoding: "utf8" }).stdout;
          throw new Error(
            `job ${job} still ${s} after ${ms} ms\n${show}\n${cluster.logs()}\n${tail(join(dir, "log", "slurmctld.log"))}\n${tail(join(dir, "log", "slurmd.log"))}`,
          );
        }
        await sleep(100);
      }
    },
    logs() {
      const names = readdirSync(dir).filter((n) => n.endsWith(".out"));
      return names.map((n) => `--- ${n}\n${readFileSync(join(dir, n), "utf8")}`).join("\n");
    },
    async stop() {
      spawnSync("scontrol", ["shutdown"], { env, stdio: "ignore" });
      // Daemons this test started, by their pid files; munged last (slurm needs it to shut down).
      for (const name of ["slurmctld.pid", "slurmd.pid"]) pids.unshift(join(run, name));
      const until = Date.now() + 10_000;
      for (const file of pids) {
        const pid = existsSync(file) ? Number(readFileSync(file, "utf8").trim()) : NaN;
        if (!Number.isSafeInteger(pid) || pid <= 1) continue;
        if (file.endsWith("munged.pid")) kill(pid, "SIGTERM");
        while (alive(pid) && Date.now() < until) await sleep(50);
        if (alive(pid)) kill(pid, "SIGKILL");
      }
    },
  };
  try {
    spawnSync("slurmctld", [], { env, stdio: "ignore" });
    spawnSync("slurmd", ["-N", "pmanode"], { env, stdio: "ignore" });
    const until = Date.now() + 20_000;
    for (;;) {
      const r = spawnSync("sinfo", ["-h", "-o", "%T"], { env, encoding: "utf8" });
      if (r.stdout.trim() === "idle") break;
      if (Date.now() > until) {
        throw new Error(
          `the one-node cluster did not come up: sinfo '${r.stdout.trim()}' ${r.stderr}\n${tail(join(dir, "log", "slurmctld.log"))}\n${tail(join(dir, "log", "slurmd.log"))}`,
        );
      }
      await sleep(100);
    }
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

function tail(file: string): string {
  return existsSync(file) ? `--- ${file}\n${readFileSync(file, "utf8").slice(-3000)}` : "";
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  // A daemon that exited but was not yet reaped by its (new) parent is gone for our purposes.
  try {
    return !/^\S+ \(.*\) [ZX] /.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

function kill(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Three small bf16/f32 checkpoints with tensors on several shards. */
async function writeCheckpoints(root: string): Promise<string[]> {
  const r = rng(4);
  const specs = [
    { name: "embed", dtype: "BF16" as const, shape: [211, 173] },
    { name: "layer.0.w", dtype: "BF16" as const, shape: [97, 89] },
    { name: "layer.1.w", dtype: "BF16" as const, shape: [97, 89] },
    { name: "norm", dtype: "F32" as const, shape: [173] },
  ];
  const paths: string[] = [];
  for (let c = 1; c <= 3; c++) {
    const dir = join(root, `checkpoint-${c * 100}`);
    await mkdir(dir, { recursive: true });
    const tensors: TensorData[] = specs.map((s) => {
      const n = s.shape.reduce((a, b) => a * b, 1);
      // Values a bf16 holds exactly: small integers over 256.
      return {
        ...s,
        data: toBytes(
          Array.from({ length: n }, () => Math.round((r() * 2 - 1) * 256) / 256),
          s.dtype,
        ),
      };
    });
    await writeSafetensors(join(dir, "model.safetensors"), tensors);
    await writeFile(join(dir, "config.json"), JSON.stringify({ model_type: "llama" }));
    paths.push(dir);
  }
  return paths;
}
