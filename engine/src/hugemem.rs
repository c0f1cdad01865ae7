//! Large read-only tables held in anonymous memory advised for transparent
//! huge pages.
//!
//! Owns: [`HugeBytes`], the home of the PQ code array. Search reads one
//! random code row per neighbour it scores, all over a table of n × m bytes
//! (128 MB at 1M × 128 B). With 4 KiB pages nearly every such read also
//! misses the TLB; with 2 MiB pages the table needs 512× fewer entries. The
//! mapping is made with `memmap2` and advised with `MADV_HUGEPAGE` before it
//! is first touched, so the kernel can back it with huge pages as it is
//! filled (THP `enabled` must be `always` or `madvise`; with `never` the
//! advice is refused and the table uses small pages, which is only slower).

use std::io::Read;

/// An owned byte table, huge-page backed where the kernel allows.
pub struct HugeBytes {
    map: Option<memmap2::MmapMut>,
}

impl HugeBytes {
    /// Read exactly `len` bytes from `src` into a new table.
    pub fn read_exact_from(src: &mut impl Read, len: usize) -> std::io::Result<Self> {
        if len == 0 {
            return Ok(HugeBytes { map: None });
        }
        let mut map = memmap2::MmapMut::map_anon(len)?;
        // Advice only: where it is refused the table keeps small pages,
        // which is slower and nothing else.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        src.read_exact(&mut map[..])?;
        Ok(HugeBytes { map: Some(map) })
    }
}

impl std::ops::Deref for HugeBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }
}

impl std::fmt::Debug for HugeBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HugeBytes").field("len", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::HugeBytes;

    #[test]
    fn holds_what_was_read() {
        let src: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let t = HugeBytes::read_exact_from(&mut &src[..], src.len()).unwrap();
        assert_eq!(&t[..], &src[..]);
        let e = HugeBytes::read_exact_from(&mut &[][..], 0).unwrap();
        assert!(e.is_empty());
    }

    #[test]
    fn a_short_source_is_an_error() {
        let src = [1u8; 100];
        let err = HugeBytes::read_exact_from(&mut &src[..], 200).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
