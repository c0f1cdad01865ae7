//! The stable smoke pass of the fuzz targets (CI runs it; no nightly, no
//! cargo-fuzz, no libFuzzer): every file of every target's corpus through
//! the target's function, then a fixed number of deterministic mutations of
//! each (bit flips, byte changes, truncations, insertions, deletions,
//! splices of two corpus files), from a seeded generator so a failure
//! reproduces. A failing input is written to target/fuzz-smoke-failure-*
//! so it can be added to the corpus.
//!
//! `QUARRY_FUZZ_SMOKE_MUTATIONS` sets the mutations per corpus file
//! (default 2000).

use std::path::{Path, PathBuf};

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [u64; 10] = [
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff_ffff,
    0xffff_ffff,
    0x1_0000_0000,
    u64::MAX / 2,
    u64::MAX,
];

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..1 + rng.below(3) {
        let len = b.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len * 8);
                b[i / 8] ^= 1 << (i % 8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                b[i] = rng.next() as u8;
            }
            2 => b.truncate(rng.below(len + 1)),
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let ins: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(i..i, ins);
            }
            4 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                b.drain(i..i + n);
            }
            5 if len >= 8 => {
                // An interesting integer (u32 or u64, little endian) over a field.
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let w = if rng.below(2) == 0 { 4 } else { 8 };
                let i = rng.below(len - w + 1);
                b[i..i + w].copy_from_slice(&v.to_le_bytes()[..w]);
            }
            6 if len > 0 => {
                // Keep the mode byte, flip its checksum-fixing bit.
                b[0] ^= 1;
            }
            7 if !other.is_empty() => {
                let at = rng.below(len + 1);
                let from = rng.below(other.len());
                let n = 1 + rng.below((other.len() - from).min(64));
                b.truncate(at);
                b.extend_from_slice(&other[from..from + n]);
            }
            _ => b.push(rng.next() as u8),
        }
    }
    b
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).expect("read a corpus file");
            (p, b)
        })
        .collect()
}

fn run_one(target: &str, f: fn(&[u8]), input: &[u8], what: &str) {
    if std::panic::catch_unwind(|| f(input)).is_err() {
        let out = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target")
            .join(format!("fuzz-smoke-failure-{target}"));
        let _ = std::fs::create_dir_all(out.parent().expect("parent"));
        let _ = std::fs::write(&out, input);
        panic!("{target}: {what} panicked; input written to {}", out.display());
    }
}

fn smoke(target: &str) {
    let f = quarry_fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == target)
        .unwrap_or_else(|| panic!("no target {target}"))
        .1;
    let files = corpus(target);
    assert!(!files.is_empty(), "corpus/{target} is empty");
    let per: usize = std::env::var("QUARRY_FUZZ_SMOKE_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let mut rng = Rng(0x5157_4152_5259 ^ target.len() as u64);
    for (i, (path, b)) in files.iter().enumerate() {
        run_one(target, f, b, &format!("{}", path.display()));
        let other = &files[(i + 1) % files.len()].1;
        for k in 0..per {
            let m = mutate(&mut rng, b, other);
            run_one(target, f, &m, &format!("mutation {k} of {}", path.display()));
        }
    }
}

#[test]
fn every_target_has_a_corpus() {
    for (t, _) in quarry_fuzz::TARGETS {
        assert!(!corpus(t).is_empty(), "corpus/{t} is empty");
        let bin = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz_targets")
            .join(format!("{t}.rs"));
        assert!(bin.exists(), "no fuzz_targets/{t}.rs");
    }
}

macro_rules! smoke_tests {
    ($($t:ident),* $(,)?) => {
        $(#[test] fn $t() { smoke(stringify!($t)); })*
    };
}

smoke_tests!(
    wal_record,
    wal_segment,
    wal_op,
    followers,
    backup_descriptor,
    epochs,
    replication_msg,
    collection_manifest,
    segment_files,
    graph_file,
    node_record,
    section_file,
    pq_codebook,
    nav_tier,
    index_manifest,
    dataset,
    operations_journal,
    api_tokens,
    collection_meta,
);
