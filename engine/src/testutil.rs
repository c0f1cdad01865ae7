//! Test fixtures shared by module tests: small clustered data sets and
//! small indexes built from them.

use crate::format::StoredType;
use crate::graph::BuildParams;
use crate::index::{build_index, IndexBuildOptions};
use crate::Metric;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

/// n points (+ nq queries) around 32 random centres in [-1, 1]^dim with
/// Gaussian-ish noise.
pub fn clustered(n: usize, nq: usize, dim: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let centres: Vec<f32> = (0..32 * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
    let mut gen = |count: usize| {
        let mut out = Vec::with_capacity(count * dim);
        for _ in 0..count {
            let c = rng.random_range(0..32);
            for d in 0..dim {
                let noise: f32 = (0..3).map(|_| rng.random_range(-0.25f32..0.25)).sum();
                out.push(centres[c * dim + d] + noise);
            }
        }
        out
    };
    let base = gen(n);
    let queries = gen(nq);
    (base, queries)
}

/// Exact top-k ids by brute force.
pub fn exact_knn(base: &[f32], queries: &[f32], dim: usize, k: usize, metric: Metric) -> Vec<Vec<u64>> {
    queries
        .chunks_exact(dim)
        .map(|q| {
            let mut d: Vec<(f32, u64)> = base
                .chunks_exact(dim)
                .enumerate()
                .map(|(i, x)| (metric.distance(q, x), i as u64))
                .collect();
            d.sort_by(|a, b| a.partial_cmp(b).unwrap());
            d.into_iter().take(k).map(|x| x.1).collect()
        })
        .collect()
}

/// recall@k of `got` against `truth`.
pub fn recall(got: &[Vec<u64>], truth: &[Vec<u64>], k: usize) -> f64 {
    let hits: usize = got
        .iter()
        .zip(truth)
        .map(|(g, t)| g.iter().take(k).filter(|x| t[..k].contains(x)).count())
        .sum();
    hits as f64 / (k * truth.len()) as f64
}

/// Build options for small test indexes.
pub fn options(metric: Metric, stored: StoredType, r: usize, pq_bytes: usize) -> IndexBuildOptions {
    let mut g = BuildParams::new(r, 2 * r);
    g.threads = 2;
    IndexBuildOptions {
        metric,
        graph: g,
        pq_bytes,
        stored,
        nav_sample: 200,
        rerank_file: false,
        opq: false,
        ram_budget: None,
        colocate: true,
    }
}

/// Build an index of `base` into `dir` with ids 0..n.
pub fn build(base: &[f32], dim: usize, dir: &std::path::Path, o: &IndexBuildOptions) {
    let ids: Vec<u64> = (0..(base.len() / dim) as u64).collect();
    build_index(base.into(), dim, &ids, dir, o, &mut |_, _, _| {}).unwrap();
}
