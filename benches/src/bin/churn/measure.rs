//! One measurement: interleaved timed passes over several collections,
//! their recall against exact ground truth, latency percentiles, IOs per
//! query, and the JSON they are reported as.

use super::*;

/// Bytes read from storage so far (None where /proc/self/io is missing).
pub(crate) fn read_bytes() -> Option<u64> {
    std::path::Path::new("/proc/self/io")
        .exists()
        .then(quarry_engine::runtime::io_read_bytes)
}

/// Nearest-rank percentile of sorted values.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One measurement: recall and latency of a collection at (k, L, W).
pub(crate) struct Measured {
    /// recall@k of the first timed pass.
    pub(crate) recall: f64,
    /// recall@k of each timed pass (the disk search expands nodes in
    /// completion order, so answers may differ between passes).
    pub(crate) pass_recall: Vec<f64>,
    /// recall@k of the first pass counting a hit whose exact distance ties
    /// the k-th true distance (duplicate vectors) as correct.
    pub(crate) recall_ties: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) mean_us: f64,
    pub(crate) pass_p50_us: Vec<f64>,
    pub(crate) pass_mean_us: Vec<f64>,
    pub(crate) ios_per_query: f64,
    /// Hits whose reported distance is not that of the id's live vector
    /// (or whose id is not live), over every pass.
    pub(crate) distance_mismatches: usize,
    pub(crate) max_distance_error: f64,
    pub(crate) duplicate_hits: usize,
    pub(crate) short_results: usize,
}

pub(crate) struct SearchCfg {
    pub(crate) k: usize,
    pub(crate) l: usize,
    pub(crate) w: usize,
    pub(crate) warmup: usize,
}

/// A collection to measure and what it is checked against.
pub(crate) struct Target<'a> {
    pub(crate) c: &'a Collection,
    /// External id → base row of its live vectors.
    pub(crate) row_of: &'a HashMap<u64, usize>,
    pub(crate) truth: &'a Truth,
}

/// Per-pass accumulators of one target.
#[derive(Default)]
pub(crate) struct Passes {
    pub(crate) recall: Vec<f64>,
    pub(crate) recall_ties: Vec<f64>,
    pub(crate) p50: Vec<f64>,
    pub(crate) p99: Vec<f64>,
    pub(crate) mean: Vec<f64>,
    pub(crate) read_bytes: u64,
    pub(crate) mismatches: usize,
    pub(crate) max_err: f64,
    pub(crate) dups: usize,
    pub(crate) short: usize,
}

/// Score one pass's answers against the target's truth and live vectors.
pub(crate) fn score(
    t: &Target,
    base: &[f32],
    dim: usize,
    queries: &[f32],
    k: usize,
    got: &[Vec<(u64, f32)>],
    acc: &mut Passes,
) {
    let (mut hits, mut hits_ties) = (0usize, 0usize);
    for (qi, (res, q)) in got.iter().zip(queries.chunks_exact(dim)).enumerate() {
        let truth = &t.truth.ids[qi * t.truth.k..qi * t.truth.k + k];
        let kth = t.truth.kth[qi];
        if res.len() < k {
            acc.short += 1;
        }
        let mut seen = HashSet::new();
        let mut tie_hits = 0;
        for &(id, d) in res.iter().take(k) {
            if !seen.insert(id) {
                acc.dups += 1;
                continue;
            }
            if truth.contains(&id) {
                hits += 1;
            }
            let Some(&row) = t.row_of.get(&id) else {
                // Not live: counts as a mismatch (it must never happen).
                acc.mismatches += 1;
                continue;
            };
            let exact = Metric::L2.distance(q, &base[row * dim..(row + 1) * dim]);
            let err = (d - exact).abs() as f64;
            acc.max_err = acc.max_err.max(err);
            if err > 5e-3 + 5e-3 * exact.abs() as f64 {
                acc.mismatches += 1;
            }
            if exact <= kth * (1.0 + 1e-6) + 1e-7 {
                tie_hits += 1;
            }
        }
        hits_ties += tie_hits.min(k);
    }
    let denom = (k * got.len()) as f64;
    acc.recall.push(hits as f64 / denom);
    acc.recall_ties.push(hits_ties as f64 / denom);
}

/// Measure several collections side by side: `warmup` untimed queries on
/// each, then `reps` rounds of one timed pass over every query per
/// collection, interleaved (A, B, A, B, ...), so all of them see the same
/// machine conditions.
pub(crate) fn measure(
    targets: &[Target],
    base: &[f32],
    dim: usize,
    queries: &[f32],
    s: &SearchCfg,
    reps: usize,
) -> Result<Vec<Measured>> {
    let nq = queries.len() / dim;
    let mut readers: Vec<CollectionSearcher> = targets.iter().map(|_| CollectionSearcher::default()).collect();
    for (t, r) in targets.iter().zip(readers.iter_mut()) {
        for q in queries.chunks_exact(dim).take(s.warmup) {
            t.c.search(q, s.k, s.l, s.w, r)?;
        }
    }
    let mut acc: Vec<Passes> = targets.iter().map(|_| Passes::default()).collect();
    for _ in 0..reps.max(1) {
        for ((t, r), a) in targets.iter().zip(readers.iter_mut()).zip(acc.iter_mut()) {
            let mut lat = Vec::with_capacity(nq);
            let mut got = Vec::with_capacity(nq);
            let rb0 = read_bytes();
            for q in queries.chunks_exact(dim) {
                let t0 = Instant::now();
                let hits = t.c.search(q, s.k, s.l, s.w, r)?;
                lat.push(t0.elapsed().as_secs_f64() * 1e6);
                got.push(hits.into_iter().map(|h| (h.id, h.distance)).collect::<Vec<_>>());
            }
            if let (Some(x), Some(y)) = (rb0, read_bytes()) {
                a.read_bytes += y - x;
            }
            a.mean.push(lat.iter().sum::<f64>() / nq as f64);
            lat.sort_by(f64::total_cmp);
            a.p50.push(percentile(&lat, 0.50));
            a.p99.push(percentile(&lat, 0.99));
            score(t, base, dim, queries, s.k, &got, a);
        }
    }
    let have_io = read_bytes().is_some();
    Ok(acc
        .into_iter()
        .map(|a| Measured {
            recall: a.recall[0],
            recall_ties: a.recall_ties[0],
            pass_recall: a.recall.clone(),
            p50_us: median(a.p50.clone()),
            p99_us: median(a.p99),
            mean_us: median(a.mean.clone()),
            pass_p50_us: a.p50,
            pass_mean_us: a.mean,
            ios_per_query: if have_io {
                a.read_bytes as f64 / 4096.0 / (nq * reps.max(1)) as f64
            } else {
                f64::NAN
            },
            distance_mismatches: a.mismatches,
            max_distance_error: a.max_err,
            duplicate_hits: a.dups,
            short_results: a.short,
        })
        .collect())
}

pub(crate) fn measured_json(m: &Measured) -> Value {
    json!({
        "recall": m.recall,
        "recall_ties": m.recall_ties,
        "pass_recall": m.pass_recall,
        "p50_us": m.p50_us,
        "p99_us": m.p99_us,
        "mean_us": m.mean_us,
        "pass_p50_us": m.pass_p50_us,
        "pass_mean_us": m.pass_mean_us,
        "ios_per_query": m.ios_per_query,
        "distance_mismatches": m.distance_mismatches,
        "max_distance_error": m.max_distance_error,
        "duplicate_hits": m.duplicate_hits,
        "short_results": m.short_results,
    })
}

pub(crate) fn search_json(
    m: &Measured,
    kind: &str,
    which: &str,
    round: usize,
    phase: &str,
    c: &Collection,
    l: usize,
) -> Value {
    let mut j = measured_json(m);
    j["kind"] = json!(kind);
    j["which"] = json!(which);
    j["round"] = json!(round);
    j["phase"] = json!(phase);
    j["segments"] = json!(c.segments());
    j["fresh_nodes"] = json!(c.fresh_len());
    j["L"] = json!(l);
    j
}
