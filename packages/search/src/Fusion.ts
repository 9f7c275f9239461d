/**
 * Reciprocal rank fusion (Cormack, Clarke & Büttcher 2009) of ranked lists:
 *
 *     rrf(d) = Σ_lists  1 / (k + rank_list(d))        rank from 1; a list that does not contain d adds nothing
 *
 * with k = `SearchConfig.rrfK` (60, the paper's value). Only ranks are used, because BM25 scores (unbounded) and
 * cosine similarities (USE-lite clusters them in 0.1–0.7) are on scales that cannot be compared. Ties are broken by
 * the best single rank, then by the key, so the fused order is deterministic.
 */

export interface Ranked<K, L extends string> {
  readonly list: L
  readonly keys: ReadonlyArray<K>
}

export interface Fused<K, L extends string> {
  readonly key: K
  readonly score: number
  /** The lists that contained the key, in the order the lists were given. */
  readonly matchedBy: ReadonlyArray<L>
}

export const reciprocalRankFusion = <L extends string>(
  lists: ReadonlyArray<Ranked<number, L>>,
  k: number
): Array<Fused<number, L>> => {
  const byKey = new Map<number, { score: number; best: number; matchedBy: Array<L> }>()
  for (const { keys, list } of lists) {
    keys.forEach((key, i) => {
      const rank = i + 1
      let entry = byKey.get(key)
      if (entry === undefined) byKey.set(key, entry = { score: 0, best: rank, matchedBy: [] })
      entry.score += 1 / (k + rank)
      if (rank < entry.best) entry.best = rank
      if (!entry.matchedBy.includes(list)) entry.matchedBy.push(list)
    })
  }
  return [...byKey].sort(([ka, a], [kb, b]) => b.score - a.score || a.best - b.best || ka - kb)
    .map(([key, e]) => ({ key, score: e.score, matchedBy: e.matchedBy }))
}
