import { listFiles, type ListFileEntry } from "@huggingface/hub";
import { PmaError } from "../common/errors.js";
import { hubAuthHeaders, hubEndpoint, hubToken } from "./hub-env.js";
import { HttpSource } from "./http.js";
import { parseRetryAfter, TransientError, withRetries } from "./retry.js";

/**
 * The Hugging Face Hub as a place checkpoints live. Published pre-training runs keep
 * each checkpoint as a revision (a branch such as Pythia's `step143000` or OLMo's
 * `stage1-step928000-tokens3892B`), so a revision is a checkpoint and the repository's
 * branches are the run.
 *
 * Endpoints used (all relative to HF_ENDPOINT, default https://huggingface.co), the
 * same the Hub's own clients use:
 *   GET /api/models/{repo}/refs                      branches and tags, with their commits
 *   GET /api/models/{repo}/tree/{commit}/{path}      file listing (through @huggingface/hub listFiles)
 *   GET /{repo}/resolve/{commit}/{path} + Range      file bytes (the Hub redirects to its CDN)
 * A revision is resolved to its commit once, so every byte of a merge comes from one
 * immutable snapshot even if the branch moves meanwhile.
 */

export interface HubTarget {
  repo: string;
  /** As written; "main" when none was given. */
  revision: string;
  /** A folder or file inside the repository; "" for its root. */
  path: string;
}

/** `hf://owner/repo[@revision][/path]` -> its parts. */
export function parseHfUri(uri: string): HubTarget {
  const m = /^hf:\/\/([^/@]+\/[^/@]+)(?:@([^/]+))?(?:\/(.*))?$/.exec(uri);
  if (m === null)
    throw new PmaError(
      "USAGE",
      `${uri}: not a Hub URI; write hf://owner/repo@revision (a branch, tag or commit), optionally followed by /path`,
    );
  return { repo: m[1]!, revision: m[2] ?? "main", path: (m[3] ?? "").replace(/\/+$/, "") };
}

export interface HubRef {
  name: string;
  commit: string;
}

async function hubJson(url: string, what: string): Promise<unknown> {
  return withRetries(what, async () => {
    const res = await fetch(url, {
      headers: { Accept: "application/json", ...hubAuthHeaders() },
      signal: AbortSignal.timeout(60_000),
    });
    if (res.status === 429 || res.status >= 500) {
      await res.body?.cancel().catch(() => undefined);
      throw new TransientError(
        `${what}: HTTP ${res.status}`,
        parseRetryAfter(res.headers.get("retry-after")),
      );
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      const hint =
        res.status === 401 || res.status === 403 || res.status === 404
          ? "; check the repository name, and for a gated or private repository set HF_TOKEN"
          : "";
      throw new PmaError("IO", `${what}: HTTP ${res.status}${hint}.`);
    }
    return res.json();
  });
}

/** The repository's branches (first) and tags with the commit each points at. */
export async function listHubRefs(repo: string): Promise<{ branches: HubRef[]; tags: HubRef[] }> {
  const body = (await hubJson(
    `${hubEndpoint()}/api/models/${repo}/refs`,
    `hf://${repo}: listing revisions`,
  )) as Record<string, unknown>;
  const refs = (key: string): HubRef[] => {
    const list = body?.[key];
    if (!Array.isArray(list)) return [];
    return list.flatMap((r: { name?: unknown; targetCommit?: unknown }) =>
      typeof r.name === "string" && typeof r.targetCommit === "string"
        ? [{ name: r.name, commit: r.targetCommit }]
        : [],
    );
  };
  return { branches: refs("branches"), tags: refs("tags") };
}

/** A branch, tag or full commit hash -> the commit it names now. */
export async function resolveHubRevision(repo: string, revision: string): Promise<string> {
  if (/^[0-9a-f]{40}$/.test(revision)) return revision;
  const { branches, tags } = await listHubRefs(repo);
  const found = [...branches, ...tags].find((r) => r.name === revision);
  if (found === undefined)
    throw new PmaError(
      "IO",
      `hf://${repo}@${revision}: no such branch or tag (the repository has ${branches.length} branches); check the revision name.`,
    );
  return found.commit;
}

export interface HubFile {
  /** Path inside the repository. */
  path: string;
  size: number;
  /** The LFS object's sha256, or the git blob's sha1 for a small file kept in git. */
  checksum: { kind: "sha256" | "git-sha1"; hex: string } | null;
}

/** Files directly inside `path` at `commit` (a file path lists just that file). */
export async function listHubFolder(repo: string, commit: string, path: string): Promise<HubFile[]> {
  const what = `hf://${repo}@${commit}${path ? `/${path}` : ""}: listing files`;
  const token = hubToken();
  const entries = await withRetries(what, async () => {
    const found: ListFileEntry[] = [];
    try {
      for await (const e of listFiles({
        repo: { type: "model", name: repo },
        revision: commit,
        ...(path ? { path } : {}),
        hubUrl: hubEndpoint(),
        ...(token !== undefined ? { accessToken: token } : {}),
      }))
        found.push(e);
    } catch (e) {
      const status = (e as { statusCode?: number }).statusCode;
      if (status !== undefined && (status === 429 || status >= 500))
        throw new TransientError(`${what}: HTTP ${status}`);
      if (status !== undefined)
        throw new PmaError(
          "IO",
          `${what}: HTTP ${status}; check the repository and path, and for a gated or private repository set HF_TOKEN.`,
          { cause: e },
        );
      throw e;
    }
    return found;
  });
  return entries
    .filter((e) => e.type === "file")
    .map((e) => ({
      path: e.path,
      size: e.size,
      checksum: e.lfs
        ? { kind: "sha256" as const, hex: e.lfs.oid }
        : e.oid
          ? { kind: "git-sha1" as const, hex: e.oid }
          : null,
    }));
}

/** A positional source for one file of a commit; `display` is its hf:// name for messages. */
export async function openHubFile(
  repo: string,
  commit: string,
  file: HubFile,
  display: string,
): Promise<HttpSource> {
  const url = `${hubEndpoint()}/${repo}/resolve/${commit}/${file.path.split("/").map(encodeURIComponent).join("/")}`;
  const source = await HttpSource.open(url, { auth: "hf", display });
  if (source.size !== file.size) {
    throw new PmaError(
      "SOURCE_CHANGED",
      `${display}: the Hub lists ${file.size} bytes but serves ${source.size}; try again, and report it if it persists.`,
      { file: display },
    );
  }
  return source;
}
