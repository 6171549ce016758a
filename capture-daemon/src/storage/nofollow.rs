//! The ring directory as a hostile place: whoever runs the daemon (`-Z USER`, the unit's
//! user) can write it, so what ringcap does there as root, and every file it reads there,
//! must not be steered by a planted symlink, FIFO, device or sparse giant.
//!
//! [`Dir`] is a directory opened without following a symlink, and walked by descriptor
//! (`openat`, `fchownat`, `unlinkat`), so no path component can be swapped for a link
//! between a check and a use. [`open_regular`] opens a file for reading only if it is a
//! regular file reached without a symlink, without blocking on a FIFO.
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A directory held open by descriptor.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
}

fn c_name(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name with a NUL byte"))
}

fn check(result: libc::c_int) -> io::Result<libc::c_int> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}

/// The kind of a directory entry, read without following a symlink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A symlink, FIFO, socket or device: never followed, opened or handed over.
    Other,
}

impl Dir {
    /// Opens `path`, refusing a symlink in its last component.
    pub fn open(path: &Path) -> io::Result<Dir> {
        let path = c_name(path.as_os_str().as_bytes())?;
        // SAFETY: a valid NUL-terminated path; the descriptor returned is ours.
        let fd = check(unsafe {
            libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        })?;
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(Dir { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Opens the subdirectory `name`, refusing a symlink.
    pub fn child(&self, name: &str) -> io::Result<Dir> {
        let name = c_name(name.as_bytes())?;
        // SAFETY: as in `open`, relative to our descriptor.
        let fd = check(unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        })?;
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(Dir { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// The kind of entry `name`, or `None` if there is none.
    pub fn kind(&self, name: &str) -> io::Result<Option<Kind>> {
        Ok(self.entry(name)?.map(|(kind, _)| kind))
    }

    /// The kind and length of entry `name`, or `None` if there is none.
    pub fn entry(&self, name: &str) -> io::Result<Option<(Kind, u64)>> {
        let name = c_name(name.as_bytes())?;
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstatat fills `stat`; AT_SYMLINK_NOFOLLOW describes a link itself.
        let result = unsafe {
            libc::fstatat(self.fd.as_raw_fd(), name.as_ptr(), stat.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW)
        };
        if result != 0 {
            let error = io::Error::last_os_error();
            return if error.kind() == io::ErrorKind::NotFound { Ok(None) } else { Err(error) };
        }
        // SAFETY: filled by the successful call.
        let stat = unsafe { stat.assume_init() };
        let kind = match stat.st_mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            _ => Kind::Other,
        };
        Ok(Some((kind, stat.st_size.max(0) as u64)))
    }

    /// Bytes of the regular files in the directory.
    pub fn files_bytes(&self) -> u64 {
        let names = self.names().unwrap_or_default();
        names
            .iter()
            .filter_map(|name| self.entry(name).ok().flatten())
            .filter(|(kind, _)| *kind == Kind::File)
            .map(|(_, len)| len)
            .sum()
    }

    /// Reads the regular file `name` whole, refusing one larger than `limit` bytes.
    pub fn read_bounded(&self, name: &str, limit: u64) -> io::Result<Vec<u8>> {
        read_file_bounded(self.open_file(name)?, Path::new(name), limit)
    }

    /// Flushes the directory's entries (names created or removed) to disk.
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: fsync on our descriptor.
        check(unsafe { libc::fsync(self.fd.as_raw_fd()) }).map(drop)
    }

    /// The names in the directory (read through the descriptor, not the path).
    pub fn names(&self) -> io::Result<Vec<String>> {
        let listing = std::fs::read_dir(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))?;
        Ok(listing.filter_map(|e| e.ok()?.file_name().to_str().map(str::to_string)).collect())
    }

    /// Gives the directory itself to `uid:gid`.
    pub fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        // SAFETY: fchown on our descriptor.
        check(unsafe { libc::fchown(self.fd.as_raw_fd(), uid, gid) }).map(drop)
    }

    /// Sets the directory's mode bits.
    pub fn chmod(&self, mode: u32) -> io::Result<()> {
        // SAFETY: fchmod on our descriptor.
        check(unsafe { libc::fchmod(self.fd.as_raw_fd(), mode) }).map(drop)
    }

    /// Gives the regular file `name` to `uid:gid`; anything else (a symlink, a FIFO, a
    /// device, a directory, nothing, a file with another link elsewhere: a hard link to a
    /// file outside the ring) is left alone. Returns whether it was handed over.
    pub fn chown_file(&self, name: &str, uid: u32, gid: u32) -> io::Result<bool> {
        let c = c_name(name.as_bytes())?;
        // An O_PATH descriptor opens nothing (no device side effect) and pins the inode
        // that the check and the chown both see.
        // SAFETY: openat relative to our descriptor; the result is ours.
        let fd = unsafe {
            libc::openat(self.fd.as_raw_fd(), c.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        };
        if fd < 0 {
            let error = io::Error::last_os_error();
            return if error.kind() == io::ErrorKind::NotFound { Ok(false) } else { Err(error) };
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat on an O_PATH descriptor is allowed and fills `stat`.
        check(unsafe { libc::fstat(fd.as_raw_fd(), stat.as_mut_ptr()) })?;
        // SAFETY: filled by the successful call.
        let stat = unsafe { stat.assume_init() };
        if stat.st_mode & libc::S_IFMT != libc::S_IFREG || stat.st_nlink != 1 {
            return Ok(false);
        }
        let empty = c"";
        // SAFETY: AT_EMPTY_PATH acts on the O_PATH descriptor itself.
        check(unsafe { libc::fchownat(fd.as_raw_fd(), empty.as_ptr(), uid, gid, libc::AT_EMPTY_PATH) })?;
        Ok(true)
    }

    /// Removes the entry `name` if it is a regular file or a symlink (the link, never
    /// what it points to); a missing one is fine.
    pub fn remove_file(&self, name: &str) -> io::Result<()> {
        if !matches!(self.kind(name)?, Some(Kind::File) | Some(Kind::Other)) {
            return Ok(());
        }
        let c = c_name(name.as_bytes())?;
        // SAFETY: unlinkat relative to our descriptor never follows a link.
        match check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) }) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes the empty subdirectory `name`; a missing or non-empty one is fine.
    pub fn remove_dir(&self, name: &str) -> io::Result<()> {
        let c = c_name(name.as_bytes())?;
        // SAFETY: unlinkat(AT_REMOVEDIR) relative to our descriptor.
        match check(unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) }) {
            Err(e) if e.kind() != io::ErrorKind::NotFound && e.raw_os_error() != Some(libc::ENOTEMPTY) => {
                Err(e)
            }
            _ => Ok(()),
        }
    }

    /// Opens the regular file `name` for reading (see [`open_regular`]).
    pub fn open_file(&self, name: &str) -> io::Result<File> {
        let c = c_name(name.as_bytes())?;
        // SAFETY: openat relative to our descriptor; the result is ours.
        let fd = check(unsafe { libc::openat(self.fd.as_raw_fd(), c.as_ptr(), READ_FLAGS) })?;
        // SAFETY: a fresh descriptor nobody else owns.
        regular(unsafe { File::from_raw_fd(fd) }, Path::new(name))
    }
}

/// Read-only, no symlink at the last component, no blocking on a FIFO, no controlling tty.
const READ_FLAGS: libc::c_int =
    libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;

/// Opens `path` for reading if it is a regular file: a symlink at its last component, a
/// FIFO, a socket or a device is refused at once (`InvalidInput`), never waited on or read.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let c = c_name(path.as_os_str().as_bytes())?;
    // SAFETY: a valid path; the descriptor returned is ours.
    let fd = check(unsafe { libc::open(c.as_ptr(), READ_FLAGS) }).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            io::Error::new(io::ErrorKind::InvalidInput, "a symbolic link: ringcap never follows one here")
        } else {
            e
        }
    })?;
    // SAFETY: a fresh descriptor nobody else owns.
    regular(unsafe { File::from_raw_fd(fd) }, path)
}

fn regular(file: File, path: &Path) -> io::Result<File> {
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// How [`open_for_writing`] opens a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// From its start, what it held gone.
    Replace,
    /// At its end.
    Append,
}

/// Opens (creating it if missing) the regular file `path` for writing: a symlink at its
/// last component is refused and a planted FIFO neither blocks nor is written, so what
/// ringcap writes lands only in a file of its own directory.
pub fn open_for_writing(path: &Path, how: Write) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    match how {
        Write::Replace => options.write(true).truncate(true),
        Write::Append => options.append(true),
    };
    let file = options
        .create(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a symbolic link: ringcap never writes through one",
                )
            } else {
                e
            }
        })?;
    regular(file, path)
}

/// Reads the regular file `path` whole, refusing one larger than `limit` bytes.
pub fn read_bounded(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    read_file_bounded(open_regular(path)?, path, limit)
}

/// Reads `file`, opened by the caller (`path` names it), whole if it is a regular file of
/// at most `limit` bytes: for files outside the ring, where a symlink is the owner's own.
pub fn read_opened_bounded(file: File, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    read_file_bounded(regular(file, path)?, path, limit)
}

fn read_file_bounded(file: File, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let len = file.metadata()?.len();
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} holds {len} bytes, more than the {limit} such a file can", path.display()),
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} grew past {limit} bytes", path.display()),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("ringcap-nofollow-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn links_fifos_and_oversized_files_are_refused_and_never_followed() {
        let dir = scratch("refuse");
        let outside = dir.join("outside");
        std::fs::write(&outside, b"secret").unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("link")).unwrap();
        std::os::unix::fs::symlink(&dir, dir.join("dirlink")).unwrap();
        let fifo = c_name(dir.join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::fs::write(dir.join("big"), vec![0u8; 100]).unwrap();
        for refused in ["link", "fifo"] {
            let error = open_regular(&dir.join(refused)).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{refused}: {error}");
        }
        assert!(read_bounded(&dir.join("big"), 99).is_err());
        assert_eq!(read_bounded(&dir.join("big"), 100).unwrap().len(), 100);
        assert!(Dir::open(&dir.join("dirlink")).is_err(), "a symlinked directory is not opened");
        let opened = Dir::open(&dir).unwrap();
        assert!(opened.child("dirlink").is_err());
        assert_eq!(opened.kind("link").unwrap(), Some(Kind::Other));
        assert_eq!(opened.kind("fifo").unwrap(), Some(Kind::Other));
        assert_eq!(opened.kind("big").unwrap(), Some(Kind::File));
        assert_eq!(opened.kind("none").unwrap(), None);
        // Handing over touches regular files only, never a link's target.
        let nobody = 65534;
        assert!(!opened.chown_file("link", nobody, nobody).unwrap());
        assert!(!opened.chown_file("fifo", nobody, nobody).unwrap());
        assert!(opened.chown_file("big", nobody, nobody).unwrap());
        std::fs::hard_link(&outside, dir.join("hard")).unwrap();
        assert!(!opened.chown_file("hard", nobody, nobody).unwrap(), "a hard link to a file outside");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&outside).unwrap().uid(), 0);
        opened.remove_file("link").unwrap();
        assert!(outside.exists(), "removing a link leaves its target");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
