//! Every available SIMD path against the scalar reference.

use super::*;
use proptest::prelude::*;

fn close(a: f32, b: f32, scale: f32) -> bool {
    (a - b).abs() <= 1e-4 * scale.max(1.0)
}

fn vecs() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    (0usize..1100).prop_flat_map(|n| {
        (
            proptest::collection::vec(-10.0f32..10.0, n),
            proptest::collection::vec(-10.0f32..10.0, n),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn simd_matches_scalar((a, b) in vecs()) {
        let mag: f32 = a.iter().chain(&b).map(|x| x * x).sum::<f32>() + 1.0;
        let h: Vec<f16> = b.iter().map(|x| f16::from_f32(*x)).collect();
        let mut c = vec![0i8; b.len()];
        let s = quantize_i8(&b, &mut c);
        for path in available_paths() {
            let k = for_path(path).unwrap();
            prop_assert!(close((k.l2_sq)(&a, &b), scalar::l2_sq(&a, &b), mag), "{path} l2");
            prop_assert!(close((k.dot)(&a, &b), scalar::dot(&a, &b), mag), "{path} dot");
            prop_assert!(close((k.l2_sq_f16)(&a, &h), scalar::l2_sq_f16(&a, &h), mag), "{path} l2 f16");
            prop_assert!(close((k.dot_f16)(&a, &h), scalar::dot_f16(&a, &h), mag), "{path} dot f16");
            prop_assert!(close((k.l2_sq_i8)(&a, &c, s), scalar::l2_sq_i8(&a, &c, s), mag), "{path} l2 i8");
            prop_assert!(close((k.dot_i8)(&a, &c, s), scalar::dot_i8(&a, &c, s), mag), "{path} dot i8");
            let x = a.first().copied().unwrap_or(0.5);
            let (mut got, mut want) = (b.clone(), b.clone());
            (k.acc_sq_diff)(x, &a, &mut got);
            scalar::acc_sq_diff(x, &a, &mut want);
            prop_assert!(got.iter().zip(&want).all(|(g, w)| close(*g, *w, mag)), "{path} acc_sq_diff");
            let (mut got, mut want) = (b.clone(), b.clone());
            (k.acc_mul)(x, &a, &mut got);
            scalar::acc_mul(x, &a, &mut want);
            prop_assert!(got.iter().zip(&want).all(|(g, w)| close(*g, *w, mag)), "{path} acc_mul");
        }
    }

    #[test]
    fn i8_quantisation_error_is_bounded(a in proptest::collection::vec(-5.0f32..5.0, 1..600)) {
        let mut c = vec![0i8; a.len()];
        let s = quantize_i8(&a, &mut c);
        for (x, q) in a.iter().zip(&c) {
            prop_assert!((x - s * *q as f32).abs() <= s * 0.5 + 1e-6);
        }
    }
}

#[test]
fn scalar_reference_values() {
    let a = [1.0, 2.0, 3.0];
    let b = [4.0, 6.0, 3.0];
    assert_eq!(scalar::l2_sq(&a, &b), 25.0);
    assert_eq!(scalar::dot(&a, &b), 4.0 + 12.0 + 9.0);
    assert!((cosine_distance(&a, &a)).abs() < 1e-6);
    assert_eq!(cosine_distance(&a, &[0.0; 3]), 1.0);
}

#[test]
fn this_machine_has_a_simd_path() {
    // The project's machines have AVX-512; if detection breaks, every figure
    // silently drops to scalar speed, so fail loudly instead. Under valgrind
    // (which hides AVX-512) AVX2 is still expected.
    #[cfg(target_arch = "x86_64")]
    assert!(available_paths().len() >= 2, "paths: {:?}", available_paths());
}
