//! `churn`: the recall-stability benchmark of a mutable collection
//! (`quarry_engine::collection::Collection`) under deletes, inserts
//! and overwrites, with flushes and merges in between.
//!
//! Owns: the churn schedule (which ids are deleted, inserted and
//! overwritten each round, all from one seed), exact ground truth over the
//! live set after every round, the single-thread latency and recall
//! passes, the fresh build of the final live set it is compared with, and
//! the report (JSON lines on stdout, a markdown table on stderr).
//! Does not own: anything the engine does (it drives the public API only),
//! and it asserts nothing about speed: it measures and prints.
//!
//! The schedule. The base file (n vectors) is shuffled with the seed and
//! split into A, the first `start_frac · n` (N0 vectors, ids 0..N0, loaded
//! in one flush), and B, the rest, which supplies every later vector. Each
//! of `rounds` rounds replaces `replace_frac · N0 / rounds` vectors of the
//! current live set (chosen at random among all live ids, earlier inserts
//! included): 1 − `upsert_frac` of them by deleting the id and inserting a
//! vector of B under a new, never reused id, `upsert_frac` of them by
//! upserting a vector of B over the existing id. The live count stays N0.
//!
//! Per round: the writes (shuffled, in batches through the WAL), exact
//! ground truth (brute force, `dataset::groundtruth`) over the live set,
//! correctness checks (an overwritten id's old vector no longer finds it,
//! a deleted id is never returned, `get` returns the new vector), a search
//! pass before the flush (fresh index + segments), the flush (a merge when
//! the segment count has reached `max_segments`), the checks again, and a
//! search pass after it. Every search pass is interleaved with one over
//! the *reference*, a copy of the starting build (a fresh build of N0
//! vectors) opened as a second collection, so each round's latency has a
//! fresh-build counterpart measured under the same machine conditions. At
//! the end a third collection is built from exactly the final live set in
//! one flush, and the three are searched interleaved, `final_reps` passes
//! each.
//!
//! A measurement: `warmup` untimed queries on each collection, then `reps`
//! rounds of one timed pass over every query per collection, one query at
//! a time on this thread (`Collection::search`, k, L, W fixed);
//! latency figures are the median over passes of each pass's p50, p99 and
//! mean. IOs per query are `/proc/self/io` `read_bytes` / 4096 over that
//! collection's timed passes.

mod checks;
mod measure;
mod store;
mod world;

use checks::*;
use measure::*;
use store::*;
use world::*;

use anyhow::{bail, Context, Result};
use clap::Parser;
use quarry_engine::collection::{Collection, CollectionOptions, CollectionSearcher, Op};
use quarry_engine::dataset::groundtruth::{exact_knn, GroundTruth};
use quarry_engine::dataset::VectorFile;
use quarry_engine::format::StoredType;
use quarry_engine::graph::{BuildParams, NavParams};
use quarry_engine::index::IndexBuildOptions;
use quarry_engine::io::IoBackend;
use quarry_engine::storage::{RealFs, Vfs};
use quarry_engine::wal::WalOptions;
use quarry_engine::Metric;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Command line.
#[derive(Parser, Debug, Clone)]
#[command(about = "Recall stability of a mutable collection under churn (deletes, inserts, overwrites, merges)")]
struct Args {
    /// Directory with base.fbin and queries.fbin.
    #[arg(long, default_value = "~/.cache/quarry-data/npm-minilm-384")]
    data: String,
    /// Work directory (collections `churned/` and `fresh/` go under it);
    /// default ~/.cache/quarry-exp/churn-<params>. Never inside the repo.
    #[arg(long)]
    dir: Option<String>,
    /// Use only the first N base vectors (0 = all); for smoke runs.
    #[arg(long, default_value_t = 0)]
    max_base: usize,
    /// Fraction of the base in the starting set A.
    #[arg(long, default_value_t = 2.0 / 3.0)]
    start_frac: f64,
    /// Fraction of N0 replaced over all rounds.
    #[arg(long, default_value_t = 0.5)]
    replace_frac: f64,
    /// Rounds.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Fraction of each round's replacements done by overwriting an id.
    #[arg(long, default_value_t = 0.1)]
    upsert_frac: f64,
    /// Segments a search visits before a flush merges.
    #[arg(long, default_value_t = 2)]
    max_segments: usize,
    /// Graph degree of segments.
    #[arg(long = "R", default_value_t = 64)]
    r: usize,
    /// Build list size of segments.
    #[arg(long = "L-build", default_value_t = 100)]
    l_build: usize,
    /// RobustPrune alpha.
    #[arg(long, default_value_t = 1.2)]
    alpha: f32,
    /// PQ bytes per vector.
    #[arg(long, default_value_t = 64)]
    pq_bytes: usize,
    /// Stored vector type in segment graphs: f32, f16 or i8.
    #[arg(long, default_value = "f16")]
    disk_vector: StoredType,
    /// Fresh (in-RAM) graph degree.
    #[arg(long, default_value_t = 64)]
    fresh_r: usize,
    /// Fresh (in-RAM) graph insert list size.
    #[arg(long, default_value_t = 100)]
    fresh_l: usize,
    /// Build and ground-truth threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Queries used (the first N of queries.fbin; 0 = all).
    #[arg(long, default_value_t = 1000)]
    queries: usize,
    /// k of recall@k.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Search list size; by default the smallest of --sweep whose recall
    /// on the starting build reaches --pick-recall.
    #[arg(long = "L")]
    l: Option<usize>,
    /// L values swept on the starting build (and, for reference, the final fresh build).
    #[arg(long, value_delimiter = ',', default_value = "10,15,20,25,30,40,50,64,80,100")]
    sweep: Vec<usize>,
    /// Recall the starting build must reach at the chosen L.
    #[arg(long, default_value_t = 0.96)]
    pick_recall: f64,
    /// Beam width (reads in flight per query).
    #[arg(long = "W", default_value_t = 8)]
    w: usize,
    /// Untimed queries before each measurement.
    #[arg(long, default_value_t = 100)]
    warmup: usize,
    /// Timed passes per measurement (medians reported).
    #[arg(long, default_value_t = 3)]
    reps: usize,
    /// Interleaved churned/fresh passes at the end (medians reported).
    #[arg(long, default_value_t = 5)]
    final_reps: usize,
    /// Writes per `Collection::write` batch (one WAL group commit each).
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Deleted ids probed per round by the correctness check.
    #[arg(long, default_value_t = 200)]
    check_deletes: usize,
    /// Seed (split, schedule; segment builds use it too).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Reader backend: auto, uring or pread.
    #[arg(long, default_value = "auto")]
    io: IoBackend,
    /// Search every part of the live collection with the full L instead of
    /// splitting L by each part's share of the vectors (`CollectionOptions::split_l`).
    #[arg(long)]
    full_l: bool,
    /// Segments of at most this many nodes are held whole in RAM
    /// (`CollectionOptions::ram_segment_nodes`; quarryd's default is 100000).
    #[arg(long, default_value_t = 100_000)]
    ram_segment_nodes: usize,
    /// Keep the collections after the run.
    #[arg(long)]
    keep: bool,
}

fn expand_home(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(rest),
        None => PathBuf::from(p),
    }
}

/// Peak resident set size, kB (None if unknown).
fn peak_kb() -> Option<u64> {
    let b = quarry_engine::runtime::peak_rss_bytes();
    (b > 0).then_some(b / 1024)
}

fn emit(v: Value) {
    println!("{v}");
}

fn mib(kb: Option<u64>) -> f64 {
    kb.map_or(f64::NAN, |k| k as f64 / 1024.0)
}

/// One row of the final markdown table.
struct Row {
    round: String,
    phase: &'static str,
    segments: usize,
    fresh_nodes: usize,
    /// The churned collection.
    m: Measured,
    /// The reference (a copy of the starting build), measured interleaved with `m`.
    r: Measured,
    flush: Option<(f64, bool)>,
}

fn main() -> Result<()> {
    let a = Args::parse();
    let t_start = Instant::now();
    let data_dir = expand_home(&a.data);
    let base_file = VectorFile::open(data_dir.join("base.fbin"))?;
    let query_file = VectorFile::open(data_dir.join("queries.fbin"))?;
    let dim = base_file.dim();
    if query_file.dim() != dim {
        bail!("queries are {}-d, base {}-d", query_file.dim(), dim);
    }
    let base_cow = base_file.f32_data();
    let n = if a.max_base == 0 {
        base_file.len()
    } else {
        a.max_base.min(base_file.len())
    };
    let base: &[f32] = &base_cow[..n * dim];
    let nq = if a.queries == 0 {
        query_file.len()
    } else {
        a.queries.min(query_file.len())
    };
    let queries = query_file.read_rows_f32(0, nq);

    let n0 = (n as f64 * a.start_frac).floor() as usize;
    let per_round = (n0 as f64 * a.replace_frac / a.rounds.max(1) as f64).floor() as usize;
    let ups_per_round = (per_round as f64 * a.upsert_frac).round() as usize;
    let del_per_round = per_round - ups_per_round;
    if n0 == 0 || n0 + per_round * a.rounds > n {
        bail!(
            "start set {n0} + {} rounds x {per_round} replacements needs {} vectors; the base has {n}",
            a.rounds,
            n0 + per_round * a.rounds
        );
    }

    let dir = match &a.dir {
        Some(d) => expand_home(d),
        None => expand_home(&format!(
            "~/.cache/quarry-exp/churn-n{n}-R{}-Lb{}-pq{}-{}-seg{}-rounds{}-seed{}",
            a.r, a.l_build, a.pq_bytes, a.disk_vector, a.max_segments, a.rounds, a.seed
        )),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let churned_dir = dir.join("churned");
    let fresh_dir = dir.join("fresh");
    clear_collection(&churned_dir)?;
    clear_collection(&fresh_dir)?;

    let mut graph = BuildParams::new(a.r, a.l_build);
    graph.alpha = a.alpha;
    graph.seed = a.seed;
    graph.threads = a.threads.max(1);
    let build = IndexBuildOptions {
        metric: Metric::L2,
        graph,
        pq_bytes: a.pq_bytes,
        stored: a.disk_vector,
        nav_sample: NavParams::default_sample(n),
        rerank_file: false,
        opq: false,
        ram_budget: None,
        colocate: true,
    };
    let opts = CollectionOptions {
        dim,
        metric: Metric::L2,
        build,
        fresh_r: a.fresh_r,
        fresh_l: a.fresh_l,
        flush_at: usize::MAX,
        max_segments: a.max_segments,
        wal: WalOptions::default(),
        max_payload: 0,
        io: a.io,
        split_l: !a.full_l,
        ram_segment_nodes: a.ram_segment_nodes,
        cache_nodes: 0,
        hold_unacked: false,
    };
    let cmdline: Vec<String> = std::env::args().collect();
    emit(json!({
        "kind": "config",
        "command": cmdline.join(" "),
        "data": data_dir.display().to_string(),
        "dir": dir.display().to_string(),
        "n_base_used": n, "dim": dim, "queries": nq, "k": a.k, "W": a.w,
        "n0": n0, "b_size": n - n0, "rounds": a.rounds,
        "replaced_per_round": per_round, "deleted_ids_per_round": del_per_round,
        "overwritten_ids_per_round": ups_per_round, "new_ids_per_round": del_per_round,
        "max_segments": a.max_segments, "R": a.r, "L_build": a.l_build, "alpha": a.alpha,
        "pq_bytes": a.pq_bytes, "disk_vector": a.disk_vector.to_string(),
        "fresh_r": a.fresh_r, "fresh_l": a.fresh_l, "threads": a.threads,
        "metric": "l2", "seed": a.seed, "reps": a.reps, "final_reps": a.final_reps,
        "warmup": a.warmup, "batch": a.batch, "io": format!("{:?}", a.io),
        "wal_sync": "default (every batch synced)",
    }));
    eprintln!(
        "churn: n={n} dim={dim} N0={n0} |B|={}; {} rounds x {per_round} replaced ({del_per_round} delete+new id, {ups_per_round} overwrite); max_segments={}; dir {}",
        n - n0,
        a.rounds,
        a.max_segments,
        dir.display()
    );

    // Split and starting set.
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(a.seed);
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(&mut rng);
    let mut world = World {
        dim,
        base,
        row_of: HashMap::with_capacity(n0 + per_round),
        live: Vec::with_capacity(n0 + per_round),
    };
    for (i, &row) in perm[..n0].iter().enumerate() {
        world.row_of.insert(i as u64, row);
        world.live.push(i as u64);
    }
    let mut b_rows = perm[n0..].iter().copied();
    let mut next_id = n0 as u64;

    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (churned, _) = Collection::open(fs.clone(), &churned_dir, opts.clone())?;
    let ops: Vec<Op> = world
        .live
        .iter()
        .map(|&id| Op::Upsert {
            id,
            vector: world.vec_of(id).to_vec(),
            payload: Vec::new(),
        })
        .collect();
    let load_s = write_all(&churned, ops, a.batch)?;
    eprintln!("start: {n0} upserts (WAL + fresh index) in {load_s:.1} s; flushing");
    let (fj, flush_s, _) = timed_flush(&churned, "start")?;
    emit(
        json!({"kind": "load", "which": "churned_start", "vectors": n0, "write_seconds": load_s,
        "flush": fj, "vm_hwm_mib": mib(peak_kb())}),
    );
    eprintln!("start: flush {flush_s:.1} s");

    // The reference: a byte-for-byte copy of the starting build (a fresh
    // build of N0 vectors), opened as its own collection and searched
    // interleaved with the churned one at every measurement, so every
    // round has a latency ratio taken under the same machine conditions.
    let reference_dir = dir.join("reference");
    clear_collection(&reference_dir)?;
    copy_dir(&churned_dir, &reference_dir)?;
    let (reference, ref_open) = Collection::open(fs.clone(), &reference_dir, opts.clone())?;
    if ref_open.live != n0 || reference.segments() != 1 {
        bail!(
            "the reference copy holds {} live vectors in {} segments; expected {n0} in 1",
            ref_open.live,
            reference.segments()
        );
    }
    let ref_row_of = world.row_of.clone();

    // Pick L on the starting build.
    let (truth0, gt_s) = ground_truth(&world, &queries, a.k, a.threads)?;
    emit(json!({"kind": "ground_truth", "round": 0, "live": world.live.len(), "seconds": gt_s}));
    let sweep_one =
        |c: &Collection, which: &str, truth: &Truth, row_of: &HashMap<u64, usize>| -> Result<Vec<(usize, f64)>> {
            let mut out = Vec::new();
            for &l in &a.sweep {
                if l < a.k {
                    continue;
                }
                let s = SearchCfg {
                    k: a.k,
                    l,
                    w: a.w,
                    warmup: a.warmup,
                };
                let m = measure(&[Target { c, row_of, truth }], base, dim, &queries, &s, 1)?.remove(0);
                let mut j = measured_json(&m);
                j["kind"] = json!("sweep");
                j["which"] = json!(which);
                j["L"] = json!(l);
                j["W"] = json!(a.w);
                emit(j);
                eprintln!(
                    "  sweep {which} L={l}: recall {:.4}, p50 {:.0} us, mean {:.0} us",
                    m.recall, m.p50_us, m.mean_us
                );
                out.push((l, m.recall));
            }
            Ok(out)
        };
    let sweep0 = sweep_one(&churned, "start", &truth0, &world.row_of)?;
    let l = match a.l {
        Some(l) => l,
        None => match sweep0.iter().find(|x| x.1 >= a.pick_recall) {
            Some(x) => x.0,
            None => {
                let last = sweep0.last().map_or(a.k.max(64), |x| x.0);
                eprintln!(
                    "warning: no swept L reaches recall {} on the starting build; using L={last}",
                    a.pick_recall
                );
                last
            }
        },
    };
    let scfg = SearchCfg {
        k: a.k,
        l,
        w: a.w,
        warmup: a.warmup,
    };
    emit(json!({"kind": "chosen_L", "L": l, "pick_recall": a.pick_recall, "given": a.l.is_some()}));
    eprintln!("L = {l} (W = {})", a.w);

    // Churned and reference side by side; returns (churned, reference).
    let side_by_side = |world: &World, truth: &Truth| -> Result<(Measured, Measured)> {
        let mut v = measure(
            &[
                Target {
                    c: &churned,
                    row_of: &world.row_of,
                    truth,
                },
                Target {
                    c: &reference,
                    row_of: &ref_row_of,
                    truth: &truth0,
                },
            ],
            base,
            dim,
            &queries,
            &scfg,
            a.reps,
        )?;
        let r = v.pop().expect("two");
        let m = v.pop().expect("two");
        Ok((m, r))
    };

    let mut rows: Vec<Row> = Vec::new();
    let (m0, r0) = side_by_side(&world, &truth0)?;
    emit(search_json(&m0, "search", "churned", 0, "start", &churned, l));
    emit(search_json(&r0, "search", "reference", 0, "start", &reference, l));
    rows.push(Row {
        round: "0".into(),
        phase: "start",
        segments: churned.segments(),
        fresh_nodes: churned.fresh_len(),
        m: m0,
        r: r0,
        flush: Some((flush_s, false)),
    });

    let mut checks_total_bad = 0usize;
    for round in 1..=a.rounds {
        // Schedule: victims (deleted ids) and overwrite targets from the live set.
        let (chosen, _) = world.live.partial_shuffle(&mut rng, per_round);
        let victims: Vec<u64> = chosen[..del_per_round].to_vec();
        let targets: Vec<u64> = chosen[del_per_round..].to_vec();
        let mut ops = Vec::with_capacity(per_round * 2);
        let mut deleted: Vec<(u64, usize)> = Vec::with_capacity(del_per_round);
        for &id in &victims {
            ops.push(Op::Delete { id });
            deleted.push((id, world.row_of.remove(&id).expect("live")));
        }
        let mut new_ids = Vec::with_capacity(del_per_round);
        for _ in 0..del_per_round {
            let row = b_rows.next().expect("B is large enough (checked)");
            let id = next_id;
            next_id += 1;
            world.row_of.insert(id, row);
            new_ids.push(id);
            ops.push(Op::Upsert {
                id,
                vector: world.row(row).to_vec(),
                payload: Vec::new(),
            });
        }
        let mut upserted: Vec<(u64, usize)> = Vec::with_capacity(ups_per_round);
        for &id in &targets {
            let row = b_rows.next().expect("B is large enough (checked)");
            let old = world.row_of.insert(id, row).expect("live");
            upserted.push((id, old));
            ops.push(Op::Upsert {
                id,
                vector: world.row(row).to_vec(),
                payload: Vec::new(),
            });
        }
        ops.shuffle(&mut rng);
        let dead: HashSet<u64> = victims.iter().copied().collect();
        world.live.retain(|id| !dead.contains(id));
        world.live.extend(new_ids);
        let wsecs = write_all(&churned, ops, a.batch)?;
        let original_left = world.live.iter().filter(|&&id| id < n0 as u64).count();
        let originals_overwritten = world
            .live
            .iter()
            .filter(|&&id| id < n0 as u64 && world.row_of[&id] != perm[id as usize])
            .count();
        emit(
            json!({"kind": "writes", "round": round, "deleted": del_per_round, "inserted_new_ids": del_per_round,
            "overwritten": ups_per_round, "seconds": wsecs, "ops_per_second": (2 * del_per_round + ups_per_round) as f64 / wsecs,
            "live": churned.len(), "expected_live": world.live.len(),
            "original_ids_live": original_left, "original_ids_live_with_original_vector": original_left - originals_overwritten}),
        );
        if churned.len() != world.live.len() {
            bail!(
                "collection holds {} live vectors, the model {}",
                churned.len(),
                world.live.len()
            );
        }
        eprintln!("round {round}: writes {wsecs:.1} s; ground truth");
        let (truth, gt_s) = ground_truth(&world, &queries, a.k, a.threads)?;
        emit(json!({"kind": "ground_truth", "round": round, "live": world.live.len(), "seconds": gt_s}));

        let probe_deleted: Vec<(u64, usize)> = deleted.iter().take(a.check_deletes).copied().collect();
        let ck = check(&churned, &world, &upserted, &probe_deleted, &scfg)?;
        checks_total_bad += checks_bad(&ck);
        let mut cj = checks_json(&ck);
        cj["kind"] = json!("checks");
        cj["round"] = json!(round);
        cj["phase"] = json!("pre_flush");
        emit(cj);

        let (segs, fresh) = (churned.segments(), churned.fresh_len());
        let (m, r) = side_by_side(&world, &truth)?;
        emit(search_json(&m, "search", "churned", round, "pre_flush", &churned, l));
        emit(search_json(
            &r,
            "search",
            "reference",
            round,
            "pre_flush",
            &reference,
            l,
        ));
        eprintln!(
            "round {round} pre-flush ({segs} seg + {fresh} fresh): recall {:.4}, p50 {:.0} us (reference {:.0}), p99 {:.0} us",
            m.recall, m.p50_us, r.p50_us, m.p99_us
        );
        rows.push(Row {
            round: round.to_string(),
            phase: "pre_flush",
            segments: segs,
            fresh_nodes: fresh,
            m,
            r,
            flush: None,
        });

        let (mut fj, fsecs, merged) = timed_flush(&churned, &format!("round {round}"))?;
        fj["kind"] = json!("flush");
        fj["round"] = json!(round);
        fj["segments_before"] = json!(segs);
        fj["vm_hwm_mib"] = json!(mib(peak_kb()));
        emit(fj);
        eprintln!("round {round}: flush {fsecs:.1} s (merged: {merged})");

        let ck = check(&churned, &world, &upserted, &probe_deleted, &scfg)?;
        checks_total_bad += checks_bad(&ck);
        let mut cj = checks_json(&ck);
        cj["kind"] = json!("checks");
        cj["round"] = json!(round);
        cj["phase"] = json!("post_flush");
        emit(cj);

        let (segs, fresh) = (churned.segments(), churned.fresh_len());
        let phase = if merged { "after_merge" } else { "after_flush" };
        let (m, r) = side_by_side(&world, &truth)?;
        emit(search_json(&m, "search", "churned", round, phase, &churned, l));
        emit(search_json(&r, "search", "reference", round, phase, &reference, l));
        eprintln!(
            "round {round} post-flush ({segs} seg): recall {:.4}, p50 {:.0} us (reference {:.0}), p99 {:.0} us",
            m.recall, m.p50_us, r.p50_us, m.p99_us
        );
        rows.push(Row {
            round: round.to_string(),
            phase,
            segments: segs,
            fresh_nodes: fresh,
            m,
            r,
            flush: Some((fsecs, merged)),
        });
    }

    // A fresh build of exactly the final live set.
    let (truth_f, _) = ground_truth(&world, &queries, a.k, a.threads)?;
    let (fresh, _) = Collection::open(fs.clone(), &fresh_dir, opts.clone())?;
    let mut ids_sorted = world.live.clone();
    ids_sorted.sort_unstable();
    let ops: Vec<Op> = ids_sorted
        .iter()
        .map(|&id| Op::Upsert {
            id,
            vector: world.vec_of(id).to_vec(),
            payload: Vec::new(),
        })
        .collect();
    let fload_s = write_all(&fresh, ops, a.batch)?;
    eprintln!("fresh: {} upserts in {fload_s:.1} s; flushing", ids_sorted.len());
    let (fj, fresh_flush_s, _) = timed_flush(&fresh, "fresh")?;
    emit(
        json!({"kind": "load", "which": "fresh_final", "vectors": ids_sorted.len(), "write_seconds": fload_s,
        "flush": fj, "vm_hwm_mib": mib(peak_kb())}),
    );
    sweep_one(&fresh, "fresh_final", &truth_f, &world.row_of)?;

    // Interleaved passes: churned, fresh, reference, churned, ...
    let fin = measure(
        &[
            Target {
                c: &churned,
                row_of: &world.row_of,
                truth: &truth_f,
            },
            Target {
                c: &fresh,
                row_of: &world.row_of,
                truth: &truth_f,
            },
            Target {
                c: &reference,
                row_of: &ref_row_of,
                truth: &truth0,
            },
        ],
        base,
        dim,
        &queries,
        &scfg,
        a.final_reps,
    )?;
    for (m, (which, c)) in fin
        .iter()
        .zip([("churned", &churned), ("fresh", &fresh), ("reference", &reference)])
    {
        emit(search_json(m, "final", which, a.rounds, "final", c, l));
    }
    let (cm, fm, rm) = (&fin[0], &fin[1], &fin[2]);
    let (c_p50, c_p99, c_mean) = (cm.p50_us, cm.p99_us, cm.mean_us);
    let (f_p50, f_p99, f_mean) = (fm.p50_us, fm.p99_us, fm.mean_us);

    // Bars over every round's measurements (pre- and post-flush).
    let round_rows: Vec<&Row> = rows.iter().filter(|r| r.round != "0").collect();
    let min_recall = round_rows.iter().map(|r| r.m.recall).fold(f64::INFINITY, f64::min);
    let min_pass_recall = round_rows
        .iter()
        .flat_map(|r| r.m.pass_recall.iter().copied())
        .fold(f64::INFINITY, f64::min);
    let worst = |f: &dyn Fn(&Row) -> f64| round_rows.iter().map(|r| f(r)).fold(0.0, f64::max);
    let worst_p50_ref = worst(&|r| r.m.p50_us / r.r.p50_us);
    let worst_mean_ref = worst(&|r| r.m.mean_us / r.r.mean_us);
    let worst_p50_fresh = worst(&|r| r.m.p50_us / f_p50);
    let worst_mean_fresh = worst(&|r| r.m.mean_us / f_mean);
    let latency_met = worst_p50_ref <= 1.2 && worst_mean_ref <= 1.2;
    let peak_kb = peak_kb();
    let fig = |m: &Measured| json!({"recall": m.recall, "pass_recall": m.pass_recall, "p50_us": m.p50_us, "p99_us": m.p99_us, "mean_us": m.mean_us, "ios_per_query": m.ios_per_query});
    emit(json!({
        "kind": "summary",
        "L": l, "W": a.w, "k": a.k, "queries": nq,
        "churned_final": fig(cm),
        "fresh_final": fig(fm),
        "reference_final": fig(rm),
        "fresh_build": {"write_seconds": fload_s, "flush_seconds": fresh_flush_s},
        "final_ratio_churned_over_fresh": {"p50": c_p50 / f_p50, "p99": c_p99 / f_p99, "mean": c_mean / f_mean},
        "final_ratio_reference_over_fresh": {"p50": rm.p50_us / f_p50, "mean": rm.mean_us / f_mean},
        "rounds_min_recall": min_recall,
        "rounds_min_pass_recall": min_pass_recall,
        "rounds_worst_p50_over_reference": worst_p50_ref,
        "rounds_worst_mean_over_reference": worst_mean_ref,
        "rounds_worst_p50_over_final_fresh": worst_p50_fresh,
        "rounds_worst_mean_over_final_fresh": worst_mean_fresh,
        "bar_recall_ge_0_95_every_round": min_recall >= 0.95,
        "bar_latency_within_20pct_every_round_same_time_reference": latency_met,
        "correctness_violations": checks_total_bad,
        "peak_rss_vm_hwm_mib": mib(peak_kb),
        "wall_seconds": t_start.elapsed().as_secs_f64(),
    }));

    // Markdown on stderr.
    let mut md = String::new();
    md.push_str(&format!(
        "\n## Churn: N0 = {n0} of {n} base vectors, {} rounds x {per_round} replaced ({del_per_round} delete + new id, {ups_per_round} overwrite), max_segments = {}\n\n",
        a.rounds, a.max_segments
    ));
    md.push_str(&format!(
        "k = {}, L = {l}, W = {}, {nq} queries, 1 thread, one query in flight. Each row: {} timed passes of the churned collection interleaved with {} of the reference (a copy of the start build: a fresh build of N0 vectors), latency = median over passes of each pass's figure. \"/ fresh\" divides by the final fresh build's figures (p50 {:.0} µs, mean {:.0} µs), measured at the end.\n\n",
        a.k, a.w, a.reps, a.reps, f_p50, f_mean
    ));
    md.push_str("| round | phase | segments | fresh nodes | recall@10 | recall (ties) | p50 µs | p99 µs | mean µs | ref p50 µs | ref mean µs | p50 / ref | mean / ref | p50 / fresh | mean / fresh | IOs/q | ref IOs/q | flush s | merged |\n");
    md.push_str("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n");
    for r in &rows {
        let (fs_s, mg) = match r.flush {
            Some((s, m)) => (format!("{s:.1}"), if m { "yes" } else { "no" }.to_string()),
            None => (String::new(), String::new()),
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.4} | {:.4} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} | {} | {} |\n",
            r.round,
            r.phase,
            r.segments,
            r.fresh_nodes,
            r.m.recall,
            r.m.recall_ties,
            r.m.p50_us,
            r.m.p99_us,
            r.m.mean_us,
            r.r.p50_us,
            r.r.mean_us,
            r.m.p50_us / r.r.p50_us,
            r.m.mean_us / r.r.mean_us,
            r.m.p50_us / f_p50,
            r.m.mean_us / f_mean,
            r.m.ios_per_query,
            r.r.ios_per_query,
            fs_s,
            mg
        ));
    }
    md.push_str(&format!(
        "\n### Final live set: churned vs a fresh build of the same vectors ({} interleaved passes each)\n\n",
        a.final_reps
    ));
    md.push_str("| collection | segments | recall@10 | p50 µs | p99 µs | mean µs | IOs/q |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
    for (name, c, m) in [
        ("churned", &churned, cm),
        ("fresh", &fresh, fm),
        ("reference (start build, its own set)", &reference, rm),
    ] {
        md.push_str(&format!(
            "| {name} | {} | {:.4} | {:.0} | {:.0} | {:.0} | {:.1} |\n",
            c.segments(),
            m.recall,
            m.p50_us,
            m.p99_us,
            m.mean_us,
            m.ios_per_query
        ));
    }
    md.push_str(&format!(
        "| churned / fresh | | | {:.3} | {:.3} | {:.3} | |\n\n",
        c_p50 / f_p50,
        c_p99 / f_p99,
        c_mean / f_mean
    ));
    md.push_str(&format!(
        "- Rounds: lowest recall@10 {min_recall:.4} (lowest of any pass {min_pass_recall:.4}; bar ≥ 0.95: {}). Worst same-time ratio to the reference: p50 {worst_p50_ref:.2}, mean {worst_mean_ref:.2} (bar ≤ 1.20: {}); worst ratio to the final fresh build: p50 {worst_p50_fresh:.2}, mean {worst_mean_fresh:.2}.\n",
        if min_recall >= 0.95 { "met" } else { "missed" },
        if latency_met { "met" } else { "missed" }
    ));
    md.push_str(&format!(
        "- Fresh build of the final set: {} upserts {fload_s:.1} s, flush {fresh_flush_s:.1} s. Correctness violations (stale overwrite, deleted id returned, wrong get): {checks_total_bad}.\n",
        ids_sorted.len()
    ));
    md.push_str(&format!(
        "- Peak RSS (VmHWM): {:.0} MiB. Wall time {:.0} s.\n",
        mib(peak_kb),
        t_start.elapsed().as_secs_f64()
    ));
    eprintln!("{md}");

    drop(churned);
    drop(fresh);
    drop(reference);
    if !a.keep {
        clear_collection(&churned_dir)?;
        clear_collection(&fresh_dir)?;
        clear_collection(&reference_dir)?;
    }
    Ok(())
}
