//! aarch64 NEON kernels. NOT compiled or tested on this project's x86_64
//! machines (no aarch64 toolchain target can be fetched here); the code is
//! kept simple so review can stand in for a test run until an ARM CI exists.

use super::{scalar, Kernels, SimdPath};
use std::arch::aarch64::*;

/// The NEON table (NEON is mandatory on aarch64).
pub static KERNELS: Kernels = Kernels {
    path: SimdPath::Neon,
    l2_sq: |a, b| {
        // SAFETY: NEON is part of the aarch64 baseline; lengths are equal.
        unsafe { l2_sq(a, b) }
    },
    dot: |a, b| {
        // SAFETY: NEON is part of the aarch64 baseline; lengths are equal.
        unsafe { dot(a, b) }
    },
    l2_sq_f16: scalar::l2_sq_f16,
    dot_f16: scalar::dot_f16,
    l2_sq_i8: scalar::l2_sq_i8,
    dot_i8: scalar::dot_i8,
    acc_sq_diff: scalar::acc_sq_diff,
    acc_mul: scalar::acc_mul,
};

unsafe fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let mut acc = vdupq_n_f32(0.0);
    let mut i = 0;
    // SAFETY: reads 4 lanes at i with i + 4 <= n in both slices.
    unsafe {
        while i + 4 <= n {
            let d = vsubq_f32(vld1q_f32(a.as_ptr().add(i)), vld1q_f32(b.as_ptr().add(i)));
            acc = vfmaq_f32(acc, d, d);
            i += 4;
        }
        vaddvq_f32(acc) + scalar::l2_sq(&a[i..], &b[i..])
    }
}

unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let mut acc = vdupq_n_f32(0.0);
    let mut i = 0;
    // SAFETY: reads 4 lanes at i with i + 4 <= n in both slices.
    unsafe {
        while i + 4 <= n {
            acc = vfmaq_f32(acc, vld1q_f32(a.as_ptr().add(i)), vld1q_f32(b.as_ptr().add(i)));
            i += 4;
        }
        vaddvq_f32(acc) + scalar::dot(&a[i..], &b[i..])
    }
}
