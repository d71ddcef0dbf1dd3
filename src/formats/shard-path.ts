import * as fs from "node:fs";
import * as nodePath from "node:path";
import { PmaError } from "../common/errors.js";

/**
 * A shard file name from an index is untrusted input: a hostile index could point pma
 * at any file on the machine. Names must be relative, stay below the checkpoint
 * directory, and (after following symlinks) still resolve inside it.
 */
export function checkShardName(name: string, indexPath: string): string {
  const unsafe = (why: string): never => {
    throw new PmaError(
      "PATH_UNSAFE",
      `${indexPath}: shard file name "${name}" ${why}; refusing to read outside the checkpoint directory.`,
      {
        file: indexPath,
      },
    );
  };
  if (nodePath.posix.isAbsolute(name) || nodePath.win32.isAbsolute(name)) unsafe("is an absolute path");
  if (name.includes("\\")) unsafe("contains a backslash");
  if (name.includes("\0")) unsafe("contains a NUL byte");
  if (name.split("/").includes("..")) unsafe('has a ".." component');
  const normalized = nodePath.posix.normalize(name);
  if (normalized === "." || normalized.endsWith("/")) unsafe("names a directory");
  return normalized;
}

function leaves(realRoot: string, real: string): boolean {
  const rel = nodePath.relative(realRoot, real);
  return rel === "" || rel === ".." || rel.startsWith(`..${nodePath.sep}`) || nodePath.isAbsolute(rel);
}

/**
 * Whether `path` (below `root`), after following every link, still lies inside `root`.
 * A path that does not exist counts as inside: whoever reads it reports it missing.
 */
export async function staysInside(root: string, path: string): Promise<boolean> {
  let real: string;
  try {
    real = await fs.promises.realpath(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException | undefined)?.code === "ENOENT") return true;
    throw new PmaError("IO", `${path}: cannot resolve path: ${e instanceof Error ? e.message : String(e)}`, {
      file: path,
      cause: e,
    });
  }
  return !leaves(await fs.promises.realpath(root), real);
}

/** Resolves `name` under `root`; rejects it if its real path leaves the real root. */
export async function resolveInside(
  root: string,
  name: string,
  indexPath: string,
  allowExternalSymlinks: boolean,
): Promise<string> {
  const joined = nodePath.join(root, name);
  let realRoot: string;
  let real: string;
  try {
    realRoot = await fs.promises.realpath(root);
    real = await fs.promises.realpath(joined);
  } catch (e) {
    if ((e as NodeJS.ErrnoException | undefined)?.code === "ENOENT") {
      throw new PmaError(
        "INDEX_INVALID",
        `${indexPath}: names shard "${name}", which does not exist in ${root}.`,
        { file: indexPath, cause: e },
      );
    }
    throw new PmaError(
      "IO",
      `${joined}: cannot resolve path: ${e instanceof Error ? e.message : String(e)}`,
      { file: joined, cause: e },
    );
  }
  if (allowExternalSymlinks) return joined;
  if (leaves(realRoot, real)) {
    throw new PmaError(
      "PATH_UNSAFE",
      `${indexPath}: shard "${name}" resolves to ${real}, outside the checkpoint directory ${realRoot} (through a symlink); refusing to read it.`,
      { file: indexPath },
    );
  }
  return joined;
}
