/**
 * Spelling suggestions for unknown config keys and command-line flags.
 */

/** Computes the Levenshtein edit distance between `a` and `b` (insertions, deletions and substitutions). */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min(previous[j] + 1, current[j - 1] + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length];
}

/**
 * Returns the candidates that look like misspellings of `input`: those at the smallest edit distance found,
 * at most `limit` of them. Comparison ignores case, and a candidate qualifies only when at most a third of the
 * input's characters (at least 2) must change.
 */
export function closestMatches(input: string, candidates: readonly string[], limit = 3): string[] {
  const needle = input.toLowerCase();
  const allowed = Math.max(2, Math.floor(needle.length / 3));
  const scored = candidates
    .map((candidate) => ({ candidate, distance: editDistance(needle, candidate.toLowerCase()) }))
    .filter(({ distance }) => distance <= allowed);
  const best = Math.min(...scored.map(({ distance }) => distance));
  return scored
    .filter(({ distance }) => distance === best)
    .slice(0, limit)
    .map(({ candidate }) => candidate);
}
