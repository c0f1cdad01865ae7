//! Reader tests: every implementation returns the bytes a plain read sees,
//! many reads in flight, errors surface as values. These are the tests run
//! under valgrind memcheck (see .ci/valgrind).

use super::*;
use std::io::Write;

fn sample_file(sectors: usize) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.bin");
    let bytes: Vec<u8> = (0..sectors * SECTOR)
        .map(|i| ((i * 31 + i / 4096) % 251) as u8)
        .collect();
    std::fs::File::create(&path).unwrap().write_all(&bytes).unwrap();
    (dir, path, bytes)
}

fn exercise(mut r: Box<dyn SectorReader>, bytes: &[u8], read_sectors: usize) {
    let total = bytes.len() / SECTOR;
    let len = read_sectors * SECTOR;
    let mut done = Vec::new();
    let mut checked = 0;
    let mut next = 0u64;
    let order: Vec<u64> = (0..200u64)
        .map(|i| (i * 7919) % (total - read_sectors + 1) as u64)
        .collect();
    while checked < order.len() {
        while r.in_use() < r.capacity() && (next as usize) < order.len() {
            r.submit(order[next as usize], next).unwrap();
            next += 1;
        }
        r.complete(1, &mut done).unwrap();
        for c in done.drain(..) {
            c.result.as_ref().unwrap();
            let s = order[c.tag as usize] as usize;
            assert_eq!(r.buffer(c.slot), &bytes[s * SECTOR..s * SECTOR + len], "tag {}", c.tag);
            r.release(c.slot);
            checked += 1;
        }
    }
    assert_eq!(r.in_use(), 0);
}

#[test]
fn pread_reads_the_right_bytes() {
    let (_d, path, bytes) = sample_file(64);
    exercise(Box::new(PreadReader::open(&path, SECTOR, 8).unwrap()), &bytes, 1);
    exercise(Box::new(PreadReader::open(&path, 2 * SECTOR, 3).unwrap()), &bytes, 2);
}

#[test]
fn uring_reads_the_right_bytes() {
    let (_d, path, bytes) = sample_file(64);
    let r = match UringReader::open(&path, SECTOR, 16) {
        Ok(r) => r,
        Err(e) if std::env::var_os("QUARRY_REQUIRE_URING").is_none() => {
            eprintln!("io_uring unavailable here, skipping: {e}");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    exercise(Box::new(r), &bytes, 1);
    exercise(Box::new(UringReader::open(&path, 2 * SECTOR, 4).unwrap()), &bytes, 2);
}

#[test]
fn auto_backend_opens_something() {
    let (_d, path, bytes) = sample_file(16);
    exercise(open_reader(&path, SECTOR, 4, IoBackend::Auto).unwrap(), &bytes, 1);
}

#[test]
fn reads_past_the_end_are_short_read_errors() {
    let (_d, path, _) = sample_file(4);
    for backend in [IoBackend::Pread, IoBackend::Auto] {
        let mut r = open_reader(&path, 2 * SECTOR, 2, backend).unwrap();
        r.submit(3, 9).unwrap();
        let mut out = Vec::new();
        r.complete(1, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert!(
            matches!(out[0].result, Err(ReadError::Short { sector: 3, .. })),
            "{:?}",
            out[0].result
        );
        r.release(out[0].slot);
    }
}

#[test]
fn full_pool_is_an_error_not_a_panic() {
    let (_d, path, _) = sample_file(4);
    let mut r = open_reader(&path, SECTOR, 2, IoBackend::Auto).unwrap();
    r.submit(0, 0).unwrap();
    r.submit(1, 1).unwrap();
    assert!(matches!(r.submit(2, 2), Err(ReadError::Full(2))));
    let mut out = Vec::new();
    while out.len() < 2 {
        r.complete(1, &mut out).unwrap();
    }
}

#[test]
fn fault_reader_injects_errors() {
    let (_d, path, _) = sample_file(8);
    let plan = FaultPlan {
        fail_every: Some(3),
        fail_sectors: [5].into_iter().collect(),
        refuse_submit_at: Some(7),
        ..Default::default()
    };
    let mut r = FaultReader::new(open_reader(&path, SECTOR, 4, IoBackend::Auto).unwrap(), plan);
    let mut failed = 0;
    let mut refused = 0;
    let mut out = Vec::new();
    for i in 0..8u64 {
        match r.submit(i, i) {
            Ok(_) => {}
            Err(ReadError::Injected(_)) => {
                refused += 1;
                continue;
            }
            Err(e) => panic!("{e}"),
        }
        r.complete(1, &mut out).unwrap();
        for c in out.drain(..) {
            if c.result.is_err() {
                failed += 1;
            }
            r.release(c.slot);
        }
    }
    // reads 3 and 6 fail by count, sector 5 (read 6) by address, read 7 refused.
    assert_eq!(refused, 1);
    assert_eq!(failed, 2);
    assert_eq!(r.injected, 3);
}

#[test]
fn missing_file_is_a_setup_error() {
    let e = open_reader(Path::new("/nonexistent/quarry/graph.qgr"), SECTOR, 2, IoBackend::Auto)
        .err()
        .unwrap();
    assert!(e.to_string().contains("/nonexistent/quarry/graph.qgr"), "{e}");
}
