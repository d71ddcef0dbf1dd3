import { lstat } from "node:fs/promises";

/**
 * Whether anything has this name: a file, a folder, or a link (even a dangling one, which
 * an output must not be written through either).
 */
export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}
