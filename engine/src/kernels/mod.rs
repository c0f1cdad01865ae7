//! Vector distance kernels: L2², inner product and cosine over f32 queries
//! against f32, f16 and i8 stored vectors, with runtime dispatch.
//!
//! Owns: the arithmetic of every distance Quarry computes, and the choice of
//! SIMD path (AVX-512, AVX2+FMA, NEON, scalar) made once per process.
//! Does not own: quantisation tables (see `pq`), or what a distance means for
//! ranking (see [`crate::Metric`]).
//!
//! Every SIMD path is checked against [`scalar`] by property tests. The
//! `unsafe` intrinsics live in `x86.rs` (and `neon.rs`, compiled only on
//! aarch64 — it cannot be built or tested on this project's x86_64 machines).
//! The public functions here are safe: they check lengths and call the path
//! selected by [`active`].

#[cfg(target_arch = "aarch64")]
mod neon;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

use half::f16;
use std::sync::OnceLock;

/// One SIMD implementation of every kernel. All slices passed to these
/// function pointers have equal length (checked by the safe wrappers).
#[derive(Clone, Copy)]
pub struct Kernels {
    /// Which path this table belongs to.
    pub path: SimdPath,
    /// Σ (a_i − b_i)².
    pub l2_sq: fn(&[f32], &[f32]) -> f32,
    /// Σ a_i b_i.
    pub dot: fn(&[f32], &[f32]) -> f32,
    /// Σ (q_i − v_i)² with v stored as f16.
    pub l2_sq_f16: fn(&[f32], &[f16]) -> f32,
    /// Σ q_i v_i with v stored as f16.
    pub dot_f16: fn(&[f32], &[f16]) -> f32,
    /// Σ (q_i − s·v_i)² with v stored as i8 and scale s.
    pub l2_sq_i8: fn(&[f32], &[i8], f32) -> f32,
    /// s · Σ q_i v_i with v stored as i8 and scale s.
    pub dot_i8: fn(&[f32], &[i8], f32) -> f32,
    /// acc_i += (x − col_i)² for every i (one dimension of a transposed
    /// block of centroids: PQ tables, k-means assignment).
    pub acc_sq_diff: fn(f32, &[f32], &mut [f32]),
    /// acc_i += x · col_i for every i.
    pub acc_mul: fn(f32, &[f32], &mut [f32]),
}

/// The instruction-set path a [`Kernels`] table uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimdPath {
    /// AVX-512F (16 f32 lanes), x86_64.
    Avx512,
    /// AVX2 with FMA and F16C (8 f32 lanes), x86_64.
    Avx2Fma,
    /// NEON (4 f32 lanes), aarch64.
    Neon,
    /// Portable Rust, no explicit SIMD.
    Scalar,
}

impl std::fmt::Display for SimdPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SimdPath::Avx512 => "avx512",
            SimdPath::Avx2Fma => "avx2+fma",
            SimdPath::Neon => "neon",
            SimdPath::Scalar => "scalar",
        })
    }
}

/// The kernels for `path`, or `None` when this CPU cannot run that path.
pub fn for_path(path: SimdPath) -> Option<&'static Kernels> {
    match path {
        SimdPath::Scalar => Some(&scalar::KERNELS),
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx512 => x86::avx512_kernels(),
        #[cfg(target_arch = "x86_64")]
        SimdPath::Avx2Fma => x86::avx2_kernels(),
        #[cfg(target_arch = "aarch64")]
        SimdPath::Neon => Some(&neon::KERNELS),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// Every path this CPU can run, fastest first (scalar always last).
pub fn available_paths() -> Vec<SimdPath> {
    [SimdPath::Avx512, SimdPath::Avx2Fma, SimdPath::Neon, SimdPath::Scalar]
        .into_iter()
        .filter(|p| for_path(*p).is_some())
        .collect()
}

static ACTIVE: OnceLock<&'static Kernels> = OnceLock::new();

/// The kernels chosen for this process: the fastest available path, unless
/// the environment variable `QUARRY_SIMD` names another (`avx512`, `avx2`,
/// `neon`, `scalar`), which is useful for A/B runs and valgrind.
pub fn active() -> &'static Kernels {
    ACTIVE.get_or_init(|| {
        let forced = std::env::var("QUARRY_SIMD").ok().and_then(|v| match v.as_str() {
            "avx512" => for_path(SimdPath::Avx512),
            "avx2" => for_path(SimdPath::Avx2Fma),
            "neon" => for_path(SimdPath::Neon),
            "scalar" => for_path(SimdPath::Scalar),
            _ => None,
        });
        forced.unwrap_or_else(|| for_path(available_paths()[0]).expect("the first available path exists"))
    })
}

#[inline]
fn check(a: usize, b: usize) {
    assert_eq!(a, b, "kernel operands differ in length ({a} vs {b})");
}

/// Squared Euclidean distance.
#[inline]
pub fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    check(a.len(), b.len());
    (active().l2_sq)(a, b)
}

/// Inner product.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    check(a.len(), b.len());
    (active().dot)(a, b)
}

/// Cosine distance, 1 − cos(a, b); 1.0 when either vector is zero.
#[inline]
pub fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    check(a.len(), b.len());
    let k = active();
    let ab = (k.dot)(a, b);
    let aa = (k.dot)(a, a);
    let bb = (k.dot)(b, b);
    if aa == 0.0 || bb == 0.0 {
        return 1.0;
    }
    1.0 - ab / (aa.sqrt() * bb.sqrt())
}

/// Squared Euclidean distance from an f32 query to an f16 stored vector.
#[inline]
pub fn l2_sq_f16(q: &[f32], v: &[f16]) -> f32 {
    check(q.len(), v.len());
    (active().l2_sq_f16)(q, v)
}

/// Inner product of an f32 query and an f16 stored vector.
#[inline]
pub fn dot_f16(q: &[f32], v: &[f16]) -> f32 {
    check(q.len(), v.len());
    (active().dot_f16)(q, v)
}

/// Squared Euclidean distance from an f32 query to `scale · v`, v in i8.
#[inline]
pub fn l2_sq_i8(q: &[f32], v: &[i8], scale: f32) -> f32 {
    check(q.len(), v.len());
    (active().l2_sq_i8)(q, v, scale)
}

/// Inner product of an f32 query and `scale · v`, v in i8.
#[inline]
pub fn dot_i8(q: &[f32], v: &[i8], scale: f32) -> f32 {
    check(q.len(), v.len());
    (active().dot_i8)(q, v, scale)
}

/// Hint the CPU to start loading the cache lines that hold `data` (a PQ
/// code row, say) before it is read. Only a hint: no effect on results, and
/// a no-op on targets without a prefetch instruction.
#[inline(always)]
pub fn prefetch(data: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    if let (Some(first), Some(last)) = (data.first(), data.last()) {
        // The row may straddle two lines; touch both ends.
        x86::prefetch_line(first);
        x86::prefetch_line(last);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// `acc_i += (x − col_i)²` for every i (lengths must match).
#[inline]
pub fn acc_sq_diff(x: f32, col: &[f32], acc: &mut [f32]) {
    check(col.len(), acc.len());
    (active().acc_sq_diff)(x, col, acc)
}

/// `acc_i += x · col_i` for every i (lengths must match).
#[inline]
pub fn acc_mul(x: f32, col: &[f32], acc: &mut [f32]) {
    check(col.len(), acc.len());
    (active().acc_mul)(x, col, acc)
}

/// Quantise `v` to i8 with one scale per vector: `v ≈ scale · out`.
/// Returns the scale (0 for the zero vector).
pub fn quantize_i8(v: &[f32], out: &mut [i8]) -> f32 {
    check(v.len(), out.len());
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 {
        out.fill(0);
        return 0.0;
    }
    let scale = max / 127.0;
    for (o, x) in out.iter_mut().zip(v) {
        *o = (x / scale).round().clamp(-127.0, 127.0) as i8;
    }
    scale
}

#[cfg(test)]
mod tests;
