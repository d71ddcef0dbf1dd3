/**
 * A fuzz target: one reader of untrusted files, its seed corpus (valid files written by
 * pma's own writers) and a dictionary of the format's tokens. `setup` prepares a
 * working directory once per process and returns the function run on every input.
 *
 * The contract every target checks is the reliability guarantee for parsers: for any
 * input, the reader returns a result or throws a PmaError with a code. Some targets add
 * oracles of their own (a shard read from outside its checkpoint directory is a
 * finding even though nothing threw).
 */
export interface FuzzTarget {
  name: string;
  /** One line: which reader, from which entry point. */
  description: string;
  dictionary: readonly string[];
  seeds(work: string): Promise<Uint8Array[]>;
  setup(work: string): Promise<(data: Uint8Array) => Promise<void>>;
}

const encoder = new TextEncoder();

export function utf8(s: string): Uint8Array {
  return encoder.encode(s);
}

/** An oracle failed: the reader returned, but what it returned breaks a guarantee. */
export class OracleError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "OracleError";
  }
}
