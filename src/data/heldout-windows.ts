/**
 * The fixed validation windows of a token stream (lab notes: fix the validation windows,
 * or seed-to-seed noise drowns the effects being measured), so two checkpoints are always
 * compared on exactly the same tokens.
 *
 * Window i covers inputs stream[i*S .. i*S + S - 1] and targets one token later, so the
 * windows do not overlap and each token of the split is predicted at most once. With a
 * token budget, an evenly spaced subset of the windows is taken (every genre of a
 * stratified split stays represented), not the first ones.
 */

/** Start offsets of the windows scored: all of them, or `maxTokens / seq` evenly spaced ones. */
export function heldoutWindows(streamLength: number, seq: number, maxTokens = 0): Uint32Array {
  const all = Math.max(0, Math.floor((streamLength - 1) / seq));
  const budget = maxTokens > 0 ? Math.max(1, Math.floor(maxTokens / seq)) : all;
  const n = Math.min(all, budget);
  const out = new Uint32Array(n);
  // floor(i * all / n) is strictly increasing for n <= all: no window is taken twice.
  for (let i = 0; i < n; i++) out[i] = Math.floor((i * all) / n) * seq;
  return out;
}
