//! Mutable-collection tests: read-your-writes, tombstones, payloads,
//! flush and merge, restart, bad input, WAL damage, and power-loss trials
//! over `CrashFs` with flushes in the mix.

use super::*;
use crate::format::StoredType;
use crate::io::IoBackend;
use crate::search::Neighbor;
use crate::storage::{CrashFs, Fault, RealFs, Vfs};
use crate::wal::WalOptions;
use crate::Metric;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

const DIM: usize = 16;

pub(super) fn opts() -> CollectionOptions {
    let mut build = crate::testutil::options(Metric::L2, StoredType::F32, 16, 8);
    build.graph.threads = 1;
    CollectionOptions {
        dim: DIM,
        metric: Metric::L2,
        build,
        fresh_r: 16,
        fresh_l: 48,
        flush_at: 200,
        max_segments: 2,
        wal: WalOptions {
            segment_bytes: 16 << 10,
            ..WalOptions::default()
        },
        max_payload: 64,
        io: IoBackend::Pread,
        split_l: true,
        ram_segment_nodes: 0,
        cache_nodes: 0,
        hold_unacked: false,
    }
}

pub(super) fn vec_of(seed: u64) -> Vec<f32> {
    let mut r = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..DIM).map(|_| r.random_range(-1.0f32..1.0)).collect()
}

/// Every file in `dir` (not recursive) with its bytes, by name.
fn dir_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn open(fs: &Arc<dyn Vfs>, dir: &Path) -> (Collection, OpenReport) {
    Collection::open(fs.clone(), dir, opts()).unwrap()
}

fn top1(c: &Collection, q: &[f32]) -> Option<u64> {
    c.search(q, 1, 32, 4, &mut CollectionSearcher::default())
        .unwrap()
        .first()
        .map(|h| h.id)
}

/// recall@10 of the collection against brute force over `model`.
fn recall(c: &Collection, model: &HashMap<u64, Vec<f32>>, queries: u64) -> f64 {
    let mut readers = CollectionSearcher::default();
    let mut hits = 0;
    let mut total = 0;
    for qs in 0..queries {
        let q = vec_of(1_000_000 + qs);
        let mut truth: Vec<(f32, u64)> = model.iter().map(|(id, v)| (Metric::L2.distance(&q, v), *id)).collect();
        truth.sort_by(|a, b| a.0.total_cmp(&b.0));
        let t: Vec<u64> = truth.iter().take(10).map(|x| x.1).collect();
        let got = c.search(&q, 10, 64, 4, &mut readers).unwrap();
        hits += got.iter().filter(|h| t.contains(&h.id)).count();
        total += t.len();
    }
    hits as f64 / total as f64
}

#[test]
fn writes_are_visible_as_soon_as_they_are_acknowledged() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (c, _) = open(&fs, d.path());
    let v = vec_of(1);
    c.upsert(7, v.clone(), b"seven".to_vec()).unwrap();
    assert_eq!(top1(&c, &v), Some(7), "read-your-writes: search");
    assert_eq!(
        c.get(7).unwrap(),
        Some((v.clone(), b"seven".to_vec())),
        "read-your-writes: get"
    );
    // An overwrite's new version is found, the old one is a tombstone.
    let w = vec_of(2);
    c.upsert(7, w.clone(), b"v2".to_vec()).unwrap();
    let hits = c.search(&v, 5, 32, 4, &mut CollectionSearcher::default()).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        hits[0].distance,
        Metric::L2.distance(&v, &w),
        "the new vector, not the old"
    );
    c.delete(7).unwrap();
    assert_eq!(top1(&c, &w), None);
    assert_eq!(c.get(7).unwrap(), None);
    c.delete(12345).unwrap(); // deleting an absent id is not an error
    assert!(c.is_empty());
}

#[test]
fn bad_writes_are_refused_whole_and_log_nothing() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (c, _) = open(&fs, d.path());
    let before = c.wal().last_lsn();
    let good = Op::Upsert {
        id: 1,
        vector: vec_of(1),
        payload: vec![],
    };
    let mut nan = vec_of(2);
    nan[3] = f32::NAN;
    for (bad, needle) in [
        (
            Op::Upsert {
                id: 2,
                vector: vec![0.0; DIM + 1],
                payload: vec![],
            },
            "vector for id 2 has 17 values; the collection has dimension 16",
        ),
        (
            Op::Upsert {
                id: 2,
                vector: nan,
                payload: vec![],
            },
            "vector for id 2[3] is NaN; vectors must be finite",
        ),
        (
            Op::Upsert {
                id: 2,
                vector: vec_of(3),
                payload: vec![0; 65],
            },
            "limit is 64",
        ),
    ] {
        let e = c.write(vec![good.clone(), bad]).unwrap_err();
        let typed = match &e {
            CollectionError::Vector { .. } => needle.starts_with("vector"),
            CollectionError::InvalidArgument(_) => needle.starts_with("limit"),
            _ => false,
        };
        assert!(typed && e.to_string().contains(needle), "{e}");
    }
    assert_eq!(c.wal().last_lsn(), before, "nothing of a refused batch was logged");
    assert!(c.is_empty());
    let e = c
        .search(&[0.0; 3], 10, 20, 4, &mut CollectionSearcher::default())
        .unwrap_err();
    assert!(
        matches!(e, CollectionError::Vector { .. }) && e.to_string().contains("query has 3 values"),
        "{e}"
    );
}

#[test]
fn flushes_and_merges_keep_answers_and_restart_gives_the_same_ones() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (c, _) = open(&fs, d.path());
    let mut model: HashMap<u64, Vec<f32>> = HashMap::new();
    let mut next = 0u64;
    for round in 0..4 {
        for _ in 0..250 {
            let v = vec_of(next);
            c.upsert(next, v.clone(), next.to_le_bytes().to_vec()).unwrap();
            model.insert(next, v);
            next += 1;
        }
        // Replace and delete some of what is already on disk.
        for id in (0..next).step_by(7 + round) {
            if id % 2 == 0 {
                c.delete(id).unwrap();
                model.remove(&id);
            } else {
                let v = vec_of(10_000 + id * 10 + round as u64);
                c.upsert(id, v.clone(), id.to_le_bytes().to_vec()).unwrap();
                model.insert(id, v);
            }
        }
        assert!(c.needs_flush());
        let rep = c.flush(&mut |_, _, _| {}).unwrap();
        assert!(rep.segments <= 2, "the cap holds: {rep:?}");
        assert_eq!(rep.merged, round == 2, "round {round}: {rep:?}");
        assert_eq!(c.len(), model.len());
        let r = recall(&c, &model, 50);
        assert!(r >= 0.9, "round {round}: recall@10 {r}");
    }
    // Writes after the last flush live only in the WAL.
    for id in 0..20u64 {
        let v = vec_of(50_000 + id);
        c.upsert(id, v.clone(), b"late".to_vec()).unwrap();
        model.insert(id, v);
    }
    c.delete(21).unwrap();
    model.remove(&21);
    let mut readers = CollectionSearcher::default();
    let before: Vec<Vec<Neighbor>> = (0..30)
        .map(|q| c.search(&vec_of(900 + q), 10, 64, 4, &mut readers).unwrap())
        .collect();
    drop(readers);
    drop(c);
    let names = fs.list(d.path()).unwrap();
    assert_eq!(
        names.iter().filter(|n| n.starts_with("seg-")).count(),
        2,
        "{names:?}: retired segments are deleted"
    );
    let (c, rep) = open(&fs, d.path());
    assert_eq!(rep.replayed, 21);
    assert_eq!(c.len(), model.len());
    let mut readers = CollectionSearcher::default();
    for (q, b) in before.iter().enumerate() {
        assert_eq!(
            &c.search(&vec_of(900 + q as u64), 10, 64, 4, &mut readers).unwrap(),
            b,
            "query {q}"
        );
    }
    for (id, v) in model.iter().take(100) {
        let (gv, _) = c.get(*id).unwrap().unwrap();
        assert_eq!(&gv, v);
    }
    assert_eq!(c.get(0).unwrap().unwrap().1, b"late");
}

/// Fill a collection at `dir` with 600 vectors flushed into one segment
/// and 150 more in a second, plus 40 left in the fresh index.
fn two_segments(dir: &Path, o: CollectionOptions) -> (Collection, HashMap<u64, Vec<f32>>) {
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (c, _) = Collection::open(fs, dir, o).unwrap();
    let mut model = HashMap::new();
    for (upto, flush) in [(600u64, true), (750, true), (790, false)] {
        for id in model.len() as u64..upto {
            let v = vec_of(id);
            c.upsert(id, v.clone(), vec![]).unwrap();
            model.insert(id, v);
        }
        if flush {
            c.flush(&mut |_, _, _| {}).unwrap();
        }
    }
    assert_eq!((c.segments(), c.fresh_len()), (2, 40));
    (c, model)
}

/// (answers, summed stats) of 40 queries at k 10, L 64.
fn answers(c: &Collection) -> (Vec<Vec<Neighbor>>, u64, u64) {
    let mut readers = CollectionSearcher::default();
    let (mut ios, mut cached) = (0, 0);
    let hits = (0..40)
        .map(|q| {
            let (h, st) = c.search_stats(&vec_of(7_000 + q), 10, 64, 4, &mut readers).unwrap();
            ios += st.ios as u64;
            cached += st.cache_hits as u64;
            h
        })
        .collect();
    (hits, ios, cached)
}

#[test]
fn many_queries_in_flight_answer_as_one_at_a_time() {
    let d = tempfile::tempdir().unwrap();
    let (c, _) = two_segments(
        d.path(),
        CollectionOptions {
            io: IoBackend::Auto,
            ..opts()
        },
    );
    let (one_by_one, ios, _) = answers(&c);
    assert!(ios > 0, "the segments were read from disk");
    // All 40 started before any is polled, on one searcher with a ring per
    // segment, tokens out of order.
    let mut s = CollectionSearcher::new(64);
    let p = crate::search::SearchParams::new(10, 64, 4);
    for q in 0..40u64 {
        s.start_query(&c, 1000 - q, &vec_of(7_000 + q), &p).unwrap();
    }
    assert_eq!(s.active(), 40);
    let mut got: HashMap<u64, Vec<Neighbor>> = HashMap::new();
    while s.active() > 0 {
        s.poll(&c, true, &mut |token, r| {
            assert!(
                got.insert(token, r.unwrap().0).is_none(),
                "token {token} answered twice"
            );
        });
    }
    for (q, want) in one_by_one.iter().enumerate() {
        assert_eq!(&got[&(1000 - q as u64)], want, "query {q}");
    }
    // A bad query is refused at start and leaves the searcher idle.
    let e = s.start_query(&c, 1, &[0.0; DIM - 1], &p).unwrap_err();
    assert!(matches!(e, CollectionError::Vector { .. }), "{e}");
    let e = s
        .start_query(&c, 1, &vec_of(1), &crate::search::SearchParams::new(10, 5, 4))
        .unwrap_err();
    assert!(e.to_string().contains("L = 5"), "{e}");
    assert_eq!(s.active(), 0);
}

#[test]
fn small_segments_held_in_ram_read_nothing_and_answer_the_same() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (on_disk, model) = two_segments(a.path(), opts());
    let in_ram_opts = CollectionOptions {
        ram_segment_nodes: 1000,
        ..opts()
    };
    let (in_ram, _) = two_segments(b.path(), in_ram_opts.clone());
    let (disk_hits, disk_ios, _) = answers(&on_disk);
    let (ram_hits, ram_ios, ram_cached) = answers(&in_ram);
    assert!(disk_ios > 0);
    assert_eq!(ram_ios, 0, "every segment is under ram_segment_nodes");
    assert!(ram_cached > 0);
    assert_eq!(disk_hits, ram_hits, "the same graphs give the same answers from RAM");
    assert!(recall(&in_ram, &model, 30) >= 0.9);
    // Reopened, the segments are read into RAM again.
    drop(in_ram);
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (again, _) = Collection::open(fs, b.path(), in_ram_opts).unwrap();
    let (again_hits, again_ios, _) = answers(&again);
    assert_eq!((again_hits, again_ios), (ram_hits, 0));
    // Only the small segment in RAM: reads happen, answers do not change.
    drop(again);
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let small_only = CollectionOptions {
        ram_segment_nodes: 200,
        ..opts()
    };
    let (mixed, _) = Collection::open(fs, b.path(), small_only).unwrap();
    let (mixed_hits, mixed_ios, mixed_cached) = answers(&mixed);
    assert!(mixed_ios > 0 && mixed_ios < disk_ios && mixed_cached > 0);
    assert_eq!(mixed_hits, disk_hits);
}

#[test]
fn split_l_reads_less_than_full_l_per_segment_and_keeps_recall() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (split, model) = two_segments(a.path(), opts());
    let (full, _) = two_segments(
        b.path(),
        CollectionOptions {
            split_l: false,
            ..opts()
        },
    );
    let (_, split_ios, _) = answers(&split);
    let (_, full_ios, _) = answers(&full);
    // Tiny 16-d segments pack many nodes per sector, so the saving in
    // sectors is small here (about 10 %); it only has to be there.
    assert!(
        split_ios < full_ios,
        "L split 600:150:40 must read less than full L on every part: {split_ios} vs {full_ios}"
    );
    let (rs, rf) = (recall(&split, &model, 50), recall(&full, &model, 50));
    assert!(rs >= 0.9 && rs >= rf - 0.05, "recall split {rs}, full {rf}");
}

#[test]
fn a_corrupt_wal_record_stops_the_open_with_file_and_offset() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (c, _) = open(&fs, d.path());
    for id in 0..20u64 {
        c.upsert(id, vec_of(id), vec![]).unwrap();
    }
    drop(c);
    let wal = d.path().join("wal");
    let seg = wal.join(fs.list(&wal).unwrap().pop().unwrap());
    let mut b = std::fs::read(&seg).unwrap();
    b[100] ^= 1;
    std::fs::write(&seg, &b).unwrap();
    let e = Collection::open(fs.clone(), d.path(), opts()).err().expect("must fail");
    let m = e.to_string();
    assert!(
        m.contains(&seg.display().to_string()) && m.contains("corrupt at byte"),
        "{m}"
    );
}

#[test]
fn a_wal_that_ends_before_the_checkpoint_is_refused_and_no_lsn_is_reused() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (c, _) = open(&fs, d.path());
    for id in 0..300u64 {
        c.upsert(id, vec_of(id), vec![]).unwrap();
    }
    let rep = c.flush(&mut |_, _, _| {}).unwrap();
    assert_eq!(rep.checkpoint, 300);
    drop(c);
    // Storage damage that loses fsynced bytes: the newest WAL file is cut
    // back to its header, so the log ends before the checkpoint.
    let wal = d.path().join("wal");
    let names: Vec<String> = fs
        .list(&wal)
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .collect();
    let newest = names.last().unwrap().clone();
    let first: u64 = newest
        .trim_start_matches("wal-")
        .trim_end_matches(".log")
        .parse()
        .unwrap();
    assert!(first <= 300, "{names:?}: the newest file holds the checkpoint's record");
    let path = wal.join(&newest);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(crate::wal::HEADER as u64).unwrap();
    drop(f);
    let wal_before = dir_bytes(&wal);
    let manifest_before = std::fs::read(d.path().join(MANIFEST_FILE)).unwrap();
    for attempt in 0..2 {
        let e = Collection::open(fs.clone(), d.path(), opts())
            .err()
            .expect("must refuse");
        match &e {
            CollectionError::WalBehindCheckpoint {
                path: p,
                last_lsn,
                checkpoint,
            } => {
                assert_eq!(
                    (p, *last_lsn, *checkpoint),
                    (&path, first - 1, 300),
                    "attempt {attempt}"
                );
            }
            other => panic!("attempt {attempt}: {other}"),
        }
        let m = e.to_string();
        assert!(
            m.contains(&path.display().to_string())
                && m.contains(&format!("ends at LSN {}", first - 1))
                && m.contains("checkpoint LSN 300"),
            "{m}"
        );
        // Nothing was appended, created or switched: no LSN was handed out.
        assert_eq!(dir_bytes(&wal), wal_before, "attempt {attempt}");
        assert_eq!(std::fs::read(d.path().join(MANIFEST_FILE)).unwrap(), manifest_before);
    }
}

/// Check the collection against the acknowledged writes. `pending` is
/// the first write that failed before the cut: its id may show it wholly
/// or not at all (never anything else); the model then takes what is
/// there.
fn verify(
    c: &Collection,
    acked: &mut HashMap<u64, Option<Vec<f32>>>,
    pending: Option<(u64, Option<Vec<f32>>)>,
    trial: u64,
) {
    for (id, want) in acked.iter() {
        if pending.as_ref().is_some_and(|p| p.0 == *id) {
            continue;
        }
        let got = c.get(*id).unwrap().map(|g| g.0);
        assert!(
            got == *want,
            "trial {trial}: acknowledged write of id {id} lost (present {}, should be {})",
            got.is_some(),
            want.is_some()
        );
    }
    if let Some((id, effect)) = pending {
        let got = c.get(id).unwrap().map(|g| g.0);
        let before = acked.get(&id).cloned().flatten();
        assert!(
            got == before || got == effect,
            "trial {trial}: id {id} is neither before nor after its failed write"
        );
        acked.insert(id, got);
    }
}

/// Power-loss trials: random upserts, deletes and flushes, a fault (EIO
/// or ENOSPC) armed at a random operation, then a power cut with torn
/// tails, twice per trial. After each recovery every acknowledged write is
/// present, the first failed write is there wholly or not at all, and the
/// collection answers searches and takes writes again.
#[test]
fn power_loss_trials_keep_every_acknowledged_write() {
    let trials = CrashFs::trials("QUARRY_LIVE_TRIALS", 300);
    let d = tempfile::tempdir().unwrap();
    let (mut flushed_ok, mut failed_flushes, mut checked) = (0, 0, 0);
    for trial in 0..trials {
        let root = d.path().join(format!("t{}", trial % 3));
        let (cfs, fs) = CrashFs::fresh(&root);
        let dir = root.join("coll");
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(trial ^ 0x5eed);
        let mut acked: HashMap<u64, Option<Vec<f32>>> = HashMap::new();
        let mut pending: Option<(u64, Option<Vec<f32>>)> = None;
        for life in 0..3 {
            let (c, _) = Collection::open(fs.clone(), &dir, opts())
                .unwrap_or_else(|e| panic!("trial {trial} life {life}: recovery failed: {e}"));
            verify(&c, &mut acked, pending.take(), trial);
            checked += acked.len();
            if life == 2 {
                // Usable again.
                c.upsert(999, vec_of(999), vec![]).unwrap();
                assert_eq!(top1(&c, &vec_of(999)), Some(999));
                break;
            }
            let mut fault = Fault::random(&mut rng, 0..400);
            fault.persistent = rng.random_bool(0.7);
            cfs.set_fault(Some(fault));
            for _ in 0..rng.random_range(10..120) {
                let id = rng.random_range(0..60u64);
                let (r, effect) = match rng.random_range(0..20) {
                    0 => {
                        match c.flush(&mut |_, _, _| {}) {
                            Ok(_) => flushed_ok += 1,
                            Err(_) => failed_flushes += 1,
                        }
                        continue;
                    }
                    1..=4 => (c.delete(id), None),
                    _ => {
                        let v = vec_of(rng.random());
                        (c.upsert(id, v.clone(), id.to_le_bytes().to_vec()), Some(v))
                    }
                };
                match r {
                    Ok(_) => {
                        acked.insert(id, effect);
                    }
                    Err(e) => {
                        assert!(!matches!(e, CollectionError::InvalidArgument(_)), "{e}");
                        pending = Some((id, effect));
                        break;
                    }
                }
            }
            cfs.crash();
            drop(c);
            cfs.power_loss(trial * 3 + life, true).unwrap();
        }
    }
    eprintln!(
        "{trials} trials: {flushed_ok} flushes ok, {failed_flushes} failed, {checked} acknowledged states checked"
    );
    assert!(
        flushed_ok > 0 && failed_flushes > 0,
        "flushes: {flushed_ok} ok, {failed_flushes} failed"
    );
}

fn vectors_of(ids: impl Iterator<Item = u64>, base: u64) -> (Vec<u64>, Vec<f32>) {
    let ids: Vec<u64> = ids.collect();
    let data = ids.iter().flat_map(|&id| vec_of(base + id)).collect();
    (ids, data)
}

#[test]
fn a_bulk_load_replaces_ids_takes_later_writes_and_survives_restart_and_flush() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (c, _) = open(&fs, d.path());
    let mut model: HashMap<u64, Vec<f32>> = HashMap::new();
    for id in 0..100u64 {
        c.upsert(id, vec_of(id), vec![]).unwrap();
        model.insert(id, vec_of(id));
    }
    c.delete(5).unwrap();
    model.remove(&5);
    let (ids, data) = vectors_of(50..350, 10_000);
    let rep = c.bulk_load(data.into(), &ids, vec![], 0, &mut |_, _, _| {}).unwrap();
    assert_eq!(
        (rep.vectors, rep.replaced, rep.segment.as_str()),
        (300, 50, "bulk-0000000001")
    );
    for &id in &ids {
        model.insert(id, vec_of(10_000 + id));
    }
    // Writes after the load replace its rows.
    c.upsert(60, vec_of(77), b"late".to_vec()).unwrap();
    model.insert(60, vec_of(77));
    c.delete(70).unwrap();
    model.remove(&70);
    let check = |c: &Collection, when: &str| {
        assert_eq!(c.len(), model.len(), "{when}");
        assert_eq!(c.len(), 348, "{when}");
        for (id, v) in &model {
            assert_eq!(c.get(*id).unwrap().map(|g| g.0).as_ref(), Some(v), "{when}: id {id}");
        }
        assert_eq!(c.get(70).unwrap(), None, "{when}");
        assert_eq!(c.get(60).unwrap().unwrap().1, b"late", "{when}");
        let r = recall(c, &model, 50);
        assert!(r >= 0.9, "{when}: recall@10 {r}");
    };
    check(&c, "after the load");
    drop(c);
    let (c, rep) = open(&fs, d.path());
    assert_eq!(rep.replayed, 100 + 1 + 1 + 1 + 1, "the load is one record");
    check(&c, "after a restart");
    c.flush(&mut |_, _, _| {}).unwrap();
    check(&c, "after a flush");
    drop(c);
    let (c, rep) = open(&fs, d.path());
    assert_eq!(rep.replayed, 0);
    check(&c, "after a flush and a restart");
    // The next load gets the next number; a bad one changes nothing.
    let (ids, data) = vectors_of(1000..1010, 0);
    assert_eq!(
        c.bulk_load(data.into(), &ids, vec![], 0, &mut |_, _, _| {})
            .unwrap()
            .segment,
        "bulk-0000000002"
    );
    let mut data = vec_of(1);
    data.extend(vec_of(2));
    let e = c
        .bulk_load(data.clone().into(), &[7, 7], vec![], 0, &mut |_, _, _| {})
        .unwrap_err();
    assert!(e.to_string().contains("id 7 appears more than once"), "{e}");
    data[DIM + 3] = f32::NAN;
    let e = c
        .bulk_load(data.into(), &[8, 9], vec![], 0, &mut |_, _, _| {})
        .unwrap_err();
    assert!(e.to_string().contains("vector 1 (id 9)[3] is NaN"), "{e}");
    assert_eq!(c.len(), 358);
    // A write cannot smuggle a segment in.
    let e = c
        .write(vec![Op::AddSegment {
            name: "bulk-0000000099".into(),
        }])
        .unwrap_err();
    assert!(matches!(e, CollectionError::InvalidArgument(_)), "{e}");
}

#[test]
fn a_bulk_segment_no_record_names_is_removed_at_open() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (c, _) = open(&fs, d.path());
    let (ids, data) = vectors_of(0..50, 0);
    c.bulk_load(data.into(), &ids, vec![], 0, &mut |_, _, _| {}).unwrap();
    drop(c);
    // A load that built its directory but died before logging it.
    let orphan = d.path().join("bulk-0000000007");
    std::fs::create_dir(&orphan).unwrap();
    std::fs::write(orphan.join("records.bin"), b"half").unwrap();
    let (c, _) = open(&fs, d.path());
    assert!(!orphan.exists());
    assert!(d.path().join("bulk-0000000001").exists(), "the logged one stays");
    assert_eq!(c.len(), 50);
}

#[test]
fn an_index_built_before_writes_is_adopted_without_rewriting_it_and_takes_writes() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let index_dir = d.path().join("index-1");
    let (ids, data) = vectors_of(0..400, 0);
    let ext: Vec<u64> = ids.iter().map(|i| 1000 + i).collect();
    let o = opts();
    crate::index::build_index(data.clone().into(), DIM, &ext, &index_dir, &o.build, &mut |_, _, _| {}).unwrap();
    let before = dir_bytes(&index_dir);
    let live = d.path().join("live");
    let (c, _) = open(&fs, &live);
    assert_eq!(c.adopt_index("../index-1").unwrap(), 400);
    assert_eq!(
        c.adopt_index("../index-1").unwrap(),
        0,
        "adopting it again does nothing"
    );
    let mut model: HashMap<u64, Vec<f32>> = ext
        .iter()
        .zip(data.chunks(DIM))
        .map(|(&id, v)| (id, v.to_vec()))
        .collect();
    assert_eq!(
        c.get(1003).unwrap().unwrap().0,
        model[&1003],
        "f32 stored vectors come back exactly"
    );
    assert!(recall(&c, &model, 40) >= 0.9);
    c.upsert(1003, vec_of(5), vec![]).unwrap();
    model.insert(1003, vec_of(5));
    c.delete(1004).unwrap();
    model.remove(&1004);
    c.upsert(9, vec_of(9), vec![]).unwrap();
    model.insert(9, vec_of(9));
    drop(c);
    let (c, _) = open(&fs, &live);
    assert_eq!(c.adopt_index("../index-1").unwrap(), 0);
    assert_eq!(c.len(), model.len());
    assert_eq!(c.get(1003).unwrap().unwrap().0, vec_of(5));
    assert_eq!(c.get(1004).unwrap(), None);
    let after = dir_bytes(&index_dir);
    assert!(before == after, "the adopted index's files are untouched");
    // A merge folds it into a new segment (reading its vectors back from
    // the graph file) and retires it.
    c.compact(&crate::cancel::CancelToken::default(), &mut |_, _, _| {})
        .unwrap();
    drop(c);
    assert!(!index_dir.exists(), "the merged-away index is deleted");
    let (c, _) = open(&fs, &live);
    assert_eq!(c.len(), model.len());
    for (id, v) in &model {
        assert_eq!(c.get(*id).unwrap().map(|g| g.0).as_ref(), Some(v), "id {id}");
    }
    assert!(recall(&c, &model, 40) >= 0.9);
    // Only an empty collection adopts.
    let e = c.adopt_index("../index-2").unwrap_err();
    assert!(e.to_string().contains("only an empty collection"), "{e}");
}
