/**
 * JSON.parse handles any nesting and any size of container, but not at any cost: a
 * 99 MB header of nested brackets takes tens of seconds and gigabytes, an object of 9M
 * keys takes minutes, and an array of more than about 134M elements (V8's largest
 * backing store) is a fatal error that ends the process instead of an exception. So
 * text from a file is measured first, in one pass that skips strings: nesting depth,
 * and the largest array and object. Callers refuse text past limits that no real file
 * of their format comes near.
 */

export interface JsonShapeLimits {
  /** Deepest nesting allowed (the top-level container is depth 1). */
  maxDepth: number;
  /** Most elements allowed in any one array. */
  maxArrayElements: number;
  /** Most keys allowed in any one object. */
  maxObjectKeys: number;
}

/** What exceeded a limit, and the character offset where it did. */
export interface JsonShapeProblem {
  what: string;
  position: number;
}

/** serde_json's recursion limit: the reference safetensors reader refuses deeper headers. */
export const SERDE_JSON_DEPTH = 128;
/** Python's json module gives up near its recursion limit (1000): no Python-written log is deeper. */
export const PYTHON_JSON_DEPTH = 1000;

/**
 * For safetensors headers and shard indexes. The smallest valid header entry,
 * `"":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},`, is 48 bytes, so a header
 * within the 100 MB limit has at most 2.08M tensors: 2^21 refuses no valid file.
 */
export const SAFETENSORS_JSON_LIMITS: JsonShapeLimits = {
  maxDepth: SERDE_JSON_DEPTH,
  maxArrayElements: 1 << 21,
  maxObjectKeys: 1 << 21,
};

/** For training logs: a log_history of 64M entries, objects of 1M keys (real ones have tens). */
export const LOG_JSON_LIMITS: JsonShapeLimits = {
  maxDepth: PYTHON_JSON_DEPTH,
  maxArrayElements: 1 << 26,
  maxObjectKeys: 1 << 20,
};

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;

/** The first limit `text` exceeds, or null. Invalid JSON is left to JSON.parse to report. */
export function checkJsonShape(text: string, limits: JsonShapeLimits): JsonShapeProblem | null {
  // Per open container: elements so far (commas + 1), and whether it is an array.
  const counts: number[] = [];
  const arrays: boolean[] = [];
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === BACKSLASH) i++;
        else if (d === QUOTE) break;
      }
    } else if (c === 0x5b /* [ */ || c === 0x7b /* { */) {
      if (counts.length >= limits.maxDepth)
        return { what: `nesting deeper than ${limits.maxDepth} levels`, position: i };
      counts.push(1);
      arrays.push(c === 0x5b);
    } else if (c === 0x5d /* ] */ || c === 0x7d /* } */) {
      counts.pop();
      arrays.pop();
    } else if (c === COMMA && counts.length > 0) {
      const k = counts.length - 1;
      const cap = arrays[k] ? limits.maxArrayElements : limits.maxObjectKeys;
      if (++counts[k]! > cap)
        return {
          what: `more than ${cap} ${arrays[k] ? "elements in one array" : "keys in one object"}`,
          position: i,
        };
    }
  }
  return null;
}
