//! Buffers aligned for direct I/O.

use std::ops::{Deref, DerefMut};

use aligned_vec::{AVec, ConstAlign};

use crate::layout::IO_ALIGN;

/// A zero-initialised byte buffer whose start is aligned to 4096 bytes, so
/// that O_DIRECT I/O can use it without a copy.
///
/// A thin wrapper over `aligned_vec::AVec` that keeps the alignment fixed
/// and the contents always initialised.
pub struct AlignedBuf(AVec<u8, ConstAlign<IO_ALIGN>>);

impl AlignedBuf {
    /// A buffer of `len` zero bytes.
    pub fn zeroed(len: usize) -> AlignedBuf {
        let mut v = AVec::with_capacity(IO_ALIGN, len);
        v.resize(len, 0);
        AlignedBuf(v)
    }

    /// Grows (with zeroes) or shrinks the buffer to `len` bytes.
    pub fn resize(&mut self, len: usize) {
        self.0.resize(len, 0);
    }

    /// True when `ptr` is aligned well enough for direct I/O.
    pub fn is_aligned(ptr: *const u8) -> bool {
        (ptr as usize) % IO_ALIGN == 0
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_zeroed() {
        for len in [0, 1, 512, 4096, 100_000] {
            let mut b = AlignedBuf::zeroed(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|&x| x == 0));
            if len > 0 {
                assert!(AlignedBuf::is_aligned(b.as_ptr()));
                b[0] = 1;
            }
            b.resize(len + 4096);
            assert!(AlignedBuf::is_aligned(b.as_ptr()));
            assert!(b[len..].iter().all(|&x| x == 0));
        }
    }
}
