//! The portable reader: synchronous `pread` into aligned buffers. Each
//! `submit` does the read at once; `complete` hands the results back.

use super::{open_direct, AlignedBuf, Completion, ReadError, SectorReader, Slot, SECTOR};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Synchronous pread reader.
pub struct PreadReader {
    path: PathBuf,
    file: std::fs::File,
    direct: bool,
    read_len: usize,
    bufs: Vec<AlignedBuf>,
    free: Vec<Slot>,
    done: Vec<Completion>,
}

impl PreadReader {
    /// Open `path` for reads of `read_len` bytes with `depth` slots.
    pub fn open(path: &Path, read_len: usize, depth: usize) -> Result<Self, ReadError> {
        assert!(read_len.is_multiple_of(SECTOR) && depth > 0);
        let (file, direct) = open_direct(path)?;
        Ok(PreadReader {
            path: path.into(),
            file,
            direct,
            read_len,
            bufs: (0..depth).map(|_| AlignedBuf::new(read_len)).collect(),
            free: (0..depth).rev().collect(),
            done: Vec::new(),
        })
    }
}

impl SectorReader for PreadReader {
    fn read_len(&self) -> usize {
        self.read_len
    }
    fn capacity(&self) -> usize {
        self.bufs.len()
    }
    fn in_use(&self) -> usize {
        self.bufs.len() - self.free.len()
    }
    fn submit(&mut self, sector: u64, tag: u64) -> Result<Slot, ReadError> {
        let slot = self.free.pop().ok_or(ReadError::Full(self.bufs.len()))?;
        let want = self.read_len;
        let buf = &mut self.bufs[slot].as_mut_slice()[..want];
        let mut got = 0;
        let result = loop {
            match self.file.read_at(&mut buf[got..], sector * SECTOR as u64 + got as u64) {
                Ok(0) => {
                    break Err(ReadError::Short {
                        path: self.path.clone(),
                        sector,
                        got,
                        want,
                    })
                }
                Ok(k) => {
                    got += k;
                    if got == want {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    break Err(ReadError::Os {
                        path: self.path.clone(),
                        sector,
                        msg: e.to_string(),
                    })
                }
            }
        };
        self.done.push(Completion { slot, tag, result });
        Ok(slot)
    }
    fn complete(&mut self, _min: usize, out: &mut Vec<Completion>) -> Result<(), ReadError> {
        out.append(&mut self.done);
        Ok(())
    }
    fn buffer(&self, slot: Slot) -> &[u8] {
        &self.bufs[slot].as_slice()[..self.read_len]
    }
    fn release(&mut self, slot: Slot) {
        debug_assert!(!self.free.contains(&slot));
        self.free.push(slot);
    }
    fn describe(&self) -> String {
        format!("pread{}", if self.direct { ", O_DIRECT" } else { ", buffered" })
    }
}
