/** A binary max-heap of numbers. */
export class MaxHeap {
  private readonly a: number[] = [];

  get size(): number {
    return this.a.length;
  }

  /** The largest value; only when size > 0. */
  peek(): number {
    return this.a[0]!;
  }

  push(x: number): void {
    const a = this.a;
    let i = a.push(x) - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent]! >= x) break;
      a[i] = a[parent]!;
      i = parent;
    }
    a[i] = x;
  }

  /** Removes and returns the largest value; only when size > 0. */
  pop(): number {
    const a = this.a;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= a.length) break;
        const r = l + 1;
        const child = r < a.length && a[r]! > a[l]! ? r : l;
        if (a[child]! <= last) break;
        a[i] = a[child]!;
        i = child;
      }
      a[i] = last;
    }
    return top;
  }
}
