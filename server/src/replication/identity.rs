//! A node's identity in a warm-standby pair: `node.json` in the data
//! directory (docs/format.md, "Node identity").
//!
//! Owns: minting the node id at first start, the pair id, the newest
//! epoch this node knows of, the standby's eligibility and the primary's
//! degraded flag, each written atomically (through the `Vfs`) before the
//! node acts on it. Does not own: when they change (the replication
//! state machine decides), the collections.
//!
//! The node id is random and never changes; it is what makes two nodes'
//! epochs distinct when both take the same term. The pair id is empty
//! until the node is the primary of a new pair or a standby that copied
//! its primary: a node whose data directory was wiped comes back with a
//! new node id and no pair, so it can never pass for its pair's primary
//! (see `handshake`).

use quarry_engine::storage::{write_atomic, Vfs};
use quarry_engine::wal::Epoch;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file's name in the data directory.
pub const NODE_FILE: &str = "node.json";
/// Its format version.
pub const NODE_VERSION: u32 = 1;

/// Why `node.json` could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is damaged or from another version.
    #[error("{path} is not a valid node identity ({why}); restore it from a backup, or remove the data directory's contents to re-join the pair as a new standby")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// What `node.json` holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeIdentity {
    /// Format version ([`NODE_VERSION`]).
    pub version: u32,
    /// This node, 16 hex digits, never zero; minted at first start.
    pub node_id: String,
    /// The pair, 32 hex digits; empty until the node belongs to one.
    #[serde(default)]
    pub pair_id: String,
    /// The newest epoch this node knows of: the term.
    #[serde(default)]
    pub epoch_term: u64,
    /// The newest epoch this node knows of: the node that took it (16 hex
    /// digits; empty for epoch 0).
    #[serde(default)]
    pub epoch_node: String,
    /// Standby: caught up within the configured distance, so it may be
    /// promoted without `--accept-loss`. Cleared (durably) before the
    /// primary may count on it.
    #[serde(default)]
    pub eligible: bool,
    /// Primary: the operator degraded sync replication to async
    /// (`quarryctl replication degrade`).
    #[serde(default)]
    pub degraded: bool,
    /// The role this node last took: "primary" or "standby" (set by a
    /// promotion, a demotion, or the first start from the config's
    /// `role`); empty until then. It outranks the config's `role` at start,
    /// so a failed-over node does not come back as the primary it was.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub role: String,
}

fn hex_u64(s: &str) -> Option<u64> {
    (s.len() == 16).then(|| u64::from_str_radix(s, 16).ok()).flatten()
}

impl NodeIdentity {
    /// A new node: a random non-zero node id, no pair, epoch 0.
    pub fn mint() -> NodeIdentity {
        let id = loop {
            let x: u64 = rand::random();
            if x != 0 {
                break x;
            }
        };
        NodeIdentity {
            version: NODE_VERSION,
            node_id: format!("{id:016x}"),
            pair_id: String::new(),
            epoch_term: 0,
            epoch_node: String::new(),
            eligible: false,
            degraded: false,
            role: String::new(),
        }
    }

    /// A new pair id (for the primary of a new pair).
    pub fn mint_pair_id() -> String {
        format!("{:016x}{:016x}", rand::random::<u64>(), rand::random::<u64>())
    }

    /// The node id as a number.
    pub fn node(&self) -> u64 {
        hex_u64(&self.node_id).expect("checked when read or minted")
    }

    /// The newest epoch known.
    pub fn epoch(&self) -> Epoch {
        Epoch {
            term: self.epoch_term,
            node: if self.epoch_node.is_empty() {
                0
            } else {
                hex_u64(&self.epoch_node).expect("checked when read")
            },
        }
    }

    /// Record a newer epoch (in memory; [`NodeIdentity::save`] persists).
    pub fn set_epoch(&mut self, e: Epoch) {
        self.epoch_term = e.term;
        self.epoch_node = if e == Epoch::ZERO {
            String::new()
        } else {
            format!("{:016x}", e.node)
        };
    }

    fn check(&self) -> Result<(), String> {
        if self.version != NODE_VERSION {
            return Err(format!("version {} (this build reads {NODE_VERSION})", self.version));
        }
        if hex_u64(&self.node_id).is_none_or(|n| n == 0) {
            return Err(format!("node_id {:?} is not 16 hex digits, not zero", self.node_id));
        }
        if !self.pair_id.is_empty()
            && (self.pair_id.len() != 32 || !self.pair_id.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(format!("pair_id {:?} is not 32 hex digits", self.pair_id));
        }
        if !["", "primary", "standby"].contains(&self.role.as_str()) {
            return Err(format!("role {:?} is not \"primary\" or \"standby\"", self.role));
        }
        match (self.epoch_term, self.epoch_node.is_empty()) {
            (0, true) => {}
            (0, false) => return Err("epoch_node is set for epoch term 0".into()),
            (_, true) => return Err("epoch_node is missing for a term above 0".into()),
            (_, false) if hex_u64(&self.epoch_node).is_none_or(|n| n == 0) => {
                return Err(format!(
                    "epoch_node {:?} is not 16 hex digits, not zero",
                    self.epoch_node
                ))
            }
            _ => {}
        }
        Ok(())
    }

    /// Parse the file's bytes.
    pub fn decode(path: &Path, b: &[u8]) -> Result<NodeIdentity, IdentityError> {
        let invalid = |why: String| IdentityError::Invalid {
            path: path.to_path_buf(),
            why,
        };
        let id: NodeIdentity = serde_json::from_slice(b).map_err(|e| invalid(e.to_string()))?;
        id.check().map_err(invalid)?;
        Ok(id)
    }

    /// Read `node.json` in `data_dir`, or mint one and write it (first
    /// start). Returns it and whether it was minted now.
    pub fn load_or_mint(fs: &dyn Vfs, data_dir: &Path) -> Result<(NodeIdentity, bool), IdentityError> {
        let path = data_dir.join(NODE_FILE);
        if fs.exists(&path) {
            let b = fs.read(&path).map_err(|source| IdentityError::Io {
                path: path.clone(),
                op: "read",
                source,
            })?;
            return Ok((NodeIdentity::decode(&path, &b)?, false));
        }
        let id = NodeIdentity::mint();
        id.save(fs, data_dir)?;
        tracing::info!(node_id = %id.node_id, "minted this node's identity ({NODE_FILE})");
        Ok((id, true))
    }

    /// Replace `node.json` atomically.
    pub fn save(&self, fs: &dyn Vfs, data_dir: &Path) -> Result<(), IdentityError> {
        self.check().map_err(|why| IdentityError::Invalid {
            path: data_dir.join(NODE_FILE),
            why,
        })?;
        let path = data_dir.join(NODE_FILE);
        let bytes = serde_json::to_vec_pretty(self).expect("serializable");
        write_atomic(fs, &path, &bytes).map_err(|source| IdentityError::Io {
            path,
            op: "write",
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quarry_engine::storage::{CrashFs, RealFs};
    use std::sync::Arc;

    #[test]
    fn minted_once_then_read_back_unchanged() {
        let d = tempfile::tempdir().unwrap();
        let fs = RealFs;
        let (a, minted) = NodeIdentity::load_or_mint(&fs, d.path()).unwrap();
        assert!(minted && a.node() != 0 && a.pair_id.is_empty() && a.epoch() == Epoch::ZERO);
        let (b, minted) = NodeIdentity::load_or_mint(&fs, d.path()).unwrap();
        assert!(!minted);
        assert_eq!(a, b);
        let other = tempfile::tempdir().unwrap();
        let (c, _) = NodeIdentity::load_or_mint(&fs, other.path()).unwrap();
        assert_ne!(a.node_id, c.node_id, "a wiped or new directory is a new node");
        let mut e = b.clone();
        e.pair_id = NodeIdentity::mint_pair_id();
        e.set_epoch(Epoch {
            term: 3,
            node: e.node(),
        });
        e.eligible = true;
        e.save(&fs, d.path()).unwrap();
        let (f, _) = NodeIdentity::load_or_mint(&fs, d.path()).unwrap();
        assert_eq!(f, e);
        assert_eq!(
            f.epoch(),
            Epoch {
                term: 3,
                node: a.node()
            }
        );
    }

    #[test]
    fn damage_is_named_and_never_replaced_by_a_new_identity() {
        let d = tempfile::tempdir().unwrap();
        let fs = RealFs;
        let (a, _) = NodeIdentity::load_or_mint(&fs, d.path()).unwrap();
        let path = d.path().join(NODE_FILE);
        let good = std::fs::read_to_string(&path).unwrap();
        for (bad, want) in [
            (good.replace(&a.node_id, "0000000000000000"), "node_id"),
            (good.replace(&a.node_id, "xyz"), "node_id"),
            (good.replace("\"version\": 1", "\"version\": 2"), "version 2"),
            (
                good.replace("\"epoch_term\": 0", "\"epoch_term\": 4"),
                "epoch_node is missing",
            ),
            (good.replace("\"pair_id\": \"\"", "\"pair_id\": \"abc\""), "pair_id"),
            (good.replace("\"eligible\"", "\"eligable\""), "unknown field"),
            (
                good.replace("\"degraded\": false", "\"degraded\": false, \"role\": \"leader\""),
                "role \"leader\"",
            ),
            (good[..good.len() / 2].to_string(), "EOF"),
        ] {
            std::fs::write(&path, &bad).unwrap();
            let e = NodeIdentity::load_or_mint(&fs, d.path()).unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("node.json"), "{want}: {e}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), bad, "left as it was");
        }
    }

    #[test]
    fn a_power_cut_leaves_the_old_identity_or_the_new_one() {
        let d = tempfile::tempdir().unwrap();
        for trial in 0..200u64 {
            let root = d.path().join(format!("t{}", trial % 3));
            let (cfs, fs) = CrashFs::fresh(&root);
            let (a, _) = NodeIdentity::load_or_mint(fs.as_ref(), &root).unwrap();
            let mut b = a.clone();
            b.set_epoch(Epoch {
                term: trial + 1,
                node: 7,
            });
            cfs.set_fault(Some(quarry_engine::storage::Fault {
                after_ops: trial % 6,
                kind: quarry_engine::storage::FaultKind::Io,
                persistent: true,
            }));
            let saved = b.save(fs.as_ref(), &root).is_ok();
            cfs.crash();
            cfs.power_loss(trial, true).unwrap();
            let fs2: Arc<dyn Vfs> = Arc::new(cfs.clone());
            let (got, minted) = NodeIdentity::load_or_mint(fs2.as_ref(), &root).unwrap();
            assert!(!minted, "trial {trial}: the identity was lost");
            if saved {
                assert_eq!(got, b, "trial {trial}: a save that returned is durable");
            } else {
                assert!(got == a || got == b, "trial {trial}: {got:?}");
            }
        }
    }
}
