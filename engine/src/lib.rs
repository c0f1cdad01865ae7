//! Quarry engine placeholder during workspace setup.
