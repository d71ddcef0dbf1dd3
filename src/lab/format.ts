/** Number formatting and the noise level the verdicts use. */

/**
 * Differences of held-out loss below this are called noise. The lab notes measured a
 * seed-to-seed spread of a few thousandths of a nat with ~128k validation tokens; two
 * models scored on the same fixed windows differ by less than that from the choice of
 * windows alone, so 0.005 is a conservative bar for "better" or "worse".
 */
export const NOISE_NATS = 0.005;

export function nats(x: number): string {
  return x.toFixed(4);
}

/** A signed difference: "-0.0123". */
export function delta(x: number): string {
  return `${x >= 0 ? "+" : ""}${x.toFixed(4)}`;
}

/** A token count for reading, not parsing back: 1638400 -> "1.64M". */
export function tokens(n: number): string {
  if (n >= 1e9) return `${+(n / 1e9).toFixed(2)}B`;
  if (n >= 1e6) return `${+(n / 1e6).toFixed(2)}M`;
  if (n >= 1e3) return `${+(n / 1e3).toFixed(1)}k`;
  return String(n);
}

export function mean(xs: readonly number[]): number {
  return xs.length === 0 ? NaN : xs.reduce((a, b) => a + b, 0) / xs.length;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** "a (x), b (y)" for a short list of labelled numbers. */
export function listing(
  items: readonly { name: string; value: number }[],
  fmt: (x: number) => string = nats,
): string {
  return items.map((i) => `${i.name} ${fmt(i.value)}`).join(", ");
}
