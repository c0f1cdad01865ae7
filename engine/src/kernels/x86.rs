//! x86_64 SIMD kernels: AVX-512F and AVX2+FMA+F16C.
//!
//! Every function here is `unsafe` because it uses `#[target_feature]`; the
//! only way to reach them from outside is through [`avx512_kernels`] and
//! [`avx2_kernels`], which return a table only after runtime detection has
//! confirmed that the CPU supports the features. Loads are unaligned and
//! bounded by the slice lengths, which the safe wrappers in `mod.rs` check
//! to be equal.

use super::{scalar, Kernels, SimdPath};
use half::f16;
use std::arch::x86_64::*;

/// Ask the CPU to pull the cache line holding `byte` into L1 (a hint).
#[inline(always)]
pub fn prefetch_line(byte: &u8) {
    // SAFETY: SSE is part of the x86_64 baseline, so the instruction
    // exists on every CPU this code runs on; PREFETCHT0 never faults or
    // writes, and the address comes from a live reference.
    unsafe { _mm_prefetch::<_MM_HINT_T0>(byte as *const u8 as *const i8) }
}

/// The AVX-512 table, if this CPU has AVX-512F.
pub fn avx512_kernels() -> Option<&'static Kernels> {
    if std::arch::is_x86_feature_detected!("avx512f") {
        Some(&AVX512)
    } else {
        None
    }
}

/// The AVX2 table, if this CPU has AVX2, FMA and F16C.
pub fn avx2_kernels() -> Option<&'static Kernels> {
    if std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("fma")
        && std::arch::is_x86_feature_detected!("f16c")
    {
        Some(&AVX2)
    } else {
        None
    }
}

static AVX512: Kernels = Kernels {
    path: SimdPath::Avx512,
    l2_sq: |a, b| {
        // SAFETY: this table is only returned by `avx512_kernels` after
        // AVX-512F was detected; lengths are equal (checked by the caller).
        unsafe { l2_sq_512(a, b) }
    },
    dot: |a, b| {
        // SAFETY: as above, AVX-512F detected and lengths equal.
        unsafe { dot_512(a, b) }
    },
    l2_sq_f16: |q, v| {
        // SAFETY: as above, AVX-512F detected and lengths equal.
        unsafe { l2_sq_f16_512(q, v) }
    },
    dot_f16: |q, v| {
        // SAFETY: as above, AVX-512F detected and lengths equal.
        unsafe { dot_f16_512(q, v) }
    },
    l2_sq_i8: |q, v, s| {
        // SAFETY: as above, AVX-512F detected and lengths equal.
        unsafe { l2_sq_i8_512(q, v, s) }
    },
    dot_i8: |q, v, s| {
        // SAFETY: as above, AVX-512F detected and lengths equal.
        unsafe { dot_i8_512(q, v, s) }
    },
    acc_sq_diff: |x, col, acc| {
        // SAFETY: AVX-512F detected; lengths equal (checked by the caller).
        unsafe { acc_sq_diff_512(x, col, acc) }
    },
    acc_mul: |x, col, acc| {
        // SAFETY: AVX-512F detected; lengths equal (checked by the caller).
        unsafe { acc_mul_512(x, col, acc) }
    },
};

static AVX2: Kernels = Kernels {
    path: SimdPath::Avx2Fma,
    l2_sq: |a, b| {
        // SAFETY: this table is only returned by `avx2_kernels` after AVX2,
        // FMA and F16C were detected; lengths are equal (checked by caller).
        unsafe { l2_sq_256(a, b) }
    },
    dot: |a, b| {
        // SAFETY: as above, AVX2+FMA detected and lengths equal.
        unsafe { dot_256(a, b) }
    },
    l2_sq_f16: |q, v| {
        // SAFETY: as above, AVX2+FMA+F16C detected and lengths equal.
        unsafe { l2_sq_f16_256(q, v) }
    },
    dot_f16: |q, v| {
        // SAFETY: as above, AVX2+FMA+F16C detected and lengths equal.
        unsafe { dot_f16_256(q, v) }
    },
    l2_sq_i8: |q, v, s| {
        // SAFETY: as above, AVX2+FMA detected and lengths equal.
        unsafe { l2_sq_i8_256(q, v, s) }
    },
    dot_i8: |q, v, s| {
        // SAFETY: as above, AVX2+FMA detected and lengths equal.
        unsafe { dot_i8_256(q, v, s) }
    },
    acc_sq_diff: |x, col, acc| {
        // SAFETY: AVX2+FMA detected; lengths equal (checked by the caller).
        unsafe { acc_sq_diff_256(x, col, acc) }
    },
    acc_mul: |x, col, acc| {
        // SAFETY: AVX2+FMA detected; lengths equal (checked by the caller).
        unsafe { acc_mul_256(x, col, acc) }
    },
};

// ---------------------------------------------------------------- AVX-512

#[target_feature(enable = "avx512f")]
unsafe fn l2_sq_512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut i = 0;
    // SAFETY: every load reads 16 lanes starting at i with
    // i + 16 <= n (or a mask that covers only i..n), inside both slices.
    unsafe {
        while i + 32 <= n {
            let d0 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
            let d1 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i + 16)), _mm512_loadu_ps(pb.add(i + 16)));
            acc0 = _mm512_fmadd_ps(d0, d0, acc0);
            acc1 = _mm512_fmadd_ps(d1, d1, acc1);
            i += 32;
        }
        while i < n {
            let m: __mmask16 = if n - i >= 16 { 0xffff } else { (1u16 << (n - i)) - 1 };
            let d = _mm512_sub_ps(_mm512_maskz_loadu_ps(m, pa.add(i)), _mm512_maskz_loadu_ps(m, pb.add(i)));
            acc0 = _mm512_fmadd_ps(d, d, acc0);
            i += 16;
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}

#[target_feature(enable = "avx512f")]
unsafe fn dot_512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut i = 0;
    // SAFETY: loads stay within i..n of both slices, as in
    // `l2_sq_512`.
    unsafe {
        while i + 32 <= n {
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i + 16)), _mm512_loadu_ps(pb.add(i + 16)), acc1);
            i += 32;
        }
        while i < n {
            let m: __mmask16 = if n - i >= 16 { 0xffff } else { (1u16 << (n - i)) - 1 };
            acc0 = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, pb.add(i)),
                acc0,
            );
            i += 16;
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
}

#[target_feature(enable = "avx512f")]
unsafe fn l2_sq_f16_512(q: &[f32], v: &[f16]) -> f32 {
    let n = q.len();
    let (pq, pv) = (q.as_ptr(), v.as_ptr() as *const u16);
    let mut acc = _mm512_setzero_ps();
    let mut i = 0;
    // SAFETY: reads 16 f32 and 16 u16 (32 bytes) at i with i + 16 <= n.
    unsafe {
        while i + 16 <= n {
            let h = _mm256_loadu_si256(pv.add(i) as *const __m256i);
            let d = _mm512_sub_ps(_mm512_loadu_ps(pq.add(i)), _mm512_cvtph_ps(h));
            acc = _mm512_fmadd_ps(d, d, acc);
            i += 16;
        }
    }
    _mm512_reduce_add_ps(acc) + scalar::l2_sq_f16(&q[i..], &v[i..])
}

#[target_feature(enable = "avx512f")]
unsafe fn dot_f16_512(q: &[f32], v: &[f16]) -> f32 {
    let n = q.len();
    let (pq, pv) = (q.as_ptr(), v.as_ptr() as *const u16);
    let mut acc = _mm512_setzero_ps();
    let mut i = 0;
    // SAFETY: reads 16 f32 and 16 u16 at i with i + 16 <= n.
    unsafe {
        while i + 16 <= n {
            let h = _mm256_loadu_si256(pv.add(i) as *const __m256i);
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(pq.add(i)), _mm512_cvtph_ps(h), acc);
            i += 16;
        }
    }
    _mm512_reduce_add_ps(acc) + scalar::dot_f16(&q[i..], &v[i..])
}

#[target_feature(enable = "avx512f")]
unsafe fn l2_sq_i8_512(q: &[f32], v: &[i8], scale: f32) -> f32 {
    let n = q.len();
    let (pq, pv) = (q.as_ptr(), v.as_ptr());
    let s = _mm512_set1_ps(scale);
    let mut acc = _mm512_setzero_ps();
    let mut i = 0;
    // SAFETY: reads 16 f32 and 16 i8 at i with i + 16 <= n.
    unsafe {
        while i + 16 <= n {
            let b = _mm_loadu_si128(pv.add(i) as *const __m128i);
            let f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b)), s);
            let d = _mm512_sub_ps(_mm512_loadu_ps(pq.add(i)), f);
            acc = _mm512_fmadd_ps(d, d, acc);
            i += 16;
        }
    }
    _mm512_reduce_add_ps(acc) + scalar::l2_sq_i8(&q[i..], &v[i..], scale)
}

#[target_feature(enable = "avx512f")]
unsafe fn dot_i8_512(q: &[f32], v: &[i8], scale: f32) -> f32 {
    let n = q.len();
    let (pq, pv) = (q.as_ptr(), v.as_ptr());
    let mut acc = _mm512_setzero_ps();
    let mut i = 0;
    // SAFETY: reads 16 f32 and 16 i8 at i with i + 16 <= n.
    unsafe {
        while i + 16 <= n {
            let b = _mm_loadu_si128(pv.add(i) as *const __m128i);
            let f = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(b));
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(pq.add(i)), f, acc);
            i += 16;
        }
    }
    scale * _mm512_reduce_add_ps(acc) + scalar::dot_i8(&q[i..], &v[i..], scale)
}

#[target_feature(enable = "avx512f")]
unsafe fn acc_sq_diff_512(x: f32, col: &[f32], acc: &mut [f32]) {
    let n = col.len();
    let xv = _mm512_set1_ps(x);
    let mut i = 0;
    // SAFETY: 16 lanes at i with i + 16 <= n in both slices (equal length).
    unsafe {
        while i + 16 <= n {
            let d = _mm512_sub_ps(xv, _mm512_loadu_ps(col.as_ptr().add(i)));
            let a = _mm512_loadu_ps(acc.as_ptr().add(i));
            _mm512_storeu_ps(acc.as_mut_ptr().add(i), _mm512_fmadd_ps(d, d, a));
            i += 16;
        }
    }
    scalar::acc_sq_diff(x, &col[i..], &mut acc[i..]);
}

#[target_feature(enable = "avx512f")]
unsafe fn acc_mul_512(x: f32, col: &[f32], acc: &mut [f32]) {
    let n = col.len();
    let xv = _mm512_set1_ps(x);
    let mut i = 0;
    // SAFETY: 16 lanes at i with i + 16 <= n in both slices (equal length).
    unsafe {
        while i + 16 <= n {
            let a = _mm512_loadu_ps(acc.as_ptr().add(i));
            _mm512_storeu_ps(
                acc.as_mut_ptr().add(i),
                _mm512_fmadd_ps(xv, _mm512_loadu_ps(col.as_ptr().add(i)), a),
            );
            i += 16;
        }
    }
    scalar::acc_mul(x, &col[i..], &mut acc[i..]);
}

// ---------------------------------------------------------------- AVX2

#[target_feature(enable = "avx2,fma")]
unsafe fn acc_sq_diff_256(x: f32, col: &[f32], acc: &mut [f32]) {
    let n = col.len();
    let xv = _mm256_set1_ps(x);
    let mut i = 0;
    // SAFETY: 8 lanes at i with i + 8 <= n in both slices (equal length).
    unsafe {
        while i + 8 <= n {
            let d = _mm256_sub_ps(xv, _mm256_loadu_ps(col.as_ptr().add(i)));
            let a = _mm256_loadu_ps(acc.as_ptr().add(i));
            _mm256_storeu_ps(acc.as_mut_ptr().add(i), _mm256_fmadd_ps(d, d, a));
            i += 8;
        }
    }
    scalar::acc_sq_diff(x, &col[i..], &mut acc[i..]);
}

#[target_feature(enable = "avx2,fma")]
unsafe fn acc_mul_256(x: f32, col: &[f32], acc: &mut [f32]) {
    let n = col.len();
    let xv = _mm256_set1_ps(x);
    let mut i = 0;
    // SAFETY: 8 lanes at i with i + 8 <= n in both slices (equal length).
    unsafe {
        while i + 8 <= n {
            let a = _mm256_loadu_ps(acc.as_ptr().add(i));
            _mm256_storeu_ps(
                acc.as_mut_ptr().add(i),
                _mm256_fmadd_ps(xv, _mm256_loadu_ps(col.as_ptr().add(i)), a),
            );
            i += 8;
        }
    }
    scalar::acc_mul(x, &col[i..], &mut acc[i..]);
}

#[target_feature(enable = "avx2,fma")]
unsafe fn hsum256(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps(v, 1);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

#[target_feature(enable = "avx2,fma")]
unsafe fn l2_sq_256(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY: reads 8 or 16 lanes at i with the end within n.
    unsafe {
        while i + 16 <= n {
            let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            let d1 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)));
            acc0 = _mm256_fmadd_ps(d0, d0, acc0);
            acc1 = _mm256_fmadd_ps(d1, d1, acc1);
            i += 16;
        }
        while i + 8 <= n {
            let d = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            acc0 = _mm256_fmadd_ps(d, d, acc0);
            i += 8;
        }
        hsum256(_mm256_add_ps(acc0, acc1)) + scalar::l2_sq(&a[i..], &b[i..])
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_256(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len();
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY: reads 8 or 16 lanes at i with the end within n.
    unsafe {
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), acc1);
            i += 16;
        }
        while i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
        hsum256(_mm256_add_ps(acc0, acc1)) + scalar::dot(&a[i..], &b[i..])
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn l2_sq_f16_256(q: &[f32], v: &[f16]) -> f32 {
    let n = q.len();
    let (pq, pv) = (q.as_ptr(), v.as_ptr() as *const u16);
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY: reads 8 f32 and 8 u16 (16 bytes) at i with i + 8 <= n.
    unsafe {
        while i + 8 <= n {
            let h = _mm_loadu_si128(pv.add(i) as *const __m128i);
            let d = _mm256_sub_ps(_mm256_loadu_ps(pq.add(i)), _mm256_cvtph_ps(h));
            acc = _mm256_fmadd_ps(d, d, acc);
            i += 8;
        }
        hsum256(acc) + scalar::l2_sq_f16(&q[i..], &v[i..])
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_f16_256(q: &[f32], v: &[f16]) -> f32 {
    let n = q.len();
    let (pq, pv) = (q.as_ptr(), v.as_ptr() as *const u16);
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY: reads 8 f32 and 8 u16 at i with i + 8 <= n.
    unsafe {
        while i + 8 <= n {
            let h = _mm_loadu_si128(pv.add(i) as *const __m128i);
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(pq.add(i)), _mm256_cvtph_ps(h), acc);
            i += 8;
        }
        hsum256(acc) + scalar::dot_f16(&q[i..], &v[i..])
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn l2_sq_i8_256(q: &[f32], v: &[i8], scale: f32) -> f32 {
    let n = q.len();
    let (pq, pv) = (q.as_ptr(), v.as_ptr());
    let s = _mm256_set1_ps(scale);
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY: reads 8 f32 and 8 i8 (one u64) at i with i + 8 <= n.
    unsafe {
        while i + 8 <= n {
            let b = _mm_loadl_epi64(pv.add(i) as *const __m128i);
            let f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)), s);
            let d = _mm256_sub_ps(_mm256_loadu_ps(pq.add(i)), f);
            acc = _mm256_fmadd_ps(d, d, acc);
            i += 8;
        }
        hsum256(acc) + scalar::l2_sq_i8(&q[i..], &v[i..], scale)
    }
}

#[target_feature(enable = "avx2,fma")]
unsafe fn dot_i8_256(q: &[f32], v: &[i8], scale: f32) -> f32 {
    let n = q.len();
    let (pq, pv) = (q.as_ptr(), v.as_ptr());
    let mut acc = _mm256_setzero_ps();
    let mut i = 0;
    // SAFETY: reads 8 f32 and 8 i8 at i with i + 8 <= n.
    unsafe {
        while i + 8 <= n {
            let b = _mm_loadl_epi64(pv.add(i) as *const __m128i);
            let f = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(pq.add(i)), f, acc);
            i += 8;
        }
        scale * hsum256(acc) + scalar::dot_i8(&q[i..], &v[i..], scale)
    }
}
