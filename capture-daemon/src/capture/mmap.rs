//! Memory mappings shared with the kernel: AF_XDP UMEM and rings, mmapable BPF arrays.
use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;

/// An anonymous or socket mapping, unmapped on drop.
pub struct Mapping {
    pub base: NonNull<u8>,
    pub len: usize,
}

impl Mapping {
    /// `len` bytes of fresh memory of our own (an AF_XDP UMEM).
    pub fn anonymous(len: usize) -> io::Result<Self> {
        Self::map(-1, len, 0, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, true)
    }

    /// Maps `len` bytes of `fd` at `offset`, shared, read-only unless `writable` (the
    /// kernel refuses writable mappings of what only it may write, such as a ring's data).
    pub fn shared(fd: RawFd, len: usize, offset: u64, writable: bool) -> io::Result<Self> {
        Self::map(fd, len, offset, libc::MAP_SHARED, writable)
    }

    fn map(fd: RawFd, len: usize, offset: u64, flags: libc::c_int, writable: bool) -> io::Result<Self> {
        let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: a fresh mapping; the kernel checks fd and offset.
        let base = unsafe {
            libc::mmap(std::ptr::null_mut(), len, prot, flags | libc::MAP_POPULATE, fd, offset as libc::off_t)
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { base: NonNull::new(base.cast()).expect("mmap does not return null"), len })
    }

    /// A pointer to a `T` at `offset`.
    pub fn at<T>(&self, offset: u64) -> *mut T {
        debug_assert!(offset as usize + size_of::<T>() <= self.len);
        // SAFETY: within the mapping (the kernel's offsets describe its layout).
        unsafe { self.base.as_ptr().add(offset as usize).cast() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by mmap with this length and is no longer used.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

// SAFETY: the mapping is plain memory; access is coordinated by the ring protocol.
unsafe impl Send for Mapping {}
