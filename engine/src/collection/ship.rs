//! A bulk-loaded segment's files, sent to a standby before the
//! `AddSegment` record that names them.
//!
//! Owns: listing a segment's files with their lengths and checksums
//! ([`Collection::segment_files`]), reading them in pieces
//! ([`Collection::read_segment_file`]) on the primary, and installing them
//! under the segment's name on the standby ([`install_segment`]). Does not
//! own: when they are sent (the server's replication, which sends them
//! before the record), the record's apply (`replica.rs`).
//!
//! **Order on the standby.** The files go to `<dir>/<name>.stage/<name>/`, each
//! checked against its length and crc32c and fsynced, the directories
//! fsynced, then that directory is renamed to `<dir>/<name>` and `<dir>`
//! fsynced: the segment appears whole or not at all (a stage left by a
//! crash is removed by the next install of that segment). A segment already
//! there (sent again after a reconnect) is kept. A standby that restarts
//! before the record arrives removes the unnamed directory at open (as
//! for a bulk load cut short) and is sent the files again.

use super::op::valid_segment_name;
use super::snapshot::{crc_of, fetch_files, plain_path, read_at, walk, FetchFn, SnapshotFile};
use super::{io_err, Collection, CollectionError, Result};
use crate::storage::Vfs;
use std::path::Path;

impl Collection {
    /// The files of segment `name` (paths relative to the collection
    /// directory, `name/...`), with lengths and crc32c. Refused for a name
    /// that is not a bulk segment's; an error if its directory is gone (a
    /// merge folded it away: the standby then needs a snapshot).
    pub fn segment_files(&self, name: &str) -> Result<Vec<SnapshotFile>> {
        if !valid_segment_name(name) {
            return Err(CollectionError::InvalidArgument(format!(
                "{name:?} is not a bulk-loaded segment's name"
            )));
        }
        if !self.fs.exists(&self.dir.join(name)) {
            return Err(CollectionError::InvalidArgument(format!(
                "{}: segment {name} is gone (folded into another by a merge)",
                self.dir.display()
            )));
        }
        let mut listed = Vec::new();
        walk(&self.dir, name, &mut listed)?;
        listed
            .into_iter()
            .map(|(path, len)| {
                let crc = crc_of(&self.dir.join(&path))?;
                Ok(SnapshotFile { path, len, crc })
            })
            .collect()
    }

    /// Up to `len` bytes of segment file `path` (as [`Collection::segment_files`]
    /// names it) from `offset`.
    pub fn read_segment_file(&self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let seg = path.split('/').next().unwrap_or("");
        if !plain_path(path) || !valid_segment_name(seg) || !path.contains('/') {
            return Err(CollectionError::InvalidArgument(format!(
                "{path:?} is not a file inside a bulk-loaded segment"
            )));
        }
        read_at(&self.dir.join(path), offset, len)
    }
}

/// On a standby: install segment `name`'s `files` into the collection
/// directory `dir` (see the module doc), each read through `fetch` in
/// pieces of at most `chunk` bytes. Returns the bytes written (0 if the
/// segment was already there).
pub fn install_segment(
    fs: &dyn Vfs,
    dir: &Path,
    name: &str,
    files: &[SnapshotFile],
    chunk: usize,
    fetch: &mut FetchFn<'_>,
) -> Result<u64> {
    if !valid_segment_name(name) {
        return Err(CollectionError::Corrupt(format!(
            "segment name {name:?} is not a bulk-loaded segment's"
        )));
    }
    let prefix = format!("{name}/");
    if let Some(f) = files
        .iter()
        .find(|f| !plain_path(&f.path) || !f.path.starts_with(&prefix))
    {
        return Err(CollectionError::Corrupt(format!(
            "segment file {:?} is not inside segment {name}",
            f.path
        )));
    }
    let target = dir.join(name);
    if fs.exists(&target) {
        return Ok(0);
    }
    // The files' paths start with `name/`: fetch them under a staging
    // root, then move its `name` child into place.
    let stage = dir.join(format!("{name}.stage"));
    if fs.exists(&stage) {
        fs.remove_dir_all(&stage).map_err(io_err(&stage, "remove"))?;
    }
    let (total, mut dirs) = fetch_files(fs, &stage, files, chunk, fetch, "segment")?;
    let staged = stage.join(name);
    if !fs.exists(&staged) {
        fs.create_dir_all(&staged).map_err(io_err(&staged, "create"))?;
        dirs.push(staged.clone());
    }
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for d in &dirs {
        fs.sync_dir(d).map_err(io_err(d, "sync"))?;
    }
    fs.rename(&staged, &target).map_err(io_err(&staged, "rename"))?;
    fs.sync_dir(dir).map_err(io_err(dir, "sync"))?;
    fs.remove_dir_all(&stage).map_err(io_err(&stage, "remove"))?;
    tracing::info!(dir = %dir.display(), segment = name, bytes = total, files = files.len(), "received a bulk-loaded segment");
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{opts, vec_of};
    use super::*;
    use crate::storage::RealFs;
    use std::sync::Arc;

    /// A primary with one bulk-loaded segment, and a standby that receives
    /// its files and then its record.
    #[test]
    fn a_segment_arrives_whole_checked_and_then_its_record_applies() {
        let d = tempfile::tempdir().unwrap();
        let (p, _) = Collection::open(Arc::new(RealFs), &d.path().join("p"), opts()).unwrap();
        let ids: Vec<u64> = (0..300).collect();
        let data: Vec<f32> = ids.iter().flat_map(|&i| vec_of(i)).collect();
        let rep = p.bulk_load(data.into(), &ids, vec![], 1, &mut |_, _, _| {}).unwrap();
        let files = p.segment_files(&rep.segment).unwrap();
        assert!(files.len() >= 3 && files.iter().all(|f| f.path.starts_with(&format!("{}/", rep.segment))));
        let (s, _) = Collection::open(Arc::new(RealFs), &d.path().join("s"), opts()).unwrap();
        let sdir = d.path().join("s");
        let fs = RealFs;
        let mut fetch = |path: &str, off: u64, len: usize| p.read_segment_file(path, off, len);

        // A flipped checksum: refused, nothing in place.
        let mut bad = files.clone();
        bad[0].crc ^= 1;
        let e = install_segment(&fs, &sdir, &rep.segment, &bad, 100, &mut fetch).unwrap_err();
        assert!(e.to_string().contains("crc32c"), "{e}");
        assert!(!sdir.join(&rep.segment).exists());
        // A path outside the segment, or a name that is not a bulk segment's.
        let mut out = files.clone();
        out[0].path = format!("{}/../manifest.json", rep.segment);
        assert!(install_segment(&fs, &sdir, &rep.segment, &out, 100, &mut fetch).is_err());
        assert!(install_segment(&fs, &sdir, "seg-1", &files, 100, &mut fetch).is_err());
        assert!(p.read_segment_file("manifest.json", 0, 10).is_err());
        assert!(p.read_segment_file(&format!("{}/../wal", rep.segment), 0, 10).is_err());

        // Whole: then the record applies on the standby.
        let n = install_segment(&fs, &sdir, &rep.segment, &files, 100, &mut fetch).unwrap();
        assert_eq!(n, files.iter().map(|f| f.len).sum::<u64>());
        assert_eq!(
            install_segment(&fs, &sdir, &rep.segment, &files, 100, &mut fetch).unwrap(),
            0,
            "kept"
        );
        let mut cur = p.wal().cursor(1).unwrap();
        let recs = p.wal().read(&mut cur, 1 << 20).unwrap();
        let bodies: Vec<Vec<u8>> = recs.into_iter().map(|r| r.1).collect();
        s.apply_replicated(1, &bodies).unwrap();
        assert_eq!(s.len(), 300);
        assert_eq!(s.get(123).unwrap().unwrap().0, vec_of(123));
    }
}
