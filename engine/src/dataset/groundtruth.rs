//! Exact k-nearest-neighbour ground truth by blocked brute force.
//!
//! Owns: the reference answer every recall figure is measured against, and
//! its tie rule: results are ordered by (distance, id), so equal distances
//! rank the smaller id first and the output is the same for any thread
//! count.
//!
//! Method: the base is split into one contiguous range per thread. Each
//! thread walks its range in base tiles (~512 KiB) and, for every tile,
//! every query tile (~256 KiB), so both stay in L2 while the
//! `crate::kernels` distances run; each thread keeps a bounded max-heap per
//! query, and the heaps are merged at the end. Distances use the metric's
//! convention ([`Metric::distance`]): smaller is closer, inner product is
//! negated. Cosine uses precomputed norms with the same arithmetic as
//! `kernels::cosine_distance`, so results equal the naive loop's bit for bit.

use super::{DatasetError, Result};
use crate::kernels;
use crate::metric::Metric;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::time::Duration;

/// Default number of neighbours per query.
pub const DEFAULT_K: usize = 100;

/// The exact top-k of every query.
#[derive(Clone, Debug, PartialEq)]
pub struct GroundTruth {
    /// Number of queries.
    pub n_queries: usize,
    /// Neighbours per query.
    pub k: usize,
    /// `n_queries × k` base ids, each row closest first.
    pub ids: Vec<u32>,
    /// `n_queries × k` distances matching `ids` (smaller is closer; for
    /// [`Metric::Ip`] this is the negated inner product).
    pub distances: Vec<f32>,
}

impl GroundTruth {
    /// The ids of query `q`, closest first.
    pub fn row(&self, q: usize) -> &[u32] {
        &self.ids[q * self.k..(q + 1) * self.k]
    }
}

/// A candidate ordered by (distance, id) with a total order on floats.
#[derive(Clone, Copy, Debug)]
struct Cand {
    dist: f32,
    id: u32,
}

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    fn cmp(&self, o: &Self) -> Ordering {
        self.dist.total_cmp(&o.dist).then(self.id.cmp(&o.id))
    }
}

/// The k best candidates seen so far; the heap's top is the worst kept.
struct TopK {
    k: usize,
    heap: BinaryHeap<Cand>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
        }
    }

    #[inline]
    fn push(&mut self, c: Cand) {
        if self.heap.len() < self.k {
            self.heap.push(c);
        } else if let Some(mut top) = self.heap.peek_mut() {
            if c < *top {
                *top = c;
            }
        }
    }
}

fn resolve_threads(threads: usize) -> usize {
    if threads > 0 {
        threads
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Rows per tile so that a tile of `dim`-d f32 rows is about `bytes` big.
fn tile_rows(dim: usize, bytes: usize, min: usize, max: usize) -> usize {
    (bytes / (dim * 4).max(1)).clamp(min, max)
}

/// Exact top-`k` of every query in `queries` among `base` (both row-major
/// f32 with `dim` columns) under `metric`, on `threads` threads (0 = all
/// cores). `progress(done, total)` is called on the calling thread with the
/// number of base rows processed (summed over threads).
pub fn exact_knn(
    base: &[f32],
    queries: &[f32],
    dim: usize,
    k: usize,
    metric: Metric,
    threads: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<GroundTruth> {
    let arg = |s: String| Err(DatasetError::InvalidArgument(s));
    if dim == 0 {
        return arg("ground truth: dimension must be > 0".into());
    }
    if !base.len().is_multiple_of(dim) || !queries.len().is_multiple_of(dim) {
        return arg(format!(
            "ground truth: base ({} values) and queries ({} values) must both be multiples of dim {dim}",
            base.len(),
            queries.len()
        ));
    }
    let n = base.len() / dim;
    let nq = queries.len() / dim;
    if k == 0 || k > n {
        return arg(format!("ground truth: k = {k} must be between 1 and the base size {n}"));
    }
    if u32::try_from(n).is_err() {
        return arg(format!("ground truth: base size {n} exceeds u32 ids"));
    }
    let threads = resolve_threads(threads).min(n.div_ceil(64)).max(1);
    let base_tile = tile_rows(dim, 512 << 10, 16, 4096);
    let query_tile = tile_rows(dim, 256 << 10, 4, 256);

    let norms = |v: &[f32]| -> Vec<f32> { v.chunks_exact(dim).map(|r| kernels::dot(r, r)).collect() };
    let qnorms = if metric == Metric::Cosine {
        norms(queries)
    } else {
        Vec::new()
    };

    let done = AtomicUsize::new(0);
    let per = n.div_ceil(threads);
    let work = |t: usize, report: &mut dyn FnMut()| -> Vec<TopK> {
        let lo = (t * per).min(n);
        let hi = ((t + 1) * per).min(n);
        let mut heaps: Vec<TopK> = (0..nq).map(|_| TopK::new(k)).collect();
        let mut bnorms = Vec::new();
        let mut b0 = lo;
        while b0 < hi {
            let b1 = (b0 + base_tile).min(hi);
            let tile = &base[b0 * dim..b1 * dim];
            if metric == Metric::Cosine {
                bnorms = norms(tile);
            }
            for q0 in (0..nq).step_by(query_tile) {
                let q1 = (q0 + query_tile).min(nq);
                for (qi, heap) in (q0..q1).zip(&mut heaps[q0..q1]) {
                    let q = &queries[qi * dim..(qi + 1) * dim];
                    for (j, b) in tile.chunks_exact(dim).enumerate() {
                        let dist = match metric {
                            Metric::L2 => kernels::l2_sq(q, b),
                            Metric::Ip => -kernels::dot(q, b),
                            Metric::Cosine => {
                                let (aa, bb) = (qnorms[qi], bnorms[j]);
                                if aa == 0.0 || bb == 0.0 {
                                    1.0
                                } else {
                                    1.0 - kernels::dot(q, b) / (aa.sqrt() * bb.sqrt())
                                }
                            }
                        };
                        heap.push(Cand {
                            dist,
                            id: (b0 + j) as u32,
                        });
                    }
                }
            }
            done.fetch_add(b1 - b0, AtomicOrdering::Relaxed);
            report();
            b0 = b1;
        }
        heaps
    };

    let mut all: Vec<Vec<TopK>> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..threads)
            .map(|t| {
                let work = &work;
                s.spawn(move || work(t, &mut || {}))
            })
            .collect();
        let mut report = || progress(done.load(AtomicOrdering::Relaxed), n);
        let mine = work(0, &mut report);
        while handles.iter().any(|h| !h.is_finished()) {
            std::thread::sleep(Duration::from_millis(50));
            report();
        }
        let mut all = vec![mine];
        all.extend(
            handles
                .into_iter()
                .map(|h| h.join().expect("ground-truth worker panicked")),
        );
        all
    });
    progress(n, n);

    let mut ids = Vec::with_capacity(nq * k);
    let mut distances = Vec::with_capacity(nq * k);
    let mut merged: Vec<Cand> = Vec::with_capacity(k * threads);
    for q in 0..nq {
        merged.clear();
        for heaps in all.iter_mut() {
            merged.extend(std::mem::take(&mut heaps[q].heap).into_vec());
        }
        merged.sort_unstable();
        for c in &merged[..k] {
            ids.push(c.id);
            distances.push(c.dist);
        }
    }
    Ok(GroundTruth {
        n_queries: nq,
        k,
        ids,
        distances,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn naive(base: &[f32], queries: &[f32], dim: usize, k: usize, m: Metric) -> GroundTruth {
        let mut ids = Vec::new();
        let mut distances = Vec::new();
        for q in queries.chunks_exact(dim) {
            let mut all: Vec<(f32, u32)> = base
                .chunks_exact(dim)
                .enumerate()
                .map(|(i, b)| (m.distance(q, b), i as u32))
                .collect();
            all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            ids.extend(all[..k].iter().map(|x| x.1));
            distances.extend(all[..k].iter().map(|x| x.0));
        }
        GroundTruth {
            n_queries: queries.len() / dim,
            k,
            ids,
            distances,
        }
    }

    fn random(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n * dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()
    }

    #[test]
    fn matches_naive_for_every_metric_and_thread_count() {
        for &(n, nq, dim, k) in &[(700, 37, 24, 10), (300, 5, 1024, 7), (65, 3, 3, 65)] {
            let base = random(n, dim, n as u64);
            let queries = random(nq, dim, 99);
            for m in Metric::ALL {
                let want = naive(&base, &queries, dim, k, m);
                for threads in [1, 2, 3] {
                    let got = exact_knn(&base, &queries, dim, k, m, threads, &mut |_, _| {}).unwrap();
                    assert_eq!(got, want, "{m} n={n} dim={dim} threads={threads}");
                }
            }
        }
    }

    #[test]
    fn ties_rank_smaller_id_first() {
        // Every base row identical: the answer is ids 0..k in order.
        let dim = 8;
        let base = vec![0.5f32; 500 * dim];
        let q = vec![0.25f32; dim];
        let gt = exact_knn(&base, &q, dim, 10, Metric::L2, 2, &mut |_, _| {}).unwrap();
        assert_eq!(gt.row(0), (0..10).collect::<Vec<u32>>().as_slice());
    }

    #[test]
    fn progress_reaches_total_and_bad_arguments_fail() {
        let base = random(200, 4, 1);
        let mut last = (0, 0);
        exact_knn(&base, &base[..8], 4, 5, Metric::L2, 2, &mut |d, t| last = (d, t)).unwrap();
        assert_eq!(last, (200, 200));
        for (k, dim) in [(0, 4), (201, 4), (5, 0), (5, 3)] {
            let r = exact_knn(&base, &base[..8], dim, k, Metric::L2, 1, &mut |_, _| {});
            assert!(matches!(r, Err(DatasetError::InvalidArgument(_))), "k={k} dim={dim}");
        }
    }
}
