//! Sector co-location: a relabelling of graph nodes so that the records
//! sharing one 4 KiB sector are graph neighbours of each other.
//!
//! Owns: choosing the order in which nodes are written to the graph file
//! and measuring how well that order co-locates neighbours. Does not own
//! the record encoding (`format`) or how a search uses the extra records
//! of a sector it reads (`search`).
//!
//! When several records fit in a sector (i8 or low-dimensional vectors),
//! every read brings its target's sector-mates for free. With the build
//! order those mates are unrelated nodes; after co-location they are
//! mostly out-neighbours of the target, which the search would soon want
//! to read anyway, so it can expand them without another read (the idea
//! of Starling's block shuffling, SIGMOD 2024).
//!
//! The packing is a deterministic greedy: seeds are taken in breadth-first
//! order from the medoid (so nodes near each other in the search's path
//! end up near each other on disk), and each seed's sector is filled with
//! its unplaced out-neighbours, mutual neighbours first, then closest
//! first, then neighbours of the nodes already in the sector.

use super::Graph;

/// The new order of the nodes of `g` for `per_sector` records per sector:
/// `order[new] = old`. A permutation of `0..n`; identity when
/// `per_sector <= 1` (nothing to co-locate).
pub fn colocate(g: &Graph, per_sector: usize) -> Vec<u32> {
    let n = g.len();
    if per_sector <= 1 || n == 0 {
        return (0..n as u32).collect();
    }
    let mut placed = vec![false; n];
    let mut order = Vec::with_capacity(n);
    let mut block: Vec<u32> = Vec::with_capacity(per_sector);
    let mut scored: Vec<(u8, usize, u32)> = Vec::new();
    for seed in bfs_order(g) {
        if placed[seed as usize] {
            continue;
        }
        // The sector being filled may already hold the tail of the
        // previous seed's block; a new seed starts where the order is.
        let room = per_sector - order.len() % per_sector;
        block.clear();
        block.push(seed);
        placed[seed as usize] = true;
        let mut frontier = 0;
        while block.len() < room && frontier < block.len() {
            let v = block[frontier];
            frontier += 1;
            scored.clear();
            for (rank, &u) in g.neighbors(v).iter().enumerate() {
                if !placed[u as usize] {
                    let mutual = g.neighbors(u).contains(&v);
                    scored.push((u8::from(!mutual), rank, u));
                }
            }
            scored.sort_unstable();
            for &(_, _, u) in scored.iter().take(room - block.len()) {
                placed[u as usize] = true;
                block.push(u);
            }
        }
        order.extend_from_slice(&block);
    }
    debug_assert_eq!(order.len(), n);
    order
}

/// `g` in disk order for `per_sector` records per sector: co-located when
/// `colocate` and a sector holds several records, else as built. Returns
/// the graph in its new naming, the order (`order[new] = old`) and whether
/// it was co-located.
pub fn arrange(g: Graph, per_sector: usize, colocate: bool) -> (Graph, Vec<u32>, bool) {
    if colocate && per_sector > 1 {
        let order = self::colocate(&g, per_sector);
        (relabel(&g, &order), order, true)
    } else {
        let order = (0..g.len() as u32).collect();
        (g, order, false)
    }
}

/// Every node once: breadth-first from the medoid, then any node the
/// search from the medoid cannot reach, in id order.
fn bfs_order(g: &Graph) -> Vec<u32> {
    let n = g.len();
    let mut seen = vec![false; n];
    let mut out = Vec::with_capacity(n);
    let push_component = |root: u32, seen: &mut Vec<bool>, out: &mut Vec<u32>| {
        if seen[root as usize] {
            return;
        }
        seen[root as usize] = true;
        let start = out.len();
        out.push(root);
        let mut head = start;
        while head < out.len() {
            let u = out[head];
            head += 1;
            for &v in g.neighbors(u) {
                if !seen[v as usize] {
                    seen[v as usize] = true;
                    out.push(v);
                }
            }
        }
    };
    push_component(g.medoid, &mut seen, &mut out);
    for i in 0..n as u32 {
        push_component(i, &mut seen, &mut out);
    }
    out
}

/// The inverse of a permutation: `inv[order[j]] = j`.
pub fn inverse(order: &[u32]) -> Vec<u32> {
    let mut inv = vec![0u32; order.len()];
    for (j, &old) in order.iter().enumerate() {
        inv[old as usize] = j as u32;
    }
    inv
}

/// `g` with node `order[j]` renamed `j` (edges and medoid follow).
pub fn relabel(g: &Graph, order: &[u32]) -> Graph {
    let inv = inverse(order);
    let mut out = Graph::empty(g.len(), g.r, inv[g.medoid as usize]);
    let mut nb = Vec::with_capacity(g.r);
    for (j, &old) in order.iter().enumerate() {
        nb.clear();
        nb.extend(g.neighbors(old).iter().map(|&u| inv[u as usize]));
        out.set_neighbors(j as u32, &nb);
    }
    out
}

/// Of the sectors holding at least two records, the mean fraction of each
/// record's sector-mates that are among its out-neighbours, for a graph
/// already in disk order. 0 for one record per sector.
pub fn mate_fraction(g: &Graph, per_sector: usize) -> f64 {
    let n = g.len();
    if per_sector <= 1 || n < 2 {
        return 0.0;
    }
    let (mut hits, mut pairs) = (0u64, 0u64);
    for base in (0..n).step_by(per_sector) {
        let end = (base + per_sector).min(n);
        for i in base..end {
            let nb = g.neighbors(i as u32);
            for j in base..end {
                if i != j {
                    pairs += 1;
                    hits += u64::from(nb.contains(&(j as u32)));
                }
            }
        }
    }
    if pairs == 0 {
        0.0
    } else {
        hits as f64 / pairs as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{build, BuildParams};
    use crate::Metric;

    fn small_graph() -> Graph {
        let data = crate::graph::vamana::tests_support::clustered(600, 16, 7);
        let p = BuildParams::new(12, 24);
        build(&data, 16, Metric::L2, &p, &mut |_, _| {}).expect("build").0
    }

    #[test]
    fn order_is_a_permutation_and_relabel_keeps_the_graph() {
        let g = small_graph();
        for per in [1, 2, 3, 4] {
            let order = colocate(&g, per);
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..g.len() as u32).collect::<Vec<_>>(), "per_sector {per}");
            let h = relabel(&g, &order);
            h.check_invariants().expect("relabelled graph keeps the invariants");
            assert_eq!(order[h.medoid as usize], g.medoid);
            for (j, &old) in order.iter().enumerate() {
                let mapped: Vec<u32> = h.neighbors(j as u32).iter().map(|&u| order[u as usize]).collect();
                assert_eq!(mapped, g.neighbors(old), "edges of old node {old}");
            }
        }
    }

    #[test]
    fn colocation_puts_neighbours_in_the_same_sector() {
        let g = small_graph();
        let before = mate_fraction(&g, 3);
        let after = mate_fraction(&relabel(&g, &colocate(&g, 3)), 3);
        // Build order pairs nodes at random: with 600 nodes and degree ≤ 12,
        // a random mate is a neighbour about 2% of the time.
        assert!(before < 0.1, "build order already co-located: {before}");
        assert!(
            after > 0.5,
            "co-location found too few neighbours: {after} (before {before})"
        );
    }

    #[test]
    fn colocation_is_deterministic() {
        let g = small_graph();
        assert_eq!(colocate(&g, 3), colocate(&g, 3));
    }
}
