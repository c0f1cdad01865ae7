//! The distance metric of an index or a ground-truth run, and what "closer"
//! means for it.
//!
//! Owns: the names (`l2`, `ip`, `cosine`), their one-byte on-disk codes, and
//! the convention that a smaller [`Metric::distance`] is always closer.
//! Does not own: the arithmetic, which is in [`crate::kernels`].

use crate::kernels;
use std::fmt;
use std::str::FromStr;

/// A distance metric. For all three, a smaller [`Metric::distance`] means
/// closer, so every search can rank ascending.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// Inner product; the distance is its negation, so the largest dot
    /// product ranks first.
    Ip,
    /// Cosine distance, 1 − cos(a, b).
    Cosine,
}

/// A metric name that is none of `l2`, `ip`, `cosine`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown metric '{0}' (valid: l2, ip, cosine)")]
pub struct ParseMetricError(pub String);

impl Metric {
    /// Every metric, in code order.
    pub const ALL: [Metric; 3] = [Metric::L2, Metric::Ip, Metric::Cosine];

    /// The one-byte code used in file headers: L2 = 0, Ip = 1, Cosine = 2.
    pub fn as_u8(self) -> u8 {
        match self {
            Metric::L2 => 0,
            Metric::Ip => 1,
            Metric::Cosine => 2,
        }
    }

    /// The metric for a code written by [`Metric::as_u8`], or `None`.
    pub fn from_u8(code: u8) -> Option<Metric> {
        match code {
            0 => Some(Metric::L2),
            1 => Some(Metric::Ip),
            2 => Some(Metric::Cosine),
            _ => None,
        }
    }

    /// The lowercase name, as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Metric::L2 => "l2",
            Metric::Ip => "ip",
            Metric::Cosine => "cosine",
        }
    }

    /// Distance between `a` and `b`; smaller is closer. L2 gives the squared
    /// Euclidean distance, Ip the negated dot product, Cosine 1 − cos.
    /// Panics if the lengths differ.
    #[inline]
    pub fn distance(self, a: &[f32], b: &[f32]) -> f32 {
        match self {
            Metric::L2 => kernels::l2_sq(a, b),
            Metric::Ip => -kernels::dot(a, b),
            Metric::Cosine => kernels::cosine_distance(a, b),
        }
    }
}

impl FromStr for Metric {
    type Err = ParseMetricError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "l2" => Ok(Metric::L2),
            "ip" => Ok(Metric::Ip),
            "cosine" => Ok(Metric::Cosine),
            _ => Err(ParseMetricError(s.to_string())),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Scale `v` to unit length in place (left unchanged if it is zero).
pub fn normalize(v: &mut [f32]) {
    let n = crate::kernels::dot(v, v).sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for m in Metric::ALL {
            assert_eq!(m.to_string().parse::<Metric>().unwrap(), m);
            assert_eq!(Metric::from_u8(m.as_u8()), Some(m));
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{m}\""));
            assert_eq!(serde_json::from_str::<Metric>(&json).unwrap(), m);
        }
        assert_eq!(Metric::from_u8(3), None);
        let err = "euclid".parse::<Metric>().unwrap_err().to_string();
        assert!(err.contains("l2, ip, cosine"), "{err}");
    }

    #[test]
    fn smaller_is_closer() {
        let q = [1.0, 0.0];
        let near = [0.9, 0.1];
        let far = [-1.0, 0.0];
        for m in Metric::ALL {
            assert!(m.distance(&q, &near) < m.distance(&q, &far), "{m}");
        }
        assert_eq!(Metric::Ip.distance(&[1.0, 2.0], &[3.0, 4.0]), -11.0);
    }
}
