//! The body of a collection's WAL record: one upsert or delete
//! (docs/format.md, "WAL operation body").
//!
//! Owns: encoding and decoding [`Op`]. Does not own: the record framing,
//! checksums or LSNs (`crate::wal`), or whether an op is valid for a
//! collection (`super::Collection::write` checks that before logging).

/// One write.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// Insert or replace `id`.
    Upsert {
        /// External id.
        id: u64,
        /// The vector.
        vector: Vec<f32>,
        /// Opaque payload.
        payload: Vec<u8>,
    },
    /// Remove `id` (no error if absent).
    Delete {
        /// External id.
        id: u64,
    },
    /// A bulk-loaded segment (`bulk-<n>`, already durable in the collection
    /// directory) joins the collection at this LSN: its ids replace every
    /// earlier version. Logged only by [`super::Collection::bulk_load`];
    /// `write` refuses it.
    AddSegment {
        /// The segment directory's name.
        name: String,
    },
    /// A leader's first record in its epoch (a promotion): changes no
    /// vector. The log's epoch history (`wal/epochs.bin`) says where each
    /// epoch begins; this record makes every epoch hold at least one
    /// record, so a standby's log shows that it received the promotion.
    /// Logged only by [`super::Collection::begin_epoch`]; `write` refuses it.
    Epoch {
        /// The epoch that began.
        epoch: crate::wal::Epoch,
    },
}

/// Whether `name` may name a bulk segment in a WAL record (a plain name in
/// the collection directory).
pub(super) fn valid_segment_name(name: &str) -> bool {
    name.starts_with("bulk-")
        && name.len() <= 64
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

impl Op {
    /// The WAL record body (docs/format.md, "WAL operation body").
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        match self {
            Op::Upsert { id, vector, payload } => {
                b.push(1);
                b.extend_from_slice(&id.to_le_bytes());
                b.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                b.extend_from_slice(payload);
                b.extend_from_slice(bytemuck::cast_slice(vector));
            }
            Op::Delete { id } => {
                b.push(2);
                b.extend_from_slice(&id.to_le_bytes());
            }
            Op::AddSegment { name } => {
                b.push(3);
                b.extend_from_slice(&(name.len() as u16).to_le_bytes());
                b.extend_from_slice(name.as_bytes());
            }
            Op::Epoch { epoch } => {
                b.push(4);
                b.extend_from_slice(&epoch.term.to_le_bytes());
                b.extend_from_slice(&epoch.node.to_le_bytes());
            }
        }
        b
    }

    /// Parse a WAL record body of a collection of `dim` values. Err: why
    /// it is damaged.
    pub fn decode(b: &[u8], dim: usize) -> std::result::Result<Op, String> {
        let u64_at = |o: usize| b.get(o..o + 8).map(|s| u64::from_le_bytes(s.try_into().expect("8")));
        match b.first() {
            Some(1) => {
                let id = u64_at(1).ok_or("short upsert")?;
                let plen = b
                    .get(9..13)
                    .map(|s| u32::from_le_bytes(s.try_into().expect("4")))
                    .ok_or("short upsert")? as usize;
                let payload = b.get(13..13 + plen).ok_or("short payload")?.to_vec();
                let vb = &b[13 + plen..];
                if vb.len() != dim * 4 {
                    return Err(format!("vector of {} bytes, expected {}", vb.len(), dim * 4));
                }
                let vector = f32s(vb);
                Ok(Op::Upsert { id, vector, payload })
            }
            Some(2) if b.len() == 9 => Ok(Op::Delete {
                id: u64_at(1).expect("9 bytes"),
            }),
            Some(3) => {
                let n = b
                    .get(1..3)
                    .map(|s| u16::from_le_bytes(s.try_into().expect("2")))
                    .ok_or("short segment record")? as usize;
                if b.len() != 3 + n {
                    return Err(format!("segment record of {} bytes, expected {}", b.len(), 3 + n));
                }
                let name = std::str::from_utf8(&b[3..])
                    .ok()
                    .filter(|n| valid_segment_name(n))
                    .ok_or("segment record with an invalid name")?;
                Ok(Op::AddSegment { name: name.to_string() })
            }
            Some(4) if b.len() == 17 => {
                let epoch = crate::wal::Epoch {
                    term: u64_at(1).expect("17 bytes"),
                    node: u64_at(9).expect("17 bytes"),
                };
                if epoch == crate::wal::Epoch::ZERO {
                    return Err("epoch record for epoch 0/0".into());
                }
                Ok(Op::Epoch { epoch })
            }
            other => Err(format!("unknown operation {other:?}")),
        }
    }
}

/// Little-endian f32s from bytes (any alignment).
pub(super) fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_round_trips_and_damage_is_refused() {
        let ops = [
            Op::Upsert {
                id: 7,
                vector: vec![1.0, -2.5, 3.25],
                payload: b"p".to_vec(),
            },
            Op::Delete { id: u64::MAX },
            Op::AddSegment {
                name: "bulk-0000000003".into(),
            },
            Op::Epoch {
                epoch: crate::wal::Epoch { term: 3, node: 0xab },
            },
        ];
        for op in &ops {
            let b = op.encode();
            assert_eq!(&Op::decode(&b, 3).unwrap(), op);
            // Every truncation is refused, never misread.
            for cut in 0..b.len() {
                assert!(Op::decode(&b[..cut], 3).is_err(), "{op:?} cut at {cut}");
            }
        }
        for bad in ["../x", "bulk-a/b", "seg-1", ""] {
            let b = Op::AddSegment { name: bad.into() }.encode();
            assert!(Op::decode(&b, 3).is_err(), "{bad:?}");
        }
        assert!(Op::decode(&[9, 0, 0], 3).is_err());
        assert!(Op::decode(
            &Op::Epoch {
                epoch: crate::wal::Epoch::ZERO
            }
            .encode(),
            3
        )
        .is_err());
    }
}
