/**
 * Numbers with their spread across seeds (lab/mean-sd.ts), written the same way in the
 * page, in summary.md and by the lab: "4.123 ± 0.004 nats (n=3)".
 */
import type { Measured } from "./types.js";

/** A number at `digits` significant digits, without exponent notation for ordinary magnitudes. */
export function formatNumber(v: number, digits = 4): string {
  if (!Number.isFinite(v)) return String(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e6 || a < 1e-4) return v.toExponential(digits - 1);
  if (Number.isInteger(v) && a < 10 ** digits) return String(v);
  return Number(v.toPrecision(digits)).toString();
}

/** "label: mean ± sd unit (n=k)", the spread at the precision of the mean's last digit. */
export function formatMeasured(m: Measured): string {
  const unit = m.unit !== undefined && m.unit !== "" ? ` ${m.unit}` : "";
  const n = m.n !== undefined ? ` (n=${m.n})` : "";
  if (m.sd === undefined) return `${m.label}: ${formatNumber(m.mean)}${unit}${n}`;
  // Show the mean to the decimal of the spread's second significant digit.
  const decimals =
    m.sd > 0 && Number.isFinite(m.sd) ? Math.min(10, Math.max(0, 1 - Math.floor(Math.log10(m.sd)))) : 4;
  const mean = Math.abs(m.mean) >= 1e6 ? formatNumber(m.mean) : m.mean.toFixed(decimals);
  return `${m.label}: ${mean} ± ${m.sd.toFixed(decimals)}${unit}${n}`;
}
