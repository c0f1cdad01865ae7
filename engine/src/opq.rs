//! The optional rotation for product quantisation (OPQ, parametric form of
//! Ge et al. 2013): rotate centred data onto its principal axes and deal the
//! axes out to the M subspaces so each subspace gets a similar share of the
//! variance ("eigenvalue allocation"). For data of low intrinsic rank, plain
//! PQ wastes most subspaces on near-empty directions; after the rotation
//! every subspace quantises a balanced slice of the signal.
//!
//! Owns: the covariance, a symmetric eigen-decomposition (cyclic Jacobi)
//! and the allocation. The rotation is orthonormal, so L2 distances and
//! inner products are preserved.

/// Symmetric eigen-decomposition by cyclic Jacobi rotations. `a` is n × n
/// row-major (destroyed). Returns (eigenvalues, eigenvectors as rows).
pub fn sym_eigen(mut a: Vec<f64>, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut v = vec![0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    for _sweep in 0..50 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j].powi(2))
            .sum();
        let diag: f64 = (0..n).map(|i| a[i * n + i].powi(2)).sum();
        if off <= 1e-22 * diag.max(1e-300) {
            break;
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() < 1e-300 {
                    continue;
                }
                let (app, aqq) = (a[p * n + p], a[q * n + q]);
                let theta = (aqq - app) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for k in 0..n {
                    let (akp, akq) = (a[k * n + p], a[k * n + q]);
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let (apk, aqk) = (a[p * n + k], a[q * n + k]);
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let (vpk, vqk) = (v[p * n + k], v[q * n + k]);
                    v[p * n + k] = c * vpk - s * vqk;
                    v[q * n + k] = s * vpk + c * vqk;
                }
            }
        }
    }
    ((0..n).map(|i| a[i * n + i]).collect(), v)
}

/// The OPQ rotation (dim × dim, row-major, rows orthonormal) for centred
/// `rows` (each of length dim), given the subspace boundaries `offsets`.
pub fn rotation(rows: &[Vec<f32>], dim: usize, offsets: &[usize]) -> Vec<f32> {
    let mut cov = vec![0f64; dim * dim];
    for r in rows {
        for i in 0..dim {
            let ri = r[i] as f64;
            for j in i..dim {
                cov[i * dim + j] += ri * r[j] as f64;
            }
        }
    }
    let s = rows.len().max(1) as f64;
    for i in 0..dim {
        for j in i..dim {
            let c = cov[i * dim + j] / s;
            cov[i * dim + j] = c;
            cov[j * dim + i] = c;
        }
    }
    let (vals, vecs) = sym_eigen(cov, dim);
    let mut order: Vec<usize> = (0..dim).collect();
    order.sort_by(|&a, &b| {
        vals[b]
            .partial_cmp(&vals[a])
            .expect("finite eigenvalues")
            .then(a.cmp(&b))
    });
    // Eigenvalue allocation: largest first, into the non-full subspace with
    // the smallest product of eigenvalues so far (sum of logs).
    let m = offsets.len() - 1;
    let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); m];
    let mut logsum = vec![0f64; m];
    for &e in &order {
        let b = (0..m)
            .filter(|&b| buckets[b].len() < offsets[b + 1] - offsets[b])
            .min_by(|&x, &y| logsum[x].partial_cmp(&logsum[y]).expect("finite").then(x.cmp(&y)))
            .expect("total capacity equals dim");
        buckets[b].push(e);
        logsum[b] += vals[e].max(1e-12).ln();
    }
    let mut r = Vec::with_capacity(dim * dim);
    for b in buckets {
        for e in b {
            r.extend(vecs[e * dim..(e + 1) * dim].iter().map(|x| *x as f32));
        }
    }
    r
}

/// y = R x for a row-major dim × dim rotation.
pub fn rotate(r: &[f32], x: &[f32], out: &mut [f32]) {
    let dim = x.len();
    for (i, o) in out.iter_mut().enumerate() {
        *o = crate::kernels::dot(&r[i * dim..(i + 1) * dim], x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_diagonalises() {
        let n = 6;
        let mut a = vec![0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = 1.0 / (1.0 + i as f64 + j as f64) + if i == j { i as f64 } else { 0.0 };
            }
        }
        let (vals, vecs) = sym_eigen(a.clone(), n);
        for k in 0..n {
            let v = &vecs[k * n..(k + 1) * n];
            for i in 0..n {
                let av: f64 = (0..n).map(|j| a[i * n + j] * v[j]).sum();
                assert!(
                    (av - vals[k] * v[i]).abs() < 1e-9,
                    "A v = lambda v fails for eigenpair {k}"
                );
            }
            let norm: f64 = v.iter().map(|x| x * x).sum();
            assert!((norm - 1.0).abs() < 1e-9);
        }
    }
}
