//! k-means++ seeding then Lloyd's iterations, for the partitioned build's
//! shard centres; and the two nearest centres of a row.
//!
//! Owns: choosing k centres over a sample, deterministically (seeded,
//! parallel work merged in index order, whatever the thread count). Does
//! not own: PQ's per-subspace k-means (`pq::kmeans`, random seeding, tiny
//! k), reading rows, or what the shards are for.

use crate::kernels;
use crate::parallel::map_indexed;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

#[inline]
fn row(data: &[f32], dim: usize, i: usize) -> &[f32] {
    &data[i * dim..(i + 1) * dim]
}

/// The nearest and second-nearest centre of `x` (L2²; ties to the lower
/// index). With one centre both are 0.
pub fn two_nearest(centres: &[f32], dim: usize, x: &[f32]) -> (u32, u32) {
    let (mut b0, mut d0, mut b1, mut d1) = (0u32, f32::INFINITY, 0u32, f32::INFINITY);
    for (c, cv) in centres.chunks_exact(dim).enumerate() {
        let d = kernels::l2_sq(x, cv);
        if d < d0 {
            (b1, d1) = (b0, d0);
            (b0, d0) = (c as u32, d);
        } else if d < d1 {
            (b1, d1) = (c as u32, d);
        }
    }
    if d1.is_infinite() {
        b1 = b0;
    }
    (b0, b1)
}

/// k centres (k × dim) of `data` (n × dim): k-means++ seeding (each next
/// centre drawn with probability proportional to its squared distance
/// from the nearest chosen one), then `iters` Lloyd iterations; an empty
/// cluster takes the point farthest from its centre. Needs n ≥ k ≥ 1.
pub fn kmeans_pp(data: &[f32], dim: usize, k: usize, iters: usize, seed: u64, threads: usize) -> Vec<f32> {
    let n = data.len() / dim;
    assert!(k >= 1 && n >= k, "k-means needs n ({n}) ≥ k ({k}) ≥ 1");
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed ^ 0x4b4d_2b2b);
    let mut cents: Vec<f32> = Vec::with_capacity(k * dim);
    cents.extend_from_slice(row(data, dim, rng.random_range(0..n)));
    let mut best: Vec<f32> = map_indexed(
        n,
        threads,
        || (),
        |_, i| kernels::l2_sq(row(data, dim, i), &cents[..dim]),
    );
    while cents.len() < k * dim {
        let total: f64 = best.iter().map(|&d| d as f64).sum();
        let pick = if total > 0.0 {
            let mut t = rng.random::<f64>() * total;
            let mut pick = n - 1;
            for (i, &d) in best.iter().enumerate() {
                t -= d as f64;
                if t < 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            // Every point sits on a centre already: any one will do.
            rng.random_range(0..n)
        };
        let c0 = cents.len();
        cents.extend_from_slice(row(data, dim, pick));
        let newc = &cents[c0..];
        let d: Vec<f32> = map_indexed(n, threads, || (), |_, i| kernels::l2_sq(row(data, dim, i), newc));
        for (b, d) in best.iter_mut().zip(d) {
            *b = b.min(d);
        }
    }
    for _ in 0..iters {
        let assign: Vec<(u32, f32)> = map_indexed(
            n,
            threads,
            || (),
            |_, i| {
                let x = row(data, dim, i);
                let (c, _) = two_nearest(&cents, dim, x);
                (c, kernels::l2_sq(x, row(&cents, dim, c as usize)))
            },
        );
        let mut sums = vec![0f64; k * dim];
        let mut counts = vec![0usize; k];
        for (i, &(c, _)) in assign.iter().enumerate() {
            counts[c as usize] += 1;
            for (s, x) in sums[c as usize * dim..(c as usize + 1) * dim]
                .iter_mut()
                .zip(row(data, dim, i))
            {
                *s += *x as f64;
            }
        }
        let mut far: Vec<(f32, usize)> = assign.iter().enumerate().map(|(i, &(_, d))| (d, i)).collect();
        // Farthest first; ties to the lower index.
        far.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut far = far.into_iter();
        for c in 0..k {
            let out = &mut cents[c * dim..(c + 1) * dim];
            if counts[c] > 0 {
                for (o, s) in out.iter_mut().zip(&sums[c * dim..(c + 1) * dim]) {
                    *o = (*s / counts[c] as f64) as f32;
                }
            } else if let Some((_, i)) = far.next() {
                out.copy_from_slice(row(data, dim, i));
            }
        }
    }
    cents
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs(per: usize, centres: &[[f32; 2]], seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut v = Vec::new();
        for i in 0..per * centres.len() {
            let c = centres[i % centres.len()];
            v.push(c[0] + rng.random_range(-0.5..0.5));
            v.push(c[1] + rng.random_range(-0.5..0.5));
        }
        v
    }

    #[test]
    fn finds_separated_blobs_and_is_the_same_on_any_thread_count() {
        let truth = [[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0], [40.0, 40.0]];
        let data = blobs(200, &truth, 3);
        let c1 = kmeans_pp(&data, 2, 5, 8, 7, 1);
        assert_eq!(c1, kmeans_pp(&data, 2, 5, 8, 7, 3), "thread count changed the centres");
        for t in truth {
            let near = c1
                .chunks_exact(2)
                .any(|c| (c[0] - t[0]).abs() < 0.5 && (c[1] - t[1]).abs() < 0.5);
            assert!(near, "no centre near {t:?}: {c1:?}");
        }
        assert_ne!(c1, kmeans_pp(&data, 2, 5, 8, 8, 1), "the seed is used");
    }

    #[test]
    fn two_nearest_orders_by_distance_and_ties_to_the_lower_index() {
        let c = [0.0, 0.0, 10.0, 0.0, 4.0, 0.0, 4.0, 0.0];
        assert_eq!(two_nearest(&c, 2, &[5.0, 0.0]), (2, 3));
        assert_eq!(two_nearest(&c, 2, &[9.0, 0.0]), (1, 2));
        assert_eq!(two_nearest(&c[..2], 2, &[9.0, 0.0]), (0, 0));
    }

    #[test]
    fn identical_points_still_give_k_centres() {
        let data = vec![1.0f32; 2 * 10];
        assert_eq!(kmeans_pp(&data, 2, 3, 2, 1, 2).len(), 6);
    }
}
