//! The capacity model behind `quarryctl plan`: measured search and build
//! runs in, predictions for another size out.
//!
//! Owns: the run record ([`Run`], one row per measured search point, as
//! `benches/plan/run.sh` writes them), interpolation to a recall target,
//! the least-squares fits and the predictions. Does not own: reading
//! files or printing (`plan::mod`), or any figure typed in by hand.
//!
//! The shape of the model (every coefficient is fitted on the runs):
//! - IOs per query at recall r grow with ln n: `a + b ln n`, fitted on a
//!   family's runs at several n (cache off). A family measured at one n
//!   only (another dim) keeps its own level and borrows the slope `b`.
//! - The hot-node cache (`s` = share of nodes cached, filled breadth-first
//!   from the entry points) removes a share h(s) of the reads, interpolated
//!   between measured shares; h is taken as independent of n.
//! - Latency p50 and p99 = `c + d × IOs` (this machine's device; W = 4),
//!   and core-µs per query = `e + f × hops`, each pooled over every point
//!   of the family.
//! - QPS = min(cores / core-µs, device IOPS / IOs).
//! - RAM and SSD bytes follow the format's arithmetic (PQ codes, the
//!   navigation sample, ids, records), with the navigation tier's bytes
//!   per sampled dimension measured.
//! - Build seconds per point = `g + h ln n` (one pass, the runs' threads).

use serde::Deserialize;

/// One measured search point with the index and build it ran on.
#[derive(Clone, Debug, Deserialize)]
pub struct Run {
    /// Data set family (same generator, dim, R, PQ bytes, stored type).
    pub family: String,
    /// Vectors in the index.
    pub n: u64,
    /// Dimension.
    pub dim: u32,
    /// Max degree.
    #[serde(rename = "R")]
    pub r: u32,
    /// PQ bytes per vector.
    pub pq_bytes: u32,
    /// Stored-vector type of the records ("f32", "f16", "i8").
    pub disk_vector: String,
    /// Build list size.
    pub build_l: u32,
    /// The device's 4 KiB random-read IOPS at queue depth 64 (fio,
    /// O_DIRECT), measured beside the runs.
    #[serde(default)]
    pub device_iops: Option<f64>,
    /// Local intrinsic dimension of the data, if measured.
    #[serde(default)]
    pub lid: Option<f64>,
    /// Build wall seconds and threads.
    pub build_s: f64,
    /// Build threads.
    pub build_threads: u32,
    /// Search list size.
    #[serde(rename = "L")]
    pub l: u32,
    /// Beam width.
    #[serde(rename = "W")]
    pub w: u32,
    /// Recall@k against exact ground truth.
    pub recall_at_k: f64,
    /// Throughput with `threads` threads.
    pub qps: f64,
    /// Threads of the throughput pass.
    pub threads: u32,
    /// Single-query latency, µs.
    pub lat_p50_us: f64,
    /// Single-query latency, µs.
    pub lat_p99_us: f64,
    /// Disk reads per query.
    pub mean_ios: f64,
    /// Nodes expanded per query.
    pub mean_hops: f64,
    /// Nodes in the cache.
    pub cache_nodes: u64,
    /// RAM of the navigation tier.
    pub ram_nav_bytes: u64,
}

/// What the runs give at one n for one recall target (cache off),
/// interpolated between the two L values around it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AtRecall {
    pub n: u64,
    pub l: f64,
    pub ios: f64,
    pub hops: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub qps: f64,
    /// The target is at or below the smallest L measured: the figures
    /// are that L's, an upper bound on what the target needs.
    pub censored: bool,
}

/// `y = a + b x`, least squares.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Line {
    pub a: f64,
    pub b: f64,
}

impl Line {
    /// The fit over (x, y) pairs; None with fewer than two distinct x.
    pub fn fit(pts: &[(f64, f64)]) -> Option<Line> {
        let k = pts.len() as f64;
        let mx = pts.iter().map(|p| p.0).sum::<f64>() / k;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / k;
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
        if pts.len() < 2 || sxx <= 1e-12 * k {
            return None;
        }
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let b = sxy / sxx;
        Some(Line { a: my - b * mx, b })
    }
    /// y at x.
    pub fn at(&self, x: f64) -> f64 {
        self.a + self.b * x
    }
}

/// `y = a + b x1 + c x2`, least squares (normal equations).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Plane {
    pub a: f64,
    pub b: f64,
    pub c: f64,
}

impl Plane {
    /// The fit over (x1, x2, y); None when the points do not span a plane.
    pub fn fit(pts: &[(f64, f64, f64)]) -> Option<Plane> {
        let mut m = [[0.0f64; 4]; 3];
        for &(x1, x2, y) in pts {
            let row = [1.0, x1, x2];
            for i in 0..3 {
                for j in 0..3 {
                    m[i][j] += row[i] * row[j];
                }
                m[i][3] += row[i] * y;
            }
        }
        // Gaussian elimination with partial pivoting.
        for col in 0..3 {
            let p = (col..3).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
            if m[p][col].abs() < 1e-9 * (1.0 + m[col][col].abs()) {
                return None;
            }
            m.swap(col, p);
            let pivot = m[col];
            for (r, row) in m.iter_mut().enumerate() {
                if r != col {
                    let f = row[col] / pivot[col];
                    for (x, p) in row.iter_mut().zip(pivot.iter()).skip(col) {
                        *x -= f * p;
                    }
                }
            }
        }
        Some(Plane {
            a: m[0][3] / m[0][0],
            b: m[1][3] / m[1][1],
            c: m[2][3] / m[2][2],
        })
    }
    /// y at (x1, x2).
    pub fn at(&self, x1: f64, x2: f64) -> f64 {
        self.a + self.b * x1 + self.c * x2
    }
}

/// Why a prediction cannot be made.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    #[error("no measured runs in the costs file")]
    NoRuns,
    #[error(
        "recall {target} is beyond every measured run of family {family:?} (highest: {best:.4}); measure larger L"
    )]
    RecallOutOfRange { family: String, target: f64, best: f64 },
    #[error("family {0:?} has runs at one size only and no other family gives the growth with n")]
    NoSlope(String),
}

/// The cache-off points of `runs` at size `n` of `family`, by L.
fn points<'a>(runs: &'a [Run], family: &str, n: u64) -> Vec<&'a Run> {
    let mut v: Vec<&Run> = runs
        .iter()
        .filter(|r| r.family == family && r.n == n && r.cache_nodes == 0)
        .collect();
    v.sort_by_key(|r| (r.l, r.w));
    v
}

/// Interpolate the cache-off points of (family, n) to `recall`: the first
/// L at which the measured recall reaches it, linearly between the two L
/// values around it. A target below the lowest point takes that point.
pub fn at_recall(runs: &[Run], family: &str, n: u64, recall: f64) -> Result<AtRecall, ModelError> {
    let p = points(runs, family, n);
    let best = p.iter().map(|r| r.recall_at_k).fold(0.0, f64::max);
    let out = |r: &Run| AtRecall {
        n,
        l: r.l as f64,
        ios: r.mean_ios,
        hops: r.mean_hops,
        p50_us: r.lat_p50_us,
        p99_us: r.lat_p99_us,
        qps: r.qps,
        censored: true,
    };
    let Some(first) = p.first() else {
        return Err(ModelError::NoRuns);
    };
    if recall <= first.recall_at_k {
        return Ok(out(first));
    }
    for w in p.windows(2) {
        let (lo, hi) = (w[0], w[1]);
        if lo.recall_at_k < recall && recall <= hi.recall_at_k {
            let t = (recall - lo.recall_at_k) / (hi.recall_at_k - lo.recall_at_k);
            let mix = |a: f64, b: f64| a + t * (b - a);
            return Ok(AtRecall {
                n,
                l: mix(lo.l as f64, hi.l as f64),
                ios: mix(lo.mean_ios, hi.mean_ios),
                hops: mix(lo.mean_hops, hi.mean_hops),
                p50_us: mix(lo.lat_p50_us, hi.lat_p50_us),
                p99_us: mix(lo.lat_p99_us, hi.lat_p99_us),
                qps: mix(lo.qps, hi.qps),
                censored: false,
            });
        }
    }
    Err(ModelError::RecallOutOfRange {
        family: family.to_string(),
        target: recall,
        best,
    })
}

/// Distinct sizes measured for a family (cache off), ascending.
pub fn sizes(runs: &[Run], family: &str) -> Vec<u64> {
    let mut v: Vec<u64> = runs
        .iter()
        .filter(|r| r.family == family && r.cache_nodes == 0)
        .map(|r| r.n)
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The fitted model of one family for one recall target.
#[derive(Clone, Debug)]
pub struct Fitted {
    pub family: String,
    pub dim: u32,
    pub r: u32,
    pub pq_bytes: u32,
    pub disk_vector: String,
    pub build_l: u32,
    pub lid: Option<f64>,
    pub device_iops: Option<f64>,
    /// The sizes and what they gave at the target.
    pub measured: Vec<AtRecall>,
    /// IOs = a + b ln n.
    pub ios: Line,
    /// Hops = a + b ln n.
    pub hops: Line,
    /// Search L = a + b ln n.
    pub l: Line,
    /// Whether the slopes came from another family.
    pub borrowed_slope: Option<String>,
    /// Sizes left out of the fits (the target below their smallest L).
    pub censored: Vec<u64>,
    /// p50 µs and p99 µs = c + d hops + e IOs (every point of the family,
    /// cached or not: a cached hop costs CPU, a read hop CPU and a wait).
    pub p50: Plane,
    pub p99: Plane,
    /// Thread-µs per query = c + d hops + e IOs: the throughput pass's
    /// threads × its seconds per query. The threads busy-poll their reads,
    /// so this is a thread's whole time per query, read waits included.
    pub core_us: Plane,
    /// Build seconds per point per thread = g + h ln n.
    pub build: Option<Line>,
    /// Navigation-tier bytes per sampled vector per dimension.
    pub nav_bytes_per_dim: f64,
    /// Measured cache shares and the share of reads they remove.
    pub cache_curve: Vec<(f64, f64)>,
}

/// How IOs, hops and L grow with ln n past the measured sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Growth {
    /// The line through the two largest sizes: the growth where the runs
    /// end. The cost of a recall grows faster than ln n on graphs of a
    /// fixed degree, so this is the less optimistic of the two.
    End,
    /// Least squares over every size.
    All,
}

/// Fit `family` at `recall`; `slope_from` lends the ln n growth when the
/// family has one size only.
pub fn fit(
    runs: &[Run],
    family: &str,
    recall: f64,
    slope_from: Option<&Fitted>,
    growth: Growth,
) -> Result<Fitted, ModelError> {
    let fam: Vec<&Run> = runs.iter().filter(|r| r.family == family).collect();
    let first = *fam.first().ok_or(ModelError::NoRuns)?;
    let measured = sizes(runs, family)
        .into_iter()
        .map(|n| at_recall(runs, family, n, recall))
        .collect::<Result<Vec<_>, _>>()?;
    let ln = |m: &AtRecall| (m.n as f64).ln();
    // Sizes whose smallest L already passes the target say only "at most
    // this"; they are left out of the fits while two others remain.
    let exact: Vec<&AtRecall> = measured.iter().filter(|m| !m.censored).collect();
    let mut fitted: Vec<&AtRecall> = if exact.len() >= 2 {
        exact
    } else {
        measured.iter().collect()
    };
    if growth == Growth::End && fitted.len() > 2 {
        fitted.drain(..fitted.len() - 2);
    }
    let censored = measured
        .iter()
        .filter(|m| m.censored && !fitted.iter().any(|f| f.n == m.n))
        .map(|m| m.n)
        .collect();
    let line = |f: &dyn Fn(&AtRecall) -> f64| Line::fit(&fitted.iter().map(|m| (ln(m), f(m))).collect::<Vec<_>>());
    let (ios, hops, l, borrowed) = match (line(&|m| m.ios), line(&|m| m.hops), line(&|m| m.l)) {
        (Some(a), Some(b), Some(c)) => (a, b, c, None),
        _ => {
            let other = slope_from.ok_or_else(|| ModelError::NoSlope(family.to_string()))?;
            let m = *fitted.last().ok_or(ModelError::NoRuns)?;
            let shift = |y: f64, b: f64| Line { a: y - b * ln(m), b };
            (
                shift(m.ios, other.ios.b),
                shift(m.hops, other.hops.b),
                shift(m.l, other.l.b),
                Some(other.family.clone()),
            )
        }
    };
    let pooled = |f: &dyn Fn(&Run) -> f64| {
        Plane::fit(&fam.iter().map(|r| (r.mean_hops, r.mean_ios, f(r))).collect::<Vec<_>>()).ok_or(ModelError::NoRuns)
    };
    let p50 = pooled(&|r| r.lat_p50_us)?;
    let p99 = pooled(&|r| r.lat_p99_us)?;
    let core_us = pooled(&|r| r.threads as f64 * 1e6 / r.qps)?;
    // One build per size: seconds × threads per point against ln n.
    let mut builds: Vec<(f64, f64)> = Vec::new();
    for n in sizes(runs, family) {
        if let Some(r) = fam.iter().find(|r| r.n == n && r.build_s > 0.0) {
            builds.push(((n as f64).ln(), r.build_s * r.build_threads as f64 / n as f64));
        }
    }
    if growth == Growth::End && builds.len() > 2 {
        builds.drain(..builds.len() - 2);
    }
    let nav: Vec<f64> = fam
        .iter()
        .map(|r| {
            let sample = quarry_engine::graph::hnsw::NavParams::default_sample(r.n as usize) as f64;
            r.ram_nav_bytes as f64 / sample / r.dim as f64
        })
        .collect();
    Ok(Fitted {
        family: family.to_string(),
        dim: first.dim,
        r: first.r,
        pq_bytes: first.pq_bytes,
        disk_vector: first.disk_vector.clone(),
        build_l: first.build_l,
        lid: first.lid,
        device_iops: fam.iter().find_map(|r| r.device_iops),
        measured,
        ios,
        hops,
        l,
        borrowed_slope: borrowed,
        censored,
        p50,
        p99,
        core_us,
        // One size: its cost per point, growing as the lender's does.
        build: Line::fit(&builds).or_else(|| match (builds.as_slice(), slope_from.and_then(|o| o.build)) {
            ([(x, y)], Some(other)) => Some(Line {
                a: y - other.b * x,
                b: other.b,
            }),
            _ => None,
        }),
        nav_bytes_per_dim: nav.iter().sum::<f64>() / nav.len() as f64,
        cache_curve: cache_curve(runs, family),
    })
}

/// Share of reads the cache removes at each measured share: at each
/// (n, L) measured both with and without a cache, 1 − IOs(cached) /
/// IOs(none), averaged over the L values; (0, 0) and (1, 1) included.
pub fn cache_curve(runs: &[Run], family: &str) -> Vec<(f64, f64)> {
    let mut shares: Vec<(u64, u64)> = runs
        .iter()
        .filter(|r| r.family == family && r.cache_nodes > 0)
        .map(|r| (r.n, r.cache_nodes))
        .collect();
    shares.sort_unstable();
    shares.dedup();
    let mut curve = vec![(0.0, 0.0)];
    for (n, c) in shares {
        let mut cut = Vec::new();
        for r in runs
            .iter()
            .filter(|r| r.family == family && r.n == n && r.cache_nodes == c)
        {
            if let Some(base) = runs
                .iter()
                .find(|b| b.family == family && b.n == n && b.cache_nodes == 0 && b.l == r.l && b.w == r.w)
            {
                if base.mean_ios > 0.0 {
                    cut.push((1.0 - r.mean_ios / base.mean_ios).clamp(0.0, 1.0));
                }
            }
        }
        if !cut.is_empty() {
            curve.push((c as f64 / n as f64, cut.iter().sum::<f64>() / cut.len() as f64));
        }
    }
    if curve.last().is_none_or(|p| p.0 < 1.0) {
        curve.push((1.0, 1.0));
    }
    curve.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    curve
}

/// Share of reads a cache of share `s` removes (linear between measured
/// shares).
pub fn cache_cut(curve: &[(f64, f64)], s: f64) -> f64 {
    let s = s.clamp(0.0, 1.0);
    for w in curve.windows(2) {
        if s <= w[1].0 {
            let t = if w[1].0 > w[0].0 {
                (s - w[0].0) / (w[1].0 - w[0].0)
            } else {
                1.0
            };
            return w[0].1 + t * (w[1].1 - w[0].1);
        }
    }
    1.0
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn run(n: u64, l: u32, recall: f64, ios: f64, cache: u64) -> Run {
        Run {
            family: "f".into(),
            n,
            dim: 96,
            r: 32,
            pq_bytes: 48,
            disk_vector: "f32".into(),
            build_l: 50,
            device_iops: Some(100_000.0),
            lid: None,
            build_s: n as f64 / 10_000.0 * (n as f64).ln(),
            build_threads: 2,
            l,
            w: 4,
            recall_at_k: recall,
            qps: 1e6 / (10.0 + ios),
            threads: 2,
            lat_p50_us: 100.0 + 10.0 * ios,
            lat_p99_us: 200.0 + 20.0 * ios,
            mean_ios: ios,
            mean_hops: ios,
            cache_nodes: cache,
            ram_nav_bytes: (n / 100) * 96 * 6,
        }
    }

    /// IOs at recall 0.9 are 20 + 5 ln(n / 1e5) by construction.
    pub(crate) fn synthetic() -> Vec<Run> {
        let mut v = Vec::new();
        for n in [100_000u64, 300_000, 1_000_000, 3_000_000] {
            let at = 20.0 + 5.0 * (n as f64 / 1e5).ln();
            v.push(run(n, 20, 0.8, at - 10.0, 0));
            v.push(run(n, 40, 1.0, at + 10.0, 0));
        }
        // A cache of 10 %: fewer reads, the same hops.
        let at = 20.0 + 5.0 * 10f64.ln();
        for (l, recall, ios, hops) in [(20, 0.8, 10.0, at - 10.0), (40, 1.0, 20.0, at + 10.0)] {
            let mut r = run(1_000_000, l, recall, ios, 100_000);
            r.mean_hops = hops;
            v.push(r);
        }
        v
    }

    #[test]
    fn the_fit_recovers_the_law_it_was_made_from() {
        let runs = synthetic();
        let f = fit(&runs, "f", 0.9, None, Growth::All).unwrap();
        assert!((f.ios.b - 5.0).abs() < 1e-9, "{:?}", f.ios);
        let at_10m = f.ios.at((1e7f64).ln());
        assert!((at_10m - (20.0 + 5.0 * 100f64.ln())).abs() < 1e-6);
        // Latency is 100 + 10 IOs and 200 + 20 IOs whatever the hops; the
        // cached runs (hops without reads) tell the two apart.
        let close = |p: Plane, a: f64, b: f64, c: f64| {
            (p.a - a).abs() < 1e-6 && (p.b - b).abs() < 1e-9 && (p.c - c).abs() < 1e-9
        };
        assert!(close(f.p50, 100.0, 0.0, 10.0), "{:?}", f.p50);
        assert!(close(f.p99, 200.0, 0.0, 20.0), "{:?}", f.p99);
        // Thread time: 2 threads × (10 + IOs) µs.
        assert!(close(f.core_us, 20.0, 0.0, 2.0), "{:?}", f.core_us);
        // Build: seconds × threads / n = 2e-4 ln n.
        let b = f.build.unwrap();
        assert!(b.a.abs() < 1e-9 && (b.b - 2e-4).abs() < 1e-12, "{b:?}");
        assert!((f.nav_bytes_per_dim - 6.0).abs() < 0.01, "{}", f.nav_bytes_per_dim);
    }

    #[test]
    fn end_growth_is_the_line_through_the_two_largest_sizes() {
        // IOs at recall 0.9 grow as 20 + (ln(n / 1e5))^2: faster than ln n.
        let mut runs = Vec::new();
        let at = |n: u64| 20.0 + (n as f64 / 1e5).ln().powi(2);
        for n in [100_000u64, 300_000, 1_000_000, 3_000_000] {
            runs.push(run(n, 20, 0.8, at(n) - 10.0, 0));
            runs.push(run(n, 40, 1.0, at(n) + 10.0, 0));
        }
        // Hops not a multiple of IOs, so the latency planes fit.
        for r in &mut runs {
            r.mean_hops += r.l as f64;
        }
        let end = fit(&runs, "f", 0.9, None, Growth::End).unwrap();
        let all = fit(&runs, "f", 0.9, None, Growth::All).unwrap();
        for n in [1_000_000u64, 3_000_000] {
            assert!((end.ios.at((n as f64).ln()) - at(n)).abs() < 1e-9, "{n}");
        }
        // Past the runs, the end line is above the least-squares one, and
        // nearer the truth.
        let ln = (3e7f64).ln();
        assert!(end.ios.at(ln) > all.ios.at(ln));
        assert!((at(30_000_000) - end.ios.at(ln)).abs() < (at(30_000_000) - all.ios.at(ln)).abs());
    }

    #[test]
    fn the_cache_curve_comes_from_paired_runs() {
        let runs = synthetic();
        let c = cache_curve(&runs, "f");
        // At 1M: L=20 cut 1 − 10/(at − 10), L=40 1 − 20/(at + 10).
        let at = 20.0 + 5.0 * 10f64.ln();
        let want = ((1.0 - 10.0 / (at - 10.0)) + (1.0 - 20.0 / (at + 10.0))) / 2.0;
        assert_eq!(c.len(), 3);
        assert!((c[1].0 - 0.1).abs() < 1e-12 && (c[1].1 - want).abs() < 1e-12, "{c:?}");
        assert!((cache_cut(&c, 0.05) - want / 2.0).abs() < 1e-12);
        assert_eq!(cache_cut(&c, 1.0), 1.0);
        assert_eq!(cache_cut(&c, 0.0), 0.0);
    }

    #[test]
    fn a_recall_past_the_runs_is_refused_and_one_size_borrows_a_slope() {
        let runs = synthetic();
        assert!(matches!(
            fit(&runs, "f", 1.01, None, Growth::All),
            Err(ModelError::RecallOutOfRange { .. })
        ));
        let base = fit(&runs, "f", 0.9, None, Growth::All).unwrap();
        let mut one: Vec<Run> = runs.iter().filter(|r| r.n == 1_000_000).cloned().collect();
        for r in &mut one {
            r.family = "g".into();
            r.mean_ios *= 2.0;
        }
        assert_eq!(
            fit(&one, "g", 0.9, None, Growth::All).unwrap_err(),
            ModelError::NoSlope("g".into())
        );
        let g = fit(&one, "g", 0.9, Some(&base), Growth::All).unwrap();
        assert_eq!(g.borrowed_slope.as_deref(), Some("f"));
        // Its build cost per point is its own at 1M, growing as f's.
        let (gb, fb) = (g.build.unwrap(), base.build.unwrap());
        assert!((gb.b - fb.b).abs() < 1e-12);
        let at = (1e6f64).ln();
        assert!((gb.at(at) - one[0].build_s * 2.0 / 1e6).abs() < 1e-12, "{gb:?}");
        assert!((g.ios.b - base.ios.b).abs() < 1e-12);
        let at_1m = 2.0 * (20.0 + 5.0 * 10f64.ln());
        assert!((g.ios.at(1e6f64.ln()) - at_1m).abs() < 1e-6);
    }
}
