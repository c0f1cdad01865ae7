//! RobustPrune (Subramanya et al., DiskANN): the one neighbour-selection
//! rule every graph in Quarry uses — the batch Vamana build and the fresh
//! in-RAM index that takes single inserts.
//!
//! Owns: choosing at most R diverse out-neighbours from a candidate pool.
//! Does not own: where the candidates come from (a search of the graph
//! being built) or where vectors live (the caller passes a lookup).

use crate::kernels;

/// Choose at most `r` diverse out-neighbours of node `p` from `pool`,
/// whose entries are (L2² distance from `p`, candidate id). `vec(id)`
/// gives a candidate's vector. The pool is sorted by (distance, id),
/// deduplicated, stripped of `p` and cut to `max_candidates`; then each
/// candidate in order is kept unless an already kept one `o` is at least
/// `alpha` times closer to it than `p` is (`alpha · d(o, c) ≤ d(p, c)`).
/// Deterministic: ties break by id. Distances must be finite.
pub(crate) fn robust_prune<'a>(
    p: u32,
    pool: &mut Vec<(f32, u32)>,
    vec: impl Fn(u32) -> &'a [f32],
    r: usize,
    alpha: f32,
    max_candidates: usize,
) -> Vec<u32> {
    pool.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    pool.dedup_by_key(|c| c.1);
    pool.retain(|c| c.1 != p);
    pool.truncate(max_candidates);
    let mut out: Vec<u32> = Vec::with_capacity(r);
    let mut pruned = vec![false; pool.len()];
    for i in 0..pool.len() {
        if pruned[i] {
            continue;
        }
        let c = pool[i].1;
        out.push(c);
        if out.len() == r {
            break;
        }
        let cv = vec(c);
        for j in i + 1..pool.len() {
            if !pruned[j] && alpha * kernels::l2_sq(cv, vec(pool[j].1)) <= pool[j].0 {
                pruned[j] = true;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_nearest_and_drops_candidates_shadowed_by_a_kept_one() {
        // p at the origin; 1 at x=1; 2 at x=1.1 (shadowed by 1: 1.2 · 0.01 ≤ 1.21);
        // 3 at y=2 (not shadowed: 1.2 · 5 > 4).
        let v: Vec<[f32; 2]> = vec![[0.0, 0.0], [1.0, 0.0], [1.1, 0.0], [0.0, 2.0]];
        let vec = |i: u32| &v[i as usize][..];
        let d = |i: u32| kernels::l2_sq(vec(0), vec(i));
        let mut pool = vec![(d(3), 3), (d(2), 2), (d(1), 1), (d(1), 1), (0.0, 0)];
        assert_eq!(robust_prune(0, &mut pool, vec, 8, 1.2, usize::MAX), vec![1, 3]);
        // R caps the list; max_candidates cuts the pool before pruning.
        let mut pool = vec![(d(3), 3), (d(2), 2), (d(1), 1)];
        assert_eq!(robust_prune(0, &mut pool, vec, 1, 1.2, usize::MAX), vec![1]);
        let mut pool = vec![(d(3), 3), (d(2), 2), (d(1), 1)];
        assert_eq!(robust_prune(0, &mut pool, vec, 8, 1.2, 2), vec![1]);
        // A candidate off the kept one's axis is not shadowed: 1.0 · d(1, 2) = 2.21 > 1.21.
        let w: Vec<[f32; 2]> = vec![[0.0, 0.0], [1.0, 0.0], [0.0, 1.1]];
        let vec = |i: u32| &w[i as usize][..];
        let mut pool = vec![(1.21, 2), (1.0, 1)];
        assert_eq!(robust_prune(0, &mut pool, vec, 8, 1.0, usize::MAX), vec![1, 2]);
    }
}
