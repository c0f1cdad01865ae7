//! Snapshots: taken on a primary while writes go on, installed on a
//! standby that then streams the log after the checkpoint and answers as
//! the primary does; segment files held through a compaction; a flipped
//! checksum refused with the old collection marked; and power-loss trials
//! of the install: the old collection (marked) or the new one, never a mix.

use super::tests::{opts, vec_of};
use super::*;
use crate::storage::{CrashFs, Fault, FaultKind, RealFs, Vfs};
use std::sync::Arc;

fn fill(c: &Collection, ids: std::ops::Range<u64>) {
    for i in ids {
        c.upsert(i, vec_of(i), format!("p{i}").into_bytes()).unwrap();
    }
}

/// A primary with two segments, tombstones and fresh records.
fn primary(dir: &std::path::Path) -> Collection {
    let (p, _) = Collection::open(Arc::new(RealFs), dir, opts()).unwrap();
    fill(&p, 0..120);
    p.flush(&mut |_, _, _| {}).unwrap();
    fill(&p, 120..200);
    for i in (0..200).step_by(9) {
        p.delete(i).unwrap();
    }
    p.flush(&mut |_, _, _| {}).unwrap();
    fill(&p, 200..230);
    assert!(p.segments() >= 1);
    p
}

fn install(fs: &dyn Vfs, dir: &std::path::Path, snap: &Snapshot) -> Result<u64> {
    install_snapshot(
        fs,
        dir,
        &snap.manifest,
        &snap.epochs,
        &snap.files,
        777,
        &mut |path, off, len| snap.read(path, off, len),
    )
}

fn ship(p: &Collection, s: &Collection) {
    let mut cur = p.wal().cursor(s.wal().last_lsn() + 1).unwrap();
    loop {
        let recs = p.wal().read(&mut cur, 1 << 20).unwrap();
        if recs.is_empty() {
            return;
        }
        let bodies: Vec<Vec<u8>> = recs.iter().map(|r| r.1.clone()).collect();
        s.apply_replicated(recs[0].0, &bodies).unwrap();
    }
}

#[test]
fn a_snapshot_with_the_log_after_it_makes_the_standby_equal() {
    let d = tempfile::tempdir().unwrap();
    let p = primary(&d.path().join("p"));
    let snap = p.snapshot("standby").unwrap();
    let c = snap.checkpoint;
    assert!(c > 0 && c < p.wal().last_lsn(), "fresh records after the checkpoint");
    assert_eq!(
        p.wal().followers()[0].acked,
        c,
        "registered at checkpoint + 1 before anything was read"
    );
    assert!(snap.files.iter().any(|f| f.path.ends_with("records.bin")));
    // Writes go on during the transfer, and the primary flushes again.
    fill(&p, 230..260);
    p.delete(3).unwrap();
    p.flush(&mut |_, _, _| {}).unwrap();
    // A standby with an older collection of its own is replaced.
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let sdir = d.path().join("s");
    {
        let (old, _) = Collection::open(fs.clone(), &sdir, opts()).unwrap();
        fill(&old, 1000..1010);
    }
    let bytes = install(fs.as_ref(), &sdir, &snap).unwrap();
    assert_eq!(bytes, snap.bytes());
    drop(snap);
    assert!(
        !needs_snapshot(fs.as_ref(), &sdir),
        "a finished install leaves no marker"
    );
    let (s, _) = Collection::open(fs.clone(), &sdir, opts()).unwrap();
    assert_eq!(s.wal().last_lsn(), c, "the log starts after the checkpoint");
    ship(&p, &s);
    assert_eq!(s.wal().last_lsn(), p.wal().last_lsn());
    for i in 0..270 {
        assert_eq!(s.get(i).unwrap(), p.get(i).unwrap(), "id {i}");
    }
    assert!(s.get(1005).unwrap().is_none(), "the old collection is gone");
    assert!(!d.path().join("s.snapshot.tmp").exists() && !d.path().join("s.snapshot.old").exists());
}

#[test]
fn the_files_outlive_a_compaction_while_the_snapshot_holds_them() {
    let d = tempfile::tempdir().unwrap();
    let p = primary(&d.path().join("p"));
    let snap = p.snapshot("s1").unwrap();
    let seg_dir = snap.files[0].path.split('/').next().unwrap().to_string();
    p.compact(&crate::cancel::CancelToken::default(), &mut |_, _, _| {})
        .unwrap();
    assert!(d.path().join("p").join(&seg_dir).exists(), "held by the snapshot");
    let (fs, sdir) = (RealFs, d.path().join("s"));
    install(&fs, &sdir, &snap).unwrap();
    drop(snap);
    assert!(!d.path().join("p").join(&seg_dir).exists(), "deleted once let go");
    let (s, _) = Collection::open(Arc::new(RealFs), &sdir, opts()).unwrap();
    ship(&p, &s);
    for i in 0..230 {
        assert_eq!(s.get(i).unwrap(), p.get(i).unwrap(), "id {i}");
    }
}

#[test]
fn a_flipped_checksum_is_refused_and_the_old_collection_is_marked() {
    let d = tempfile::tempdir().unwrap();
    let p = primary(&d.path().join("p"));
    let snap = p.snapshot("s").unwrap();
    let fs: Arc<dyn Vfs> = Arc::new(RealFs);
    let sdir = d.path().join("s");
    {
        let (old, _) = Collection::open(fs.clone(), &sdir, opts()).unwrap();
        fill(&old, 0..5);
    }
    let victim = snap.files.len() / 2;
    let e = install_snapshot(
        fs.as_ref(),
        &sdir,
        &snap.manifest,
        &snap.epochs,
        &snap.files,
        4096,
        &mut |path, off, len| {
            let mut b = snap.read(path, off, len)?;
            if path == snap.files[victim].path && off == 0 {
                b[0] ^= 0x20;
            }
            Ok(b)
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("crc32c") && e.to_string().contains(&snap.files[victim].path),
        "{e}"
    );
    assert!(
        needs_snapshot(fs.as_ref(), &sdir),
        "the old collection must not report its state"
    );
    // A file outside the manifest's segments is refused before anything.
    let mut evil = snap.files.clone();
    evil[0].path = "../p/manifest.json".into();
    let e = install_snapshot(
        fs.as_ref(),
        &d.path().join("t"),
        &snap.manifest,
        &snap.epochs,
        &evil,
        4096,
        &mut |_, _, _| panic!("nothing may be fetched"),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not inside a segment"), "{e}");
    // The next open removes the half-written copy; a later install works.
    let (old, _) = Collection::open(fs.clone(), &sdir, opts()).unwrap();
    assert!(!d.path().join("s.snapshot.tmp").exists());
    assert_eq!(old.len(), 5);
    drop(old);
    install(fs.as_ref(), &sdir, &snap).unwrap();
    assert!(!needs_snapshot(fs.as_ref(), &sdir));
}

/// Power-loss trials: an install over an existing collection, a fault at
/// a random operation, power loss with torn tails; then opening finds
/// either the old collection marked as needing a snapshot, or the new one
/// whole (its segments' ids all there).
#[test]
fn power_loss_during_an_install_leaves_the_old_marked_or_the_new_whole() {
    let trials = CrashFs::trials("QUARRY_SNAPSHOT_TRIALS", 60);
    let d = tempfile::tempdir().unwrap();
    let p = primary(&d.path().join("p"));
    let snap = p.snapshot("s").unwrap();
    let c = snap.checkpoint;
    let in_segments: Vec<u64> = (0..200).filter(|i| i % 9 != 0).collect();
    // How many file-system operations a whole install takes (old
    // collection included), so faults land all along it.
    let total_ops = {
        let root = d.path().join("count");
        let (cfs, fs) = CrashFs::fresh(&root);
        let sdir = root.join("coll");
        let (old, _) = Collection::open(fs.clone(), &sdir, opts()).unwrap();
        fill(&old, 5000..5003);
        drop(old);
        let before = cfs.ops();
        install(fs.as_ref(), &sdir, &snap).unwrap();
        cfs.ops() - before
    };
    let (mut old_seen, mut new_seen) = (0, 0);
    for trial in 0..trials {
        let root = d.path().join(format!("t{}", trial % 3));
        let (cfs, fs) = CrashFs::fresh(&root);
        let sdir = root.join("coll");
        {
            let (old, _) = Collection::open(fs.clone(), &sdir, opts()).unwrap();
            fill(&old, 5000..5003);
        }
        cfs.set_fault(Some(Fault {
            after_ops: trial * (total_ops + 4) / trials,
            kind: if trial % 2 == 0 {
                FaultKind::Io
            } else {
                FaultKind::NoSpace
            },
            persistent: true,
        }));
        let done = install(fs.as_ref(), &sdir, &snap).is_ok();
        cfs.crash();
        cfs.power_loss(trial, true).unwrap();
        let marked = needs_snapshot(fs.as_ref(), &sdir);
        let began = root.join("coll.snapshot.tmp").exists();
        let (s, _) = Collection::open(fs.clone(), &sdir, opts())
            .unwrap_or_else(|e| panic!("trial {trial}: cannot open after the crash: {e}"));
        if s.get(5001).unwrap().is_some() {
            assert!(!done, "trial {trial}: a finished install left the old collection");
            // The marker is durable before the new directory is created:
            // once any of the install survived, the old one says so.
            assert!(
                marked || !began,
                "trial {trial}: the install began, the old collection is not marked"
            );
            old_seen += marked as usize;
        } else {
            assert!(!marked, "trial {trial}: the new collection carries the marker");
            assert_eq!(s.wal().last_lsn(), c, "trial {trial}");
            for &i in &in_segments {
                assert!(
                    s.get(i).unwrap().is_some(),
                    "trial {trial}: id {i} missing from the installed snapshot"
                );
            }
            new_seen += 1;
        }
    }
    assert!(
        trials < 30 || (old_seen > 0 && new_seen > 0),
        "trials too tame: old and marked {old_seen}, new {new_seen}"
    );
}
