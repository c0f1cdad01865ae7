//! Connectivity repair: make every node of a built graph reachable from
//! the medoid, with vectors (the one-pass build: a greedy search finds
//! each orphan's nearest reachable node) or without (a partitioned
//! build's merged graph).
//!
//! Owns: the repairs and reachability. Does not touch: how the graph was
//! built (`vamana`) or laid out (`layout`).

use super::beam::{CandidateList, VisitedSet};
use super::vamana::{greedy, row, BuildParams, Graph, Scratch};
use crate::kernels;
use crate::Metric;

/// Make every node reachable from the medoid: for each unreachable node
/// (in id order), link it from the nearest reachable node that still has a
/// free slot, found by a greedy search towards it (the medoid if none has
/// one; then one of its edges is given up, see below). Pruning can orphan
/// a node, often at small degrees; this keeps the "search can reach
/// everything" invariant. Returns the number of links added.
/// Deterministic.
pub(super) fn repair_connectivity(g: &mut Graph, data: &[f32], dim: usize, p: &BuildParams) -> usize {
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

#[cfg(test)]
mod tests {
    use super::super::vamana::build;
    use super::super::vamana::tests_support::clustered;
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
}
