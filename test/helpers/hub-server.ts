import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { FaultQueue, sendWithFault } from "./faults.js";

/**
 * A local stand-in for the Hugging Face Hub on 127.0.0.1, serving real files from
 * folders (one folder per revision). It implements the endpoints @huggingface/hub and
 * pma call, with the Hub's shapes:
 *   GET /api/models/{owner}/{repo}/refs                  {"branches":[{name, ref, targetCommit}], "tags":[], "converts":[]}
 *   GET /api/models/{owner}/{repo}/tree/{rev}[/{path}]   [{type, oid, size, path, lfs?: {oid, size, pointerSize}}]
 *   GET /{owner}/{repo}/resolve/{rev}/{path}             302 to a CDN URL, with X-Linked-Size and X-Linked-Etag,
 *                                                        as the Hub does for LFS files
 *   GET /cdn/{commit}/{path} + Range                     206 with Content-Range and ETag (the Hub's CDN)
 * Files ending in .safetensors are LFS files (oid = sha256 of the content); others are
 * git blobs (oid = git's sha1). A revision's commit is the sha1 of its name, and `tree`
 * and `resolve` accept either. With `token` set, /api and /resolve require it.
 */
export interface LocalHub {
  url: string;
  faults: FaultQueue;
  /** Every request's method, path and whether it carried the token. */
  requests: { path: string; range: string | undefined; authorized: boolean }[];
  /** Serves different bytes (and ETag) for this file from now on. */
  replace(revision: string, path: string, bytes: Buffer): void;
  close(): Promise<void>;
}

export function commitOf(revision: string): string {
  return createHash("sha1").update(revision).digest("hex");
}

function gitSha1(bytes: Buffer): string {
  return createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex");
}

export async function startLocalHub(
  repo: string,
  revisions: { name: string; dir: string }[],
  token?: string,
): Promise<LocalHub> {
  const byCommit = new Map(revisions.map((r) => [commitOf(r.name), r]));
  const byName = new Map(revisions.map((r) => [r.name, r]));
  const replaced = new Map<string, Buffer>();
  const faults = new FaultQueue();
  const requests: LocalHub["requests"] = [];
  const revisionOf = (rev: string) => byName.get(decodeURIComponent(rev)) ?? byCommit.get(rev);
  const fileBytes = (rev: { name: string; dir: string }, path: string) =>
    replaced.get(`${rev.name}/${path}`) ?? readFileSync(join(rev.dir, path));

  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url!, "http://x");
    const authorized = token !== undefined && req.headers.authorization === `Bearer ${token}`;
    requests.push({ path: url.pathname, range: req.headers.range, authorized });
    const fail = (status: number, code?: string) => {
      res.writeHead(status, {
        "Content-Type": "application/json",
        ...(code ? { "X-Error-Code": code } : {}),
      });
      res.end(JSON.stringify({ error: code ?? `HTTP ${status}` }));
    };
    const prefix = `/api/models/${repo}/`;
    const needsAuth = url.pathname.startsWith(prefix) || url.pathname.startsWith(`/${repo}/resolve/`);
    if (needsAuth && token !== undefined && !authorized) return fail(401);
    if (url.pathname === `${prefix}refs`) {
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(
        JSON.stringify({
          branches: revisions.map((r) => ({
            name: r.name,
            ref: `refs/heads/${r.name}`,
            targetCommit: commitOf(r.name),
          })),
          tags: [],
          converts: [],
        }),
      );
      return;
    }
    if (url.pathname.startsWith(`${prefix}tree/`)) {
      const [rev, ...rest] = url.pathname.slice(`${prefix}tree/`.length).split("/");
      const r = revisionOf(rev!);
      if (r === undefined) return fail(404, "RevisionNotFound");
      const sub = rest.join("/");
      const abs = join(r.dir, sub);
      let st;
      try {
        st = statSync(abs);
      } catch {
        return fail(404, "EntryNotFound");
      }
      const names = st.isDirectory() ? readdirSync(abs).map((n) => (sub ? `${sub}/${n}` : n)) : [sub];
      const entries = names.sort().map((p) => {
        if (statSync(join(r.dir, p)).isDirectory())
          return { type: "directory", oid: "0".repeat(40), size: 0, path: p };
        const bytes = fileBytes(r, p);
        return p.endsWith(".safetensors")
          ? {
              type: "file",
              oid: gitSha1(Buffer.from(`version https://git-lfs.github.com/spec/v1\n`)),
              size: bytes.length,
              path: p,
              lfs: {
                oid: createHash("sha256").update(bytes).digest("hex"),
                size: bytes.length,
                pointerSize: 134,
              },
            }
          : { type: "file", oid: gitSha1(bytes), size: bytes.length, path: p };
      });
      res.writeHead(200, { "Content-Type": "application/json" });
      res.end(JSON.stringify(entries));
      return;
    }
    if (url.pathname.startsWith(`/${repo}/resolve/`)) {
      const [rev, ...rest] = url.pathname.slice(`/${repo}/resolve/`.length).split("/");
      const r = revisionOf(rev!);
      if (r === undefined) return fail(404, "RevisionNotFound");
      const path = rest.map(decodeURIComponent).join("/");
      let bytes;
      try {
        bytes = fileBytes(r, path);
      } catch {
        return fail(404, "EntryNotFound");
      }
      res.writeHead(302, {
        Location: `/cdn/${commitOf(r.name)}/${rest.join("/")}`,
        "X-Linked-Size": String(bytes.length),
        "X-Linked-Etag": `"${createHash("sha256").update(bytes).digest("hex")}"`,
      });
      res.end();
      return;
    }
    if (url.pathname.startsWith("/cdn/")) {
      const [commit, ...rest] = url.pathname.slice("/cdn/".length).split("/");
      const r = byCommit.get(commit!);
      if (r === undefined) return fail(404);
      const bytes = fileBytes(r, rest.map(decodeURIComponent).join("/"));
      const etag = `"${createHash("md5").update(bytes).digest("hex")}"`;
      const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? "");
      if (m === null) {
        res.writeHead(200, { ETag: etag, "Content-Length": String(bytes.length) });
        res.end(bytes);
        return;
      }
      const start = Number(m[1]);
      const end = Math.min(Number(m[2]), bytes.length - 1);
      if (start >= bytes.length) return fail(416);
      sendWithFault(
        res,
        206,
        { ETag: etag, "Content-Range": `bytes ${start}-${end}/${bytes.length}`, "Accept-Ranges": "bytes" },
        bytes.subarray(start, end + 1),
        faults.take(),
      );
      return;
    }
    fail(404);
  };
  const server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    faults,
    requests,
    replace: (revision, path, bytes) => replaced.set(`${revision}/${path}`, bytes),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
