import { PmaError } from "../../common/errors.js";

/** out[t] = wte[tokens[t]]: a row gather. Token ids are checked (a bad id is a data bug). */
export function embeddingForward(
  out: Float32Array,
  tokens: Int32Array,
  wte: Float32Array,
  H: number,
  vocab: number,
): void {
  const T = tokens.length;
  for (let t = 0; t < T; t++) {
    const id = tokens[t]!;
    if (id < 0 || id >= vocab) {
      throw new PmaError(
        "RANGE_INVALID",
        `token id ${id} at position ${t} is outside the vocabulary [0, ${vocab})`,
      );
    }
    const src = id * H;
    const dst = t * H;
    for (let i = 0; i < H; i++) out[dst + i] = wte[src + i]!;
  }
}

/** dwte[tokens[t]] += dout[t] (a scatter-add: repeated tokens accumulate). */
export function embeddingBackward(
  dwte: Float32Array,
  dout: Float32Array,
  tokens: Int32Array,
  H: number,
): void {
  const T = tokens.length;
  for (let t = 0; t < T; t++) {
    const row = tokens[t]! * H;
    const src = t * H;
    for (let i = 0; i < H; i++) dwte[row + i]! += dout[src + i]!;
  }
}
