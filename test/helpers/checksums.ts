import { createHash } from "node:crypto";
import { readdir, readFile, readlink } from "node:fs/promises";
import { join } from "node:path";

/**
 * sha256 of every entry below `dir`, keyed by relative path, without following links
 * (a link is recorded by its target), so "the inputs are byte-identical" covers the
 * tree exactly as it is on disk. Hidden entries are included: a leftover temporary
 * file is a change too.
 */
export async function checksums(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string, rel: string): Promise<void> => {
    for (const e of (await readdir(d, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const p = join(d, e.name);
      const r = `${rel}${e.name}`;
      if (e.isSymbolicLink()) out[r] = `link -> ${await readlink(p)}`;
      else if (e.isDirectory()) {
        out[`${r}/`] = "dir";
        await walk(p, `${r}/`);
      } else
        out[r] = createHash("sha256")
          .update(await readFile(p))
          .digest("hex");
    }
  };
  await walk(dir, "");
  return out;
}
