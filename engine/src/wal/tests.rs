//! WAL tests: format round trip, reading from any LSN while appending,
//! group commit, torn-tail recovery, corruption detection, injected
//! faults, retention, followers and the retention cap, and power-loss
//! trials over `CrashFs`.

use super::*;
use crate::storage::{CrashFs, Fault, FaultKind};
use crate::storage::{RealFs, Vfs};
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn body(lsn: u64) -> Vec<u8> {
    // Bodies of varied length whose content names their LSN.
    let n = (lsn * 37 % 300) as usize;
    let mut b = lsn.to_le_bytes().to_vec();
    b.extend((0..n).map(|i| (i as u64 ^ lsn) as u8));
    b
}

fn small() -> WalOptions {
    WalOptions {
        segment_bytes: 4096,
        ..WalOptions::default()
    }
}

fn read_all(w: &Wal, from: Lsn) -> Vec<(Lsn, Vec<u8>)> {
    let mut c = w.cursor(from).unwrap();
    let mut out = Vec::new();
    loop {
        let got = w.read(&mut c, 1000).unwrap();
        if got.is_empty() {
            return out;
        }
        out.extend(got);
    }
}

fn segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

#[test]
fn records_round_trip_and_read_from_any_lsn_across_segments() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (w, rep) = Wal::open(fs.clone(), d.path(), small(), 1).unwrap();
    assert_eq!((rep.first_lsn, rep.last_lsn, rep.segments), (1, 0, 1));
    for lsn in 1..=200u64 {
        let b = body(lsn);
        assert_eq!(w.append(&[&b]).unwrap(), lsn);
    }
    // Batches get contiguous LSNs.
    let (b1, b2) = (body(201), body(202));
    assert_eq!(w.append(&[&b1, &b2]).unwrap(), 201);
    assert!(segments(d.path()).len() > 5, "4 KiB segments roll over");
    for from in [1u64, 2, 57, 150, 202] {
        let got = read_all(&w, from);
        assert_eq!(got.len() as u64, 203 - from, "from {from}");
        for (lsn, b) in got {
            assert_eq!(b, body(lsn));
        }
    }
    assert!(matches!(w.cursor(0), Err(WalError::Gone { .. })));
    drop(w);
    let (w, rep) = Wal::open(fs, d.path(), small(), 1).unwrap();
    assert_eq!((rep.first_lsn, rep.last_lsn, rep.cut.is_none()), (1, 202, true));
    assert_eq!(w.append(&[b"x"]).unwrap(), 203);
}

#[test]
fn a_reader_follows_concurrent_group_committed_appends() {
    let d = tempfile::tempdir().unwrap();
    let (w, _) = Wal::open(Arc::new(RealFs), d.path(), small(), 1).unwrap();
    let w = Arc::new(w);
    let writers: Vec<_> = (0..4)
        .map(|t| {
            let w = w.clone();
            std::thread::spawn(move || {
                let mut lsns = Vec::new();
                for i in 0..100u64 {
                    let b = (t * 1000 + i).to_le_bytes();
                    lsns.push(w.append(&[&b]).unwrap());
                    // Acknowledged means durable.
                    assert!(w.durable_lsn() >= *lsns.last().unwrap());
                }
                lsns
            })
        })
        .collect();
    let mut cur = w.cursor(1).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 400 {
        seen.extend(w.read(&mut cur, 512).unwrap());
    }
    let mut all: Vec<u64> = writers.into_iter().flat_map(|h| h.join().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=400).collect::<Vec<_>>(), "every LSN once");
    assert_eq!(
        seen.iter().map(|r| r.0).collect::<Vec<_>>(),
        all,
        "the reader saw them in order"
    );
}

#[test]
fn a_torn_tail_is_cut_and_the_log_continues() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (w, _) = Wal::open(fs.clone(), d.path(), WalOptions::default(), 1).unwrap();
    for lsn in 1..=10u64 {
        w.append(&[&body(lsn)]).unwrap();
    }
    drop(w);
    let seg = segments(d.path()).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(len - 5).unwrap(); // record 10 loses its last bytes
    drop(f);
    let (w, rep) = Wal::open(fs.clone(), d.path(), WalOptions::default(), 1).unwrap();
    assert_eq!(rep.last_lsn, 9);
    let (path, _, cut) = rep.cut.clone().unwrap();
    assert_eq!(path, seg);
    assert_eq!(cut as usize, RECORD_HEADER + body(10).len() - 5);
    assert_eq!(w.append(&[b"new ten"]).unwrap(), 10);
    let got = read_all(&w, 9);
    assert_eq!(got, vec![(9, body(9)), (10, b"new ten".to_vec())]);
}

#[test]
fn a_corrupt_record_before_the_tail_is_an_error_naming_file_and_offset() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (w, _) = Wal::open(fs.clone(), d.path(), WalOptions::default(), 1).unwrap();
    let mut offsets = Vec::new();
    let mut off = HEADER;
    for lsn in 1..=10u64 {
        offsets.push(off);
        off += RECORD_HEADER + body(lsn).len();
        w.append(&[&body(lsn)]).unwrap();
    }
    drop(w);
    let seg = segments(d.path()).pop().unwrap();
    let mut b = std::fs::read(&seg).unwrap();
    b[offsets[4] + RECORD_HEADER] ^= 0x40; // a bit flip in record 5's body
    std::fs::write(&seg, &b).unwrap();
    let e = Wal::open(fs.clone(), d.path(), WalOptions::default(), 1)
        .err()
        .expect("must fail");
    match &e {
        WalError::Corrupt { path, offset, why } => {
            assert_eq!(path, &seg);
            assert_eq!(*offset as usize, offsets[4]);
            assert!(why.contains("checksum"), "{why}");
        }
        o => panic!("{o}"),
    }
    let msg = e.to_string();
    assert!(
        msg.contains(&seg.display().to_string()) && msg.contains(&offsets[4].to_string()),
        "{msg}"
    );
    // Nothing was cut: the file is as it was.
    assert_eq!(std::fs::read(&seg).unwrap(), b);
}

#[test]
fn damage_in_a_sealed_segment_is_corruption_even_at_its_end() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (w, _) = Wal::open(fs.clone(), d.path(), small(), 1).unwrap();
    for lsn in 1..=100u64 {
        w.append(&[&body(lsn)]).unwrap();
    }
    drop(w);
    let segs = segments(d.path());
    let first = &segs[0];
    let len = std::fs::metadata(first).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(first)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let e = Wal::open(fs, d.path(), small(), 1).err().expect("must fail");
    assert!(matches!(&e, WalError::Corrupt { path, .. } if path == first), "{e}");
}

#[test]
fn a_full_disk_fails_the_batch_and_loses_nothing_acknowledged() {
    let d = tempfile::tempdir().unwrap();
    let cfs = CrashFs::new(d.path()).unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(cfs.clone());
    let (w, _) = Wal::open(fs.clone(), &d.path().join("wal"), WalOptions::default(), 1).unwrap();
    w.append(&[b"one"]).unwrap();
    cfs.set_fault(Some(Fault {
        after_ops: 0,
        kind: FaultKind::NoSpace,
        persistent: true,
    }));
    let e = w.append(&[b"two", b"three"]).unwrap_err();
    assert!(e.to_string().contains("No space left"), "{e}");
    assert_eq!(w.last_lsn(), 1, "a failed batch takes no LSNs");
    cfs.set_fault(None);
    assert_eq!(w.append(&[b"two"]).unwrap(), 2);
    assert_eq!(read_all(&w, 1), vec![(1, b"one".to_vec()), (2, b"two".to_vec())]);
}

#[test]
fn a_failed_sync_poisons_the_log_until_it_is_reopened() {
    let d = tempfile::tempdir().unwrap();
    let cfs = CrashFs::new(d.path()).unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(cfs.clone());
    let dir = d.path().join("wal");
    let (w, _) = Wal::open(fs.clone(), &dir, WalOptions::default(), 1).unwrap();
    w.append(&[b"one"]).unwrap();
    // The append's write passes, its sync fails.
    cfs.set_fault(Some(Fault {
        after_ops: 1,
        kind: FaultKind::Io,
        persistent: false,
    }));
    let e = w.append(&[b"two"]).unwrap_err();
    assert!(matches!(e, WalError::Poisoned(_)), "{e}");
    let e = w.append(&[b"three"]).unwrap_err();
    assert!(e.to_string().contains("refused until it is reopened"), "{e}");
    drop(w);
    let (w, rep) = Wal::open(fs, &dir, WalOptions::default(), 1).unwrap();
    // "two" was written but never acknowledged: it may or may not be there.
    assert!(rep.last_lsn == 1 || rep.last_lsn == 2);
    let next = w.append(&[b"four"]).unwrap();
    assert_eq!(next, rep.last_lsn + 1);
}

#[test]
fn interval_policy_acknowledges_before_the_sync_and_syncs_in_the_background() {
    let d = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        sync: SyncPolicy::Interval(Duration::from_millis(5)),
        ..WalOptions::default()
    };
    let (w, _) = Wal::open(Arc::new(RealFs), d.path(), opts, 1).unwrap();
    for i in 0..50u64 {
        w.append(&[&i.to_le_bytes()]).unwrap();
    }
    let t = std::time::Instant::now();
    while w.durable_lsn() < 50 {
        assert!(t.elapsed() < Duration::from_secs(10), "the flusher never synced");
        std::thread::sleep(Duration::from_millis(1));
    }
    w.sync().unwrap();
    assert_eq!(read_all(&w, 1).len(), 50);
}

#[test]
fn retention_deletes_whole_old_segments_only() {
    let d = tempfile::tempdir().unwrap();
    let (w, _) = Wal::open(Arc::new(RealFs), d.path(), small(), 1).unwrap();
    for lsn in 1..=100u64 {
        w.append(&[&body(lsn)]).unwrap();
    }
    let (n0, _) = w.size();
    let removed = w.retain_from(60).unwrap();
    assert!(removed > 0 && w.size().0 == n0 - removed);
    assert!(w.first_lsn() <= 60, "LSN 60 is still readable");
    assert_eq!(read_all(&w, 60).len(), 41);
    assert!(matches!(w.cursor(1), Err(WalError::Gone { .. })));
    w.retain_from(1_000).unwrap();
    assert_eq!(w.size().0, 1, "the active segment stays");
    // A new log after retention keeps numbering from the caller's LSN.
    let d2 = tempfile::tempdir().unwrap();
    let (w2, rep) = Wal::open(Arc::new(RealFs), d2.path(), small(), 500).unwrap();
    assert_eq!((rep.first_lsn, rep.last_lsn), (500, 499));
    assert_eq!(w2.append(&[b"a"]).unwrap(), 500);
}

/// Power-loss trials: random batches, a crash at a random operation
/// (sometimes inside a sync), power loss with torn tails; after recovery
/// every acknowledged record is there with its bytes, LSNs are contiguous,
/// and anything beyond the acknowledged ones is a whole record that was
/// written (never a half-applied one).
#[test]
fn power_loss_trials_keep_every_acknowledged_record() {
    let trials = CrashFs::trials("QUARRY_WAL_TRIALS", 2000);
    let d = tempfile::tempdir().unwrap();
    let mut torn_cuts = 0;
    for trial in 0..trials {
        let root = d.path().join(format!("t{}", trial % 4));
        let (cfs, fs) = CrashFs::fresh(&root);
        let dir = root.join("wal");
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(trial);
        let opts = WalOptions {
            segment_bytes: rng.random_range(512..8192),
            ..WalOptions::default()
        };
        let mut acked: Vec<Lsn> = Vec::new();
        // One or two lives before the cut, so recovery itself is also
        // crashed into.
        for life in 0..rng.random_range(1..=2) {
            let (w, _) = match Wal::open(fs.clone(), &dir, opts.clone(), 1) {
                Ok(x) => x,
                Err(e) => panic!("trial {trial} life {life}: {e}"),
            };
            cfs.set_fault(Some(Fault::random(&mut rng, 0..60)));
            for _ in 0..rng.random_range(1..40) {
                let n = rng.random_range(1..4);
                let next = w.last_lsn() + 1;
                let bodies: Vec<Vec<u8>> = (0..n).map(|i| body(next + i)).collect();
                let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
                match w.append(&refs) {
                    Ok(first) => {
                        assert_eq!(first, next);
                        acked.extend(first..first + n);
                    }
                    Err(_) => break,
                }
            }
            cfs.crash();
            drop(w);
            cfs.power_loss(trial * 7 + life, true).unwrap();
        }
        let (w, rep) = Wal::open(fs.clone(), &dir, opts.clone(), 1)
            .unwrap_or_else(|e| panic!("trial {trial}: recovery failed: {e}"));
        torn_cuts += rep.cut.is_some() as usize;
        let got = read_all(&w, w.first_lsn());
        for (i, (lsn, b)) in got.iter().enumerate() {
            assert_eq!(*lsn, i as u64 + 1, "trial {trial}: contiguous from 1");
            assert_eq!(b, &body(*lsn), "trial {trial}: record {lsn} intact");
        }
        let last = got.last().map_or(0, |r| r.0);
        for a in &acked {
            assert!(
                *a <= last,
                "trial {trial}: acknowledged LSN {a} lost (recovered up to {last})"
            );
        }
        assert!(last <= w.last_lsn());
    }
    assert!(torn_cuts > 0 || trials < 100, "no trial exercised a torn tail");
}

fn no_cap() -> WalOptions {
    WalOptions {
        max_retained_bytes: None,
        ..small()
    }
}

/// First LSNs of the segment files in `dir`, oldest first.
fn firsts(dir: &Path) -> Vec<Lsn> {
    segments(dir)
        .iter()
        .map(|p| {
            let n = p.file_name().unwrap().to_str().unwrap();
            n["wal-".len()..n.len() - ".log".len()].parse().unwrap()
        })
        .collect()
}

/// Index of the segment holding `lsn`.
fn seg_holding(dir: &Path, lsn: Lsn) -> usize {
    firsts(dir).iter().filter(|&&f| f <= lsn).count() - 1
}

fn acked(w: &Wal, name: &str) -> Option<Lsn> {
    w.followers().into_iter().find(|f| f.name == name).map(|f| f.acked)
}

/// Append `body(lsn)` up to `upto`, four to a batch (one sync each).
fn append_bodies(w: &Wal, upto: Lsn) {
    let mut next = w.last_lsn() + 1;
    while next <= upto {
        let bodies: Vec<Vec<u8>> = (next..=upto.min(next + 3)).map(body).collect();
        let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
        assert_eq!(w.append(&refs).unwrap(), next);
        next += bodies.len() as u64;
    }
}

/// Every record from `from` to the end, checked contiguous and intact.
fn check_readable(w: &Wal, from: Lsn) {
    let got = read_all(w, from);
    assert_eq!(got.len() as u64, w.last_lsn() + 1 - from, "records from {from}");
    for (i, (lsn, b)) in got.iter().enumerate() {
        assert_eq!(*lsn, from + i as u64);
        assert_eq!(b, &body(*lsn), "record {lsn}");
    }
}

#[test]
fn a_follower_holds_segments_back_until_it_acks() {
    let d = tempfile::tempdir().unwrap();
    let (w, _) = Wal::open(Arc::new(RealFs), d.path(), no_cap(), 1).unwrap();
    w.register_follower("standby-1", 1).unwrap();
    append_bodies(&w, 100);
    let n0 = w.size().0;
    assert!(n0 > 4);
    let r = w.retain(60).unwrap();
    assert_eq!(r.segments_deleted, 0, "the follower needs LSN 1");
    assert_eq!(r.segments_held, seg_holding(d.path(), 60));
    assert_eq!(w.first_lsn(), 1);
    check_readable(&w, 1);

    // Acking 30 releases every segment wholly below 31, no more.
    w.ack_follower("standby-1", 30).unwrap();
    let k = seg_holding(d.path(), 31);
    assert!(k > 0, "31 is past the first segment");
    let held = seg_holding(d.path(), 60) - k;
    assert!(held > 0, "60 is past 31's segment");
    let r = w.retain(60).unwrap();
    assert_eq!((r.segments_deleted, r.segments_held), (k, held));
    assert_eq!(w.size().0, n0 - k);
    assert_eq!(seg_holding(d.path(), 31), 0, "31's segment is now the oldest");
    check_readable(&w, 31);
    assert!(matches!(w.cursor(1), Err(WalError::Gone { .. })));

    // Caught up: the caller's LSN governs again.
    w.ack_follower("standby-1", 100).unwrap();
    let k = seg_holding(d.path(), 60);
    assert_eq!(w.retain_from(60).unwrap(), k);
    assert_eq!(seg_holding(d.path(), 60), 0);
    check_readable(&w, 60);
    assert_eq!(acked(&w, "standby-1"), Some(100));
    // Unregistered, it holds nothing.
    w.register_follower("standby-1", 61).unwrap();
    w.unregister_follower("standby-1").unwrap();
    assert!(w.followers().is_empty());
    w.retain_from(101).unwrap();
    assert_eq!(w.size().0, 1, "only the active segment is left");
}

#[test]
fn follower_names_acks_and_the_registry_survive_reopen() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (w, _) = Wal::open(fs.clone(), d.path(), no_cap(), 1).unwrap();
    let long = "x".repeat(65);
    for bad in ["", long.as_str(), "a b", "a/b", "ü", "new\nline"] {
        match w.register_follower(bad, 1) {
            Err(WalError::InvalidArgument(m)) => assert!(m.contains("follower name"), "{m}"),
            o => panic!("{bad:?}: {o:?}"),
        }
    }
    let max = "Z9_-".repeat(16);
    w.register_follower(&max, 1).unwrap();
    w.register_follower("a", 1).unwrap();
    w.register_follower("b", 1).unwrap();
    append_bodies(&w, 100);

    // An ack that moves into another segment is written at once (one
    // inside the same segment is not: below).
    let f = firsts(d.path());
    let k = (1..f.len() - 1).find(|&k| f[k + 1] - f[k] >= 3).unwrap();
    w.ack_follower("a", f[k] - 1).unwrap();
    assert_eq!(acked(&w, "a"), Some(f[k] - 1));
    w.ack_follower("a", 5).unwrap(); // lower: ignored
    assert_eq!(acked(&w, "a"), Some(f[k] - 1));
    match w.ack_follower("a", 101) {
        Err(WalError::InvalidArgument(m)) => assert!(m.contains("101") && m.contains("durable"), "{m}"),
        o => panic!("{o:?}"),
    }
    assert!(matches!(w.ack_follower("nobody", 1), Err(WalError::UnknownFollower(n)) if n == "nobody"));
    // Registering again moves a follower (here back).
    w.register_follower("b", 20).unwrap();
    assert_eq!(acked(&w, "b"), Some(19));
    w.register_follower("c", 1).unwrap();
    w.unregister_follower("c").unwrap();
    assert!(matches!(w.unregister_follower("c"), Err(WalError::UnknownFollower(_))));
    let before = w.followers();
    assert_eq!(
        before.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        vec![max.as_str(), "a", "b"]
    );
    assert!(before
        .iter()
        .all(|f| f.registered_at > 1_600_000_000 && f.last_ack >= f.registered_at));
    // Last, so no other registry write carries it: an ack within the
    // segment stays in memory.
    w.ack_follower("a", f[k]).unwrap();
    assert_eq!(acked(&w, "a"), Some(f[k]));
    drop(w);

    let (w, _) = Wal::open(fs, d.path(), no_cap(), 1).unwrap();
    let after = w.followers();
    assert_eq!(after.len(), 3);
    assert_eq!(
        acked(&w, "a"),
        Some(f[k] - 1),
        "the unwritten ack is behind, never ahead"
    );
    assert_eq!(acked(&w, "b"), Some(19));
    assert_eq!(acked(&w, &max), Some(0));
    assert_eq!(after[2].registered_at, before[2].registered_at);
    // The positions it recorded are still held.
    assert_eq!(w.retain_from(101).unwrap(), 0);
    check_readable(&w, 1);
}

#[test]
fn acks_in_one_segment_are_written_every_64() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let opts = WalOptions {
        max_retained_bytes: None,
        ..WalOptions::default()
    };
    let (w, _) = Wal::open(fs.clone(), d.path(), opts.clone(), 1).unwrap();
    w.register_follower("f", 1).unwrap();
    append_bodies(&w, 200);
    assert_eq!(ACK_PERSIST_EVERY, 64);
    let reopened = |w: Wal| {
        drop(w);
        let (w, _) = Wal::open(fs.clone(), d.path(), opts.clone(), 1).unwrap();
        let a = acked(&w, "f").unwrap();
        (w, a)
    };
    for lsn in 1..=63 {
        w.ack_follower("f", lsn).unwrap();
    }
    let (w, a) = reopened(w);
    assert_eq!(a, 0, "63 acks stay in memory");
    for lsn in 1..=64 {
        w.ack_follower("f", lsn).unwrap();
    }
    let (w, a) = reopened(w);
    assert_eq!(a, 64, "the 64th is written");
    // Retention writes memory's position first, so the file never names
    // a deleted record... and here nothing is deleted (one segment).
    w.ack_follower("f", 70).unwrap();
    assert_eq!(w.retain_from(201).unwrap(), 0);
    let (_w, a) = reopened(w);
    assert_eq!(a, 64);
}

#[test]
fn retention_writes_unwritten_acks_before_deleting() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (w, _) = Wal::open(fs.clone(), d.path(), no_cap(), 1).unwrap();
    append_bodies(&w, 100);
    let f = firsts(d.path());
    // Registered at the end of the active segment, which then rolls over:
    // the follower's next record moves to a new segment without an ack.
    w.register_follower("f", f[1]).unwrap();
    w.ack_follower("f", f[1] + 1).unwrap(); // same segment: memory only
    let deleted = w.retain_from(101).unwrap();
    assert_eq!(deleted, 1, "the segment below f[1] goes");
    drop(w);
    let (w, _) = Wal::open(fs, d.path(), no_cap(), 1).unwrap();
    assert_eq!(acked(&w, "f"), Some(f[1] + 1), "written before the deletion");
    check_readable(&w, f[1] + 2);
}

#[test]
fn a_follower_registered_from_a_deleted_lsn_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (w, _) = Wal::open(Arc::new(RealFs), d.path(), no_cap(), 1).unwrap();
    append_bodies(&w, 100);
    assert!(w.retain_from(60).unwrap() > 0);
    let oldest = w.first_lsn();
    assert!(oldest > 1 && oldest <= 60);
    for from in [1, oldest - 1] {
        let e = w.register_follower("late", from).unwrap_err();
        match &e {
            WalError::FollowerGone {
                name,
                from: f,
                oldest: o,
            } => {
                assert_eq!((name.as_str(), *f, *o), ("late", from, oldest));
            }
            o => panic!("{o}"),
        }
        let m = e.to_string();
        assert!(m.contains("gone") && m.contains("snapshot"), "{m}");
    }
    assert!(w.followers().is_empty(), "a refused registration leaves nothing");
    match w.register_follower("late", 102) {
        Err(WalError::InvalidArgument(m)) => assert!(m.contains("durable only up to LSN 100"), "{m}"),
        o => panic!("{o:?}"),
    }
    w.register_follower("late", oldest).unwrap();
    w.register_follower("caught-up", 101).unwrap();
    assert_eq!(acked(&w, "late"), Some(oldest - 1));
    assert_eq!(acked(&w, "caught-up"), Some(100));
}

#[test]
fn the_cap_drops_the_lagging_follower_and_its_next_ack_fails() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let cap = 8 * 4096;
    let opts = WalOptions {
        max_retained_bytes: Some(cap),
        ..small()
    };
    let (w, _) = Wal::open(fs.clone(), d.path(), opts.clone(), 1).unwrap();
    for name in ["slow", "mid", "fast"] {
        w.register_follower(name, 1).unwrap();
    }
    append_bodies(&w, 300);
    let total = w.size().1;
    assert!(total > cap + 3 * 4096, "{total}");
    w.ack_follower("mid", 200).unwrap();
    w.ack_follower("fast", 280).unwrap();
    // Under the cap nothing would be dropped: followers hold everything.
    let r = w.retain(301).unwrap();
    assert_eq!(r.followers_dropped.len(), 1, "{r:?}");
    let gone = &r.followers_dropped[0];
    assert_eq!((gone.name.as_str(), gone.acked), ("slow", 0));
    assert!(w.size().1 <= cap, "{} bytes left", w.size().1);
    // Only as much as the cap needs, then what the followers left allow.
    assert_eq!(
        seg_holding(d.path(), 201),
        0,
        "mid's next record is in the oldest segment"
    );
    assert_eq!(
        w.followers()
            .iter()
            .map(|f| (f.name.as_str(), f.acked))
            .collect::<Vec<_>>(),
        vec![("fast", 280), ("mid", 200)]
    );
    check_readable(&w, 201);
    let e = w.ack_follower("slow", 10).unwrap_err();
    assert!(
        matches!(&e, WalError::FollowerDropped { name, acked: 0 } if name == "slow"),
        "{e}"
    );
    assert!(e.to_string().contains("snapshot"), "{e}");
    drop(w);

    // The drop is on disk: still refused after a restart.
    let (w, _) = Wal::open(fs.clone(), d.path(), opts.clone(), 1).unwrap();
    assert!(matches!(
        w.ack_follower("slow", 300),
        Err(WalError::FollowerDropped { .. })
    ));
    assert_eq!(acked(&w, "mid"), Some(200));
    assert_eq!(acked(&w, "slow"), None);
    // Re-synced from a snapshot, it registers again.
    w.register_follower("slow", 301).unwrap();
    w.ack_follower("slow", 300).unwrap();
    assert_eq!(acked(&w, "slow"), Some(300));
    // A follower within the cap is never dropped.
    append_bodies(&w, 320);
    let r = w.retain(321).unwrap();
    assert!(r.followers_dropped.is_empty(), "{r:?}");
    assert_eq!(w.followers().len(), 3);
}

#[test]
fn unmerged_records_are_never_deleted_even_past_the_cap() {
    let d = tempfile::tempdir().unwrap();
    let opts = WalOptions {
        max_retained_bytes: Some(1),
        ..small()
    };
    let (w, _) = Wal::open(Arc::new(RealFs), d.path(), opts, 1).unwrap();
    w.register_follower("f", 1).unwrap();
    append_bodies(&w, 100);
    // Held by the caller, not by a follower: no drop, no deletion.
    let r = w.retain(1).unwrap();
    assert_eq!(r, RetainReport::default());
    assert_eq!(acked(&w, "f"), Some(0));
    // Past the cap, the follower goes, but LSN 50 on stays.
    let k = seg_holding(d.path(), 50);
    assert!(k > 0);
    let r = w.retain(50).unwrap();
    assert_eq!(r.followers_dropped.len(), 1);
    assert_eq!((r.segments_deleted, r.segments_held), (k, 0));
    assert_eq!(seg_holding(d.path(), 50), 0);
    assert!(w.size().1 > 1, "still over the cap");
    check_readable(&w, 50);
    // Without followers the cap deletes nothing unmerged either.
    let before = w.size();
    assert_eq!(w.retain(w.first_lsn()).unwrap().segments_deleted, 0);
    assert_eq!(w.size(), before);
}

#[test]
fn a_corrupt_followers_file_is_named_in_the_error() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (w, _) = Wal::open(fs.clone(), d.path(), small(), 1).unwrap();
    w.register_follower("a", 1).unwrap();
    w.register_follower("b", 1).unwrap();
    append_bodies(&w, 10);
    drop(w);
    let p = d.path().join(FOLLOWERS_FILE);
    let good = std::fs::read(&p).unwrap();
    assert_eq!(good.len(), 12 + 2 * (26 + 1) + 4, "header, two entries, crc");
    // A leftover temporary file is not a segment and is not read.
    std::fs::write(d.path().join("followers.bin.tmp"), b"junk").unwrap();
    let mut flipped = good.clone();
    flipped[20] ^= 1;
    for bad in [flipped, good[..10].to_vec(), good[..good.len() - 1].to_vec()] {
        std::fs::write(&p, &bad).unwrap();
        let e = Wal::open(fs.clone(), d.path(), small(), 1).err().expect("must fail");
        assert!(matches!(&e, WalError::Corrupt { path, .. } if path == &p), "{e}");
        let m = e.to_string();
        assert!(
            m.contains(&p.display().to_string()) && m.contains("follower registry"),
            "{m}"
        );
    }
    // A missing file means no followers.
    std::fs::remove_file(&p).unwrap();
    let (w, rep) = Wal::open(fs.clone(), d.path(), small(), 1).unwrap();
    assert_eq!((rep.last_lsn, w.followers().len()), (10, 0));
    drop(w);
    std::fs::write(&p, &good).unwrap();
    let (w, _) = Wal::open(fs, d.path(), small(), 1).unwrap();
    assert_eq!(w.followers().len(), 2);
}

#[test]
fn a_failed_registry_write_changes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let cfs = CrashFs::new(d.path()).unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(cfs.clone());
    let dir = d.path().join("wal");
    let (w, _) = Wal::open(fs, &dir, no_cap(), 1).unwrap();
    append_bodies(&w, 50);
    cfs.set_fault(Some(Fault {
        after_ops: 0,
        kind: FaultKind::NoSpace,
        persistent: false,
    }));
    let e = w.register_follower("f", 1).unwrap_err();
    assert!(
        matches!(&e, WalError::Io { path, .. } if path.ends_with(FOLLOWERS_FILE)),
        "{e}"
    );
    assert!(w.followers().is_empty());
    w.register_follower("f", 1).unwrap();
    assert!(cfs.ops() > 0, "the registry goes through the Vfs");
    assert_eq!(w.retain_from(51).unwrap(), 0, "the follower holds LSN 1");
}

/// Power-loss trials with followers: random appends, registrations, acks,
/// unregistrations and retention (some with a cap), a fault at a random
/// operation, power loss with torn tails. After recovery each follower's
/// recorded ack is at most the highest position it was ever given, every
/// record after it is readable, and each follower registered successfully
/// (and neither unregistered nor capped since) is still there.
#[test]
fn power_loss_trials_keep_followers_behind_their_acks_and_readable() {
    let trials = CrashFs::trials("QUARRY_WAL_FOLLOWER_TRIALS", 150);
    let names = ["a", "b-2", "c_3"];
    let d = tempfile::tempdir().unwrap();
    let (mut behind, mut deleted, mut checked) = (0, 0, 0);
    for trial in 0..trials {
        let root = d.path().join(format!("t{}", trial % 4));
        let (cfs, fs) = CrashFs::fresh(&root);
        let dir = root.join("wal");
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(trial ^ 0xf011_0000);
        let capped = rng.random_bool(0.3);
        let opts = WalOptions {
            segment_bytes: rng.random_range(512..4096),
            max_retained_bytes: capped.then(|| rng.random_range(2048..16384)),
            ..WalOptions::default()
        };
        // The highest position each follower was given (attempts count).
        let mut hi: HashMap<&str, Lsn> = HashMap::new();
        let mut must_exist: HashSet<&str> = HashSet::new();
        let (w, _) = Wal::open(fs.clone(), &dir, opts.clone(), 1).unwrap();
        cfs.set_fault(Some(Fault::random(&mut rng, 0..300)));
        for _ in 0..rng.random_range(10..80) {
            let name = names[rng.random_range(0..names.len())];
            match rng.random_range(0..10) {
                0..=3 => {
                    let next = w.last_lsn() + 1;
                    let bodies: Vec<Vec<u8>> = (0..rng.random_range(1..4)).map(|i| body(next + i)).collect();
                    let refs: Vec<&[u8]> = bodies.iter().map(|b| b.as_slice()).collect();
                    let _ = w.append(&refs);
                }
                4 => {
                    let from = rng.random_range(w.first_lsn()..=w.durable_lsn() + 1);
                    let h = hi.entry(name).or_insert(0);
                    *h = (*h).max(from - 1);
                    if w.register_follower(name, from).is_ok() && !capped {
                        must_exist.insert(name);
                    }
                }
                5..=7 => {
                    if let Some(a) = acked(&w, name) {
                        // Often fully caught up: the next append may then
                        // start a segment with no ack written for it.
                        let lsn = if rng.random_bool(0.5) {
                            w.durable_lsn()
                        } else {
                            rng.random_range(a..=w.durable_lsn())
                        };
                        let h = hi.entry(name).or_insert(0);
                        *h = (*h).max(lsn);
                        let _ = w.ack_follower(name, lsn);
                    }
                }
                8 => {
                    let keep = rng.random_range(1..=w.last_lsn() + 1);
                    if let Ok(r) = w.retain(keep) {
                        if !w.followers().is_empty() {
                            deleted += r.segments_deleted;
                        }
                    }
                }
                _ => {
                    must_exist.remove(name);
                    let _ = w.unregister_follower(name);
                }
            }
        }
        let before = w.followers();
        cfs.crash();
        drop(w);
        cfs.power_loss(trial, true).unwrap();
        let (w, rep) = Wal::open(fs.clone(), &dir, opts.clone(), 1)
            .unwrap_or_else(|e| panic!("trial {trial}: recovery failed: {e}"));
        assert!(
            rep.followers_dropped.is_empty(),
            "trial {trial}: recorded positions no longer in the log: {:?}",
            rep.followers_dropped
        );
        let after = w.followers();
        for f in &after {
            let h = hi[f.name.as_str()];
            assert!(
                f.acked <= h,
                "trial {trial}: {} recorded at {} but never given more than {h}",
                f.name,
                f.acked
            );
            if before.iter().any(|b| b.name == f.name && b.acked > f.acked) {
                behind += 1;
            }
            let from = f.acked + 1;
            let got = read_all(&w, from);
            assert_eq!(
                got.len() as u64,
                w.last_lsn() + 1 - from,
                "trial {trial}: {} at {} cannot read on",
                f.name,
                f.acked
            );
            for (i, (lsn, b)) in got.iter().enumerate() {
                assert_eq!((*lsn, b), (from + i as u64, &body(from + i as u64)), "trial {trial}");
            }
            checked += 1;
        }
        for n in &must_exist {
            assert!(
                after.iter().any(|f| f.name == *n),
                "trial {trial}: follower {n} was registered and is gone"
            );
        }
    }
    assert!(
        trials < 100 || (behind > 0 && deleted > 0 && checked > trials),
        "trials too tame: behind {behind}, deleted {deleted}, checked {checked}"
    );
}

#[test]
fn a_follower_whose_records_were_deleted_by_hand_is_dropped_on_open() {
    let d = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let (w, _) = Wal::open(fs.clone(), d.path(), no_cap(), 1).unwrap();
    w.register_follower("f", 1).unwrap();
    append_bodies(&w, 100);
    w.register_follower("g", 101).unwrap();
    drop(w);
    std::fs::remove_file(&segments(d.path())[0]).unwrap();
    let (w, rep) = Wal::open(fs.clone(), d.path(), no_cap(), 1).unwrap();
    assert!(rep.first_lsn > 1);
    assert_eq!(
        rep.followers_dropped
            .iter()
            .map(|f| (f.name.as_str(), f.acked))
            .collect::<Vec<_>>(),
        vec![("f", 0)]
    );
    assert_eq!(
        w.followers().iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        vec!["g"]
    );
    assert!(matches!(
        w.ack_follower("f", 50),
        Err(WalError::FollowerDropped { acked: 0, .. })
    ));
    // Dropped for good once the registry is written again (here by an
    // unregistration), and reported only once.
    w.unregister_follower("g").unwrap();
    drop(w);
    let (w, rep) = Wal::open(fs, d.path(), no_cap(), 1).unwrap();
    assert!(rep.followers_dropped.is_empty());
    assert!(matches!(w.ack_follower("f", 50), Err(WalError::FollowerDropped { .. })));
}

#[test]
fn the_followers_file_is_laid_out_as_documented() {
    let d = tempfile::tempdir().unwrap();
    let (w, _) = Wal::open(Arc::new(RealFs), d.path(), small(), 1).unwrap();
    append_bodies(&w, 4);
    w.register_follower("ab", 5).unwrap();
    let b = std::fs::read(d.path().join(FOLLOWERS_FILE)).unwrap();
    let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    assert_eq!(b.len(), 12 + 26 + 2 + 4);
    assert_eq!((&b[..4], u32_at(4), u32_at(8)), (&b"QWFL"[..], 1, 1));
    assert_eq!((b[12], b[13], &b[14..16]), (0, 2, &b"ab"[..]));
    let info = &w.followers()[0];
    assert_eq!(
        (u64_at(16), u64_at(24), u64_at(32)),
        (4, info.registered_at, info.last_ack)
    );
    assert_eq!(u32_at(40), crc32c::crc32c(&b[..40]));
    w.unregister_follower("ab").unwrap();
    let b = std::fs::read(d.path().join(FOLLOWERS_FILE)).unwrap();
    assert_eq!(b.len(), 16, "an empty registry");
}

/// Found by the `wal_segment` fuzz target (input: a header-only segment
/// `wal-00000000000000000000.log` whose header says first LSN 0, plus one
/// stray byte): recovery cut the byte, then computed the segment's last LSN
/// as 0 - 1 and panicked. No log ever starts at LSN 0; it is corruption.
#[test]
fn a_segment_starting_at_lsn_0_is_corrupt() {
    assert_first_lsn_refused(0, &[0]);
}

/// A log of one segment with first LSN `first` followed by `tail` is
/// refused as corrupt at the header's first-LSN field.
fn assert_first_lsn_refused(first: u64, tail: &[u8]) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(seg_name(first));
    let mut b = header(first);
    b.extend_from_slice(tail);
    std::fs::write(&p, &b).unwrap();
    let e = Wal::open(Arc::new(RealFs), d.path(), WalOptions::default(), 1)
        .err()
        .expect("refused");
    assert!(
        matches!(&e, WalError::Corrupt { path, offset: 8, .. } if path == &p),
        "first LSN {first}: {e}"
    );
}

/// Found by the `wal_segment` fuzz target (input: a segment
/// `wal-18446744073709551615.log` whose header says first LSN u64::MAX,
/// followed by garbage): recovery cut the garbage and opened a log whose
/// next LSN was u64::MAX + 1, so the first append overflowed. A first LSN
/// past 2^63 is corruption, like 0.
#[test]
fn a_segment_starting_past_lsn_2_63_is_corrupt() {
    for first in [u64::MAX, u64::MAX - 1, (1 << 63) + 1] {
        assert_first_lsn_refused(first, &[0xff; 40]);
    }
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join(seg_name(1 << 63));
    std::fs::write(&p, header(1 << 63)).unwrap();
    let (w, _) = Wal::open(Arc::new(RealFs), d.path(), WalOptions::default(), 1).unwrap();
    assert_eq!(w.append(&[b"x"]).unwrap(), 1 << 63);
}
