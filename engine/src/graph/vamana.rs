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
        }
    }
}

/// Why a build cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Parameters out of range.
    #[error("invalid build parameter: {0}")]
    Invalid(String),
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

struct Scratch {
    list: CandidateList,
    visited: VisitedSet,
    expanded: Vec<(f32, u32)>,
}

/// Greedy beam search over `g` from the medoid; returns every expanded node
/// with its distance (the candidate pool for RobustPrune).
fn greedy(g: &Graph, data: &[f32], dim: usize, metric: Metric, q: &[f32], l: usize, s: &mut Scratch) {
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
fn row(data: &[f32], dim: usize, i: u32) -> &[f32] {
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
        stats.repaired = repair_connectivity(&mut g, data, dim, p);
    }
    stats.mean_degree = (0..n as u32).map(|i| g.neighbors(i).len() as f64).sum::<f64>() / n as f64;
    Ok((g, stats))
}

/// Make every node reachable from the medoid: for each unreachable node
/// (in id order), link it from the nearest reachable node that still has a
/// free slot, found by a greedy search towards it (the medoid if none has
/// one; then one of its edges is given up, see below). Pruning can orphan
/// a node, often at small degrees; this keeps the "search can reach
/// everything" invariant. Returns the number of links added.
/// Deterministic.
fn repair_connectivity(g: &mut Graph, data: &[f32], dim: usize, p: &BuildParams) -> usize {
    let n = g.len();
    let mut added = 0;
    let mut s = Scratch {
        list: CandidateList::new(p.l),
        visited: VisitedSet::new(n),
        expanded: Vec::new(),
    };
    // In-edge counts, kept current: a full node gives up the farthest
    // edge whose target has another in-edge, so the edge rarely was that
    // node's only path. When every target has only this one, the farthest
    // edge goes and its target is handed to the newly linked node if that
    // one has room (from -> u -> x keeps x reachable).
    let mut indeg = in_degrees(g);
    // Reachability is kept incrementally within a pass: linking u makes
    // everything reachable from u reachable, found by a search from u
    // alone. An edge given up may still have cut a node's only path,
    // which the pass does not see; so a pass that gave one up is followed
    // by a full search from the medoid and another pass over what it
    // finds. The cost is O(n + E) per pass, not per orphan (at 1M nodes,
    // thousands of full searches took over an hour), and the passes are
    // few because edges are given up with care (at 10M, R = 21, giving
    // up the farthest edge blindly cut one node off per pass, for hours).
    // Deterministic: one thread, ids in order.
    let mut seen = reachable_from(g, &[g.medoid], vec![false; n]);
    let mut next = 0u32;
    let mut stale = false;
    for _pass in 0..MAX_REPAIR_PASSES {
        loop {
            while (next as usize) < n && seen[next as usize] {
                next += 1;
            }
            if next as usize == n {
                break;
            }
            let u = next;
            greedy(g, data, dim, Metric::L2, row(data, dim, u), p.l, &mut s);
            let mut reach: Vec<(f32, u32)> = s.expanded.iter().copied().filter(|c| seen[c.1 as usize]).collect();
            reach.sort_by(|a, b| (a.0, a.1).partial_cmp(&(b.0, b.1)).expect("finite"));
            let from = reach
                .iter()
                .find(|c| g.neighbors(c.1).len() < p.r)
                .or(reach.first())
                .map_or(g.medoid, |c| c.1);
            let mut nb = g.neighbors(from).to_vec();
            if nb.len() == p.r {
                let fv = row(data, dim, from);
                let far = |shared: bool| {
                    nb.iter()
                        .enumerate()
                        .filter(|(_, &x)| !shared || indeg[x as usize] >= 2)
                        .map(|(i, &x)| (kernels::l2_sq(fv, row(data, dim, x)), i))
                        .fold(None, |b: Option<(f32, usize)>, c| match b {
                            Some(b) if b.0 >= c.0 => Some(b),
                            _ => Some(c),
                        })
                        .map(|(_, i)| i)
                };
                let (i, shared) = match far(true) {
                    Some(i) => (i, true),
                    None => (far(false).expect("a full list"), false),
                };
                let x = nb.remove(i);
                indeg[x as usize] -= 1;
                let mut un = g.neighbors(u).to_vec();
                if !shared && x != u && un.len() < p.r && !un.contains(&x) {
                    un.push(x);
                    g.set_neighbors(u, &un);
                    indeg[x as usize] += 1;
                } else {
                    stale = true;
                }
            }
            nb.push(u);
            indeg[u as usize] += 1;
            g.set_neighbors(from, &nb);
            added += 1;
            seen = reachable_from(g, &[u], seen);
        }
        if !stale {
            return added;
        }
        seen = reachable_from(g, &[g.medoid], vec![false; n]);
        (next, stale) = (0, false);
    }
    added
}

/// Full reachability passes the vector-guided repair makes at most; each
/// one after the first only follows edges given up by the one before.
/// Nodes still unreachable after them are counted by the build report.
const MAX_REPAIR_PASSES: usize = 64;

/// Make every node reachable from the medoid without reading vectors
/// (the partitioned build's merged graph), without removing an edge: an
/// unreachable node `u` is linked from the first reachable node of its
/// own list (its near neighbours) that has room; one with no such
/// neighbour waits until the pass is over and is then linked from the
/// next reachable node with room in id order (a long edge, like the
/// random ones a navigable graph keeps), unless linking its neighbours
/// reached it meanwhile. No edge is given up, so nothing reached is ever
/// cut off again: one pass. Only when no reachable node has room does the
/// medoid give up its last edge (R too small for the graph). At 10M,
/// R = 32, giving up edges instead left 304,311 nodes unreachable after
/// 3.3M links. Deterministic: ids in order. Returns the links added.
pub fn repair_without_vectors(g: &mut Graph) -> usize {
    let n = g.len();
    let mut added = 0;
    let link = |g: &mut Graph, from: u32, u: u32, seen: Vec<bool>| {
        let mut list = g.neighbors(from).to_vec();
        let cut = list.len() >= g.r;
        if cut {
            list.pop();
        }
        list.push(u);
        g.set_neighbors(from, &list);
        (reachable_from(g, &[u], seen), cut)
    };
    // A second pass only if the medoid had to give up an edge.
    for _ in 0..8 {
        let mut seen = reachable_from(g, &[g.medoid], vec![false; n]);
        let mut waiting = Vec::new();
        for u in 0..n as u32 {
            if seen[u as usize] {
                continue;
            }
            let near = g
                .neighbors(u)
                .iter()
                .copied()
                .find(|&v| seen[v as usize] && g.neighbors(v).len() < g.r);
            match near {
                Some(v) => {
                    seen = link(g, v, u, seen).0;
                    added += 1;
                }
                None => waiting.push(u),
            }
        }
        let mut cursor = 0usize;
        let mut cut = false;
        for u in waiting {
            if seen[u as usize] {
                continue;
            }
            while cursor < n && !(seen[cursor] && g.neighbors(cursor as u32).len() < g.r) {
                cursor += 1;
            }
            let from = if cursor < n { cursor as u32 } else { g.medoid };
            let c;
            (seen, c) = link(g, from, u, seen);
            cut |= c;
            added += 1;
        }
        if !cut {
            break;
        }
    }
    added
}

/// Each node's count of in-edges.
fn in_degrees(g: &Graph) -> Vec<u32> {
    let mut indeg = vec![0u32; g.len()];
    for v in 0..g.len() as u32 {
        for &x in g.neighbors(v) {
            indeg[x as usize] += 1;
        }
    }
    indeg
}

/// Nodes the medoid cannot reach.
pub fn unreachable(g: &Graph) -> usize {
    reachable_from(g, &[g.medoid], vec![false; g.len()])
        .iter()
        .filter(|&&r| !r)
        .count()
}

/// `seen` with every node reachable from `starts` (through nodes not yet
/// seen) marked.
fn reachable_from(g: &Graph, starts: &[u32], mut seen: Vec<bool>) -> Vec<bool> {
    let mut queue = std::collections::VecDeque::new();
    for &s in starts {
        if !seen[s as usize] {
            seen[s as usize] = true;
            queue.push_back(s);
        }
    }
    while let Some(u) = queue.pop_front() {
        for &v in g.neighbors(u) {
            if !seen[v as usize] {
                seen[v as usize] = true;
                queue.push_back(v);
            }
        }
    }
    seen
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
    fn repair_without_vectors_reaches_every_node_and_is_a_no_op_on_a_connected_graph() {
        // 0 -> 1 -> 2; 3 <-> 4 cut off; 5 points at 2 only; R = 2, 1 full.
        let mut g = Graph::empty(6, 2, 0);
        g.set_neighbors(0, &[1]);
        g.set_neighbors(1, &[2, 0]);
        g.set_neighbors(3, &[4]);
        g.set_neighbors(4, &[3, 1]);
        g.set_neighbors(5, &[2]);
        assert_eq!(unreachable(&g), 3);
        let added = repair_without_vectors(&mut g);
        assert_eq!(unreachable(&g), 0, "{g:?}");
        // 3 via the medoid (its list holds no reachable node), 4 then
        // reachable through 3, 5 from 2 (reachable, with room).
        assert_eq!(added, 2);
        assert!(g.neighbors(2).contains(&5) && g.neighbors(0).contains(&3), "{g:?}");
        let before = g.clone();
        assert_eq!(repair_without_vectors(&mut g), 0);
        assert_eq!(g, before);
    }

    #[test]
    fn repair_without_vectors_removes_no_edge_and_reaches_whole_regions() {
        use rand::{Rng, SeedableRng};
        let (n, r) = (3000u32, 6usize);
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(9);
        let mut g = Graph::empty(n as usize, r, 0);
        // A ring keeps 0..1000 reachable; 1000..3000 are regions that
        // point only inside themselves (blocks of 100), and nothing
        // outside points in. Most lists are full.
        for u in 0..n {
            let block = if u < 1000 {
                (0, 1000)
            } else {
                (u / 100 * 100, u / 100 * 100 + 100)
            };
            let mut l = vec![if u < 1000 {
                (u + 1) % 1000
            } else {
                block.0 + (u + 1 - block.0) % 100
            }];
            while l.len() < r - (u % 7 == 0) as usize {
                let v = rng.random_range(block.0..block.1);
                if v != u && !l.contains(&v) {
                    l.push(v);
                }
            }
            g.set_neighbors(u, &l);
        }
        assert_eq!(unreachable(&g), 2000);
        let before = g.clone();
        let mut again = g.clone();
        let added = repair_without_vectors(&mut g);
        assert_eq!(unreachable(&g), 0);
        assert_eq!(repair_without_vectors(&mut again), added, "deterministic");
        assert_eq!(again, g);
        // One link per region at most, and every edge kept.
        assert!(added <= 20, "{added} links for 20 regions");
        for u in 0..n {
            for v in before.neighbors(u) {
                assert!(g.neighbors(u).contains(v), "edge {u} -> {v} was given up");
            }
        }
    }

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
    fn the_repair_reaches_every_orphan_the_same_way_every_time() {
        let dim = 8;
        let data = clustered(1500, dim, 7);
        for (r, cut_every) in [(6, 3), (4, 2), (12, 5)] {
            let p = BuildParams::new(r, 16);
            let (mut g, _) = build(&data, dim, Metric::L2, &p, &mut |_, _| {}).unwrap();
            // Orphan many nodes and chains of nodes: empty some lists and
            // cut every edge into a range.
            for i in (0..g.len() as u32).step_by(cut_every) {
                if i != g.medoid {
                    g.set_neighbors(i, &[]);
                }
            }
            for i in 0..g.len() as u32 {
                let nb: Vec<u32> = g
                    .neighbors(i)
                    .iter()
                    .copied()
                    .filter(|&v| !(200..400).contains(&v))
                    .collect();
                g.set_neighbors(i, &nb);
            }
            assert!(g.unreachable_from_medoid().len() > 200);
            let orphans = g.unreachable_from_medoid().len();
            let mut a = g.clone();
            let mut b = g.clone();
            let na = repair_connectivity(&mut a, &data, dim, &p);
            let nb = repair_connectivity(&mut b, &data, dim, &p);
            assert_eq!((na, &a), (nb, &b), "R = {r}: deterministic");
            assert!(a.unreachable_from_medoid().is_empty(), "R = {r}");
            assert!(
                na >= 1 && na <= 2 * orphans,
                "R = {r}: {na} links for {orphans} orphans"
            );
            a.check_invariants().unwrap();
        }
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
