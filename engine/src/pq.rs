//! Product quantisation: per-subspace k-means with 256 centroids, encoding,
//! and asymmetric distance (ADC) tables per query.
//!
//! Owns: the codebook (global centre and centroids), training, encoding
//! and ADC. Does not own: where codes live (`search` keeps them in RAM;
//! `format` stores them).
//!
//! Vectors are centred (minus the training mean) before splitting into M
//! contiguous subspaces whose widths differ by at most one. Training is
//! deterministic for a seed: the sample and the initial centroids come from
//! a seeded RNG, and subspaces are independent (they are the unit of
//! parallelism), so the thread count does not change the result.

use crate::kernels;
use crate::parallel::map_indexed;
use crate::Metric;
use rand::seq::index::sample;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

/// Centroids per subspace.
pub const KS: usize = 256;

/// Training settings.
#[derive(Clone, Debug)]
pub struct PqParams {
    /// Bytes per code = number of subspaces.
    pub m: usize,
    /// Training sample size (capped at n).
    pub sample: usize,
    /// Lloyd iterations.
    pub iters: usize,
    /// Seed.
    pub seed: u64,
    /// Worker threads.
    pub threads: usize,
    /// Learn an OPQ rotation first (see [`crate::opq`]).
    pub opq: bool,
}

impl PqParams {
    /// Defaults: 64k sample, 12 iterations.
    pub fn new(m: usize, seed: u64, threads: usize) -> Self {
        PqParams {
            m,
            sample: 65_536,
            iters: 12,
            seed,
            threads,
            opq: false,
        }
    }
}

/// A trained product quantiser.
#[derive(Clone, Debug, PartialEq)]
pub struct PqCodebook {
    dim: usize,
    m: usize,
    /// Subspace boundaries, length m + 1.
    offsets: Vec<usize>,
    /// Training mean, subtracted before encoding.
    centre: Vec<f32>,
    /// Centroids: subspace j occupies KS × width_j floats starting at
    /// KS × offsets[j].
    centroids: Vec<f32>,
    /// Optional OPQ rotation (dim × dim, rows orthonormal) applied to the
    /// centred vector before splitting.
    rotation: Option<Vec<f32>>,
    /// The same centroids transposed per subspace (width_j rows of KS), so
    /// one query dimension updates all 256 partial distances in SIMD.
    /// Derived from `centroids`; not stored on disk.
    transposed: Vec<f32>,
}

/// Transpose each subspace's KS × w block into w × KS.
fn transpose(centroids: &[f32], offsets: &[usize]) -> Vec<f32> {
    let mut t = vec![0f32; centroids.len()];
    for j in 0..offsets.len() - 1 {
        let (a, b) = (offsets[j], offsets[j + 1]);
        let w = b - a;
        let block = &centroids[KS * a..KS * b];
        let out = &mut t[KS * a..KS * b];
        for c in 0..KS {
            for d in 0..w {
                out[d * KS + c] = block[c * w + d];
            }
        }
    }
    t
}

/// Errors of PQ training and decoding.
#[derive(Debug, thiserror::Error)]
pub enum PqError {
    /// Parameters that cannot work.
    #[error("invalid PQ parameters: {0}")]
    Invalid(String),
}

/// The rows of n vectors PQ training reads, ascending: a seeded sample
/// of `p.sample`. Training on exactly these rows, in this order, gives the
/// same codebook as training on all n (a build that streams its data
/// reads only them).
pub fn training_rows(n: usize, p: &PqParams) -> Vec<usize> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(p.seed ^ 0x5051_5052);
    let mut ids: Vec<usize> = sample(&mut rng, n, p.sample.min(n)).into_vec();
    ids.sort_unstable();
    ids
}

impl PqCodebook {
    fn offsets(dim: usize, m: usize) -> Vec<usize> {
        (0..=m).map(|j| j * dim / m).collect()
    }

    /// Train on `data` (n × dim row-major).
    pub fn train(data: &[f32], dim: usize, p: &PqParams) -> Result<Self, PqError> {
        let n = data.len() / dim.max(1);
        if p.m == 0 || p.m > dim {
            return Err(PqError::Invalid(format!(
                "pq bytes {} must be in 1..={dim} (the dimension)",
                p.m
            )));
        }
        if n == 0 {
            return Err(PqError::Invalid("no training vectors".into()));
        }
        let ids = training_rows(n, p);
        let s = ids.len();
        let mut centre = vec![0f64; dim];
        for &i in &ids {
            for (c, x) in centre.iter_mut().zip(&data[i * dim..(i + 1) * dim]) {
                *c += *x as f64;
            }
        }
        let centre: Vec<f32> = centre.iter().map(|c| (c / s as f64) as f32).collect();
        let offsets = Self::offsets(dim, p.m);
        let init_seed = p.seed;
        // Centred (and, with OPQ, rotated) training rows.
        let mut rows: Vec<Vec<f32>> = ids
            .iter()
            .map(|&i| {
                data[i * dim..(i + 1) * dim]
                    .iter()
                    .zip(&centre)
                    .map(|(x, c)| x - c)
                    .collect()
            })
            .collect();
        let rotation = p
            .opq
            .then(|| crate::opq::rotation(&rows[..rows.len().min(20_000)], dim, &offsets));
        if let Some(r) = &rotation {
            let mut tmp = vec![0f32; dim];
            for row in rows.iter_mut() {
                crate::opq::rotate(r, row, &mut tmp);
                row.copy_from_slice(&tmp);
            }
        }
        let per_sub: Vec<Vec<f32>> = map_indexed(
            p.m,
            p.threads,
            || (),
            |_, j| {
                let (a, b) = (offsets[j], offsets[j + 1]);
                let w = b - a;
                let mut sub = Vec::with_capacity(s * w);
                for row in &rows {
                    sub.extend_from_slice(&row[a..b]);
                }
                kmeans(&sub, w, KS, p.iters, init_seed.wrapping_add(j as u64))
            },
        );
        let centroids = per_sub.concat();
        let transposed = transpose(&centroids, &offsets);
        Ok(PqCodebook {
            dim,
            m: p.m,
            offsets,
            centre,
            centroids,
            rotation,
            transposed,
        })
    }

    /// Whether an OPQ rotation is applied.
    pub fn rotated(&self) -> bool {
        self.rotation.is_some()
    }

    /// Dimensions.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Bytes per code.
    pub fn m(&self) -> usize {
        self.m
    }

    /// Transposed centroids of subspace j (w rows of KS).
    fn sub_transposed(&self, j: usize) -> &[f32] {
        &self.transposed[KS * self.offsets[j]..KS * self.offsets[j + 1]]
    }

    fn sub_centroids(&self, j: usize) -> (&[f32], usize) {
        let (a, b) = (self.offsets[j], self.offsets[j + 1]);
        let w = b - a;
        (&self.centroids[KS * a..KS * b], w)
    }

    /// Encode one vector.
    pub fn encode(&self, v: &[f32], out: &mut [u8]) {
        let mut r = vec![0f32; self.dim];
        for ((o, x), c) in r.iter_mut().zip(v).zip(&self.centre) {
            *o = x - c;
        }
        if let Some(rot) = &self.rotation {
            let centred = r.clone();
            crate::opq::rotate(rot, &centred, &mut r);
        }
        let mut acc = [0f32; KS];
        for (j, code) in out.iter_mut().enumerate().take(self.m) {
            let x = &r[self.offsets[j]..self.offsets[j + 1]];
            *code = nearest_t(self.sub_transposed(j), x, &mut acc).0 as u8;
        }
    }

    /// Encode n vectors in parallel (deterministic).
    pub fn encode_all(&self, data: &[f32], threads: usize) -> Vec<u8> {
        let n = data.len() / self.dim;
        let rows: Vec<Vec<u8>> = map_indexed(
            n,
            threads,
            || (),
            |_, i| {
                let mut c = vec![0u8; self.m];
                self.encode(&data[i * self.dim..(i + 1) * self.dim], &mut c);
                c
            },
        );
        rows.concat()
    }

    /// Reconstruct a vector from its code.
    pub fn decode(&self, code: &[u8], out: &mut [f32]) {
        let mut y = vec![0f32; self.dim];
        for j in 0..self.m {
            let (cents, w) = self.sub_centroids(j);
            let (a, b) = (self.offsets[j], self.offsets[j + 1]);
            y[a..b].copy_from_slice(&cents[code[j] as usize * w..(code[j] as usize + 1) * w]);
        }
        match &self.rotation {
            // x = Rᵀ y + μ
            Some(rot) => {
                out[..self.dim].fill(0.0);
                for (i, yi) in y.iter().enumerate() {
                    for (o, r) in out.iter_mut().zip(&rot[i * self.dim..(i + 1) * self.dim]) {
                        *o += yi * r;
                    }
                }
                for (o, m) in out.iter_mut().zip(&self.centre) {
                    *o += m;
                }
            }
            None => {
                for ((o, x), m) in out.iter_mut().zip(&y).zip(&self.centre) {
                    *o = x + m;
                }
            }
        }
    }

    /// The ADC table for query `q` (cosine queries must be normalised by
    /// the caller). Entry [j][c] is the contribution of centroid c of
    /// subspace j; summing over a code's entries approximates the distance
    /// up to a per-query constant for IP.
    pub fn table(&self, q: &[f32], metric: Metric, out: &mut AdcTable) {
        out.m = self.m;
        out.t.resize(self.m * KS, 0.0);
        // L2: ‖q − x‖² = ‖R(q − μ) − R(x − μ)‖². IP: ⟨q, x⟩ = ⟨q, μ⟩ +
        // ⟨Rq, R(x − μ)⟩; the constant −⟨q, μ⟩ goes into subspace 0's row so
        // the table sums to an estimate of −⟨q, x⟩ itself.
        let ip = metric == Metric::Ip;
        let mut qv: Vec<f32> = if ip {
            q.to_vec()
        } else {
            q.iter().zip(&self.centre).map(|(x, c)| x - c).collect()
        };
        if let Some(rot) = &self.rotation {
            let src = qv.clone();
            crate::opq::rotate(rot, &src, &mut qv);
        }
        for j in 0..self.m {
            let (a, b) = (self.offsets[j], self.offsets[j + 1]);
            let ct = &self.transposed[KS * a..KS * b];
            let row = &mut out.t[j * KS..(j + 1) * KS];
            row.fill(0.0);
            for d in a..b {
                let col = &ct[(d - a) * KS..(d - a + 1) * KS];
                if ip {
                    kernels::acc_mul(qv[d], col, row);
                } else {
                    kernels::acc_sq_diff(qv[d], col, row);
                }
            }
        }
        if ip {
            let shift = kernels::dot(q, &self.centre);
            out.t.iter_mut().for_each(|r| *r = -*r);
            out.t[..KS].iter_mut().for_each(|r| *r -= shift);
        }
    }

    /// Serialise: dim, m, centre, centroids, then the rotation if any
    /// (all little-endian; whether a rotation follows is recorded by the
    /// caller, in the pivots file's params[2]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.byte_len());
        b.extend_from_slice(&(self.dim as u32).to_le_bytes());
        b.extend_from_slice(&(self.m as u32).to_le_bytes());
        for x in self
            .centre
            .iter()
            .chain(&self.centroids)
            .chain(self.rotation.iter().flatten())
        {
            b.extend_from_slice(&x.to_le_bytes());
        }
        b
    }

    /// Length of [`to_bytes`](Self::to_bytes)'s output (also the RAM the
    /// codebook's tables take), without building it.
    pub fn byte_len(&self) -> usize {
        8 + 4 * (self.centre.len() + self.centroids.len() + self.rotation.as_ref().map_or(0, |r| r.len()))
    }

    /// Inverse of [`to_bytes`](Self::to_bytes); `Err` names what is wrong.
    pub fn from_bytes(b: &[u8], rotated: bool) -> Result<Self, String> {
        if b.len() < 8 {
            return Err(format!("{} bytes is too short for a PQ codebook", b.len()));
        }
        let dim = u32::from_le_bytes(b[0..4].try_into().expect("4")) as usize;
        let m = u32::from_le_bytes(b[4..8].try_into().expect("4")) as usize;
        if dim == 0 || m == 0 || m > dim {
            return Err(format!("dim {dim} and m {m} are inconsistent"));
        }
        // dim² overflows for a dim from a damaged header: checked.
        let want = dim
            .checked_mul(KS + 1)
            .and_then(|f| {
                if rotated {
                    f.checked_add(dim.checked_mul(dim)?)
                } else {
                    Some(f)
                }
            })
            .and_then(|f| f.checked_mul(4)?.checked_add(8));
        if want != Some(b.len()) {
            let want = want.map_or("more than 2^64".to_string(), |w| w.to_string());
            return Err(format!("expected {want} bytes for dim {dim}, m {m}; found {}", b.len()));
        }
        let floats: Vec<f32> = b[8..]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
            .collect();
        let offsets = Self::offsets(dim, m);
        let centroids = floats[dim..dim + KS * dim].to_vec();
        let rotation = rotated.then(|| floats[dim + KS * dim..].to_vec());
        let transposed = transpose(&centroids, &offsets);
        Ok(PqCodebook {
            dim,
            m,
            offsets,
            centre: floats[..dim].to_vec(),
            centroids,
            rotation,
            transposed,
        })
    }
}

/// A per-query ADC lookup table (M × 256 f32).
#[derive(Clone, Debug, Default)]
pub struct AdcTable {
    m: usize,
    t: Vec<f32>,
}

impl AdcTable {
    /// Approximate distance of the vector with `code`.
    ///
    /// Rows are fixed-size arrays indexed by a `u8`, so the compiler drops
    /// every per-lookup bounds check: one load and one add per subspace.
    #[inline]
    pub fn distance(&self, code: &[u8]) -> f32 {
        let (rows, _) = self.t.as_chunks::<KS>();
        let (rows, code) = (&rows[..self.m], &code[..self.m]);
        let (r4, r_rest) = rows.as_chunks::<4>();
        let (c4, c_rest) = code.as_chunks::<4>();
        let mut acc = [0f32; 4];
        for (r, c) in r4.iter().zip(c4) {
            acc[0] += r[0][c[0] as usize];
            acc[1] += r[1][c[1] as usize];
            acc[2] += r[2][c[2] as usize];
            acc[3] += r[3][c[3] as usize];
        }
        for (r, &c) in r_rest.iter().zip(c_rest) {
            acc[0] += r[c as usize];
        }
        (acc[0] + acc[1]) + (acc[2] + acc[3])
    }
}

/// Index and squared distance of the nearest centroid, given centroids
/// transposed to x.len() rows of `acc.len()` (ties → lowest index).
fn nearest_t(ct: &[f32], x: &[f32], acc: &mut [f32]) -> (usize, f32) {
    let k = acc.len();
    acc.fill(0.0);
    for (d, &xd) in x.iter().enumerate() {
        kernels::acc_sq_diff(xd, &ct[d * k..(d + 1) * k], acc);
    }
    let mut best = (0, f32::INFINITY);
    for (c, &d) in acc.iter().enumerate() {
        if d < best.1 {
            best = (c, d);
        }
    }
    best
}

/// Lloyd's k-means on `data` (rows of width w) with k centroids, seeded
/// random initialisation; empty clusters are re-seeded deterministically
/// from the point farthest from its centroid. Returns k × w floats.
pub fn kmeans(data: &[f32], w: usize, k: usize, iters: usize, seed: u64) -> Vec<f32> {
    let n = data.len() / w;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut cents = vec![0f32; k * w];
    if n == 0 {
        return cents;
    }
    let init: Vec<usize> = if n >= k {
        sample(&mut rng, n, k).into_vec()
    } else {
        (0..k).map(|i| i % n).collect()
    };
    for (c, &i) in init.iter().enumerate() {
        cents[c * w..(c + 1) * w].copy_from_slice(&data[i * w..(i + 1) * w]);
    }
    let mut assign = vec![0usize; n];
    let mut dists = vec![0f32; n];
    let mut acc = vec![0f32; k];
    let mut ct = vec![0f32; k * w];
    for _ in 0..iters {
        for c in 0..k {
            for d in 0..w {
                ct[d * k + c] = cents[c * w + d];
            }
        }
        for i in 0..n {
            let (c, d) = nearest_t(&ct, &data[i * w..(i + 1) * w], &mut acc);
            assign[i] = c;
            dists[i] = d;
        }
        let mut sums = vec![0f64; k * w];
        let mut counts = vec![0usize; k];
        for i in 0..n {
            let c = assign[i];
            counts[c] += 1;
            for (s, x) in sums[c * w..(c + 1) * w].iter_mut().zip(&data[i * w..(i + 1) * w]) {
                *s += *x as f64;
            }
        }
        for c in 0..k {
            if counts[c] > 0 {
                for (o, s) in cents[c * w..(c + 1) * w].iter_mut().zip(&sums[c * w..(c + 1) * w]) {
                    *o = (*s / counts[c] as f64) as f32;
                }
            } else {
                // Re-seed from the worst-served point (ties → lowest index).
                let (far, _) = dists
                    .iter()
                    .enumerate()
                    .fold((0, -1.0f32), |b, (i, d)| if *d > b.1 { (i, *d) } else { b });
                cents[c * w..(c + 1) * w].copy_from_slice(&data[far * w..(far + 1) * w]);
                dists[far] = 0.0;
            }
        }
    }
    cents
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// Found by the `pq_codebook` fuzz target (input kept as
    /// fuzz/corpus/pq_codebook/crash-rotated-size-overflow: a rotated
    /// codebook header of dim 0xc1ff1000, m 0xbede240a): the expected size
    /// 8 + 4 (257 dim + dim²) overflowed.
    #[test]
    fn a_huge_dim_is_an_error_not_an_overflow() {
        for (dim, m) in [(0xc1ff_1000u32, 0xbede_240au32), (u32::MAX, 1), (1 << 31, 1 << 31)] {
            let mut b = dim.to_le_bytes().to_vec();
            b.extend(m.to_le_bytes());
            for rotated in [false, true] {
                assert!(PqCodebook::from_bytes(&b, rotated).is_err(), "dim {dim}, m {m}");
            }
        }
    }

    fn data(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        // Clustered: 20 centres plus small noise, so PQ can do well.
        let centres: Vec<f32> = (0..20 * dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        (0..n)
            .flat_map(|i| {
                let c = (i * 7) % 20;
                let base = centres[c * dim..(c + 1) * dim].to_vec();
                let noise: Vec<f32> = (0..dim).map(|_| rng.random_range(-0.1..0.1)).collect();
                base.into_iter().zip(noise).map(|(a, b)| a + b).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn reconstruction_error_is_bounded_and_encoding_deterministic() {
        let (n, dim) = (3000, 32);
        let x = data(n, dim, 1);
        let pq = PqCodebook::train(
            &x,
            dim,
            &PqParams {
                m: 8,
                sample: 3000,
                iters: 10,
                seed: 7,
                threads: 2,
                opq: false,
            },
        )
        .unwrap();
        let codes = pq.encode_all(&x, 2);
        let mut rec = vec![0f32; dim];
        let mut err = 0f64;
        let mut energy = 0f64;
        let mean: Vec<f32> = (0..dim)
            .map(|d| x.iter().skip(d).step_by(dim).sum::<f32>() / n as f32)
            .collect();
        for i in 0..n {
            pq.decode(&codes[i * 8..(i + 1) * 8], &mut rec);
            err += kernels::l2_sq(&rec, &x[i * dim..(i + 1) * dim]) as f64;
            energy += kernels::l2_sq(&mean, &x[i * dim..(i + 1) * dim]) as f64;
        }
        // Relative error well below the data's variance (noise is ~1% of it).
        assert!(err / energy < 0.05, "relative reconstruction error {}", err / energy);
        // Same seed, different thread count: identical codebook and codes.
        let pq1 = PqCodebook::train(
            &x,
            dim,
            &PqParams {
                m: 8,
                sample: 3000,
                iters: 10,
                seed: 7,
                threads: 1,
                opq: false,
            },
        )
        .unwrap();
        assert_eq!(pq, pq1);
        assert_eq!(codes, pq1.encode_all(&x, 1));
        // Serialisation round trip.
        assert_eq!(PqCodebook::from_bytes(&pq.to_bytes(), false).unwrap(), pq);
        assert_eq!(pq.byte_len(), pq.to_bytes().len());
    }

    #[test]
    fn adc_matches_distance_to_reconstruction() {
        let dim = 24;
        let x = data(1000, dim, 2);
        let pq = PqCodebook::train(&x, dim, &PqParams::new(6, 3, 2)).unwrap();
        let q = &x[5 * dim..6 * dim];
        let mut rec = vec![0f32; dim];
        let mut t = AdcTable::default();
        for metric in [Metric::L2, Metric::Ip] {
            pq.table(q, metric, &mut t);
            for i in 0..50 {
                let mut code = vec![0u8; 6];
                pq.encode(&x[i * dim..(i + 1) * dim], &mut code);
                pq.decode(&code, &mut rec);
                let want = metric.distance(q, &rec);
                let got = t.distance(&code);
                assert!(
                    (want - got).abs() < 1e-3 * want.abs().max(1.0),
                    "{metric}: {want} vs {got}"
                );
            }
        }
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(PqCodebook::train(&[0.0; 8], 4, &PqParams::new(5, 0, 1)).is_err());
        assert!(PqCodebook::train(&[], 4, &PqParams::new(2, 0, 1)).is_err());
        assert!(PqCodebook::from_bytes(&[1, 2, 3], false).is_err());
    }

    #[test]
    fn opq_helps_low_rank_data_and_round_trips() {
        // Rank-3 signal spread over 32 dims by a random rotation: plain PQ
        // with 8 subspaces of 4 dims sees correlated, unbalanced subspaces.
        let (n, dim, rank) = (4000, 32, 3);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
        let basis: Vec<f32> = (0..rank * dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let x: Vec<f32> = (0..n)
            .flat_map(|_| {
                let z: Vec<f32> = (0..rank).map(|_| rng.random_range(-3.0f32..3.0)).collect();
                let basis = &basis;
                (0..dim)
                    .map(|d| (0..rank).map(|r| z[r] * basis[r * dim + d]).sum::<f32>())
                    .collect::<Vec<_>>()
            })
            .collect();
        let err = |pq: &PqCodebook| {
            let codes = pq.encode_all(&x, 2);
            let mut rec = vec![0f32; dim];
            (0..n)
                .map(|i| {
                    pq.decode(&codes[i * 4..(i + 1) * 4], &mut rec);
                    kernels::l2_sq(&rec, &x[i * dim..(i + 1) * dim]) as f64
                })
                .sum::<f64>()
        };
        let mut p = PqParams::new(4, 1, 2);
        let plain = PqCodebook::train(&x, dim, &p).unwrap();
        p.opq = true;
        let opq = PqCodebook::train(&x, dim, &p).unwrap();
        let (e0, e1) = (err(&plain), err(&opq));
        assert!(e1 < 0.8 * e0, "OPQ error {e1} vs plain {e0}");
        assert_eq!(PqCodebook::from_bytes(&opq.to_bytes(), true).unwrap(), opq);
        assert_eq!(opq.byte_len(), opq.to_bytes().len());
        assert!(PqCodebook::from_bytes(&opq.to_bytes(), false).is_err());
        // ADC with the rotation still matches the distance to the decoded vector.
        let mut t = AdcTable::default();
        let q = &x[..dim];
        let mut rec = vec![0f32; dim];
        for metric in [Metric::L2, Metric::Ip] {
            opq.table(q, metric, &mut t);
            for i in 0..20 {
                let mut code = vec![0u8; 4];
                opq.encode(&x[i * dim..(i + 1) * dim], &mut code);
                opq.decode(&code, &mut rec);
                let (want, got) = (metric.distance(q, &rec), t.distance(&code));
                assert!(
                    (want - got).abs() < 1e-2 * want.abs().max(1.0),
                    "{metric}: {want} vs {got}"
                );
            }
        }
    }
}
