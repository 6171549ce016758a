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
    /// Maps `len` bytes of `fd` at `offset` (shared), or anonymous memory without `fd`.
    pub fn new(fd: Option<RawFd>, len: usize, offset: u64) -> io::Result<Self> {
        let (flags, fd) = match fd {
            Some(fd) => (libc::MAP_SHARED | libc::MAP_POPULATE, fd),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE, -1),
        };
        // SAFETY: a fresh mapping; the kernel checks fd and offset.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                offset as libc::off_t,
            )
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
