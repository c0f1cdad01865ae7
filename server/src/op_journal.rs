//! The operations journal, `DATA/operations.jsonl`: one JSON line when an
//! operation starts (before its id is handed out, fsynced) and one when it
//! ends, so GetOperation answers for operations of earlier runs and an id
//! is never handed out twice.
//!
//! Owns: the record format (docs/format.md, "operations.jsonl"), its
//! parser and the file's append, load and rewrite. Does not own: the
//! operations in memory (`operations`), or any collection's files.

use quarry_engine::storage::{write_atomic, VFile, Vfs};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The journal's file name in the data directory.
pub const FILE: &str = "operations.jsonl";
/// The record version this build writes and reads.
pub const VERSION: u32 = 1;
/// Finished operations kept across restarts (older ones are dropped when
/// the journal is rewritten at open).
pub const KEEP: usize = 1000;

/// One line of the journal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum Record {
    /// Operation `n` (its id's number) started.
    Start {
        v: u32,
        n: u64,
        id: String,
        collection: String,
        stage: String,
        vector_count: u64,
        /// Wall-clock start, ms since the Unix epoch.
        started_unix_ms: u64,
    },
    /// Operation `id` ended.
    End {
        v: u32,
        id: String,
        /// "done", "failed" or "cancelled".
        state: String,
        stage: String,
        progress: f64,
        error: String,
        vector_count: u64,
        elapsed_seconds: f64,
    },
}

/// An operation as the journal last left it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub start: Record,
    pub end: Option<Record>,
}

/// What a journal's bytes hold.
#[derive(Debug, Default, PartialEq)]
pub struct Parsed {
    /// Operations in the order they started.
    pub entries: Vec<Entry>,
    /// The next id number: above every one the journal has seen.
    pub next: u64,
    /// Bytes of whole lines; anything after is a line cut short by a crash
    /// (its operation never got its id).
    pub valid_len: usize,
}

/// Why a journal cannot be read.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JournalError {
    #[error("line {line}: {detail}")]
    Corrupt { line: usize, detail: String },
}

/// Parse a journal. A last line without its newline is a torn append and
/// is left out; any other line that is not a record of this version is an
/// error naming the line.
pub fn parse(bytes: &[u8]) -> Result<Parsed, JournalError> {
    let mut p = Parsed {
        next: 1,
        ..Parsed::default()
    };
    let mut at = 0;
    for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        if line.last() != Some(&b'\n') {
            break;
        }
        let corrupt = |detail: String| JournalError::Corrupt { line: i + 1, detail };
        let rec: Record = serde_json::from_slice(&line[..line.len() - 1]).map_err(|e| corrupt(e.to_string()))?;
        let v = match &rec {
            Record::Start { v, .. } | Record::End { v, .. } => *v,
        };
        if v != VERSION {
            return Err(corrupt(format!("record version {v}; this build reads {VERSION}")));
        }
        match &rec {
            Record::Start { n, id, .. } => {
                if p.entries.iter().any(|e| start_id(&e.start) == id) {
                    return Err(corrupt(format!("operation {id:?} starts twice")));
                }
                p.next = p.next.max(n.saturating_add(1));
                p.entries.push(Entry { start: rec, end: None });
            }
            Record::End { id, .. } => match p.entries.iter_mut().rev().find(|e| start_id(&e.start) == id) {
                Some(e) if e.end.is_none() => e.end = Some(rec),
                Some(_) => return Err(corrupt(format!("operation {id:?} ends twice"))),
                None => return Err(corrupt(format!("operation {id:?} ends without a start"))),
            },
        }
        at += line.len();
    }
    p.valid_len = at;
    Ok(p)
}

fn start_id(r: &Record) -> &str {
    match r {
        Record::Start { id, .. } | Record::End { id, .. } => id,
    }
}

/// The open journal: appends are durable before they return.
pub struct Journal {
    fs: Arc<dyn Vfs>,
    path: PathBuf,
    file: Box<dyn VFile>,
    next: u64,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Journal({}, next {})", self.path.display(), self.next)
    }
}

impl Journal {
    /// Open (or create) the journal in `dir`: read it, drop a torn last
    /// line, and rewrite it with the last [`KEEP`] operations when it has
    /// grown past twice that. Returns the journal and what it held.
    pub fn open(fs: Arc<dyn Vfs>, dir: &Path) -> std::io::Result<(Journal, Vec<Entry>)> {
        let path = dir.join(FILE);
        let bytes = if fs.exists(&path) { fs.read(&path)? } else { Vec::new() };
        let p = parse(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} is corrupt: {e} (move it aside to start with no operation history)",
                    path.display()
                ),
            )
        })?;
        let mut entries = p.entries;
        if entries.len() > 2 * KEEP || p.valid_len < bytes.len() {
            entries.drain(..entries.len().saturating_sub(KEEP));
            let mut out = Vec::new();
            for e in &entries {
                line(&e.start, &mut out);
                if let Some(end) = &e.end {
                    line(end, &mut out);
                }
            }
            write_atomic(fs.as_ref(), &path, &out)?;
        }
        let file = if fs.exists(&path) {
            fs.open_append(&path)?
        } else {
            let f = fs.create(&path)?;
            fs.sync_dir(dir)?;
            f
        };
        Ok((
            Journal {
                fs,
                path,
                file,
                next: p.next,
            },
            entries,
        ))
    }

    /// The next id number, recorded as taken.
    pub fn take(&mut self) -> u64 {
        let n = self.next;
        self.next += 1;
        n
    }

    /// Append `r` and make it durable.
    pub fn append(&mut self, r: &Record) -> std::io::Result<()> {
        let mut out = Vec::new();
        line(r, &mut out);
        self.file.append(&out)?;
        self.file.sync()
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file system it writes through.
    pub fn fs(&self) -> &Arc<dyn Vfs> {
        &self.fs
    }
}

fn line(r: &Record, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, r).expect("a record serialises");
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(n: u64) -> Record {
        Record::Start {
            v: VERSION,
            n,
            id: format!("build-c-{n}"),
            collection: "c".into(),
            stage: "reading".into(),
            vector_count: 5,
            started_unix_ms: 1,
        }
    }

    fn end(n: u64) -> Record {
        Record::End {
            v: VERSION,
            id: format!("build-c-{n}"),
            state: "done".into(),
            stage: "done".into(),
            progress: 1.0,
            error: String::new(),
            vector_count: 5,
            elapsed_seconds: 2.5,
        }
    }

    fn text(rs: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in rs {
            line(r, &mut out);
        }
        out
    }

    #[test]
    fn records_round_trip_and_a_torn_tail_is_left_out() {
        let b = text(&[start(1), start(2), end(1)]);
        let p = parse(&b).unwrap();
        assert_eq!(p.next, 3);
        assert_eq!(p.valid_len, b.len());
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.entries[0].end, Some(end(1)));
        assert_eq!(p.entries[1].end, None);
        let mut torn = b.clone();
        torn.extend_from_slice(&text(&[start(3)])[..20]);
        let q = parse(&torn).unwrap();
        assert_eq!((q.next, q.valid_len, q.entries.len()), (3, b.len(), 2));
        assert_eq!(parse(b"").unwrap().next, 1);
    }

    #[test]
    fn a_bad_line_is_named() {
        for (bytes, says) in [
            (b"{\"event\":\"start\"}\n".to_vec(), "line 1"),
            ([text(&[start(1)]), b"not json\n".to_vec()].concat(), "line 2"),
            (text(&[end(1)]), "without a start"),
            (text(&[start(1), end(1), end(1)]), "ends twice"),
            (text(&[start(1), start(1)]), "starts twice"),
            (
                String::from_utf8(text(&[start(1)]))
                    .unwrap()
                    .replace("\"v\":1", "\"v\":9")
                    .into_bytes(),
                "version 9",
            ),
        ] {
            let e = parse(&bytes).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
        }
    }

    #[test]
    fn open_keeps_the_newest_and_never_goes_back_on_an_id() {
        let dir = tempfile::tempdir().unwrap();
        let fs: Arc<dyn Vfs> = Arc::new(quarry_engine::storage::RealFs);
        let mut recs = Vec::new();
        for n in 1..=(2 * KEEP as u64 + 5) {
            recs.push(start(n));
            recs.push(end(n));
        }
        std::fs::write(dir.path().join(FILE), text(&recs)).unwrap();
        let (mut j, entries) = Journal::open(fs.clone(), dir.path()).unwrap();
        assert_eq!(entries.len(), KEEP);
        assert_eq!(j.take(), 2 * KEEP as u64 + 6);
        j.append(&start(2 * KEEP as u64 + 6)).unwrap();
        drop(j);
        let (mut j, entries) = Journal::open(fs, dir.path()).unwrap();
        assert_eq!(entries.len(), KEEP + 1);
        assert_eq!(entries.last().unwrap().end, None);
        assert_eq!(j.take(), 2 * KEEP as u64 + 7);
    }
}
