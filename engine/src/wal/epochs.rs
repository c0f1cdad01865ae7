//! The epoch history: which leader wrote which LSNs of this log.
//!
//! Owns: the [`Epoch`] type, the `epochs.bin` codec (docs/format.md, "Epoch
//! history"), the history kept beside the log's segments, and the pure
//! functions that find where two logs diverge. Does not own: who decides
//! that a new epoch begins (the server's replication), or the WAL bytes.
//!
//! Every record of a log belongs to one epoch: the entry with the largest
//! first LSN at or below it. Records before the first entry belong to
//! [`Epoch::ZERO`] (a node that ran alone before it was paired). An epoch
//! is unique to the node that took it (`(term, node)`), so two logs that
//! hold the same epoch at the same LSN hold the same record there: the
//! leader of that epoch wrote it once and both copied it. This is how
//! Kafka finds a follower's divergent tail (KIP-101, KIP-279) and how
//! PostgreSQL's timeline history works. After a failover the old leader's
//! records past the point where the new leader's epoch began are not the
//! new leader's, and [`common_prefix`] says where to cut them.
//!
//! Crash safety: the file is replaced whole with
//! [`write_atomic`](crate::storage::write_atomic). Truncating the log cuts
//! the records first and the history after it, so a crash between the two
//! leaves an entry that starts past the log's end. Such an entry is
//! harmless to [`common_prefix`] (an epoch with no records) and is dropped
//! when the log opens.

use super::Lsn;
use std::fmt;

/// The history file's name, in the log's directory.
pub const EPOCHS_FILE: &str = "epochs.bin";
/// The history file magic.
pub const EPOCHS_MAGIC: &[u8; 4] = b"QWEP";
/// The history format version.
pub const EPOCHS_VERSION: u32 = 1;
/// The most entries a history holds (a failover each; far more than a
/// pair will see, small enough that a damaged count cannot make a reader
/// allocate much).
pub const MAX_EPOCHS: usize = 1 << 16;

/// A leadership term: totally ordered by `term`, then by the node that
/// took it, so two nodes that both take term 7 still have distinct,
/// ordered epochs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch {
    /// The counter, raised by one at each promotion.
    pub term: u64,
    /// The node id of the node that took it.
    pub node: u64,
}

impl Epoch {
    /// The epoch of records written before the log had a history.
    pub const ZERO: Epoch = Epoch { term: 0, node: 0 };

    /// The next epoch for `node`: a term above this one.
    pub fn next(self, node: u64) -> Epoch {
        Epoch {
            term: self.term + 1,
            node,
        }
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:016x}", self.term, self.node)
    }
}

/// Epoch → first LSN, ascending in both.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochHistory {
    entries: Vec<(Epoch, Lsn)>,
}

impl EpochHistory {
    /// A history from its entries; Err(why) unless both the epochs and the
    /// first LSNs strictly ascend, no epoch is [`Epoch::ZERO`], and every
    /// first LSN is at least 1.
    pub fn from_entries(entries: Vec<(Epoch, Lsn)>) -> Result<EpochHistory, String> {
        for (i, &(e, first)) in entries.iter().enumerate() {
            if e == Epoch::ZERO {
                return Err(format!("entry {i}: epoch 0/0 is implicit and cannot be recorded"));
            }
            if first == 0 {
                return Err(format!("entry {i}: first LSN 0 (LSNs start at 1)"));
            }
            if i > 0 {
                let (pe, pf) = entries[i - 1];
                if e <= pe || first <= pf {
                    return Err(format!(
                        "entry {i} (epoch {e} from LSN {first}) does not follow entry {} (epoch {pe} from LSN {pf})",
                        i - 1
                    ));
                }
            }
        }
        if entries.len() > MAX_EPOCHS {
            return Err(format!("{} entries, more than {MAX_EPOCHS}", entries.len()));
        }
        Ok(EpochHistory { entries })
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[(Epoch, Lsn)] {
        &self.entries
    }

    /// The newest epoch ([`Epoch::ZERO`] when empty).
    pub fn current(&self) -> Epoch {
        self.entries.last().map_or(Epoch::ZERO, |e| e.0)
    }

    /// The epoch that wrote `lsn`.
    pub fn epoch_of(&self, lsn: Lsn) -> Epoch {
        let i = self.entries.partition_point(|&(_, first)| first <= lsn);
        if i == 0 {
            Epoch::ZERO
        } else {
            self.entries[i - 1].0
        }
    }

    /// First LSN of epoch `e` in this history (1 for [`Epoch::ZERO`]).
    pub fn first_of(&self, e: Epoch) -> Option<Lsn> {
        if e == Epoch::ZERO {
            return Some(1);
        }
        self.entries.iter().find(|x| x.0 == e).map(|x| x.1)
    }

    /// KIP-101's question, answered by the leader: of the epochs at or
    /// below `e` in this history, the largest, and the last LSN it wrote
    /// in a log that ends at `last` (the LSN before the next epoch's first,
    /// or `last` for the newest). The follower cuts its log after
    /// `min(that LSN, its own end)` when the epochs match, and asks again
    /// with its previous epoch when the answer's epoch is smaller.
    pub fn end_of(&self, e: Epoch, last: Lsn) -> (Epoch, Lsn) {
        let i = self.entries.partition_point(|x| x.0 <= e);
        let found = if i == 0 { Epoch::ZERO } else { self.entries[i - 1].0 };
        let end = match self.entries.get(i) {
            Some(&(_, next_first)) => (next_first - 1).min(last),
            None => last,
        };
        (found, end)
    }

    /// Record that `e` begins at `first`. Entries that start at or after
    /// `first` are first removed (they belong to a cut tail); `e` must then
    /// be newer than the last one left.
    pub fn begin(&mut self, e: Epoch, first: Lsn) -> Result<(), String> {
        let keep = self.entries.partition_point(|x| x.1 < first);
        let mut entries = self.entries[..keep].to_vec();
        entries.push((e, first));
        *self = EpochHistory::from_entries(entries)?;
        Ok(())
    }

    /// Forget entries that begin after `lsn + 1` (they hold no record of a
    /// log that ends at `lsn`); an entry beginning at `lsn + 1` is an epoch
    /// that has not written yet and is kept. Returns whether anything went.
    pub fn forget_after(&mut self, lsn: Lsn) -> bool {
        self.cut_after(lsn.saturating_add(1))
    }

    /// Forget entries that begin after `lsn` (a cut after `lsn`: nothing of
    /// those epochs is left). Returns whether anything went.
    pub fn cut_after(&mut self, lsn: Lsn) -> bool {
        let keep = self.entries.partition_point(|x| x.1 <= lsn);
        let changed = keep < self.entries.len();
        self.entries.truncate(keep);
        changed
    }
}

/// The last LSN on which a follower's log (history `f`, ending at
/// `f_last`) and the leader's (`l`, ending at `l_last`) agree: every
/// record up to it is the same in both, so the follower keeps those and
/// cuts everything after. This is the fixed point of KIP-279's rounds
/// (ask [`EpochHistory::end_of`] for the follower's newest epoch, cut to
/// the smaller end when the epochs match, else step to the follower's
/// previous epoch), computed in one place from both histories.
///
/// 0 means nothing is shared: the follower must be rebuilt from a
/// snapshot (or, when its log is empty anyway, start from LSN 1).
pub fn common_prefix(f: &EpochHistory, f_last: Lsn, l: &EpochHistory, l_last: Lsn) -> Lsn {
    let mut fe = f.current();
    loop {
        let (le, l_end) = l.end_of(fe, l_last);
        if le == fe {
            // Same epoch: it began at the same LSN in both (one leader
            // wrote it, the follower copied where it began), so the logs
            // agree up to the shorter end of it. Epoch 0/0 always matches.
            return f.end_of(fe, f_last).1.min(l_end);
        }
        // The leader never had `fe`: the follower's records of it are
        // divergent. Step to the follower's newest epoch at or below the
        // leader's answer; it is older than `fe`, so this ends (at 0/0
        // at the latest).
        fe = f.end_of(le, f_last).0;
    }
}

/// The file's bytes (docs/format.md, "Epoch history").
pub fn encode_epochs(h: &EpochHistory) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + 24 * h.entries.len());
    b.extend_from_slice(EPOCHS_MAGIC);
    b.extend_from_slice(&EPOCHS_VERSION.to_le_bytes());
    b.extend_from_slice(&(h.entries.len() as u32).to_le_bytes());
    for &(e, first) in &h.entries {
        b.extend_from_slice(&e.term.to_le_bytes());
        b.extend_from_slice(&e.node.to_le_bytes());
        b.extend_from_slice(&first.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Parse the file: Err((offset, why)) if it is damaged.
pub fn decode_epochs(b: &[u8]) -> Result<EpochHistory, (u64, String)> {
    let (count, body) = super::record::small_file(b, EPOCHS_MAGIC, EPOCHS_VERSION, "history")?;
    let count = count as usize;
    if count > MAX_EPOCHS || 12 + 24 * count != body {
        return Err((8, format!("{count} entries do not match the file's {} bytes", b.len())));
    }
    let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
    let entries = (0..count)
        .map(|i| {
            let o = 12 + 24 * i;
            (
                Epoch {
                    term: u64_at(o),
                    node: u64_at(o + 8),
                },
                u64_at(o + 16),
            )
        })
        .collect();
    EpochHistory::from_entries(entries).map_err(|why| (12, why))
}
