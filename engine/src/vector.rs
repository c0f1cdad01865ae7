//! The one check every vector passes before Quarry stores or searches it.
//!
//! Owns: [`check_vector`] and [`VectorError`]. Every entry point (a
//! collection's writes and queries, the disk searcher, the service) calls
//! it; callers name the field in their own message with
//! [`VectorError::describe`]. Does not own: limits on counts or sizes of
//! requests (the service's).

/// Why a vector cannot be used.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum VectorError {
    /// Wrong length.
    #[error("has {got} values; the collection has dimension {want}")]
    Dimension {
        /// Values given.
        got: usize,
        /// The collection's dimension.
        want: usize,
    },
    /// A NaN or an infinity.
    #[error("[{at}] is {value}; vectors must be finite")]
    NotFinite {
        /// Its position.
        at: usize,
        /// The value.
        value: f32,
    },
}

impl VectorError {
    /// The error as a sentence about `field` ("query", "points[3].vector"):
    /// `query has 17 values; the collection has dimension 16`,
    /// `query[5] is NaN; vectors must be finite`.
    pub fn describe(&self, field: &str) -> String {
        match self {
            VectorError::Dimension { .. } => format!("{field} {self}"),
            VectorError::NotFinite { .. } => format!("{field}{self}"),
        }
    }
}

/// `v` has `dim` values, all finite.
pub fn check_vector(dim: usize, v: &[f32]) -> Result<(), VectorError> {
    if v.len() != dim {
        return Err(VectorError::Dimension {
            got: v.len(),
            want: dim,
        });
    }
    match v.iter().position(|x| !x.is_finite()) {
        Some(at) => Err(VectorError::NotFinite { at, value: v[at] }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_length_or_the_first_bad_value() {
        assert_eq!(check_vector(3, &[0.0, 1.0, -2.0]), Ok(()));
        let e = check_vector(3, &[0.0; 4]).unwrap_err();
        assert_eq!(
            e.describe("query"),
            "query has 4 values; the collection has dimension 3"
        );
        let e = check_vector(3, &[0.0, f32::NAN, f32::INFINITY]).unwrap_err();
        assert!(
            matches!(e, VectorError::NotFinite { at: 1, value } if value.is_nan()),
            "{e:?}"
        );
        assert_eq!(
            e.describe("points[2].vector"),
            "points[2].vector[1] is NaN; vectors must be finite"
        );
        let e = check_vector(2, &[f32::NEG_INFINITY, 0.0]).unwrap_err();
        assert_eq!(e.describe("v"), "v[0] is -inf; vectors must be finite");
    }
}
