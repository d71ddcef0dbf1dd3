/**
 * A name or value from a file, as an error message may echo it: quoted, with control
 * and invisible characters escaped (a corrupt key must not move the cursor, ring the
 * bell or reorder the terminal's text) and cut to a few hundred characters (a corrupt
 * length made one message 1.7 MB).
 */

/** Characters kept of an echoed name or value. */
export const MAX_ECHOED_CHARS = 200;

// C1 controls, DEL, line/paragraph separators, bidirectional overrides and isolates, BOM:
// JSON.stringify leaves these as they are.
const INVISIBLE = /[\u007f-\u009f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]/g;

/** `"text"`, escaped as a JSON string and cut to `max` characters with the full length said. */
export function quoted(text: string, max = MAX_ECHOED_CHARS): string {
  const cut = text.length > max;
  const shown = JSON.stringify(cut ? text.slice(0, max) : text).replace(
    INVISIBLE,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return cut ? `${shown.slice(0, -1)}..." (${text.length} characters)` : shown;
}

/**
 * The last line of defence for a whole message: control characters other than newline
 * and tab escaped, and the message cut to `max` characters.
 */
export function safeMessage(message: string, max = 4000): string {
  const clean = message.replace(
    /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  return clean.length > max
    ? `${clean.slice(0, max)}... (message cut at ${max} of ${clean.length} characters)`
    : clean;
}
