//! The distance metric of a collection and what "closer" means for it.
//!
//! Owns: the mapping from a metric name to a distance where smaller is
//! always closer. Cosine is served by normalising vectors at ingest and at
//! query time and then using L2², which ranks identically.

use crate::kernels;
use std::fmt;
use std::str::FromStr;

/// Distance metric of an index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// Inner product; the distance is −⟨a, b⟩.
    Ip,
    /// Cosine; the distance is 1 − cos(a, b).
    Cosine,
}

impl Metric {
    /// On-disk code.
    pub fn as_u8(self) -> u8 {
        match self {
            Metric::L2 => 0,
            Metric::Ip => 1,
            Metric::Cosine => 2,
        }
    }

    /// From the on-disk code.
    pub fn from_u8(v: u8) -> Option<Metric> {
        match v {
            0 => Some(Metric::L2),
            1 => Some(Metric::Ip),
            2 => Some(Metric::Cosine),
            _ => None,
        }
    }

    /// Distance between two f32 vectors; smaller is closer.
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::L2 => kernels::l2_sq(a, b),
            Metric::Ip => -kernels::dot(a, b),
            Metric::Cosine => kernels::cosine_distance(a, b),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::L2 => "l2",
            Metric::Ip => "ip",
            Metric::Cosine => "cosine",
        })
    }
}

impl FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "l2" => Ok(Metric::L2),
            "ip" => Ok(Metric::Ip),
            "cosine" => Ok(Metric::Cosine),
            other => Err(format!(
                "unknown metric '{other}': expected one of l2, ip, cosine"
            )),
        }
    }
}

/// Scale `v` to unit length in place (left unchanged if it is zero).
pub fn normalize(v: &mut [f32]) {
    let n = kernels::dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}
