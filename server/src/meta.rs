//! A collection's metadata, `collection.json` (docs/format.md, "Collection
//! metadata"): its fields, version, defaults and range checks.
//!
//! Owns: [`CollectionMeta`], [`IndexParams`] and their resolution, the
//! life-cycle [`State`], and [`META_VERSION`]. Does not own: where the file
//! lives or when it is written (`crate::catalog`).

use crate::error::ServiceError;
use quarry_engine::format::StoredType;
use quarry_engine::Metric;
use serde::{Deserialize, Serialize};

/// The version of `collection.json` this build writes and reads
/// (docs/format.md, "Collection metadata").
pub const META_VERSION: u32 = 1;

/// Graph and PQ parameters (all zeros = every default; see `resolve`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexParams {
    /// R.
    pub max_degree: u32,
    /// Build L.
    pub build_list_size: u32,
    /// RobustPrune alpha.
    pub alpha: f32,
    /// PQ bytes per vector.
    pub pq_bytes: u32,
    /// OPQ rotation.
    pub opq: bool,
    /// Navigation sample (0 = 1 % of n).
    pub nav_sample: u32,
}

impl IndexParams {
    /// Fill zeros with defaults for `dim` and check ranges.
    pub fn resolve(mut self, dim: u32) -> Result<Self, ServiceError> {
        let bad = |m: String| Err(ServiceError::InvalidArgument(m));
        if self.max_degree == 0 {
            self.max_degree = 64;
        }
        if self.build_list_size == 0 {
            self.build_list_size = self.max_degree.max(100);
        }
        if self.alpha == 0.0 {
            self.alpha = 1.2;
        }
        if self.pq_bytes == 0 {
            self.pq_bytes = quarry_engine::index::IndexBuildOptions::default_pq_bytes(dim as usize) as u32;
        }
        if !(4..=512).contains(&self.max_degree) {
            return bad(format!(
                "index_params.max_degree = {} is out of range 4..=512",
                self.max_degree
            ));
        }
        if self.build_list_size < self.max_degree || self.build_list_size > 2000 {
            return bad(format!(
                "index_params.build_list_size = {} must be in max_degree..=2000 ({}..=2000)",
                self.build_list_size, self.max_degree
            ));
        }
        if !(1.0..=2.0).contains(&self.alpha) {
            return bad(format!("index_params.alpha = {} is out of range 1.0..=2.0", self.alpha));
        }
        if self.pq_bytes > dim {
            return bad(format!(
                "index_params.pq_bytes = {} must be in 1..=dim ({dim})",
                self.pq_bytes
            ));
        }
        Ok(self)
    }
}

/// Life-cycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// No index yet.
    Empty,
    /// A build runs.
    Building,
    /// Serving.
    Ready,
    /// The last build failed.
    Failed,
}

/// What `collection.json` holds.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CollectionMeta {
    /// [`META_VERSION`] when written. Files written before versions were
    /// recorded have none and read as version 1 (the same fields).
    #[serde(default = "meta_version_1")]
    pub version: u32,
    /// Name.
    pub name: String,
    /// Dimension.
    pub dim: u32,
    /// Metric ("l2", "ip", "cosine").
    pub metric: String,
    /// Resolved parameters.
    pub params: IndexParams,
    /// Stored-vector type ("f32", "f16", "i8").
    pub stored: String,
    /// State.
    pub state: State,
    /// Current index directory name (under the collection), if any.
    pub index_dir: Option<String>,
    /// Last build generation used.
    pub generation: u64,
    /// Last build operation id.
    pub operation_id: String,
    /// Last build error.
    pub error: String,
    /// Vectors in the current index.
    pub vector_count: u64,
    /// Filled by writes (a `live/` directory) rather than by builds.
    #[serde(default)]
    pub mutable: bool,
    /// Unique per create (random, never 0): a collection dropped and
    /// created again under the same name is another incarnation, so a
    /// standby never splices the old one's log into the new one. 0 in files
    /// written before it was recorded; assigned (and written back) when
    /// such a collection opens.
    #[serde(default)]
    pub incarnation: u64,
    /// Where its disk segments' graph records live while it serves:
    /// "disk" (read per query, with the server's hot-node cache) or "ram"
    /// (every record read into RAM when a segment opens, so searches read
    /// nothing). Absent in files written before it existed: "disk".
    #[serde(default)]
    pub residency: Residency,
}

/// Where a collection's graph records live while it serves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Residency {
    /// On disk, read per query (the server's `cache_nodes` hot nodes in RAM).
    #[default]
    Disk,
    /// Every record of every segment in RAM: no reads per query; costs
    /// the index's size in RAM, counted against the memory budget.
    Ram,
}

impl std::fmt::Display for Residency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Residency::Disk => "disk",
            Residency::Ram => "ram",
        })
    }
}

fn meta_version_1() -> u32 {
    1
}

/// A new incarnation id: random, never 0.
pub fn new_incarnation() -> u64 {
    loop {
        let x: u64 = rand::random();
        if x != 0 {
            return x;
        }
    }
}

impl CollectionMeta {
    /// A peer's `collection.json` (a primary's, sent to its standby in a
    /// Welcome or a snapshot), every field checked as a create checks it;
    /// the message names the field.
    pub fn from_peer(b: &[u8]) -> Result<CollectionMeta, ServiceError> {
        let bad = |m: String| ServiceError::InvalidArgument(format!("the primary's collection.json: {m}"));
        let m: CollectionMeta = serde_json::from_slice(b).map_err(|e| bad(e.to_string()))?;
        if m.version != META_VERSION {
            return Err(ServiceError::FailedPrecondition(format!(
                "the primary's collection.json of {:?} is version {}; this build reads version {META_VERSION}",
                m.name, m.version
            )));
        }
        crate::catalog::check_name(&m.name).map_err(|e| bad(e.to_string()))?;
        if !(1..=4096).contains(&m.dim) {
            return Err(bad(format!("dim = {} is out of range 1..=4096", m.dim)));
        }
        m.metric.parse::<Metric>().map_err(|e| bad(format!("metric: {e}")))?;
        m.stored
            .parse::<StoredType>()
            .map_err(|e| bad(format!("stored: {e}")))?;
        let resolved = m.params.resolve(m.dim).map_err(|e| bad(e.to_string()))?;
        if resolved != m.params {
            return Err(bad("params are not resolved (a zero where a value belongs)".into()));
        }
        if m.incarnation == 0 {
            return Err(bad("incarnation is 0".into()));
        }
        Ok(m)
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.metric.parse().expect("validated when created")
    }
    /// The stored-vector type.
    pub fn stored(&self) -> StoredType {
        self.stored.parse().expect("validated when created")
    }

    /// Bytes of one graph record on disk (the RAM one node costs when the
    /// collection is RAM-resident).
    pub fn record_bytes(&self) -> u64 {
        quarry_engine::format::NodeLayout::new(self.dim as usize, self.stored(), self.params.max_degree as usize)
            .node_size as u64
    }

    /// The write-path settings this collection opens with: the server's,
    /// with every segment held in RAM when it is RAM-resident.
    pub fn write_settings(&self, server: &crate::live::WriteSettings) -> crate::live::WriteSettings {
        let mut s = server.clone();
        if self.residency == Residency::Ram {
            s.ram_segment_nodes = usize::MAX;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> CollectionMeta {
        CollectionMeta {
            version: META_VERSION,
            name: "docs".into(),
            dim: 8,
            metric: "l2".into(),
            params: IndexParams::default().resolve(8).unwrap(),
            stored: "f32".into(),
            state: State::Ready,
            index_dir: None,
            generation: 0,
            operation_id: String::new(),
            error: String::new(),
            vector_count: 0,
            mutable: true,
            incarnation: 7,
            residency: Residency::Ram,
        }
    }

    #[test]
    fn residency_defaults_to_disk_and_ram_holds_every_segment() {
        let mut v = serde_json::to_value(good()).unwrap();
        assert_eq!(v["residency"], "ram");
        let back: CollectionMeta = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back.residency, Residency::Ram);
        let server = crate::live::WriteSettings::default();
        assert_eq!(back.write_settings(&server).ram_segment_nodes, usize::MAX);
        v.as_object_mut().unwrap().remove("residency");
        let old: CollectionMeta = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(old.residency, Residency::Disk);
        assert_eq!(old.write_settings(&server).ram_segment_nodes, server.ram_segment_nodes);
        v["residency"] = "tape".into();
        let e = CollectionMeta::from_peer(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(e.to_string().contains("tape"), "{e}");
        // f32 × 8, a degree, 64 neighbours.
        assert_eq!(good().record_bytes(), 8 * 4 + 4 + 64 * 4);
    }

    #[test]
    fn a_peers_metadata_is_checked_field_by_field() {
        let ok = serde_json::to_vec(&good()).unwrap();
        assert_eq!(CollectionMeta::from_peer(&ok).unwrap().incarnation, 7);
        type Change = Box<dyn Fn(&mut CollectionMeta)>;
        let cases: Vec<(Change, &str)> = vec![
            (Box::new(|m| m.version = 2), "version 2"),
            (Box::new(|m| m.name = "../x".into()), "name"),
            (Box::new(|m| m.dim = 0), "dim = 0"),
            (Box::new(|m| m.metric = "hamming".into()), "metric"),
            (Box::new(|m| m.stored = "f8".into()), "stored"),
            (Box::new(|m| m.params.max_degree = 0), "not resolved"),
            (Box::new(|m| m.params.alpha = 9.0), "alpha"),
            (Box::new(|m| m.incarnation = 0), "incarnation is 0"),
        ];
        for (f, want) in cases {
            let mut m = good();
            f(&mut m);
            let e = CollectionMeta::from_peer(&serde_json::to_vec(&m).unwrap())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        let e = CollectionMeta::from_peer(&ok[..ok.len() / 2]).unwrap_err().to_string();
        assert!(e.contains("collection.json"), "{e}");
    }
}
