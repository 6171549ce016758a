//! Dropping root once capture is up (`-Z USER`, as tcpdump does). Loading and attaching
//! the programs, creating the rings and AF_XDP sockets and binding the API need
//! privileges; everything after works on descriptors already open (maps, rings,
//! sockets, BPF links, whose closing detaches the programs) or in the ring directory,
//! so the process keeps no capability at all.
use std::ffi::CString;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Why privileges could not be dropped; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("-Z {0}: no such user; create one (useradd --system {0}) or name another")]
    NoSuchUser(String),
    #[error("--group {0}: no such group; create one (groupadd --system {0}) or name another")]
    NoSuchGroup(String),
    #[error("-Z {user}: {dir} is not writable by {user}; chown {user} {dir}, or pick another --dir")]
    DirNotWritable { user: String, dir: String },
    #[error(
        "-Z {user}: {user} cannot reach {dir}: it may not enter {ancestor}; give it search permission \
         (chmod o+x {ancestor}) or pick another --dir"
    )]
    DirNotReachable { user: String, dir: String, ancestor: String },
    #[error("-Z {user}: dropping privileges failed at {step}: {source}")]
    Drop {
        user: String,
        step: &'static str,
        #[source]
        source: io::Error,
    },
}

/// A group that may read the ring (`--group`): the directory is given to it, setgid, so
/// every file ringcap creates there is the group's, readable by it and by no one else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    pub name: String,
    pub gid: u32,
}

impl Group {
    /// Looks `name` up in the group database.
    pub fn lookup(name: &str) -> Result<Self, PrivilegeError> {
        // SAFETY: getgrnam_r's signature, as `lookup_entry` calls it.
        let entry = lookup_entry(name, |n, e, b, l, f| unsafe { libc::getgrnam_r(n, e, b, l, f) });
        let entry: libc::group = entry.ok_or_else(|| PrivilegeError::NoSuchGroup(name.to_string()))?;
        Ok(Group { name: name.to_string(), gid: entry.gr_gid })
    }
}

/// An entry of a system database (`getpwnam_r`, `getgrnam_r`: `lookup`) by name; only its
/// numbers may be read (its strings pointed into a buffer that is gone).
fn lookup_entry<T>(
    name: &str,
    lookup: impl FnOnce(*const libc::c_char, *mut T, *mut libc::c_char, usize, *mut *mut T) -> libc::c_int,
) -> Option<T> {
    let c_name = CString::new(name).ok()?;
    let mut entry = std::mem::MaybeUninit::<T>::uninit();
    let mut buffer = vec![0 as libc::c_char; 64 * 1024];
    let mut found: *mut T = std::ptr::null_mut();
    let status = lookup(c_name.as_ptr(), entry.as_mut_ptr(), buffer.as_mut_ptr(), buffer.len(), &mut found);
    if status != 0 || found.is_null() {
        return None;
    }
    // SAFETY: the lookup filled `entry` (found points to it).
    Some(unsafe { entry.assume_init() })
}

/// An unprivileged user to run as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// Looks `name` up in the user database.
    pub fn lookup(name: &str) -> Result<Self, PrivilegeError> {
        // SAFETY: getpwnam_r's signature, as `lookup_entry` calls it.
        let entry = lookup_entry(name, |n, e, b, l, f| unsafe { libc::getpwnam_r(n, e, b, l, f) });
        let entry: libc::passwd = entry.ok_or_else(|| PrivilegeError::NoSuchUser(name.to_string()))?;
        Ok(User { name: name.to_string(), uid: entry.pw_uid, gid: entry.pw_gid })
    }

    /// Refuses a ring directory the user could not create files in (checked before
    /// anything is loaded, so a start that cannot work changes nothing). Whether the user
    /// can get to it is [`Self::check_reachable`]'s, asked before the directory is made.
    pub fn check_writable(&self, dir: &Path) -> Result<(), PrivilegeError> {
        let refused =
            || PrivilegeError::DirNotWritable { user: self.name.clone(), dir: dir.display().to_string() };
        let meta = std::fs::metadata(dir).map_err(|_| refused())?;
        if self.may(&meta, 0o3) {
            Ok(())
        } else {
            Err(refused())
        }
    }

    /// Refuses `path` if the user could not get to it: every directory above it, as far as
    /// they exist, must let the user search it.
    pub fn check_reachable(&self, path: &Path) -> Result<(), PrivilegeError> {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        for ancestor in absolute.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(ancestor) else { continue };
            if !self.may(&meta, 0o1) {
                return Err(PrivilegeError::DirNotReachable {
                    user: self.name.clone(),
                    dir: path.display().to_string(),
                    ancestor: ancestor.display().to_string(),
                });
            }
        }
        Ok(())
    }

    /// Whether the user, with its own group only (as after [`Self::become_it`]), has the
    /// permission bits `want` (`0o4` read, `0o2` write, `0o1` search) on a file.
    fn may(&self, meta: &std::fs::Metadata, want: u32) -> bool {
        let shift = if meta.uid() == self.uid {
            6
        } else if meta.gid() == self.gid {
            3
        } else {
            0
        };
        (meta.mode() >> shift) & want == want
    }

    /// Becomes the user for good: no supplementary groups, the user's group and user id
    /// (real, effective and saved, in every thread), no capabilities left, and no way
    /// back (`no_new_privs`). Started as the user already (systemd's `User=` with
    /// `AmbientCapabilities=`), it only gives up the capabilities.
    pub fn become_it(&self) -> Result<(), PrivilegeError> {
        let step = |step: &'static str, result: libc::c_int| {
            if result == 0 {
                Ok(())
            } else {
                Err(PrivilegeError::Drop {
                    user: self.name.clone(),
                    step,
                    source: io::Error::last_os_error(),
                })
            }
        };
        // SAFETY: plain system calls with valid arguments; glibc applies the id changes
        // to every thread of the process.
        unsafe {
            if (libc::getuid(), libc::getgid()) != (self.uid, self.gid) {
                step("setgroups", libc::setgroups(1, &self.gid))?;
                step("setresgid", libc::setresgid(self.gid, self.gid, self.gid))?;
                step("setresuid", libc::setresuid(self.uid, self.uid, self.uid))?;
            }
        }
        lock_down_every_thread().map_err(|source| PrivilegeError::Drop {
            user: self.name.clone(),
            step: "clearing capabilities",
            source,
        })?;
        // SAFETY: as above.
        if self.uid != 0 && unsafe { libc::setuid(0) } == 0 {
            return Err(PrivilegeError::Drop {
                user: self.name.clone(),
                step: "verifying",
                source: io::Error::other("root could be regained"),
            });
        }
        Ok(())
    }
}

/// Empties the calling thread's capability sets (ambient, effective, permitted,
/// inheritable) and sets its `no_new_privs`; 0 on success. Async-signal-safe: plain
/// system calls.
fn lock_down_thread() -> libc::c_int {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let header = Header { version: VERSION_3, pid: 0 };
    let data = [Data::default(); 2];
    // SAFETY: prctl takes plain integers; capset reads a version-3 header and two data words.
    unsafe {
        let ambient = libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
        let sets = libc::syscall(libc::SYS_capset, &header, data.as_ptr()) as libc::c_int;
        let no_new_privs = libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        ambient | sets | no_new_privs
    }
}

/// Threads of this process yet to clear their capabilities, and how many failed.
static CLEARING: AtomicUsize = AtomicUsize::new(0);
static CLEAR_FAILED: AtomicUsize = AtomicUsize::new(0);

extern "C" fn clear_on_signal(_signal: libc::c_int) {
    if lock_down_thread() != 0 {
        CLEAR_FAILED.fetch_add(1, Ordering::SeqCst);
    }
    CLEARING.fetch_sub(1, Ordering::SeqCst);
}

/// capset(2) and `no_new_privs` act on the calling thread only: every other thread of
/// the process (the API's, the compression pool's) is signalled to lock itself down, as
/// glibc does for setuid(2). Threads made later inherit it all.
fn lock_down_every_thread() -> io::Result<()> {
    if lock_down_thread() != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getpid/gettid take no arguments.
    let (pid, me) = unsafe { (libc::getpid(), libc::gettid()) };
    let signal = libc::SIGRTMIN();
    // SAFETY: installs a handler that only makes system calls and atomic updates; the
    // previous handler is restored below.
    let previous = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = clear_on_signal as extern "C" fn(libc::c_int) as usize;
        action.sa_flags = libc::SA_RESTART;
        let mut previous: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, &action, &mut previous) != 0 {
            return Err(io::Error::last_os_error());
        }
        previous
    };
    CLEAR_FAILED.store(0, Ordering::SeqCst);
    CLEARING.store(0, Ordering::SeqCst);
    // A thread that a not yet cleared thread starts meanwhile inherits its capabilities:
    // the threads are listed again until a listing finds none that was not signalled.
    let mut signalled = std::collections::BTreeSet::from([me]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let new: Vec<libc::pid_t> = std::fs::read_dir("/proc/self/task")?
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|tid| !signalled.contains(tid))
            .collect();
        if new.is_empty() {
            break;
        }
        if std::time::Instant::now() >= deadline {
            // Counted as threads that did not answer.
            CLEARING.fetch_add(new.len(), Ordering::SeqCst);
            break;
        }
        for tid in new {
            signalled.insert(tid);
            CLEARING.fetch_add(1, Ordering::SeqCst);
            // SAFETY: signals one thread of this process.
            if unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) } != 0 {
                // Gone meanwhile: nothing to clear.
                CLEARING.fetch_sub(1, Ordering::SeqCst);
            }
        }
        while CLEARING.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
    // SAFETY: restores the handler saved above.
    unsafe { libc::sigaction(signal, &previous, std::ptr::null_mut()) };
    match (CLEARING.load(Ordering::SeqCst), CLEAR_FAILED.load(Ordering::SeqCst)) {
        (0, 0) => Ok(()),
        (0, failed) => Err(io::Error::other(format!("{failed} threads could not clear theirs"))),
        (waiting, _) => Err(io::Error::other(format!("{waiting} threads did not answer"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_looked_up_and_unknown_ones_refused() {
        let root = User::lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let error = User::lookup("no-such-user-ringcap").unwrap_err();
        assert!(error.to_string().contains("useradd"), "{error}");
    }
}
