//! The correctness probes after every round's writes and flush: an
//! overwritten id is not found by its old vector and `get` returns the new
//! one; a deleted id never comes back.

use super::*;

/// Results of the overwrite/delete correctness probes.
#[derive(Default)]
pub(crate) struct Checks {
    pub(crate) upserts_probed: usize,
    pub(crate) upserts_skipped_near_duplicate: usize,
    pub(crate) stale_upsert_hits: usize,
    pub(crate) get_mismatches: usize,
    pub(crate) deletes_probed: usize,
    pub(crate) deleted_hits: usize,
    pub(crate) deleted_get_found: usize,
}

/// Overwritten ids (with the old base row) must not be found by their
/// old vector, and `get` must return the new one; deleted ids (with their
/// old row) must never come back.
pub(crate) fn check(
    c: &Collection,
    world: &World,
    upserted: &[(u64, usize)],
    deleted: &[(u64, usize)],
    s: &SearchCfg,
) -> Result<Checks> {
    let mut readers = CollectionSearcher::default();
    let mut out = Checks::default();
    for &(id, old_row) in upserted {
        let old = world.row(old_row);
        let new = world.vec_of(id);
        match c.get(id)? {
            Some((v, _)) if v == new => {}
            _ => out.get_mismatches += 1,
        }
        let d_new = Metric::L2.distance(old, new);
        if d_new < 1e-3 {
            out.upserts_skipped_near_duplicate += 1;
            continue;
        }
        out.upserts_probed += 1;
        let hits = c.search(old, s.k, s.l, s.w, &mut readers)?;
        if hits.iter().any(|h| h.id == id && h.distance < 0.5 * d_new) {
            out.stale_upsert_hits += 1;
        }
    }
    for &(id, row) in deleted {
        out.deletes_probed += 1;
        if c.get(id)?.is_some() {
            out.deleted_get_found += 1;
        }
        let hits = c.search(world.row(row), s.k, s.l, s.w, &mut readers)?;
        if hits.iter().any(|h| h.id == id) {
            out.deleted_hits += 1;
        }
    }
    Ok(out)
}

pub(crate) fn checks_json(c: &Checks) -> Value {
    json!({
        "upserts_probed": c.upserts_probed,
        "upserts_skipped_near_duplicate": c.upserts_skipped_near_duplicate,
        "stale_upsert_hits": c.stale_upsert_hits,
        "get_mismatches": c.get_mismatches,
        "deletes_probed": c.deletes_probed,
        "deleted_hits": c.deleted_hits,
        "deleted_get_found": c.deleted_get_found,
    })
}

pub(crate) fn checks_bad(c: &Checks) -> usize {
    c.stale_upsert_hits + c.get_mismatches + c.deleted_hits + c.deleted_get_found
}
