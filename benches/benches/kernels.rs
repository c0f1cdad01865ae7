//! Distance-kernel benchmark: ns per distance for every SIMD path Quarry can
//! run on this CPU, side by side with the `simsimd` crate in the same run.
//!
//! Reproduce (from the workspace root):
//!
//! ```text
//! cargo bench -p quarry-benches --bench kernels
//! # quicker, noisier:
//! cargo bench -p quarry-benches --bench kernels -- --warm-up-time 1 --measurement-time 2
//! # then the markdown table (ns/distance and ratio vs simsimd):
//! python3 benches/kernels_table.py            # reads target/criterion/
//! ```
//!
//! Group names are `<kernel>_<dim>` (a pool of rows, see below) and
//! `<kernel>_<dim>_pair` (one pair of vectors, always L1-resident); the
//! function names are `quarry-<path>` and `simsimd`, e.g.
//! `l2_f32_1024/quarry-avx512` and `l2_f32_1024/simsimd`.
//!
//! * Pool mode: one f32 query against a pool of [`POOL_ROWS`] stored rows,
//!   cycling through them, [`BATCH`] distances per iteration (16 MiB of f32
//!   rows at 1024-d, so the rows do not all sit in L1/L2) — the shape of a
//!   search expanding candidates.
//! * Pair mode: the same pair [`BATCH`] times per iteration (hot cache, pure
//!   arithmetic throughput).
//!
//! Criterion's throughput is set to [`BATCH`] elements, so the reported
//! time per element is the time per distance; `kernels_table.py` divides the
//! per-iteration estimate by the throughput recorded in `benchmark.json`.
//!
//! What is compared with what:
//! * `l2_f32`, `dot_f32`: both f32 × f32 (simsimd `sqeuclidean` / `dot`).
//! * `l2_f16`, `dot_f16`: Quarry computes an f32 query against f16 rows;
//!   simsimd has no mixed kernel, so it gets the query converted to f16 and
//!   computes f16 × f16. The stored rows (the memory traffic) are identical.
//! * `l2_i8`, `dot_i8`: Quarry computes an f32 query against i8 rows with a
//!   per-row scale; simsimd computes i8 × i8 (query quantised too). This is
//!   a reference point only: simsimd's i8 kernel is integer arithmetic and
//!   does less work per element.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use half::f16;
use quarry_engine::kernels::{self, Kernels, SimdPath};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use simsimd::SpatialSimilarity;
use std::hint::black_box;

/// Stored rows per pool (cycled through).
const POOL_ROWS: usize = 4096;
/// Distances computed per criterion iteration.
const BATCH: usize = 32;
/// Dimensions benchmarked.
const DIMS: [usize; 2] = [1024, 384];

/// The same data in every representation either library consumes.
struct Data {
    dim: usize,
    query: Vec<f32>,
    query_f16: Vec<simsimd::f16>,
    query_i8: Vec<i8>,
    rows: Vec<f32>,
    rows_f16: Vec<f16>,
    rows_f16_ss: Vec<simsimd::f16>,
    rows_i8: Vec<i8>,
    scales: Vec<f32>,
}

impl Data {
    fn new(dim: usize) -> Self {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(0x5157_4152_5259 ^ dim as u64);
        let query: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let rows: Vec<f32> = (0..POOL_ROWS * dim).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        let rows_f16: Vec<f16> = rows.iter().map(|&x| f16::from_f32(x)).collect();
        let rows_f16_ss = rows_f16.iter().map(|h| simsimd::f16(h.to_bits())).collect();
        let query_f16 = query
            .iter()
            .map(|&x| simsimd::f16(f16::from_f32(x).to_bits()))
            .collect();
        let mut rows_i8 = vec![0i8; rows.len()];
        let scales = rows
            .chunks_exact(dim)
            .zip(rows_i8.chunks_exact_mut(dim))
            .map(|(r, o)| kernels::quantize_i8(r, o))
            .collect();
        let mut query_i8 = vec![0i8; dim];
        kernels::quantize_i8(&query, &mut query_i8);
        Data {
            dim,
            query,
            query_f16,
            query_i8,
            rows,
            rows_f16,
            rows_f16_ss,
            rows_i8,
            scales,
        }
    }
}

/// Pool mode: `f(row_index)` for BATCH consecutive rows, cycling the pool.
/// The cursor persists across iterations so the whole pool is streamed.
fn bench_pool<F: FnMut(usize) -> f64>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut f: F) {
    let mut cursor = 0usize;
    g.bench_function(name, |b| {
        b.iter(|| {
            let mut acc = 0.0f64;
            for _ in 0..BATCH {
                acc += f(black_box(cursor));
                cursor = (cursor + 1) % POOL_ROWS;
            }
            acc
        })
    });
}

/// Pair mode: `f(0)` BATCH times (the same hot pair).
fn bench_pair<F: FnMut(usize) -> f64>(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, mut f: F) {
    g.bench_function(name, |b| {
        b.iter(|| {
            let mut acc = 0.0f64;
            for _ in 0..BATCH {
                acc += f(black_box(0));
            }
            acc
        })
    });
}

fn path_name(p: SimdPath) -> &'static str {
    // No '+' or other punctuation: these become directory names.
    match p {
        SimdPath::Avx512 => "quarry-avx512",
        SimdPath::Avx2Fma => "quarry-avx2",
        SimdPath::Neon => "quarry-neon",
        SimdPath::Scalar => "quarry-scalar",
    }
}

type Runner = fn(&mut BenchmarkGroup<'_, WallTime>, &str, &mut dyn FnMut(usize) -> f64);

fn run_pool(g: &mut BenchmarkGroup<'_, WallTime>, n: &str, f: &mut dyn FnMut(usize) -> f64) {
    bench_pool(g, n, f)
}

fn run_pair(g: &mut BenchmarkGroup<'_, WallTime>, n: &str, f: &mut dyn FnMut(usize) -> f64) {
    bench_pair(g, n, f)
}

fn kernels_bench(c: &mut Criterion) {
    let paths: Vec<(SimdPath, &'static Kernels)> = kernels::available_paths()
        .into_iter()
        .filter_map(|p| kernels::for_path(p).map(|k| (p, k)))
        .collect();
    eprintln!(
        "quarry paths: {:?}; simsimd dynamic dispatch: {}, uses: skylake={} ice={} genoa={} sapphire={} turin={} haswell={}",
        paths.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>(),
        simsimd::capabilities::uses_dynamic_dispatch(),
        simsimd::capabilities::uses_skylake(),
        simsimd::capabilities::uses_ice(),
        simsimd::capabilities::uses_genoa(),
        simsimd::capabilities::uses_sapphire(),
        simsimd::capabilities::uses_turin(),
        simsimd::capabilities::uses_haswell(),
    );

    for dim in DIMS {
        let d = Data::new(dim);
        let row = |i: usize| i * d.dim..(i + 1) * d.dim;
        let modes: [(&str, Runner); 2] = [("", run_pool), ("_pair", run_pair)];
        for (suffix, run) in modes {
            // f32 × f32
            for kernel in ["l2_f32", "dot_f32"] {
                let mut g = c.benchmark_group(format!("{kernel}_{dim}{suffix}"));
                g.throughput(Throughput::Elements(BATCH as u64));
                let is_l2 = kernel.starts_with("l2");
                for (p, k) in &paths {
                    let f = if is_l2 { k.l2_sq } else { k.dot };
                    run(&mut g, path_name(*p), &mut |i| {
                        f(black_box(&d.query), black_box(&d.rows[row(i)])) as f64
                    });
                }
                run(&mut g, "simsimd", &mut |i| {
                    let (q, r) = (black_box(&d.query[..]), black_box(&d.rows[row(i)]));
                    if is_l2 {
                        f32::sqeuclidean(q, r).unwrap()
                    } else {
                        <f32 as SpatialSimilarity>::dot(q, r).unwrap()
                    }
                });
                g.finish();
            }
            // f16 rows
            for kernel in ["l2_f16", "dot_f16"] {
                let mut g = c.benchmark_group(format!("{kernel}_{dim}{suffix}"));
                g.throughput(Throughput::Elements(BATCH as u64));
                let is_l2 = kernel.starts_with("l2");
                for (p, k) in &paths {
                    let f = if is_l2 { k.l2_sq_f16 } else { k.dot_f16 };
                    run(&mut g, path_name(*p), &mut |i| {
                        f(black_box(&d.query), black_box(&d.rows_f16[row(i)])) as f64
                    });
                }
                run(&mut g, "simsimd", &mut |i| {
                    let (q, r) = (black_box(&d.query_f16[..]), black_box(&d.rows_f16_ss[row(i)]));
                    if is_l2 {
                        simsimd::f16::sqeuclidean(q, r).unwrap()
                    } else {
                        <simsimd::f16 as SpatialSimilarity>::dot(q, r).unwrap()
                    }
                });
                g.finish();
            }
            // i8 rows
            for kernel in ["l2_i8", "dot_i8"] {
                let mut g = c.benchmark_group(format!("{kernel}_{dim}{suffix}"));
                g.throughput(Throughput::Elements(BATCH as u64));
                let is_l2 = kernel.starts_with("l2");
                for (p, k) in &paths {
                    let f = if is_l2 { k.l2_sq_i8 } else { k.dot_i8 };
                    run(&mut g, path_name(*p), &mut |i| {
                        f(
                            black_box(&d.query),
                            black_box(&d.rows_i8[row(i)]),
                            black_box(d.scales[i]),
                        ) as f64
                    });
                }
                run(&mut g, "simsimd", &mut |i| {
                    let (q, r) = (black_box(&d.query_i8[..]), black_box(&d.rows_i8[row(i)]));
                    if is_l2 {
                        i8::sqeuclidean(q, r).unwrap()
                    } else {
                        <i8 as SpatialSimilarity>::dot(q, r).unwrap()
                    }
                });
                g.finish();
            }
        }
    }
}

criterion_group!(benches, kernels_bench);
criterion_main!(benches);
