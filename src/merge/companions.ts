import * as fs from "node:fs/promises";
import { join } from "node:path";
import { fsError, PmaError } from "../common/errors.js";
import { setTopLevelString, stringifyHfConfig } from "../formats/hf-config-json.js";
import { readSmall, type RemoteLocation } from "../sources/location.js";

/**
 * Non-weight files a merged checkpoint needs to load like its inputs: model config,
 * generation config and tokenizer (and a PEFT adapter's adapter_config.json). Trainer state, optimizer and RNG files describe one
 * training process and are deliberately not copied into a merge.
 */
const COMPANION =
  /^(config\.json|adapter_config\.json|generation_config\.json|tokenizer(_config)?\.json|tokenizer\.model|special_tokens_map\.json|added_tokens\.json|vocab\.(json|txt)|merges\.txt|chat_template\.(json|jinja)|preprocessor_config\.json)$/;

/**
 * Copies companion files from `fromDir` into `toDir`. Only regular files are copied:
 * a symlink could point anywhere, and following it would copy what is not the
 * checkpoint's. When the output dtype changed, config.json's `torch_dtype` says so.
 */
export async function copyCompanions(fromDir: string, toDir: string, torchDtype?: string): Promise<string[]> {
  const copied: string[] = [];
  for (const entry of await fs.readdir(fromDir, { withFileTypes: true })) {
    if (!entry.isFile() || !COMPANION.test(entry.name)) continue;
    const src = join(fromDir, entry.name);
    const dst = join(toDir, entry.name);
    try {
      if (entry.name === "config.json" && torchDtype !== undefined) {
        const config = await readConfig(src);
        // Edited in place: a parse and stringify would write every float field (0.0) as an int (0).
        const text = await fs.readFile(src, "utf8");
        await fs.writeFile(
          dst,
          setTopLevelString(text, "torch_dtype", torchDtype) ??
            stringifyHfConfig({ ...config, torch_dtype: torchDtype }),
        );
      } else {
        await fs.copyFile(src, dst);
      }
    } catch (e) {
      throw e instanceof PmaError ? e : fsError(dst, `copying ${src}`, e);
    }
    copied.push(entry.name);
  }
  return copied.sort();
}

/** The same for a remote checkpoint folder (an S3 prefix, a Hub revision). */
export async function copyRemoteCompanions(
  loc: RemoteLocation,
  toDir: string,
  torchDtype?: string,
): Promise<string[]> {
  const copied: string[] = [];
  for (const name of loc.files.keys()) {
    if (!COMPANION.test(name)) continue;
    const bytes = (await readSmall(loc, name))!;
    const dst = join(toDir, name);
    try {
      if (name === "config.json" && torchDtype !== undefined) {
        const text = Buffer.from(bytes).toString("utf8");
        const config = parseConfig(text, `${loc.uri}/${name}`);
        await fs.writeFile(
          dst,
          setTopLevelString(text, "torch_dtype", torchDtype) ??
            stringifyHfConfig({ ...config, torch_dtype: torchDtype }),
        );
      } else {
        await fs.writeFile(dst, bytes);
      }
    } catch (e) {
      throw e instanceof PmaError ? e : fsError(dst, `writing ${loc.uri}/${name}`, e);
    }
    copied.push(name);
  }
  return copied.sort();
}

/** A config.json that is not a JSON object cannot get its dtype rewritten; say which file. */
async function readConfig(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await fs.readFile(path, "utf8");
  } catch (e) {
    throw new PmaError(
      "CONFIG_INVALID",
      `${path}: cannot read it (${(e as Error).message}); fix or remove it to merge with --dtype`,
      { file: path, cause: e },
    );
  }
  return parseConfig(text, path);
}

function parseConfig(text: string, path: string): Record<string, unknown> {
  let config: unknown;
  try {
    config = JSON.parse(text);
  } catch (e) {
    throw new PmaError(
      "CONFIG_INVALID",
      `${path}: cannot read it as JSON (${(e as Error).message}); fix or remove it to merge with --dtype`,
      { file: path, cause: e },
    );
  }
  if (typeof config !== "object" || config === null || Array.isArray(config)) {
    throw new PmaError(
      "CONFIG_INVALID",
      `${path}: is not a JSON object; fix or remove it to merge with --dtype`,
      { file: path },
    );
  }
  return config as Record<string, unknown>;
}
