import { PmaError } from "../common/errors.js";
import { openRemoteCheckpointTensors } from "../formats/checkpoint-files.js";
import { progressFromName } from "../formats/revision-name.js";
import { parseTrainerState, TRAINER_STATE_FILE, type TrainerState } from "../formats/trainer-state.js";
import { listHubRefs, parseHfUri } from "../sources/hub.js";
import { readSmall, resolveRemote } from "../sources/location.js";
import { listS3 } from "../sources/s3.js";
import { parseS3Uri, s3Uri } from "../sources/s3-client.js";
import type { DiscoverOptions, RunCheckpoint, RunScan, SkippedCheckpoint } from "./run.js";
import { numel } from "../tensor/shape.js";

/** Revisions or prefixes examined at once: each costs a listing and a small read. */
const CONCURRENCY = 8;

/**
 * The checkpoints of a remote run. On the Hub a run is a repository whose branches are
 * its checkpoints (`hf://allenai/OLMo-2-0425-1B`: `stage1-step928000-tokens3892B`, ...);
 * in S3 a run is a prefix whose sub-prefixes are (`s3://bucket/run/`: `checkpoint-1000/`).
 * A candidate is a name with a step or token count in it. Tokens come from its
 * trainer_state.json when there is one, else from the name (`tokens3892B`), else from
 * its step with --tokens-per-step; `tokensFrom` says which. Parameters are counted once,
 * from the newest checkpoint's headers: a run keeps one architecture.
 */
export async function discoverRemoteRun(uri: string, opts: DiscoverOptions = {}): Promise<RunScan> {
  let candidates: { name: string; path: string }[];
  let dir: string;
  if (uri.startsWith("hf://")) {
    const t = parseHfUri(uri);
    if (t.revision !== "main" || t.path !== "") throw new PmaError("USAGE", `${uri}: give the repository (hf://owner/repo); its branches are the run's checkpoints`);
    dir = `hf://${t.repo}`;
    const { branches } = await listHubRefs(t.repo);
    candidates = branches.map((b) => ({ name: b.name, path: `hf://${t.repo}@${b.name}` }));
  } else if (uri.startsWith("s3://")) {
    const loc = parseS3Uri(uri);
    const prefix = loc.key === "" || loc.key.endsWith("/") ? loc.key : `${loc.key}/`;
    dir = s3Uri({ bucket: loc.bucket, key: prefix });
    const names = new Set<string>();
    for (const o of await listS3({ bucket: loc.bucket, key: prefix })) {
      const rest = o.key.slice(prefix.length);
      const slash = rest.indexOf("/");
      if (slash > 0 && !rest.startsWith(".")) names.add(rest.slice(0, slash));
    }
    candidates = [...names].map((name) => ({ name, path: `${dir}${name}` }));
  } else {
    throw new PmaError("USAGE", `${uri}: a remote run is hf://owner/repo or s3://bucket/prefix/`);
  }
  const pattern = opts.stepPattern;
  const stepOf = (name: string): number | undefined => {
    if (pattern === undefined) return progressFromName(name).step;
    const m = pattern.exec(name);
    const n = m === null ? NaN : Number(m[1] ?? m[0]);
    return Number.isSafeInteger(n) ? n : undefined;
  };
  candidates = candidates.filter((c) => stepOf(c.name) !== undefined || progressFromName(c.name).tokens !== undefined);

  const skipped: SkippedCheckpoint[] = [];
  const found: (Omit<RunCheckpoint, "parameters"> & { order: number })[] = [];
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < candidates.length; i = next++) {
      const c = candidates[i]!;
      let state: TrainerState | null = null;
      try {
        const loc = await resolveRemote(c.path);
        const bytes = await readSmall(loc, TRAINER_STATE_FILE);
        if (bytes !== null) state = parseTrainerState(bytes, `${loc.uri}/${TRAINER_STATE_FILE}`);
      } catch (e) {
        if (!(e instanceof PmaError)) throw e;
        skipped.push({ path: c.path, reason: e.message });
        continue;
      }
      const fromName = progressFromName(c.name);
      const step = state?.globalStep ?? stepOf(c.name) ?? fromName.step;
      let tokens: number | null = null;
      let tokensFrom: RunCheckpoint["tokensFrom"] = null;
      if (state?.tokensSeen !== undefined) [tokens, tokensFrom] = [state.tokensSeen, "trainer_state"];
      else if (fromName.tokens !== undefined) [tokens, tokensFrom] = [fromName.tokens, "name"];
      else if (step !== undefined && opts.tokensPerStep !== undefined) [tokens, tokensFrom] = [step * opts.tokensPerStep, "tokens-per-step"];
      found.push({ path: c.path, name: c.name, step: step ?? 0, tokens, tokensFrom, order: i });
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, candidates.length) }, worker));
  found.sort((a, b) => (a.tokens ?? 0) - (b.tokens ?? 0) || a.step - b.step || a.order - b.order);
  let parameters = 0;
  const newest = found[found.length - 1];
  if (newest !== undefined) {
    const ck = await openRemoteCheckpointTensors(await resolveRemote(newest.path));
    for (const t of ck.tensors.values()) parameters += numel(t.shape);
    await ck.close();
  }
  return { dir, checkpoints: found.map(({ order: _order, ...c }) => ({ ...c, parameters })), skipped };
}
