/**
 * JSON.parse keeps the last of two equal keys without a word, which would let a file
 * show one tensor to us and another to a different reader. This scanner finds the first
 * duplicate key in any object of a text that JSON.parse has already accepted, so it only
 * has to track strings and nesting, not the full grammar.
 */
export interface DuplicateKey {
  key: string;
  /** The keys of the enclosing objects, outermost first; empty for a top-level key. */
  parents: string[];
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;

function isJsonSpace(c: number): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}

export function findDuplicateKey(text: string): DuplicateKey | null {
  // One frame per open container: arrays have no key set.
  const keySets: (Set<string> | null)[] = [];
  // The key whose value opened each container (null inside arrays / at the top).
  const openedBy: (string | null)[] = [];
  let lastKey: string | null = null;
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      let j = i + 1;
      let escaped = false;
      while (j < n) {
        const d = text.charCodeAt(j);
        if (d === BACKSLASH) {
          escaped = true;
          j += 2;
          continue;
        }
        if (d === QUOTE) break;
        j++;
      }
      let k = j + 1;
      while (k < n && isJsonSpace(text.charCodeAt(k))) k++;
      const top = keySets[keySets.length - 1];
      if (k < n && text.charCodeAt(k) === COLON && top) {
        const raw = text.slice(i, j + 1);
        // Escapes must be decoded: "a" and "\u0061" are the same key.
        const key = escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        if (top.has(key)) {
          const parents = openedBy.filter((p): p is string => p !== null);
          return { key, parents };
        }
        top.add(key);
        lastKey = key;
      }
      i = j + 1;
      continue;
    }
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      const parentIsObject = keySets[keySets.length - 1] instanceof Set;
      openedBy.push(parentIsObject ? lastKey : null);
      keySets.push(c === 0x7b ? new Set<string>() : null);
      lastKey = null;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      keySets.pop();
      openedBy.pop();
      lastKey = null;
    }
    i++;
  }
  return null;
}
