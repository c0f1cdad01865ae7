//! Vamana graph construction with RobustPrune (R, L, alpha), parallel and
//! byte-identical for a given input, parameters and seed, whatever the
//! thread count.
//!
//! Determinism scheme (prefix-doubling batch insertion, as in ParlayANN):
//! points are inserted in a seeded random order, in batches whose size
//! doubles up to `max_batch`. Within a batch every point's search and prune
//! reads only the graph as it was before the batch (a pure function of that
//! snapshot), so it does not matter which thread computes it. Reverse edges
//! are then gathered, sorted by (target, source), and each target's list is
//! extended or re-pruned — again a pure function of the snapshot plus the
//! sorted additions. Results are applied in index order.
//!
//! Distances: the search ranks by the index metric; RobustPrune's diversity
//! test uses squared L2 between stored vectors for every metric (for cosine
//! the data is normalised, so L2 ranks the same; for inner product it keeps
//! the graph geometrically navigable).

use super::beam::{CandidateList, VisitedSet};
use crate::kernels;
use crate::parallel::map_indexed;
use crate::Metric;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

pub use super::repair::{repair_without_vectors, unreachable};

/// Build parameters.
#[derive(Clone, Debug)]
pub struct BuildParams {
    /// Maximum out-degree.
    pub r: usize,
    /// Search list size during construction.
    pub l: usize,
    /// RobustPrune alpha (DiskANN's default is 1.2).
    pub alpha: f32,
    /// Seed for the insertion order.
    pub seed: u64,
    /// Worker threads (does not change the result).
    pub threads: usize,
    /// Largest batch, as a fraction of n.
    pub max_batch_frac: f64,
    /// Candidate pool cap for RobustPrune.
    pub max_candidates: usize,
    /// Link nodes unreachable from the medoid at the end (a greedy search
    /// per orphan). A partitioned build's shards skip it: every point is
    /// in two shards, and the merged graph is repaired once, without
    /// vectors.
    pub repair: bool,
    /// Checked between batches: once set, the build returns
    /// [`BuildError::Cancelled`].
    pub cancel: crate::cancel::CancelToken,
}

impl BuildParams {
    /// DiskANN-like defaults for the given R and L.
    pub fn new(r: usize, l: usize) -> Self {
        BuildParams {
            r,
            l,
            alpha: 1.2,
            seed: 42,
            threads: 1,
            max_batch_frac: 0.02,
            max_candidates: 750,
            repair: true,
            cancel: crate::cancel::CancelToken::default(),
        }
    }
}

/// Why a build cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Parameters out of range.
    #[error("invalid build parameter: {0}")]
    Invalid(String),
    /// The build's cancel token was set.
    #[error("the build was cancelled")]
    Cancelled,
}

impl BuildParams {
    /// `Err(Cancelled)` once the cancel token is set.
    pub fn check_cancel(&self) -> Result<(), BuildError> {
        if self.cancel.is_cancelled() {
            Err(BuildError::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// An in-RAM graph with fixed-capacity adjacency lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    /// Maximum degree.
    pub r: usize,
    /// Entry point (closest point to the centroid).
    pub medoid: u32,
    degree: Vec<u32>,
    adj: Vec<u32>,
}

impl Graph {
    /// Empty graph of n nodes.
    pub fn empty(n: usize, r: usize, medoid: u32) -> Self {
        Graph {
            r,
            medoid,
            degree: vec![0; n],
            adj: vec![0; n * r],
        }
    }
    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.degree.len()
    }
    /// Whether there are no nodes.
    pub fn is_empty(&self) -> bool {
        self.degree.is_empty()
    }
    /// Out-neighbours of `i`.
    #[inline]
    pub fn neighbors(&self, i: u32) -> &[u32] {
        let s = i as usize * self.r;
        &self.adj[s..s + self.degree[i as usize] as usize]
    }
    /// Replace the out-neighbours of `i`.
    pub fn set_neighbors(&mut self, i: u32, nb: &[u32]) {
        assert!(nb.len() <= self.r);
        let s = i as usize * self.r;
        self.adj[s..s + nb.len()].copy_from_slice(nb);
        self.degree[i as usize] = nb.len() as u32;
    }
    /// Check degree ≤ R, ids in range, no self-loops, no duplicates, and
    /// that every node is reachable from the medoid. Returns a description
    /// of the first violation.
    pub fn check_invariants(&self) -> Result<(), String> {
        let n = self.len() as u32;
        for i in 0..n {
            let nb = self.neighbors(i);
            if nb.len() > self.r {
                return Err(format!("node {i} has degree {} > R = {}", nb.len(), self.r));
            }
            let mut seen = std::collections::HashSet::new();
            for &j in nb {
                if j >= n {
                    return Err(format!("node {i} links to {j}, beyond n = {n}"));
                }
                if j == i {
                    return Err(format!("node {i} has a self-loop"));
                }
                if !seen.insert(j) {
                    return Err(format!("node {i} lists neighbour {j} twice"));
                }
            }
        }
        let unreachable = self.unreachable_from_medoid();
        if let Some(first) = unreachable.first() {
            return Err(format!(
                "{} nodes unreachable from the medoid (first: {first})",
                unreachable.len()
            ));
        }
        Ok(())
    }

    /// Nodes not reachable from the medoid, in id order.
    pub fn unreachable_from_medoid(&self) -> Vec<u32> {
        let n = self.len();
        let mut seen = vec![false; n];
        let mut queue = std::collections::VecDeque::from([self.medoid]);
        seen[self.medoid as usize] = true;
        while let Some(u) = queue.pop_front() {
            for &v in self.neighbors(u) {
                if !seen[v as usize] {
                    seen[v as usize] = true;
                    queue.push_back(v);
                }
            }
        }
        (0..n as u32).filter(|i| !seen[*i as usize]).collect()
    }
}

/// What a build did.
#[derive(Clone, Debug, Default)]
pub struct BuildStats {
    /// Batches processed.
    pub batches: usize,
    /// Mean out-degree at the end.
    pub mean_degree: f64,
    /// Nodes made reachable by the final connectivity repair.
    pub repaired: usize,
}

/// Estimated peak bytes of a graph build over n × dim f32 vectors already
/// in RAM (the vectors are counted), by part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GraphEstimate {
    /// The vectors, n × dim f32.
    pub vectors_bytes: u64,
    /// The adjacency, n × (R + 1) u32.
    pub graph_bytes: u64,
    /// One visited set per thread, n × u32 each.
    pub visited_bytes: u64,
    /// Per-batch candidate lists and pruned neighbours, twice over.
    pub batch_bytes: u64,
}

impl GraphEstimate {
    /// The estimate for a build of n × dim vectors with `p`.
    pub fn for_build(n: usize, dim: usize, p: &BuildParams) -> Self {
        let max_batch = ((n as f64 * p.max_batch_frac) as usize).max(1);
        GraphEstimate {
            vectors_bytes: (n * dim * 4) as u64,
            graph_bytes: (n * (p.r + 1) * 4) as u64,
            visited_bytes: (p.threads * n * 4) as u64,
            batch_bytes: (max_batch * (p.r * 4 + p.l * 16 + p.max_candidates * 8)) as u64 * 2,
        }
    }

    /// Sum of the parts, bytes.
    pub fn total(&self) -> u64 {
        self.vectors_bytes + self.graph_bytes + self.visited_bytes + self.batch_bytes
    }
}

/// The breakdown in GiB, as build errors and `quarryctl build` print it.
impl std::fmt::Display for GraphEstimate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        write!(
            f,
            "vectors {:.2} GiB + graph {:.2} GiB + visited sets {:.2} GiB + batch buffers {:.2} GiB",
            gib(self.vectors_bytes),
            gib(self.graph_bytes),
            gib(self.visited_bytes),
            gib(self.batch_bytes)
        )
    }
}

pub(super) struct Scratch {
    pub(super) list: CandidateList,
    pub(super) visited: VisitedSet,
    pub(super) expanded: Vec<(f32, u32)>,
}

/// Greedy beam search over `g` from the medoid; returns every expanded node
/// with its distance (the candidate pool for RobustPrune).
pub(super) fn greedy(g: &Graph, data: &[f32], dim: usize, metric: Metric, q: &[f32], l: usize, s: &mut Scratch) {
    s.list.reset(l);
    s.visited.clear();
    s.expanded.clear();
    let m = g.medoid;
    s.visited.insert(m);
    s.list.insert(metric.distance(q, row(data, dim, m)), m);
    while let Some(i) = s.list.first_unexpanded() {
        let c = s.list.take(i);
        s.expanded.push((c.dist, c.id));
        for &v in g.neighbors(c.id) {
            if s.visited.insert(v) {
                s.list.insert(metric.distance(q, row(data, dim, v)), v);
            }
        }
    }
}

#[inline]
pub(super) fn row(data: &[f32], dim: usize, i: u32) -> &[f32] {
    &data[i as usize * dim..(i as usize + 1) * dim]
}

/// RobustPrune of node `p` over `pool` (ids; distances are recomputed in L2²),
/// through the one rule in [`super::prune`].
fn prune_node(p: u32, pool: &mut Vec<(f32, u32)>, data: &[f32], dim: usize, bp: &BuildParams) -> Vec<u32> {
    let pv = row(data, dim, p);
    for c in pool.iter_mut() {
        c.0 = kernels::l2_sq(pv, row(data, dim, c.1));
    }
    super::prune::robust_prune(p, pool, |i| row(data, dim, i), bp.r, bp.alpha, bp.max_candidates)
}

/// The point closest to the mean of `data` (ties → smallest id).
pub fn medoid(data: &[f32], dim: usize, threads: usize) -> u32 {
    let n = data.len() / dim;
    let mut mean = vec![0f64; dim];
    for r in data.chunks_exact(dim) {
        for (m, x) in mean.iter_mut().zip(r) {
            *m += *x as f64;
        }
    }
    let mean: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
    let d = map_indexed(
        n,
        threads,
        || (),
        |_, i| kernels::l2_sq(&mean, row(data, dim, i as u32)),
    );
    let mut best = 0;
    for i in 1..n {
        if d[i] < d[best] {
            best = i;
        }
    }
    best as u32
}

impl BuildParams {
    /// Check R, L and alpha (cheap; callers run it before any long stage).
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.r < 2 || self.l < self.r || self.alpha.is_nan() || self.alpha < 1.0 {
            return Err(BuildError::Invalid(format!(
                "need R ≥ 2, L ≥ R and alpha ≥ 1 (got R {}, L {}, alpha {})",
                self.r, self.l, self.alpha
            )));
        }
        Ok(())
    }
}

/// Build a Vamana graph over `data` (n × dim row-major, cosine data already
/// normalised). `progress(done, total)` is called between batches.
pub fn build(
    data: &[f32],
    dim: usize,
    metric: Metric,
    p: &BuildParams,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Graph, BuildStats), BuildError> {
    let n = data.len() / dim.max(1);
    if dim == 0 || n == 0 {
        return Err(BuildError::Invalid("no vectors to build from".into()));
    }
    if n > u32::MAX as usize - 1 {
        return Err(BuildError::Invalid(format!(
            "{n} vectors exceed one index's u32 id space"
        )));
    }
    p.validate()?;
    let med = medoid(data, dim, p.threads);
    let mut g = Graph::empty(n, p.r, med);
    let mut order: Vec<u32> = (0..n as u32).filter(|&i| i != med).collect();
    order.shuffle(&mut Xoshiro256PlusPlus::seed_from_u64(p.seed));
    let max_batch = ((n as f64 * p.max_batch_frac) as usize).max(1);
    let mut stats = BuildStats::default();
    let mut done = 0usize;
    progress(0, n);
    while done < order.len() {
        p.check_cancel()?;
        let size = done.clamp(1, max_batch).min(order.len() - done);
        let batch = &order[done..done + size];
        // 1. Search + prune each new point against the snapshot.
        let outs: Vec<Vec<u32>> = map_indexed(
            batch.len(),
            p.threads,
            || Scratch {
                list: CandidateList::new(p.l),
                visited: VisitedSet::new(n),
                expanded: Vec::new(),
            },
            |s, k| {
                let v = batch[k];
                greedy(&g, data, dim, metric, row(data, dim, v), p.l, s);
                let mut pool = std::mem::take(&mut s.expanded);
                let out = prune_node(v, &mut pool, data, dim, p);
                s.expanded = pool;
                out
            },
        );
        for (k, out) in outs.iter().enumerate() {
            g.set_neighbors(batch[k], out);
        }
        // 2. Reverse edges, sorted by (target, source).
        let mut rev: Vec<(u32, u32)> = outs
            .iter()
            .enumerate()
            .flat_map(|(k, out)| out.iter().map(move |&t| (t, batch[k])))
            .collect();
        rev.sort_unstable();
        rev.dedup();
        let mut groups: Vec<(usize, usize)> = Vec::new();
        let mut s = 0;
        while s < rev.len() {
            let mut e = s + 1;
            while e < rev.len() && rev[e].0 == rev[s].0 {
                e += 1;
            }
            groups.push((s, e));
            s = e;
        }
        let updates: Vec<Option<Vec<u32>>> = map_indexed(
            groups.len(),
            p.threads,
            || (),
            |_, gi| {
                let (s, e) = groups[gi];
                let t = rev[s].0;
                let cur = g.neighbors(t);
                let mut merged: Vec<u32> = cur.to_vec();
                for &(_, src) in &rev[s..e] {
                    if src != t && !cur.contains(&src) {
                        merged.push(src);
                    }
                }
                if merged.len() == cur.len() {
                    None
                } else if merged.len() <= p.r {
                    Some(merged)
                } else {
                    let mut pool: Vec<(f32, u32)> = merged.into_iter().map(|id| (0.0, id)).collect();
                    Some(prune_node(t, &mut pool, data, dim, p))
                }
            },
        );
        for (gi, u) in updates.into_iter().enumerate() {
            if let Some(list) = u {
                g.set_neighbors(rev[groups[gi].0].0, &list);
            }
        }
        done += size;
        stats.batches += 1;
        progress(done + 1, n);
    }
    if p.repair {
        stats.repaired = super::repair::repair_connectivity(&mut g, data, dim, p);
    }
    stats.mean_degree = (0..n as u32).map(|i| g.neighbors(i).len() as f64).sum::<f64>() / n as f64;
    Ok((g, stats))
}

/// Test data shared by the graph tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    /// n points around 16 random centres in [-1, 1]^dim.
    pub fn clustered(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let centres: Vec<f32> = (0..16 * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut out = Vec::with_capacity(n * dim);
        for _ in 0..n {
            let c = rng.random_range(0..16);
            for d in 0..dim {
                out.push(centres[c * dim + d] + rng.random_range(-0.3..0.3));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::clustered;
    use super::*;

    #[test]
    fn invariants_hold() {
        let dim = 16;
        let data = clustered(3000, dim, 1);
        let mut p = BuildParams::new(16, 32);
        p.threads = 2;
        let (g, stats) = build(&data, dim, Metric::L2, &p, &mut |_, _| {}).unwrap();
        g.check_invariants().unwrap();
        assert!(stats.mean_degree > 4.0, "{stats:?}");
    }

    #[test]
    fn rebuild_is_identical_whatever_the_thread_count() {
        let dim = 24;
        let data = clustered(4000, dim, 2);
        let mut p = BuildParams::new(20, 40);
        p.threads = 1;
        let (g1, _) = build(&data, dim, Metric::L2, &p, &mut |_, _| {}).unwrap();
        // 8 threads oversubscribed on the project's 2-core machines.
        p.threads = 8;
        let (g8, _) = build(&data, dim, Metric::L2, &p, &mut |_, _| {}).unwrap();
        assert_eq!(g1, g8);
        p.threads = 3;
        let (g3, _) = build(&data, dim, Metric::L2, &p, &mut |_, _| {}).unwrap();
        assert_eq!(g1, g3);
    }

    #[test]
    fn in_memory_search_finds_neighbours() {
        let dim = 16;
        let data = clustered(5000, dim, 3);
        let mut p = BuildParams::new(24, 48);
        p.threads = 2;
        let (g, _) = build(&data, dim, Metric::L2, &p, &mut |_, _| {}).unwrap();
        let mut s = Scratch {
            list: CandidateList::new(50),
            visited: VisitedSet::new(5000),
            expanded: vec![],
        };
        let mut hits = 0;
        for qi in 0..100u32 {
            let q = row(&data, dim, qi * 37);
            greedy(&g, &data, dim, Metric::L2, q, 50, &mut s);
            let mut exact: Vec<(f32, u32)> = (0..5000u32)
                .map(|i| (kernels::l2_sq(q, row(&data, dim, i)), i))
                .collect();
            exact.sort_by(|a, b| a.partial_cmp(b).unwrap());
            let got: std::collections::HashSet<u32> = s.list.as_slice().iter().take(10).map(|c| c.id).collect();
            hits += exact[..10].iter().filter(|e| got.contains(&e.1)).count();
        }
        assert!(hits as f64 / 1000.0 > 0.95, "recall {}", hits as f64 / 1000.0);
    }

    #[test]
    fn bad_parameters_are_refused() {
        let data = clustered(100, 8, 4);
        assert!(build(&data, 8, Metric::L2, &BuildParams::new(1, 10), &mut |_, _| {}).is_err());
        assert!(build(&data, 8, Metric::L2, &BuildParams::new(16, 8), &mut |_, _| {}).is_err());
        assert!(build(&[], 8, Metric::L2, &BuildParams::new(16, 32), &mut |_, _| {}).is_err());
    }
}
