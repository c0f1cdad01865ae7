//! A zeroed heap buffer aligned to 4 KiB, as O_DIRECT requires.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

/// An owned, 4096-aligned, zero-initialised byte buffer.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBuf uniquely owns its allocation (like Box<[u8]>); nothing
// is shared, so moving it to another thread is sound.
unsafe impl Send for AlignedBuf {}
// SAFETY: &AlignedBuf only gives out &[u8]; shared reads are sound.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    const ALIGN: usize = 4096;

    /// A zeroed buffer of `len` bytes (rounded up to a multiple of 4096,
    /// at least 4096).
    pub fn new(len: usize) -> Self {
        let len = len.max(1).div_ceil(Self::ALIGN) * Self::ALIGN;
        let layout = Layout::from_size_align(len, Self::ALIGN).expect("valid layout");
        // SAFETY: layout has non-zero size (len >= 4096).
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, len }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never empty (at least 4096 bytes); present for API completeness.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is a live allocation of len initialised (zeroed) bytes
        // owned by self; the borrow ties the slice to &self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in as_slice, and &mut self guarantees exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Raw pointer for handing to the kernel (io_uring). The caller must
    /// keep `self` alive and unborrowed until the kernel is done with it.
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len, Self::ALIGN).expect("valid layout");
        // SAFETY: ptr was allocated in new() with exactly this layout.
        unsafe { dealloc(self.ptr.as_ptr(), layout) }
    }
}
