/** Plain-text tables for terminals and reports. */

/** Rows of cells as aligned text: the first column left-aligned, the rest right-aligned. */
export function alignTable(rows: string[][], gap = 2): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i])))
        .join(" ".repeat(gap))
        .trimEnd(),
    )
    .join("\n");
}
