import { PmaError } from "../common/errors.js";

/** One output tensor as the partition sees it; items come in output byte order. */
export interface WorkItem {
  name: string;
  elements: number;
  /** Bytes moved per element: the element read from every input plus the one written. */
  bytesPerElement: number;
  /**
   * Where the item may be cut: at element positions `phase + k * stride`, or nowhere
   * (null: integer tensors are copied whole, and small tensors are never cut anyway).
   */
  cut: { stride: number; phase: number } | null;
}

/** Elements [start, end) of one tensor. */
export interface ElementRange {
  name: string;
  start: number;
  end: number;
}

/** A position between elements: element `element` of item `item` (item === items.length at the end). */
interface Position {
  item: number;
  element: number;
}

/**
 * Splits the work of a merge into `count` shares of about equal bytes moved, the same
 * on every machine (integer positions from the same inputs, no clocks, no randomness).
 * The ideal cuts are at k/count of the total; a cut that falls inside a tensor smaller
 * than a share moves to that tensor's nearer end, so small tensors stay whole; a tensor
 * larger than a share is cut at the allowed position nearest the ideal one. So every
 * cut is at most half a small tensor (or one cut stride) from ideal, and shares are
 * contiguous runs of the output, which keeps each part's writes sequential.
 */
export function partitionWork(items: readonly WorkItem[], count: number): ElementRange[][] {
  if (!(Number.isSafeInteger(count) && count >= 1))
    throw new PmaError("USAGE", `the number of parts must be a positive integer, got ${count}`);
  const costs = items.map((t) => t.elements * t.bytesPerElement);
  const starts: number[] = [];
  let total = 0;
  for (const c of costs) {
    starts.push(total);
    total += c;
  }
  const share = total / count;
  const cuts: Position[] = [{ item: 0, element: 0 }];
  for (let k = 1; k < count; k++) {
    const ideal = (total * k) / count;
    const cut = max(cutNear(items, costs, starts, ideal, share), cuts[k - 1]!);
    cuts.push(cut);
  }
  cuts.push({ item: items.length, element: 0 });
  const parts: ElementRange[][] = [];
  for (let k = 0; k < count; k++) {
    const from = cuts[k]!;
    const to = cuts[k + 1]!;
    const ranges: ElementRange[] = [];
    for (let i = from.item; i < Math.min(to.item + 1, items.length); i++) {
      const start = i === from.item ? from.element : 0;
      const end = i === to.item ? to.element : items[i]!.elements;
      if (end > start) ranges.push({ name: items[i]!.name, start, end });
    }
    parts.push(ranges);
  }
  return parts;
}

function cutNear(
  items: readonly WorkItem[],
  costs: number[],
  starts: number[],
  ideal: number,
  share: number,
): Position {
  // The item whose bytes contain the ideal cut (items of no cost contain nothing).
  let i = 0;
  while (i < items.length && starts[i]! + costs[i]! <= ideal) i++;
  if (i === items.length) return { item: items.length, element: 0 };
  const item = items[i]!;
  const before = ideal - starts[i]!;
  if (item.cut === null || costs[i]! <= share) {
    return before < costs[i]! - before
      ? { item: i, element: 0 }
      : normalise(items, { item: i, element: item.elements });
  }
  const { stride, phase } = item.cut;
  const exact = before / item.bytesPerElement;
  const element = Math.min(item.elements, Math.max(0, phase + stride * Math.round((exact - phase) / stride)));
  return normalise(items, { item: i, element });
}

/** The end of an item is the start of the next one. */
function normalise(items: readonly WorkItem[], p: Position): Position {
  return p.element >= items[p.item]!.elements ? { item: p.item + 1, element: 0 } : p;
}

function max(a: Position, b: Position): Position {
  return a.item > b.item || (a.item === b.item && a.element >= b.element) ? a : b;
}

/**
 * Cut positions inside a tensor whose first output byte is at `fileOffset`, for elements
 * of `elementBytes` bytes: where the output byte position is a multiple of `alignBytes`
 * (so two processes never write into the same page of a shared file); when the tensor
 * itself is not element-aligned in the file, multiples of `alignBytes` into the tensor.
 */
export function alignedCuts(
  fileOffset: number,
  elementBytes: number,
  alignBytes: number,
): { stride: number; phase: number } {
  const stride = Math.max(1, Math.floor(alignBytes / elementBytes));
  if (alignBytes % elementBytes !== 0 || fileOffset % elementBytes !== 0) return { stride, phase: 0 };
  const toNext = (alignBytes - (fileOffset % alignBytes)) % alignBytes;
  return { stride, phase: toNext / elementBytes };
}
