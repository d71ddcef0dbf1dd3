/**
 * Writing a Hugging Face `config.json` that transformers 5 accepts. Its configs are
 * strict dataclasses: a field typed `float` refuses a JSON integer ("expected float,
 * got int"), and JSON.stringify writes 0.0 as `0` and 10000.0 as `10000`. So the fields
 * typed float are written with a decimal point, as Python's json.dumps writes a float.
 */

/**
 * Fields typed `float` (or a union whose only numeric member is float) in transformers'
 * src/transformers/models/llama/configuration_llama.py (LlamaConfig) and
 * src/transformers/models/mixtral/configuration_mixtral.py (MixtralConfig), plus
 * `rope_theta`, a float of RopeParameters (src/transformers/modeling_rope_utils.py) that
 * older versions kept at the top level. `attention_dropout` accepts int or float in both;
 * it is written as a float, which both accept.
 */
export const HF_FLOAT_FIELDS: Readonly<Record<string, readonly string[]>> = {
  llama: ["initializer_range", "rms_norm_eps", "rope_theta", "attention_dropout"],
  mixtral: [
    "initializer_range",
    "rms_norm_eps",
    "rope_theta",
    "attention_dropout",
    "router_aux_loss_coef",
    "router_jitter_noise",
  ],
};

const MARK = "\u0000pma-float:";

/**
 * `config` as pretty JSON (2-space indent, newline at the end), with the float fields of
 * its `model_type` written as floats (`0.0`, `10000.0`). Other fields as JSON.stringify.
 */
export function stringifyHfConfig(config: Record<string, unknown>): string {
  const floats = new Set(
    typeof config["model_type"] === "string" ? (HF_FLOAT_FIELDS[config["model_type"]] ?? []) : [],
  );
  const marked: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config)) {
    marked[k] = floats.has(k) && typeof v === "number" && Number.isInteger(v) ? MARK + floatText(v) : v;
  }
  // The mark is stringified with its control character escaped: match that form.
  const escaped = JSON.stringify(MARK)
    .slice(1, -1)
    .replace(/[\\^$.*+?()[\]{}|]/g, "\\$&");
  return JSON.stringify(marked, null, 2).replace(new RegExp(`"${escaped}([^"]*)"`, "g"), "$1") + "\n";
}

/** An integral number as a JSON float token: `10000.0`; exponent forms already are floats. */
function floatText(v: number): string {
  const s = String(Object.is(v, -0) ? 0 : v);
  return /[eE.]/.test(s) ? s : `${s}.0`;
}

/**
 * `text` (a config.json) with its top-level `"key": "..."` string set to `value`, every
 * other byte kept: re-serializing would turn the floats of any model type into integers.
 * The key is added first in the object when absent. Null when `text` is not an object.
 */
export function setTopLevelString(text: string, key: string, value: string): string | null {
  const open = text.search(/\S/);
  if (open < 0 || text[open] !== "{") return null;
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      const start = i;
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === "\\") i++;
      if (depth !== 1) continue;
      // A key at depth 1 is a string followed by a colon.
      const colon = /\s*:\s*/y;
      colon.lastIndex = i + 1;
      const after = colon.exec(text);
      if (after === null) continue;
      let name: unknown;
      try {
        name = JSON.parse(text.slice(start, i + 1));
      } catch {
        return null;
      }
      if (name !== key) continue;
      const valueStart = i + 1 + after[0].length;
      const m = /^"(?:[^"\\]|\\.)*"/.exec(text.slice(valueStart));
      if (m === null) return null;
      return text.slice(0, valueStart) + JSON.stringify(value) + text.slice(valueStart + m[0].length);
    } else if (c === "{" || c === "[") depth++;
    else if (c === "}" || c === "]") depth--;
  }
  const empty = /^\{\s*\}/.test(text.slice(open));
  return `${text.slice(0, open + 1)}\n  ${JSON.stringify(key)}: ${JSON.stringify(value)}${empty ? "\n" : ","}${text.slice(open + 1)}`;
}
