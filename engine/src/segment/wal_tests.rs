//! WAL tests: format round trip, reading from any LSN while appending,
//! group commit, torn-tail recovery, corruption detection, injected
//! faults, retention, and power-loss trials over `CrashFs`.

use super::crashfs::{CrashFs, Fault, FaultKind};
use super::vfs::{RealFs, Vfs};
use super::wal::*;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
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
    let trials = std::env::var("QUARRY_WAL_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000u64);
    let d = tempfile::tempdir().unwrap();
    let mut torn_cuts = 0;
    for trial in 0..trials {
        let root = d.path().join(format!("t{}", trial % 4));
        if root.exists() {
            std::fs::remove_dir_all(&root).unwrap();
        }
        let cfs = CrashFs::new(&root).unwrap();
        let fs: Arc<dyn Vfs> = Arc::new(cfs.clone());
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
            cfs.set_fault(Some(Fault {
                after_ops: rng.random_range(0..60),
                kind: if rng.random_bool(0.5) {
                    FaultKind::Io
                } else {
                    FaultKind::NoSpace
                },
                persistent: true,
            }));
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
