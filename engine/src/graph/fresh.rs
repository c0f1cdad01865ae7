//! The fresh index: recent writes, in RAM at full precision, searchable the
//! moment they are acknowledged.
//!
//! Owns: an incrementally built Vamana graph over the vectors upserted
//! since the last flush (FreshDiskANN's in-memory index): each insert
//! searches the graph (list size `l`), prunes its candidates with
//! RobustPrune (degree `r`, `alpha`) and adds reverse edges. A neighbour
//! list may grow to `1.3 r` before it is pruned back to `r` (DiskANN's
//! slack factor): a prune costs about `r²` distances, and without the
//! slack every insert into a full neighbourhood pays it up to `r` times. Nodes are never removed: a node whose slot
//! is dead (deleted or overwritten) is still walked through but filtered
//! from results by the caller's liveness test, and disappears at the next
//! flush. Does not own: ids, payloads or durability (see `crate::collection`).

use crate::graph::beam::{CandidateList, VisitedSet};
use crate::Metric;

/// An insert worked out but not applied (see [`FreshIndex::plan`]).
#[derive(Debug)]
pub struct InsertPlan {
    node: u32,
    nbs: Vec<u32>,
    updates: Vec<(u32, Vec<u32>)>,
}

/// In-RAM graph over recent vectors.
pub struct FreshIndex {
    dim: usize,
    metric: Metric,
    r: usize,
    /// Neighbour-list length that triggers a prune back to `r`.
    slack_r: usize,
    l: usize,
    alpha: f32,
    data: Vec<f32>,
    /// Slot of each node.
    slots: Vec<u64>,
    adj: Vec<Vec<u32>>,
}

impl FreshIndex {
    /// An empty index.
    pub fn new(dim: usize, metric: Metric, r: usize, l: usize, alpha: f32) -> Self {
        let r = r.max(2);
        FreshIndex {
            dim,
            metric,
            r,
            slack_r: r + (r * 3).div_ceil(10),
            l: l.max(r),
            alpha,
            data: Vec::new(),
            slots: Vec::new(),
            adj: Vec::new(),
        }
    }

    /// Nodes (live or not).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Vector of node `i`.
    pub fn vector(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Slot of node `i`.
    pub fn slot(&self, i: usize) -> u64 {
        self.slots[i]
    }

    /// RAM held, bytes.
    pub fn ram_bytes(&self) -> usize {
        self.data.capacity() * 4
            + self.slots.capacity() * 8
            + self.adj.iter().map(|a| a.capacity() * 4 + 24).sum::<usize>()
    }

    fn dist(&self, q: &[f32], i: u32) -> f32 {
        self.metric.distance(q, self.vector(i as usize))
    }

    /// Greedy search from node 0: the `l` closest nodes visited.
    fn greedy(&self, q: &[f32], l: usize) -> Vec<(f32, u32)> {
        let n = self.len();
        if n == 0 {
            return Vec::new();
        }
        let mut list = CandidateList::new(l.max(1));
        let mut seen = VisitedSet::new(n);
        list.insert(self.dist(q, 0), 0);
        seen.insert(0);
        while let Some(i) = list.first_unexpanded() {
            let c = list.take(i);
            for &nb in &self.adj[c.id as usize] {
                if seen.insert(nb) {
                    list.insert(self.dist(q, nb), nb);
                }
            }
        }
        list.as_slice().iter().map(|c| (c.dist, c.id)).collect()
    }

    /// RobustPrune `pool` ((L2² distance from `p`, id), in any order) to
    /// at most `r` diverse neighbours; `vec(i)` gives node i's vector (the
    /// node being inserted is not in `data` yet while an insert is planned).
    fn prune<'a>(&'a self, p: u32, pool: &mut Vec<(f32, u32)>, vec: &dyn Fn(u32) -> &'a [f32]) -> Vec<u32> {
        super::prune::robust_prune(p, pool, vec, self.r, self.alpha, usize::MAX)
    }

    /// Work out an insert of `v` without changing the index: the new
    /// node's neighbours and every neighbour list that changes. This is
    /// the expensive part (a search and the prunes), done under a read
    /// lock by `live` so searches run meanwhile; [`FreshIndex::commit`]
    /// then only copies. The plan is valid until the index next changes.
    pub fn plan(&self, v: &[f32]) -> InsertPlan {
        let id = self.len() as u32;
        let mut pool = self.greedy(v, self.l);
        // RobustPrune compares candidate distances with L2 (see
        // graph::vamana), so rank the pool by L2 too.
        for e in pool.iter_mut() {
            e.0 = crate::kernels::l2_sq(v, self.vector(e.1 as usize));
        }
        let vec = |i: u32| if i == id { v } else { self.vector(i as usize) };
        let nbs = self.prune(id, &mut pool, &vec);
        let mut updates = Vec::new();
        for &nb in &nbs {
            let list = &self.adj[nb as usize];
            if list.contains(&id) {
                continue;
            }
            if list.len() < self.slack_r {
                let mut l = list.clone();
                l.push(id);
                updates.push((nb, l));
            } else {
                let nv = self.vector(nb as usize);
                let mut pool: Vec<(f32, u32)> = list
                    .iter()
                    .chain(std::iter::once(&id))
                    .map(|&x| (crate::kernels::l2_sq(nv, vec(x)), x))
                    .collect();
                updates.push((nb, self.prune(nb, &mut pool, &vec)));
            }
        }
        InsertPlan { node: id, nbs, updates }
    }

    /// Apply a plan made by [`FreshIndex::plan`] for the same `v` on this
    /// unchanged index. Panics if the index changed since (a bug).
    pub fn commit(&mut self, slot: u64, v: &[f32], plan: InsertPlan) {
        assert_eq!(plan.node as usize, self.len(), "insert plan is stale");
        self.data.extend_from_slice(v);
        self.slots.push(slot);
        self.adj.push(plan.nbs);
        for (nb, list) in plan.updates {
            self.adj[nb as usize] = list;
        }
    }

    /// Insert `v` (already validated: right length, finite) for `slot`.
    pub fn insert(&mut self, slot: u64, v: &[f32]) {
        let plan = self.plan(v);
        self.commit(slot, v, plan);
    }

    /// Up to `k` nearest live nodes as (distance, slot), nearest first;
    /// `live(slot)` says which slots still count.
    pub fn search(&self, q: &[f32], k: usize, l: usize, live: impl Fn(u64) -> bool) -> Vec<(f32, u64)> {
        let mut out: Vec<(f32, u64)> = self
            .greedy(q, l.max(k))
            .into_iter()
            .map(|(d, i)| (d, self.slots[i as usize]))
            .filter(|&(_, s)| live(s))
            .collect();
        out.truncate(k);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incremental_inserts_are_found_and_dead_slots_filtered() {
        let dim = 32;
        let data = crate::graph::vamana::tests_support::clustered(3000, dim, 5);
        let mut f = FreshIndex::new(dim, Metric::L2, 24, 64, 1.2);
        for i in 0..3000 {
            f.insert(1000 + i as u64, &data[i * dim..(i + 1) * dim]);
        }
        assert!(f.adj.iter().all(|a| a.len() <= f.slack_r && f.slack_r == 32));
        // recall@10 against brute force, over 100 queries (base points
        // themselves, which must come back first).
        let mut hits = 0;
        for qi in (0..3000).step_by(30) {
            let q = &data[qi * dim..(qi + 1) * dim];
            let got = f.search(q, 10, 64, |_| true);
            assert_eq!(got[0].1, 1000 + qi as u64, "a base point finds itself");
            let mut truth: Vec<(f32, usize)> = (0..3000)
                .map(|j| (Metric::L2.distance(q, &data[j * dim..(j + 1) * dim]), j))
                .collect();
            truth.sort_by(|a, b| a.0.total_cmp(&b.0));
            let t: Vec<u64> = truth[..10].iter().map(|x| 1000 + x.1 as u64).collect();
            hits += got.iter().filter(|g| t.contains(&g.1)).count();
        }
        let recall = hits as f64 / 1000.0;
        assert!(recall >= 0.95, "recall@10 {recall}");
        let q = &data[..dim];
        let got = f.search(q, 10, 64, |s| s != 1000);
        assert!(got.iter().all(|g| g.1 != 1000) && got.len() == 10);
    }
}
