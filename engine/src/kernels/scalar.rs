//! Portable kernels: the reference every SIMD path is tested against, and the
//! fallback on CPUs with no supported SIMD extension.

use super::{Kernels, SimdPath};
use half::f16;

/// The scalar kernel table.
pub static KERNELS: Kernels = Kernels {
    path: SimdPath::Scalar,
    l2_sq,
    dot,
    l2_sq_f16,
    dot_f16,
    l2_sq_i8,
    dot_i8,
    acc_sq_diff,
    acc_mul,
};

/// acc_i += (x − col_i)².
pub fn acc_sq_diff(x: f32, col: &[f32], acc: &mut [f32]) {
    for (a, c) in acc.iter_mut().zip(col) {
        let d = x - c;
        *a += d * d;
    }
}

/// acc_i += x · col_i.
pub fn acc_mul(x: f32, col: &[f32], acc: &mut [f32]) {
    for (a, c) in acc.iter_mut().zip(col) {
        *a += x * c;
    }
}

/// Σ (a_i − b_i)², accumulated in four lanes so it vectorises a little.
pub fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..4 {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        let d = x - y;
        tail += d * d;
    }
    acc[0] + acc[1] + acc[2] + acc[3] + tail
}

/// Σ a_i b_i.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..4 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    acc[0] + acc[1] + acc[2] + acc[3] + tail
}

/// Σ (q_i − v_i)², v in f16.
pub fn l2_sq_f16(q: &[f32], v: &[f16]) -> f32 {
    q.iter()
        .zip(v)
        .map(|(a, b)| {
            let d = a - b.to_f32();
            d * d
        })
        .sum()
}

/// Σ q_i v_i, v in f16.
pub fn dot_f16(q: &[f32], v: &[f16]) -> f32 {
    q.iter().zip(v).map(|(a, b)| a * b.to_f32()).sum()
}

/// Σ (q_i − s·v_i)², v in i8.
pub fn l2_sq_i8(q: &[f32], v: &[i8], scale: f32) -> f32 {
    q.iter()
        .zip(v)
        .map(|(a, b)| {
            let d = a - scale * (*b as f32);
            d * d
        })
        .sum()
}

/// s · Σ q_i v_i, v in i8.
pub fn dot_i8(q: &[f32], v: &[i8], scale: f32) -> f32 {
    scale * q.iter().zip(v).map(|(a, b)| a * (*b as f32)).sum::<f32>()
}
