//! Local intrinsic dimension (LID) of a data set, by the maximum-likelihood
//! estimator of Levina and Bickel (2004) with k = 20 neighbours.
//!
//! Owns: the "how hard is this data set" number printed beside every
//! result, and its exact definition:
//!
//! * a deterministic sample of `s` base points (default 1000, seeded);
//! * for each, its k nearest neighbours among the whole base under squared
//!   L2, excluding the point itself (exact, by [`super::groundtruth`]);
//! * per point, with r_1 ≤ … ≤ r_k the neighbour distances:
//!   `LID = 1 / ( (1/(k−1)) Σ_{j=1}^{k−1} ln(r_k / r_j) )`;
//! * the reported figure is the arithmetic **mean of the per-point
//!   estimates** (Levina–Bickel's averaging). The median and the harmonic
//!   mean (MacKay–Ghahramani's averaging of inverses) are reported too.
//!
//! Points whose neighbour distances include a zero (exact duplicates) or are
//! all equal have no finite estimate and are skipped and counted.

use super::groundtruth::exact_knn;
use super::{DatasetError, Result};
use crate::metric::Metric;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Default neighbours per point.
pub const DEFAULT_K: usize = 20;
/// Default number of sampled points.
pub const DEFAULT_SAMPLE: usize = 1000;
/// Default seed of the sample.
pub const DEFAULT_SEED: u64 = 0x11D;

/// How to estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LidParams {
    /// Neighbours per point (≥ 2).
    pub k: usize,
    /// Points sampled (all of them if the base is smaller).
    pub sample: usize,
    /// Seed of the sample.
    pub seed: u64,
}

impl Default for LidParams {
    fn default() -> Self {
        LidParams {
            k: DEFAULT_K,
            sample: DEFAULT_SAMPLE,
            seed: DEFAULT_SEED,
        }
    }
}

/// The estimate and how it was made.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LidEstimate {
    /// Mean of the per-point estimates: the figure to report.
    pub mean: f64,
    /// Median of the per-point estimates.
    pub median: f64,
    /// Inverse of the mean of the inverse estimates.
    pub harmonic: f64,
    /// Neighbours per point.
    pub k: usize,
    /// Points with a finite estimate.
    pub points: usize,
    /// Sampled points skipped (duplicate or equidistant neighbours).
    pub skipped: usize,
    /// Size of the base.
    pub n: usize,
}

/// The MLE estimate of one point from its k nearest **squared** distances,
/// sorted ascending, or `None` when it is not finite.
pub fn point_lid(sq_dists: &[f32]) -> Option<f64> {
    let k = sq_dists.len();
    if k < 2 {
        return None;
    }
    let rk = sq_dists[k - 1] as f64;
    let mut sum = 0.0f64;
    for &d in &sq_dists[..k - 1] {
        let d = d as f64;
        if d <= 0.0 || !d.is_finite() {
            return None;
        }
        // ln(r_k / r_j) on distances = ½ ln on squared distances.
        sum += 0.5 * (rk / d).ln();
    }
    let mean = sum / (k - 1) as f64;
    if mean > 0.0 && mean.is_finite() {
        Some(1.0 / mean)
    } else {
        None
    }
}

/// Estimates the LID of `base` (row-major, `dim` columns) on `threads`
/// threads (0 = all cores); `progress(done, total)` counts base rows scanned.
pub fn lid_mle(
    base: &[f32],
    dim: usize,
    params: &LidParams,
    threads: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LidEstimate> {
    if dim == 0 || !base.len().is_multiple_of(dim) {
        return Err(DatasetError::InvalidArgument(format!(
            "LID: base of {} values is not a whole number of rows of dim {dim}",
            base.len()
        )));
    }
    let n = base.len() / dim;
    let k = params.k;
    if k < 2 || k + 1 > n {
        return Err(DatasetError::InvalidArgument(format!(
            "LID: k = {k} needs 2 <= k < base size {n}"
        )));
    }
    let s = params.sample.min(n);
    if s == 0 {
        return Err(DatasetError::InvalidArgument("LID: sample size must be > 0".into()));
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(params.seed);
    let mut sample = rand::seq::index::sample(&mut rng, n, s).into_vec();
    sample.sort_unstable();
    let mut queries = Vec::with_capacity(s * dim);
    for &i in &sample {
        queries.extend_from_slice(&base[i * dim..(i + 1) * dim]);
    }
    let gt = exact_knn(base, &queries, dim, k + 1, Metric::L2, threads, progress)?;

    let mut estimates = Vec::with_capacity(s);
    let mut dists = Vec::with_capacity(k + 1);
    for (q, &self_id) in sample.iter().enumerate() {
        dists.clear();
        let row = q * (k + 1)..(q + 1) * (k + 1);
        for (&id, &d) in gt.ids[row.clone()].iter().zip(&gt.distances[row]) {
            if id as usize != self_id {
                dists.push(d);
            }
        }
        dists.truncate(k);
        if let Some(l) = point_lid(&dists) {
            estimates.push(l);
        }
    }
    let points = estimates.len();
    if points == 0 {
        return Err(DatasetError::InvalidArgument(format!(
            "LID: none of the {s} sampled points has a finite estimate (duplicate vectors?)"
        )));
    }
    let mean = estimates.iter().sum::<f64>() / points as f64;
    let harmonic = points as f64 / estimates.iter().map(|x| 1.0 / x).sum::<f64>();
    estimates.sort_by(f64::total_cmp);
    let median = if points % 2 == 1 {
        estimates[points / 2]
    } else {
        0.5 * (estimates[points / 2 - 1] + estimates[points / 2])
    };
    Ok(LidEstimate {
        mean,
        median,
        harmonic,
        k,
        points,
        skipped: s - points,
        n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;
    use rand_distr::StandardNormal;

    fn gaussian(n: usize, dim: usize, intrinsic: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut v = vec![0.0f32; n * dim];
        for row in v.chunks_exact_mut(dim) {
            for x in &mut row[..intrinsic] {
                *x = rng.sample(StandardNormal);
            }
        }
        v
    }

    #[test]
    fn recovers_the_dimension_of_a_flat_gaussian() {
        for (intrinsic, lo, hi) in [(2, 1.6, 2.4), (6, 4.8, 7.2)] {
            let base = gaussian(20_000, 16, intrinsic, 7);
            let p = LidParams {
                sample: 300,
                ..LidParams::default()
            };
            let est = lid_mle(&base, 16, &p, 2, &mut |_, _| {}).unwrap();
            assert!(
                est.mean > lo && est.mean < hi,
                "intrinsic {intrinsic}: estimate {est:?}"
            );
            assert_eq!(est.points + est.skipped, 300);
        }
    }

    #[test]
    fn duplicates_are_skipped_and_sample_is_deterministic() {
        let mut base = gaussian(2000, 4, 4, 3);
        let copy = base[..4].to_vec();
        for r in 1..30 {
            base[r * 4..r * 4 + 4].copy_from_slice(&copy);
        }
        let p = LidParams {
            sample: 2000,
            ..LidParams::default()
        };
        let a = lid_mle(&base, 4, &p, 1, &mut |_, _| {}).unwrap();
        assert!(a.skipped >= 30, "{a:?}");
        let b = lid_mle(&base, 4, &p, 2, &mut |_, _| {}).unwrap();
        assert_eq!(a, b);
        assert_eq!(point_lid(&[1.0, 1.0, 1.0]), None);
        assert_eq!(point_lid(&[0.0, 1.0, 2.0]), None);
    }
}
