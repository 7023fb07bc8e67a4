/** "Did you mean" hints for unknown config keys, enum values and preset names. */

/** Optimal-string-alignment distance: Levenshtein plus adjacent swaps ("modle" -> "model" is 1). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.length][b.length];
}

/**
 * The candidate closest to `word`, if it is close enough to be a plausible typo: within a third of
 * the length in edits (at least one), or one containing the other ("drop_path" -> "drop_path_rate").
 */
export function didYouMean(word: string, candidates: readonly string[]): string | undefined {
  const w = word.toLowerCase();
  let best: { name: string; score: number } | undefined;
  for (const name of candidates) {
    const c = name.toLowerCase();
    const dist = editDistance(w, c);
    const limit = Math.max(1, Math.floor(Math.max(w.length, c.length) / 3));
    const contained = w.length >= 4 && (c.includes(w) || w.includes(c));
    if (dist > limit && !contained) continue;
    // A key the user shortened or extended beats an unrelated key a few letters away.
    const score = contained ? Math.min(dist, 1) : dist;
    if (!best || score < best.score) best = { name, score };
  }
  return best?.name;
}

/** ` (did you mean "x"?)`, or "" when nothing is close. */
export function suggestion(word: string, candidates: readonly string[]): string {
  const hit = didYouMean(word, candidates);
  return hit === undefined ? "" : ` (did you mean "${hit}"?)`;
}
