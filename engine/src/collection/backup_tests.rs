//! Backups and restores: exactly the writes up to S (ids, vectors,
//! payloads, deletes, a bulk load after the checkpoint), nothing after;
//! a backup under concurrent writes and flushes; files and log held
//! through a compaction; damaged backups named and refused; copies when
//! links fail; refusals; and power-loss trials: the backup whole or
//! absent, never a follower or hold left behind.

use super::tests::{opts, vec_of};
use super::*;
use crate::storage::{CrashFs, Fault, FaultKind, RealFs, Vfs};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

type Got = Option<(Vec<f32>, Vec<u8>)>;

fn fill(c: &Collection, ids: std::ops::Range<u64>, version: u64) {
    for i in ids {
        c.upsert(i, vec_of(i * 7 + version), format!("p{i}v{version}").into_bytes())
            .unwrap();
    }
}

/// Two segments, tombstones, a bulk load logged after the checkpoint and
/// fresh records after it.
fn source(fs: Arc<dyn Vfs>, dir: &Path) -> Collection {
    let (p, _) = Collection::open(fs, dir, opts()).unwrap();
    fill(&p, 0..120, 0);
    p.flush(&mut |_, _, _| {}).unwrap();
    fill(&p, 120..200, 0);
    for i in (0..200).step_by(9) {
        p.delete(i).unwrap();
    }
    p.flush(&mut |_, _, _| {}).unwrap();
    let ids: Vec<u64> = (150..260).collect();
    let data: Vec<f32> = ids.iter().flat_map(|&i| vec_of(50_000 + i)).collect();
    p.bulk_load(data.into(), &ids, vec![], 0, &mut |_, _, _| {}).unwrap();
    fill(&p, 255..270, 1);
    p.delete(160).unwrap();
    p
}

fn state(c: &Collection, ids: std::ops::Range<u64>) -> Vec<Got> {
    ids.map(|i| c.get(i).unwrap()).collect()
}

fn backup(c: &Collection, out: &Path) -> std::result::Result<BackupInfo, BackupError> {
    c.backup(out, "src", b"{\"meta\":1}", &mut |_, _, _| {})
}

fn open_restored(dir: &Path) -> Collection {
    Collection::open(Arc::new(RealFs), dir, opts()).unwrap().0
}

/// Copy a directory tree (a backup copied off the machine and back).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_restore_holds_exactly_the_writes_up_to_the_backups_lsn() {
    let d = tempfile::tempdir().unwrap();
    let p = source(Arc::new(RealFs), &d.path().join("p"));
    let at_s = state(&p, 0..300);
    let s = p.applied_lsn();
    let out = d.path().join("b1");
    let info = backup(&p, &out).unwrap();
    assert_eq!(info.lsn, s);
    assert!(info.checkpoint_lsn > 0 && info.checkpoint_lsn < s, "{info:?}");
    assert_eq!(info.log_records, s - info.checkpoint_lsn);
    assert!(
        info.placed.linked_files > 0 && info.placed.copy_reason.is_none(),
        "{info:?}"
    );
    assert!(p.wal().followers().is_empty() && p.wal().held_from().is_none());
    // Segment files share the original's blocks; nothing else does.
    let seg = p.state.read().unwrap().segments[0].name.clone();
    let orig = std::fs::metadata(d.path().join("p").join(&seg).join("records.bin")).unwrap();
    let linked = std::fs::metadata(out.join(&seg).join("records.bin")).unwrap();
    assert_eq!((orig.dev(), orig.ino()), (linked.dev(), linked.ino()));
    // Writes and deletes after S, and a merge.
    fill(&p, 0..40, 2);
    for i in [1u64, 2, 200, 255, 299] {
        p.delete(i).unwrap();
    }
    fill(&p, 270..300, 3);
    p.compact(&crate::cancel::CancelToken::default(), &mut |_, _, _| {})
        .unwrap();
    let rep = verify_backup(&RealFs, &out).unwrap();
    assert_eq!(
        (rep.lsn, rep.checkpoint_lsn, rep.files),
        (s, info.checkpoint_lsn, info.placed.files)
    );
    assert!(
        rep.segments.iter().any(|s| s.starts_with("bulk-")),
        "{:?}",
        rep.segments
    );
    let target = d.path().join("r");
    let r = restore_backup(&RealFs, &out, &target).unwrap();
    assert_eq!(
        (r.lsn, r.source.as_str(), r.meta.as_slice()),
        (s, "src", &b"{\"meta\":1}"[..])
    );
    assert!(r.placed.linked_files > 0);
    let wal_file = std::fs::read_dir(target.join("wal"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::metadata(&wal_file).unwrap().nlink(),
        1,
        "the log is never shared"
    );
    let c = open_restored(&target);
    assert_eq!(state(&c, 0..300), at_s, "exactly the writes up to S");
    assert_eq!(c.wal().last_lsn(), s);
    assert_eq!(
        c.upsert(5000, vec_of(1), vec![]).unwrap(),
        s + 1,
        "the next write follows S"
    );
    // The restored collection's writes change nothing of the backup's.
    c.flush(&mut |_, _, _| {}).unwrap();
    drop(c);
    verify_backup(&RealFs, &out).unwrap();
    let again = d.path().join("r2");
    restore_backup(&RealFs, &out, &again).unwrap();
    assert_eq!(state(&open_restored(&again), 0..300), at_s);
    assert!(!d.path().join("r.restore.tmp").exists() && !d.path().join("r2.restore.tmp").exists());
}

#[test]
fn a_backup_under_concurrent_writes_and_flushes_is_the_prefix_up_to_its_lsn() {
    let d = tempfile::tempdir().unwrap();
    let p = Arc::new(source(Arc::new(RealFs), &d.path().join("p")));
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
    let (stop, count) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
    let before = state(&p, 0..400);
    let start = p.applied_lsn();
    // Every write after the start, with its LSN; a flush every 150.
    let writer = {
        let (p, stop, count) = (p.clone(), stop.clone(), count.clone());
        std::thread::spawn(move || {
            let mut log: Vec<(Lsn, u64, Option<u64>)> = Vec::new();
            let mut k = 0u64;
            while !stop.load(Relaxed) {
                let id = (k * 13) % 400;
                if k % 5 == 4 {
                    log.push((p.delete(id).unwrap(), id, None));
                } else {
                    let v = 100 + k;
                    let lsn = p
                        .upsert(id, vec_of(id * 7 + v), format!("p{id}v{v}").into_bytes())
                        .unwrap();
                    log.push((lsn, id, Some(v)));
                }
                if k % 150 == 149 {
                    p.flush(&mut |_, _, _| {}).unwrap();
                }
                k += 1;
                count.store(k, Relaxed);
            }
            log
        })
    };
    let wait_for = |n: u64| {
        while count.load(Relaxed) < n {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    };
    wait_for(100);
    let out = d.path().join("b");
    let info = backup(&p, &out).unwrap();
    wait_for(count.load(Relaxed) + 100);
    stop.store(true, Relaxed);
    let log = writer.join().unwrap();
    assert!(log.iter().any(|w| w.0 > info.lsn), "writes after S");
    assert!(info.lsn > start, "writes before S");
    // The model: the state at the start, then every write up to S.
    let mut model: HashMap<u64, Got> = (0..400).zip(before).collect();
    for &(_, id, v) in log.iter().filter(|w| w.0 <= info.lsn) {
        model.insert(id, v.map(|v| (vec_of(id * 7 + v), format!("p{id}v{v}").into_bytes())));
    }
    let target = d.path().join("r");
    restore_backup(&RealFs, &out, &target).unwrap();
    let c = open_restored(&target);
    for id in 0..400 {
        assert_eq!(c.get(id).unwrap(), model[&id], "id {id}");
    }
}

#[test]
fn the_files_and_log_outlive_a_compaction_during_the_backup() {
    let d = tempfile::tempdir().unwrap();
    let p = source(Arc::new(RealFs), &d.path().join("p"));
    fill(&p, 300..600, 4); // a log of several 16 KiB segments after C
    let at_s = state(&p, 0..600);
    let old: Vec<PathBuf> = p.state.read().unwrap().segments.iter().map(|s| s.dir.clone()).collect();
    let out = d.path().join("b");
    let mut compacted = false;
    let info = p
        .backup(&out, "src", b"", &mut |stage, _, _| {
            if stage == "log" && !compacted {
                compacted = true;
                assert!(p.wal().followers().is_empty(), "a backup registers no follower");
                let held = p.wal().held_from().expect("held");
                p.compact(&crate::cancel::CancelToken::default(), &mut |_, _, _| {})
                    .unwrap();
                fill(&p, 600..620, 5);
                p.flush(&mut |_, _, _| {}).unwrap();
                assert!(p.wal().first_lsn() <= held, "the hold keeps the log");
                assert!(old.iter().all(|d| d.exists()), "the held segments keep their files");
            }
        })
        .unwrap();
    assert!(compacted && info.log_records > 300);
    assert!(old.iter().all(|d| !d.exists()), "let go once the backup is done");
    p.flush(&mut |_, _, _| {}).unwrap();
    assert!(p.wal().first_lsn() > info.checkpoint_lsn + 1, "and the log is let go");
    let target = d.path().join("r");
    restore_backup(&RealFs, &out, &target).unwrap();
    assert_eq!(state(&open_restored(&target), 0..600), at_s);
}

#[test]
fn damaged_backups_are_named_and_never_restored() {
    let d = tempfile::tempdir().unwrap();
    let p = source(Arc::new(RealFs), &d.path().join("p"));
    let good = d.path().join("good");
    let info = backup(&p, &good).unwrap();
    let wal0 = format!("wal/wal-{:020}.log", info.checkpoint_lsn + 1);
    let seg_file = {
        let rep = verify_backup(&RealFs, &good).unwrap();
        format!("{}/vectors.bin", rep.segments[0])
    };
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, Damage, String)> = vec![
        (
            "cut",
            Box::new({
                let f = seg_file.clone();
                move |b: &Path| {
                    let p = b.join(&f);
                    let len = std::fs::metadata(&p).unwrap().len();
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&p)
                        .unwrap()
                        .set_len(len - 3)
                        .unwrap();
                }
            }),
            format!("{seg_file}: "),
        ),
        (
            "flipped",
            Box::new({
                let f = wal0.clone();
                move |b: &Path| {
                    let p = b.join(&f);
                    let mut x = std::fs::read(&p).unwrap();
                    let i = x.len() - 5;
                    x[i] ^= 1;
                    std::fs::write(&p, x).unwrap();
                }
            }),
            format!("{wal0}: crc32c"),
        ),
        (
            "no descriptor",
            Box::new(|b: &Path| std::fs::remove_file(b.join("SNAPSHOT")).unwrap()),
            "SNAPSHOT: missing".into(),
        ),
        (
            "bad descriptor",
            Box::new(|b: &Path| {
                let p = b.join("SNAPSHOT");
                let mut x = std::fs::read(&p).unwrap();
                x[10] ^= 0xff;
                std::fs::write(&p, x).unwrap();
            }),
            "SNAPSHOT: byte".into(),
        ),
        (
            "extra",
            Box::new(|b: &Path| std::fs::write(b.join("stray.txt"), b"x").unwrap()),
            "stray.txt: not listed".into(),
        ),
        (
            "missing",
            Box::new(|b: &Path| std::fs::remove_file(b.join("manifest.json")).unwrap()),
            "manifest.json: missing".into(),
        ),
    ];
    for (what, damage, want) in cases {
        let b = d.path().join(format!("b-{}", what.replace(' ', "-")));
        copy_tree(&good, &b);
        verify_backup(&RealFs, &b).unwrap();
        damage(&b);
        let e = verify_backup(&RealFs, &b).unwrap_err().to_string();
        assert!(e.contains(&want), "{what}: {e}");
        let target = d.path().join(format!("r-{}", what.replace(' ', "-")));
        let e = restore_backup(&RealFs, &b, &target).unwrap_err().to_string();
        assert!(e.contains(&want), "{what}: {e}");
        assert!(!target.exists() && !PathBuf::from(format!("{}.restore.tmp", target.display())).exists());
    }
}

#[test]
fn files_are_copied_where_links_fail_and_the_copy_restores_the_same() {
    let d = tempfile::tempdir().unwrap();
    let cfs = CrashFs::new(d.path()).unwrap();
    let p = source(Arc::new(cfs.clone()), &d.path().join("p"));
    let at_s = state(&p, 0..300);
    cfs.set_cross_device(true);
    let out = d.path().join("b");
    let info = backup(&p, &out).unwrap();
    let pl = &info.placed;
    assert_eq!((pl.linked_files, pl.copied_files), (0, pl.files));
    assert!(
        pl.copy_reason.as_deref().unwrap().contains("files were copied"),
        "{info:?}"
    );
    let r = restore_backup(&cfs, &out, &d.path().join("r")).unwrap();
    assert_eq!((r.placed.linked_files, r.placed.copied_files), (0, r.placed.files));
    cfs.set_cross_device(false);
    assert_eq!(state(&open_restored(&d.path().join("r")), 0..300), at_s);
}

#[test]
fn refusals_name_the_path_and_change_nothing() {
    let d = tempfile::tempdir().unwrap();
    let p = source(Arc::new(RealFs), &d.path().join("p"));
    let out = d.path().join("b");
    std::fs::create_dir(&out).unwrap();
    assert!(matches!(backup(&p, &out), Err(BackupError::Exists { .. })));
    assert!(matches!(
        backup(&p, &d.path().join("no/such/b")),
        Err(BackupError::NotFound { .. })
    ));
    let e = p
        .backup(&d.path().join("b2"), "a b", b"", &mut |_, _, _| {})
        .unwrap_err();
    assert!(e.to_string().contains("name \"a b\""), "{e}");
    // A second backup into the same place while one runs.
    let b3 = d.path().join("b3");
    let mut inner = None;
    p.backup(&b3, "src", b"", &mut |_, _, _| {
        if inner.is_none() {
            inner = Some(backup(&p, &b3).map(|_| ()).unwrap_err().to_string());
        }
    })
    .unwrap();
    assert!(inner.unwrap().contains("a backup into it is running"));
    // A restore never writes over anything.
    let e = restore_backup(&RealFs, &b3, &d.path().join("p")).unwrap_err();
    assert!(matches!(e, BackupError::Exists { .. }), "{e}");
    assert!(matches!(
        verify_backup(&RealFs, &d.path().join("nothing")),
        Err(BackupError::NotFound { .. })
    ));
    // Leftovers of backups cut short: a dead process's and an unclaimed
    // one of this process are removed; a live process's one is refused.
    let dead = {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        c.wait().unwrap();
        c.id()
    };
    let b4 = d.path().join("b4");
    for pid in [dead, std::process::id()] {
        std::fs::create_dir_all(d.path().join(format!("b4.tmp-{pid}-7/seg-x"))).unwrap();
    }
    let info = backup(&p, &b4).unwrap();
    assert_eq!(info.leftovers_removed.len(), 2, "{info:?}");
    let live = std::os::unix::process::parent_id();
    std::fs::create_dir_all(d.path().join(format!("b5.tmp-{live}-0"))).unwrap();
    let e = backup(&p, &d.path().join("b5")).unwrap_err();
    assert!(
        matches!(e, BackupError::Busy { .. }) && e.to_string().contains(&format!("process {live}")),
        "{e}"
    );
    assert!(!d.path().join("b5").exists());
    assert!(p.wal().held_from().is_none() && p.wal().followers().is_empty());
}

/// Power-loss trials: a backup whose file system dies after k operations
/// leaves, after the power comes back, either a whole backup (which
/// restores to exactly the state at its LSN) or nothing at `<out>`; the
/// collection holds no log for it afterwards.
#[test]
fn power_loss_during_a_backup_leaves_it_whole_or_absent() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let (cfs, fs) = CrashFs::fresh(&root);
    let p = source(fs.clone(), &root.join("p"));
    let at_s = state(&p, 0..300);
    let ops = {
        let probe = root.join("probe");
        cfs.set_fault(None);
        backup(&p, &probe).unwrap();
        let n = cfs.ops();
        std::fs::remove_dir_all(&probe).unwrap();
        n
    };
    assert!(ops > 20, "{ops} operations");
    let trials = CrashFs::trials("QUARRY_BACKUP_TRIALS", 24).clamp(2, ops);
    let (mut whole, mut absent) = (0, 0);
    for t in 0..trials {
        // From the first operation to past the last (the last trials finish).
        let k = t * (ops + 2) / (trials - 1);
        let out = root.join(format!("b{t}"));
        cfs.set_fault(Some(Fault {
            after_ops: k,
            kind: if t % 2 == 0 { FaultKind::Io } else { FaultKind::NoSpace },
            persistent: true,
        }));
        let res = backup(&p, &out);
        cfs.crash();
        cfs.power_loss(t, t % 4 == 1).unwrap();
        assert!(
            p.wal().held_from().is_none() && p.wal().followers().is_empty(),
            "trial {t}"
        );
        let leftovers: Vec<String> = std::fs::read_dir(&root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "trial {t}: a temporary name never made durable: {leftovers:?}"
        );
        if out.exists() {
            whole += 1;
            let target = root.join(format!("r{t}"));
            restore_backup(&RealFs, &out, &target).unwrap_or_else(|e| panic!("trial {t} ({res:?}): {e}"));
            assert_eq!(state(&open_restored(&target), 0..300), at_s, "trial {t}");
        } else {
            absent += 1;
            assert!(res.is_err(), "trial {t}: a backup that returned Ok is there");
        }
    }
    eprintln!("backup power-loss trials: {trials} over {ops} operations, {whole} whole, {absent} absent");
    assert!(whole > 0 && absent > 0, "{whole} whole, {absent} absent");
}
