//! The benchmark's vectors: base rows by live id, and exact ground truth
//! over the live set.

use super::*;

/// The vectors of the benchmark: base rows by id.
pub(crate) struct World<'a> {
    pub(crate) dim: usize,
    pub(crate) base: &'a [f32],
    /// External id → base row, for every live id.
    pub(crate) row_of: HashMap<u64, usize>,
    /// Live ids (order irrelevant).
    pub(crate) live: Vec<u64>,
}

impl World<'_> {
    pub(crate) fn row(&self, r: usize) -> &[f32] {
        &self.base[r * self.dim..(r + 1) * self.dim]
    }

    pub(crate) fn vec_of(&self, id: u64) -> &[f32] {
        self.row(self.row_of[&id])
    }
}

/// Exact top-k over the live set, with external ids.
pub(crate) struct Truth {
    pub(crate) k: usize,
    pub(crate) ids: Vec<u64>,
    /// Distance of each query's k-th neighbour.
    pub(crate) kth: Vec<f32>,
}

pub(crate) fn ground_truth(w: &World, queries: &[f32], k: usize, threads: usize) -> Result<(Truth, f64)> {
    let t = Instant::now();
    let mut data = Vec::with_capacity(w.live.len() * w.dim);
    for &id in &w.live {
        data.extend_from_slice(w.vec_of(id));
    }
    let gt: GroundTruth =
        exact_knn(&data, queries, w.dim, k, Metric::L2, threads, &mut |_, _| {}).context("exact ground truth")?;
    let ids = gt.ids.iter().map(|&i| w.live[i as usize]).collect();
    let kth = (0..gt.n_queries).map(|q| gt.distances[q * gt.k + gt.k - 1]).collect();
    Ok((Truth { k, ids, kth }, t.elapsed().as_secs_f64()))
}
