//! End-to-end: build small indexes, search them through every reader.

use super::*;
use crate::format::StoredType;
use crate::io::{FaultPlan, FaultReader, PreadReader, UringReader};
use crate::testutil::{build, clustered, exact_knn, options, recall};
use crate::Metric;

const DIM: usize = 48;

fn run_all(
    index: &DiskIndex,
    s: &mut Searcher<&DiskIndex>,
    queries: &[f32],
    p: &SearchParams,
    inflight: usize,
) -> (Vec<Vec<u64>>, Vec<QueryStats>) {
    let nq = queries.len() / index.dim();
    let mut got = vec![Vec::new(); nq];
    let mut stats = vec![QueryStats::default(); nq];
    s.run(queries, inflight, p, |i, r| {
        let (res, st) = r.unwrap();
        got[i] = res.iter().map(|n| n.id).collect();
        stats[i] = st;
    })
    .unwrap();
    (got, stats)
}

/// A searcher over `index` whose reads (queue depth `depth`) go through a
/// fault-injecting reader following `plan`.
fn faulty(index: &DiskIndex, depth: usize, plan: FaultPlan) -> Searcher<&DiskIndex> {
    let inner = crate::io::open_reader(&index.graph_path(), 4096, depth, IoBackend::Auto).unwrap();
    Searcher::with_reader(index, Box::new(FaultReader::new(inner, plan)))
}

#[test]
fn recall_through_uring_and_pread_readers() {
    let dir = tempfile::tempdir().unwrap();
    let (base, queries) = clustered(4000, 100, DIM, 11);
    build(&base, DIM, dir.path(), &options(Metric::L2, StoredType::F32, 24, 16));
    let index = DiskIndex::open(dir.path()).unwrap();
    let truth = exact_knn(&base, &queries, DIM, 10, Metric::L2);
    let p = SearchParams::new(10, 40, 4);
    let path = index.graph_path();
    let mut readers: Vec<(&str, Box<dyn crate::io::SectorReader>)> =
        vec![("pread", Box::new(PreadReader::open(&path, 4096, 16).unwrap()))];
    match UringReader::open(&path, 4096, 16) {
        Ok(r) => readers.push(("io_uring", Box::new(r))),
        Err(e) => assert!(
            std::env::var_os("QUARRY_REQUIRE_URING").is_none(),
            "io_uring required but refused: {e}"
        ),
    }
    let mut answers = Vec::new();
    for (name, reader) in readers {
        let mut s = Searcher::with_reader(&index, reader);
        for inflight in [1, 4] {
            let (got, stats) = run_all(&index, &mut s, &queries, &p, inflight);
            let r = recall(&got, &truth, 10);
            assert!(r >= 0.9, "{name} inflight {inflight}: recall {r}");
            assert!(stats.iter().all(|s| s.ios > 0 && s.hops > 0 && s.pq_distances > 0));
            answers.push(got);
        }
    }
    // Same answers whatever the reader or the interleaving.
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn every_metric_and_stored_type_finds_neighbours() {
    let (base, queries) = clustered(3000, 50, DIM, 12);
    for metric in [Metric::L2, Metric::Ip, Metric::Cosine] {
        for stored in [StoredType::F32, StoredType::F16, StoredType::I8] {
            let dir = tempfile::tempdir().unwrap();
            build(&base, DIM, dir.path(), &options(metric, stored, 24, 16));
            let index = DiskIndex::open(dir.path()).unwrap();
            let truth = exact_knn(&base, &queries, DIM, 10, metric);
            let mut s = Searcher::new(&index, IoBackend::Auto, 16).unwrap();
            let (got, _) = run_all(&index, &mut s, &queries, &SearchParams::new(10, 60, 4), 2);
            let r = recall(&got, &truth, 10);
            assert!(r >= 0.85, "{metric} {stored}: recall {r}");
        }
    }
}

#[test]
fn cache_and_navigation_tier_save_ios() {
    let dir = tempfile::tempdir().unwrap();
    let (base, queries) = clustered(5000, 100, DIM, 13);
    build(&base, DIM, dir.path(), &options(Metric::L2, StoredType::F32, 24, 16));
    let mut index = DiskIndex::open(dir.path()).unwrap();
    let mean_ios = |index: &DiskIndex, p: &SearchParams| {
        let mut s = Searcher::new(index, IoBackend::Auto, 16).unwrap();
        let (_, st) = run_all(index, &mut s, &queries, p, 1);
        st.iter().map(|s| s.ios as f64).sum::<f64>() / st.len() as f64
    };
    let p = SearchParams::new(10, 40, 4);
    let with_nav = mean_ios(&index, &p);
    let without = mean_ios(&index, &SearchParams { use_nav: false, ..p });
    assert!(with_nav < without, "nav {with_nav} vs medoid {without}");
    assert_eq!(index.warm_cache(1000, IoBackend::Auto).unwrap(), 1000);
    let cached = mean_ios(&index, &p);
    assert!(cached < with_nav, "cache {cached} vs none {with_nav}");
}

/// Share of `b`'s ids that `a` also returns, query by query.
fn overlap(a: &[Vec<u64>], b: &[Vec<u64>]) -> f64 {
    let same: usize = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.iter().filter(|i| y.contains(i)).count())
        .sum();
    same as f64 / b.iter().map(Vec::len).sum::<usize>() as f64
}

#[test]
fn a_whole_index_in_ram_reads_nothing_and_answers_as_from_disk() {
    let (base, queries) = clustered(3000, 50, DIM, 15);
    // f32 records share sectors (nodes_per_sector > 1); 1024-d f32 ones
    // span two sectors each: both layouts are read front to back.
    for (dim, stored) in [(DIM, StoredType::F32), (1024, StoredType::F32), (DIM, StoredType::I8)] {
        let (base, queries) = if dim == DIM {
            (base.clone(), queries.clone())
        } else {
            clustered(600, 20, dim, 16)
        };
        let dir = tempfile::tempdir().unwrap();
        build(&base, dim, dir.path(), &options(Metric::L2, stored, 16, 16));
        let mut index = DiskIndex::open(dir.path()).unwrap();
        let n = index.len();
        let p = SearchParams::new(10, 40, 4);
        let answer = |index: &DiskIndex| {
            let mut s = Searcher::new(index, IoBackend::Auto, 16).unwrap();
            run_all(index, &mut s, &queries, &p, 1)
        };
        let (from_disk, disk_st) = answer(&index);
        assert!(disk_st.iter().all(|s| s.ios > 0));
        // A quarter or more takes the dense slot array; a part still reads.
        let part = index.warm_cache(n / 2, IoBackend::Auto).unwrap();
        assert!(part > 0 && part <= n / 2 && !index.cache().holds_all());
        // A cached node is expanded at once, a read one when it lands, so
        // the order of expansions (and a tie at the tail) may differ.
        let (half, st) = answer(&index);
        let o = overlap(&half, &from_disk);
        assert!(o >= 0.95, "{dim} {stored}: a half cache kept {o} of the answers");
        assert!(st.iter().map(|s| s.cache_hits).sum::<u32>() > 0);
        assert_eq!(index.warm_cache(n, IoBackend::Auto).unwrap(), n);
        assert!(index.cache().holds_all());
        assert_eq!(index.cache().ram_bytes(), n * index.header().layout.node_size);
        let (in_ram, st) = answer(&index);
        let o = overlap(&in_ram, &from_disk);
        assert!(o >= 0.95, "{dim} {stored}: RAM kept {o} of the answers");
        assert!(
            st.iter().all(|s| s.ios == 0),
            "{dim} {stored}: a RAM-resident index read the disk"
        );
        // Where records share a sector, a read scores every record in it;
        // RAM mode scores the same sector-mates from the cache.
        if index.header().layout.nodes_per_sector > 1 {
            let exact = |v: &[QueryStats]| v.iter().map(|s| s.exact_distances as f64).sum::<f64>();
            let (ram, disk) = (exact(&st), exact(&disk_st));
            assert!(
                ram >= 0.9 * disk,
                "{dim} {stored}: RAM scored {ram} records exactly, the disk {disk}"
            );
        }
        // Every record is the one on disk.
        let layout = index.header().layout;
        let bytes = std::fs::read(index.graph_path()).unwrap();
        for id in [0u32, 1, (n / 2) as u32, n as u32 - 1] {
            let (sec, off) = layout.locate(id);
            let at = sec as usize * crate::io::SECTOR + off;
            assert_eq!(
                index.cache().get(id).unwrap(),
                &bytes[at..at + layout.node_size],
                "node {id}"
            );
        }
        assert!(index.cache().get(n as u32).is_none());
    }
}

#[test]
fn injected_read_faults_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let (base, queries) = clustered(2000, 20, DIM, 14);
    build(&base, DIM, dir.path(), &options(Metric::L2, StoredType::F32, 16, 8));
    let index = DiskIndex::open(dir.path()).unwrap();
    let plan = FaultPlan {
        fail_every: Some(5),
        refuse_submit_at: Some(3),
        ..Default::default()
    };
    let mut s = faulty(&index, 16, plan);
    let mut errors = 0;
    s.run(&queries, 4, &SearchParams::new(10, 30, 4), |_, r| {
        if let Err(e) = r {
            assert!(matches!(e, SearchError::Read(ReadError::Injected(_))), "{e}");
            errors += 1;
        }
    })
    .unwrap();
    assert!(errors > 0);
    // The searcher is still usable afterwards with a healthy reader.
    let mut ok = Searcher::new(&index, IoBackend::Auto, 8).unwrap();
    assert!(ok.search(&queries[..DIM], &SearchParams::new(10, 30, 4)).is_ok());
}

#[test]
fn corrupt_node_records_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (base, queries) = clustered(1000, 10, DIM, 15);
    build(&base, DIM, dir.path(), &options(Metric::L2, StoredType::F32, 16, 8));
    // Overwrite every node sector with 0xff: degrees become huge.
    let path = dir.path().join(crate::format::files::GRAPH);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[4096..].fill(0xff);
    std::fs::write(&path, &bytes).unwrap();
    let index = DiskIndex::open(dir.path()).unwrap();
    let mut s = Searcher::new(&index, IoBackend::Auto, 8).unwrap();
    let e = s.search(&queries[..DIM], &SearchParams::new(10, 30, 4)).unwrap_err();
    assert!(matches!(e, SearchError::Corrupt { .. }), "{e}");
    drop(s);
    // Loading the whole index into RAM checks every record as it goes,
    // and a failed load leaves no cache behind.
    let mut index = index;
    let n = index.len();
    let e = index.warm_cache(n, IoBackend::Auto).unwrap_err().to_string();
    assert!(e.contains("node 0") && e.contains("exceeds R"), "{e}");
    assert_eq!(index.cache().len(), 0);
    // So does a graph file cut short after the index was opened.
    std::fs::write(&path, &bytes[..bytes.len() - 4096]).unwrap();
    let e = index.warm_cache(n, IoBackend::Auto).unwrap_err().to_string();
    assert!(
        e.contains(&path.display().to_string()) && e.contains("cut short"),
        "{e}"
    );
    assert_eq!(index.cache().len(), 0);
}

#[test]
fn bad_queries_and_parameters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (base, _) = clustered(500, 0, DIM, 16);
    build(&base, DIM, dir.path(), &options(Metric::L2, StoredType::F32, 16, 8));
    let index = DiskIndex::open(dir.path()).unwrap();
    let mut s = Searcher::new(&index, IoBackend::Auto, 8).unwrap();
    let mut q = base[..DIM].to_vec();
    let e = s.search(&q[..DIM - 1], &SearchParams::new(10, 30, 4)).unwrap_err();
    assert!(
        matches!(e, SearchError::BadRequest(_)) && e.to_string().contains(&format!("query length {}", DIM - 1)),
        "{e}"
    );
    for (k, l, w) in [(0, 30, 4), (10, 5, 4), (10, 30, 0), (10, 30, 65), (2000, 3000, 4)] {
        let e = s.search(&q, &SearchParams::new(k, l, w)).unwrap_err();
        assert!(matches!(e, SearchError::BadRequest(_)), "{k} {l} {w}: {e}");
    }
    q[3] = f32::NAN;
    let e = s.search(&q, &SearchParams::new(10, 30, 4)).unwrap_err();
    assert!(e.to_string().contains("query[3] is NaN; vectors must be finite"), "{e}");
}

#[test]
fn parallel_search_matches_single_thread_and_wait_modes_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (base, queries) = clustered(3000, 64, DIM, 17);
    build(&base, DIM, dir.path(), &options(Metric::L2, StoredType::F16, 24, 16));
    let index = DiskIndex::open(dir.path()).unwrap();
    let p = SearchParams::new(10, 40, 4);
    // Two threads busy-polling their rings; one thread blocking in the
    // kernel: the same answers.
    let par = search_parallel(&index, &queries, &p, 2, 4, IoBackend::Uring, WaitMode::Poll).unwrap();
    let mut s = Searcher::new(&index, IoBackend::Auto, 8).unwrap();
    s.set_wait_mode(WaitMode::Block);
    for (i, r) in par.iter().enumerate() {
        let one = s.search(&queries[i * DIM..(i + 1) * DIM], &p).unwrap();
        assert_eq!(r.as_ref().unwrap().0, one.0);
    }
}

#[test]
fn rerank_file_rescoring_costs_ios_and_keeps_recall() {
    let dir = tempfile::tempdir().unwrap();
    let (base, queries) = clustered(3000, 50, DIM, 18);
    let mut o = options(Metric::L2, StoredType::I8, 24, 8);
    o.rerank_file = true;
    build(&base, DIM, dir.path(), &o);
    let index = DiskIndex::open(dir.path()).unwrap();
    let truth = exact_knn(&base, &queries, DIM, 10, Metric::L2);
    let mut s = Searcher::new(&index, IoBackend::Auto, 8).unwrap();
    let plain = SearchParams::new(10, 50, 4);
    let (got0, st0) = run_all(&index, &mut s, &queries, &plain, 1);
    let (got1, st1) = run_all(&index, &mut s, &queries, &SearchParams { rerank: 20, ..plain }, 1);
    let ios0: u32 = st0.iter().map(|s| s.ios).sum();
    let ios1: u32 = st1.iter().map(|s| s.ios).sum();
    assert!(ios1 > ios0, "rerank reads are counted: {ios1} vs {ios0}");
    let (r0, r1) = (recall(&got0, &truth, 10), recall(&got1, &truth, 10));
    assert!(r1 >= r0 && r1 >= 0.9, "i8 {r0} -> f32 rerank {r1}");
    // Exact distances after rerank: the first result's distance is exact.
    let (res, _) = s
        .search(&queries[..DIM], &SearchParams { rerank: 20, ..plain })
        .unwrap();
    let want = Metric::L2.distance(
        &queries[..DIM],
        &base[res[0].id as usize * DIM..(res[0].id as usize + 1) * DIM],
    );
    assert!((res[0].distance - want).abs() < 1e-4 * want.max(1.0));
    // Asking for rerank without a rerank file is a clear error.
    let dir2 = tempfile::tempdir().unwrap();
    build(&base, DIM, dir2.path(), &options(Metric::L2, StoredType::F32, 24, 8));
    let index2 = DiskIndex::open(dir2.path()).unwrap();
    let mut s2 = Searcher::new(&index2, IoBackend::Auto, 8).unwrap();
    let e = s2
        .search(&queries[..DIM], &SearchParams { rerank: 20, ..plain })
        .unwrap_err();
    assert!(e.to_string().contains("--rerank-file"), "{e}");
}

/// Mean of one stat over a run.
fn mean(stats: &[QueryStats], f: impl Fn(&QueryStats) -> u32) -> f64 {
    stats.iter().map(|s| f(s) as f64).sum::<f64>() / stats.len() as f64
}

#[test]
fn sector_mates_save_reads_on_a_colocated_index() {
    // 128-d i8 records with R = 24 are 232 bytes: 17 to a sector.
    const D: usize = 128;
    let (base, queries) = clustered(4000, 60, D, 19);
    let truth = exact_knn(&base, &queries, D, 10, Metric::L2);
    let p = SearchParams::new(10, 40, 4);
    let mut ios = Vec::new();
    for colocate in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let mut o = options(Metric::L2, StoredType::I8, 24, 32);
        o.colocate = colocate;
        build(&base, D, dir.path(), &o);
        let index = DiskIndex::open(dir.path()).unwrap();
        assert_eq!(index.manifest().colocated, colocate);
        let mut s = Searcher::new(&index, IoBackend::Auto, 16).unwrap();
        let mut recalls = Vec::new();
        for mates in [true, false] {
            let (got, st) = run_all(
                &index,
                &mut s,
                &queries,
                &SearchParams {
                    sector_mates: mates,
                    ..p
                },
                2,
            );
            recalls.push(recall(&got, &truth, 10));
            if !mates {
                assert_eq!(mean(&st, |s| s.mate_expansions), 0.0);
            }
            ios.push(mean(&st, |s| s.ios));
        }
        // Mates are scored exactly for free, so recall can only gain.
        assert!(recalls[0] >= 0.9, "colocate {colocate}: recall {recalls:?}");
        assert!(
            recalls[0] >= recalls[1] - 0.005,
            "colocate {colocate}: recall {recalls:?}"
        );
    }
    let (co_mates, co_plain, _, plain) = (ios[0], ios[1], ios[2], ios[3]);
    assert!(
        co_mates < 0.8 * co_plain,
        "co-located: {co_mates} reads with mates vs {co_plain} without"
    );
    assert!(
        co_mates < 0.8 * plain,
        "co-located with mates {co_mates} vs build order {plain}"
    );
}

#[test]
fn hedged_reads_change_the_read_count_not_the_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (base, queries) = clustered(3000, 40, DIM, 20);
    build(&base, DIM, dir.path(), &options(Metric::L2, StoredType::F32, 24, 16));
    let index = DiskIndex::open(dir.path()).unwrap();
    let reader = match UringReader::open(&index.graph_path(), 4096, 64) {
        Ok(r) => r,
        Err(e) => {
            assert!(
                std::env::var_os("QUARRY_REQUIRE_URING").is_none(),
                "io_uring required but refused: {e}"
            );
            return;
        }
    };
    let mut s = Searcher::with_reader(&index, Box::new(reader));
    // W = 1: each query's reads then follow one from the next, so which
    // nodes it reads cannot depend on completion timing, and the read
    // counts of the two runs are comparable exactly (with W > 1 the
    // expansion order, and so occasionally a read, follows arrival order).
    let p = SearchParams::new(10, 40, 1);
    let (plain, st0) = run_all(&index, &mut s, &queries, &p, 4);
    // Every read older than 1 µs gets a twin: nearly all of them, and the
    // slower twins arrive after their query may have answered, in a slot
    // a later query may be using.
    let (hedged, st1) = run_all(&index, &mut s, &queries, &SearchParams { hedge_us: 1, ..p }, 4);
    assert_eq!(plain, hedged);
    assert_eq!(mean(&st0, |s| s.hedged_reads), 0.0);
    let twins = mean(&st1, |s| s.hedged_reads);
    assert!(twins > 0.0, "no read was hedged");
    assert!(
        (mean(&st1, |s| s.ios) - mean(&st0, |s| s.ios) - twins).abs() < 1e-9,
        "twins are counted as reads"
    );
    // The searcher is still sound after all the late twins.
    let (again, _) = run_all(&index, &mut s, &queries, &p, 4);
    assert_eq!(plain, again);
}

#[test]
fn a_time_budget_answers_past_a_stalled_read_and_leaves_the_searcher_sound() {
    let dir = tempfile::tempdir().unwrap();
    let (base, queries) = clustered(3000, 30, DIM, 21);
    build(&base, DIM, dir.path(), &options(Metric::L2, StoredType::F32, 24, 16));
    let index = DiskIndex::open(dir.path()).unwrap();
    let truth = exact_knn(&base, &queries, DIM, 10, Metric::L2);
    let stall = std::time::Duration::from_millis(40);
    let stalling = |every: u64| {
        let plan = FaultPlan {
            stall_every: Some(every),
            stall,
            ..Default::default()
        };
        let mut s = faulty(&index, 64, plan);
        s.set_wait_mode(WaitMode::Poll);
        s
    };
    let p = SearchParams::new(10, 40, 4);
    let budget = SearchParams { budget_us: 5_000, ..p };
    // Without a budget, a query with a stalled read waits for it.
    let mut s = stalling(7);
    let (_, slow) = run_all(&index, &mut s, &queries[..3 * DIM], &p, 1);
    assert!(slow.iter().all(|st| st.budget_cut == 0));
    assert!(slow.iter().any(|st| st.micros >= stall.as_micros() as f64), "{slow:?}");
    // With one, every query answers well before the stall ends, the ones
    // that met a stall are marked, and the answers are still good.
    let mut s = stalling(7);
    let (got, st) = run_all(&index, &mut s, &queries, &budget, 1);
    let cut = st.iter().filter(|s| s.budget_cut == 1).count();
    assert!(cut > 0, "no query met a stalled read");
    for (i, s) in st.iter().enumerate() {
        assert!(s.micros < 0.75 * stall.as_micros() as f64, "query {i}: {s:?}");
        assert_eq!(got[i].len(), 10, "query {i} answered with {} results", got[i].len());
    }
    let rc = recall(&got, &truth, 10);
    assert!(rc >= 0.6, "recall with cut queries {rc}");
    // The stalled reads come back after their queries answered, into slots
    // newer queries use; they are dropped, so the same searcher then gives
    // exactly the answers of an untroubled one.
    std::thread::sleep(stall);
    let mut healthy = Searcher::new(&index, IoBackend::Auto, 64).unwrap();
    let (want, _) = run_all(&index, &mut healthy, &queries, &SearchParams::new(10, 40, 1), 1);
    let (again, _) = run_all(&index, &mut s, &queries, &SearchParams::new(10, 40, 1), 1);
    assert_eq!(want, again);
    // A budget never cuts a query that has no reads outstanding, and an
    // untroubled reader meets none.
    let (fast, st) = run_all(
        &index,
        &mut healthy,
        &queries,
        &SearchParams {
            budget_us: 1_000_000,
            ..p
        },
        4,
    );
    assert!(st.iter().all(|s| s.budget_cut == 0));
    assert!(recall(&fast, &truth, 10) >= 0.9);
    assert!(SearchParams {
        budget_us: 60_000_001,
        ..p
    }
    .validate(10)
    .is_err());
}

#[test]
fn read_wait_counts_each_used_read_once_and_tracks_a_slow_device() {
    let dir = tempfile::tempdir().unwrap();
    let (base, queries) = clustered(3000, 12, DIM, 33);
    build(&base, DIM, dir.path(), &options(Metric::L2, StoredType::F32, 24, 16));
    let index = DiskIndex::open(dir.path()).unwrap();
    let p = SearchParams::new(10, 40, 4);
    // A healthy reader: every read issued is waited for once, and no read
    // waits longer than its whole query took.
    let mut s = Searcher::new(&index, IoBackend::Auto, 64).unwrap();
    let (_, st) = run_all(&index, &mut s, &queries, &p, 1);
    for (i, q) in st.iter().enumerate() {
        assert!(q.ios > 0, "query {i} read nothing: {q:?}");
        assert_eq!(q.reads_waited, q.ios, "query {i}: {q:?}");
        assert!(q.read_wait_micros > 0.0, "query {i}: {q:?}");
        assert!(q.read_wait_micros <= q.micros * f64::from(q.ios), "query {i}: {q:?}");
    }
    // Hedged twins count once per sector.
    let (_, st) = run_all(&index, &mut s, &queries, &SearchParams { hedge_us: 1, ..p }, 4);
    assert!(st.iter().any(|q| q.hedged_reads > 0), "no read was hedged");
    for q in &st {
        assert_eq!(q.reads_waited, q.ios - q.hedged_reads, "{q:?}");
    }
    // A device that takes 3 ms for every read: the mean wait per read is
    // at least that.
    let stall = std::time::Duration::from_millis(3);
    let plan = FaultPlan {
        stall_every: Some(1),
        stall,
        ..Default::default()
    };
    let mut slow = faulty(&index, 64, plan);
    let (_, st) = run_all(&index, &mut slow, &queries[..3 * DIM], &p, 1);
    for q in &st {
        assert!(q.reads_waited > 0, "{q:?}");
        let mean = q.read_wait_micros / f64::from(q.reads_waited);
        assert!(mean >= stall.as_micros() as f64, "mean wait {mean} us per read: {q:?}");
    }
}
