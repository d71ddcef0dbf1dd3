/**
 * Bytes of the buffers a model allocated for itself (activations, their gradients,
 * scratch, rope tables), parameters excluded: every buffer is allocated once in the
 * constructor, so this is also the peak a forward or training step holds. Read off
 * the buffers themselves rather than counted at allocation, so nothing a layer
 * allocates on its own can be missed; a buffer shared by several layers (scratch, a
 * forward-only model's single block) counts once.
 */
import type { Model } from "./model.js";

export function activationBytes(model: Model): number {
  const skip = new Set<unknown>([model.params, model.backend, model.config]);
  const seen = new Set<unknown>();
  let bytes = 0;
  const visit = (v: unknown): void => {
    if (v === null || typeof v !== "object" || skip.has(v) || seen.has(v)) return;
    seen.add(v);
    if (ArrayBuffer.isView(v)) {
      bytes += v.byteLength;
      return;
    }
    for (const child of Object.values(v)) visit(child);
  };
  visit(model);
  return bytes;
}
