/**
 * Human-readable output: aligned text tables and number formats. Only the
 * CLI's human mode uses this; `--json` prints raw numbers.
 */

/** A column of `table`: its header and whether values align left (default right). */
export interface Column {
  header: string;
  left?: boolean;
}

/**
 * Lays out rows under headers, columns separated by two spaces, numbers
 * right-aligned. Returns the lines (header first), without trailing newlines.
 */
export function table(columns: readonly Column[], rows: ReadonlyArray<readonly string[]>): string[] {
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((cell, i) => (columns[i].left ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ').trimEnd();
  return [line(columns.map((c) => c.header)), ...rows.map(line)];
}

/** Key/value lines with the keys padded to one width. */
export function pairs(entries: ReadonlyArray<readonly [string, string]>): string[] {
  const w = Math.max(...entries.map(([k]) => k.length));
  return entries.map(([k, v]) => `${k.padEnd(w)}  ${v}`);
}

/** A count with an SI suffix and 3 significant digits: 1234567 -> "1.23M". */
export function formatCount(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const units = ['', 'k', 'M', 'G', 'T'];
  let v = n;
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return `${i === 0 ? String(Math.round(v)) : v.toPrecision(3)}${units[i]}`;
}

/** Nanoseconds, rounded to whole ns (no unit). */
export function formatNs(ns: number): string {
  return String(Math.round(ns));
}

/** A number with `digits` decimals. */
export function fixed(n: number, digits = 2): string {
  return n.toFixed(digits);
}
