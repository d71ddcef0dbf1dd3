import { createHash } from "node:crypto";
import { PmaError } from "../common/errors.js";
import { HttpSource } from "./http.js";
import { listHubFolder, openHubFile, parseHfUri, resolveHubRevision } from "./hub.js";
import { listS3, S3Source } from "./s3.js";
import { parseS3Uri, s3Uri } from "./s3-client.js";
import type { PositionalSource } from "./source.js";

/**
 * A checkpoint that is not on local disk: one remote file, or a remote "folder" (an S3
 * prefix, a Hub revision) of files. Readers open its files by name through `open`; small
 * files (index, config, trainer state) are read whole with `readSmall`, which also
 * checks the checksum the store publishes for them.
 */
export interface RemoteEntry {
  /** Name relative to the location (a folder's file) or the file's own base name. */
  name: string;
  size: number;
  checksum: { kind: "sha256" | "git-sha1" | "md5"; hex: string } | null;
  open(): Promise<PositionalSource>;
}

export interface RemoteLocation {
  /** As the user wrote it (normalised); what messages and records show. */
  uri: string;
  /** A folder of files, or a single file. */
  isFolder: boolean;
  /** The name that may say the step or tokens: the revision, or the folder's / file's last component. */
  name: string;
  /** The Hub commit a revision resolved to, when the location is on the Hub. */
  commit?: string;
  files: Map<string, RemoteEntry>;
}

export function isRemoteUri(path: string): boolean {
  return /^(hf|s3|https?):\/\//i.test(path);
}

/** Small files are read whole; anything past this is not a config, index or trainer state. */
export const MAX_SMALL_FILE = 256 * 1024 * 1024;

/** Reads a small file whole and checks its published checksum. */
export async function readSmall(loc: RemoteLocation, name: string): Promise<Uint8Array | null> {
  const entry = loc.files.get(name);
  if (entry === undefined) return null;
  const where = `${loc.uri}${loc.isFolder ? `/${name}` : ""}`;
  if (entry.size > MAX_SMALL_FILE)
    throw new PmaError("IO", `${where}: is ${entry.size} bytes, too large for a ${name}.`, { file: where });
  const source = await entry.open();
  try {
    const bytes = new Uint8Array(source.size);
    await source.read(bytes, 0);
    verifyChecksum(where, bytes, entry.checksum);
    return bytes;
  } finally {
    await source.close();
  }
}

function verifyChecksum(where: string, bytes: Uint8Array, checksum: RemoteEntry["checksum"]): void {
  if (checksum === null) return;
  const hash =
    checksum.kind === "git-sha1"
      ? createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes)
      : createHash(checksum.kind).update(bytes);
  const got = hash.digest("hex");
  if (got !== checksum.hex) {
    throw new PmaError(
      "IO",
      `${where}: checksum mismatch (${checksum.kind} ${got}, the store says ${checksum.hex}); the download was corrupted or the file changed. Try again.`,
      { file: where },
    );
  }
}

function baseName(path: string): string {
  const parts = path.replace(/\/+$/, "").split("/");
  return parts[parts.length - 1] ?? "";
}

/** An S3 ETag is the object's MD5 unless it was a multipart upload ("...-N"). */
function s3Checksum(etag: string | null): RemoteEntry["checksum"] {
  const hex = etag?.replace(/"/g, "");
  return hex !== undefined && /^[0-9a-f]{32}$/.test(hex) ? { kind: "md5", hex } : null;
}

/** Resolves an hf://, s3:// or http(s):// location: lists a folder, or sizes a file. */
export async function resolveRemote(uri: string): Promise<RemoteLocation> {
  if (uri.startsWith("hf://")) {
    const t = parseHfUri(uri);
    const commit = await resolveHubRevision(t.repo, t.revision);
    const files = await listHubFolder(t.repo, commit, t.path);
    const single = files.length === 1 && files[0]!.path === t.path;
    const display = `hf://${t.repo}@${t.revision}${t.path ? `/${t.path}` : ""}`;
    const map = new Map<string, RemoteEntry>();
    for (const f of files) {
      const name = single ? baseName(f.path) : f.path.slice(t.path ? t.path.length + 1 : 0);
      const shown = single ? display : `${display}/${name}`;
      map.set(name, {
        name,
        size: f.size,
        checksum: f.checksum,
        open: () => openHubFile(t.repo, commit, f, shown),
      });
    }
    if (map.size === 0)
      throw new PmaError("IO", `${display}: no files there; check the path inside the repository.`, {
        file: display,
      });
    return {
      uri: display,
      isFolder: !single,
      name: t.path && !single ? baseName(t.path) : single ? baseName(t.path) : t.revision,
      commit,
      files: map,
    };
  }
  if (uri.startsWith("s3://")) {
    const loc = parseS3Uri(uri);
    const exact =
      loc.key !== "" && !loc.key.endsWith("/")
        ? (await listS3(loc)).find((o) => o.key === loc.key)
        : undefined;
    if (exact !== undefined) {
      const name = baseName(loc.key);
      return {
        uri,
        isFolder: false,
        name,
        files: new Map([
          [
            name,
            {
              name,
              size: exact.size,
              checksum: s3Checksum(exact.etag),
              open: () => S3Source.open(loc, { size: exact.size, etag: exact.etag }),
            },
          ],
        ]),
      };
    }
    const prefix = loc.key === "" || loc.key.endsWith("/") ? loc.key : `${loc.key}/`;
    const map = new Map<string, RemoteEntry>();
    for (const o of await listS3({ bucket: loc.bucket, key: prefix })) {
      const name = o.key.slice(prefix.length);
      if (name === "" || name.includes("/")) continue;
      map.set(name, {
        name,
        size: o.size,
        checksum: s3Checksum(o.etag),
        open: () => S3Source.open({ bucket: loc.bucket, key: o.key }, { size: o.size, etag: o.etag }),
      });
    }
    const display = s3Uri({ bucket: loc.bucket, key: prefix.replace(/\/$/, "") });
    if (map.size === 0)
      throw new PmaError(
        "IO",
        `${uri}: no objects under this prefix; check the bucket and prefix (and AWS_ENDPOINT_URL_S3 for a self-hosted store).`,
        { file: uri },
      );
    return { uri: display, isFolder: true, name: baseName(prefix), files: map };
  }
  if (/^https?:\/\//i.test(uri)) {
    const source = await HttpSource.open(uri);
    const name = baseName(new URL(uri).pathname);
    return {
      uri,
      isFolder: false,
      name,
      files: new Map([[name, { name, size: source.size, checksum: null, open: async () => source }]]),
    };
  }
  throw new PmaError(
    "USAGE",
    `${uri}: not a remote location; write hf://owner/repo@revision, s3://bucket/prefix or https://host/file`,
  );
}
