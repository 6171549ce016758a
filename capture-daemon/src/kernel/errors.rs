//! Why the kernel side could not be set up, told from the errors aya and the kernel give.
use super::*;

/// Why the kernel side could not be set up; each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("interface {0} not found; `ip link` lists the interfaces")]
    NoSuchInterface(String),
    #[error(
        "permission denied loading eBPF programs: run ringcap as root \
         (or with CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)"
    )]
    PermissionDenied,
    #[error(
        "another XDP program is already attached to {0}; stop the tool that owns it \
         (`ip link show dev {0}` shows it, `ip link set dev {0} xdp off` removes it)"
    )]
    AlreadyAttached(String),
    #[error("the driver of {iface} refused XDP in {mode} mode: {source}; try --xdp-mode generic")]
    XdpRefused {
        iface: String,
        mode: AttachMode,
        #[source]
        source: io::Error,
    },
    #[error("cannot attach the TC program to {iface}: {reason}")]
    TcRefused { iface: String, reason: String },
    #[error("ring buffer size {0} bytes is invalid: it must be a power of two of at least one page")]
    BadRingSize(u32),
    #[error("loading ringcap's eBPF programs failed: {0}")]
    Load(String),
    #[error("cannot update the kernel's {map} map: {reason}")]
    MapUpdate { map: &'static str, reason: String },
}

/// The first OS error in an error's source chain.
pub(super) fn os_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.raw_os_error().is_some() {
                return Some(io);
            }
        }
        current = e.source();
    }
    None
}

pub(super) fn classify_load_error(error: &(dyn std::error::Error + 'static)) -> KernelError {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    match os_error(error).and_then(|e| e.raw_os_error()) {
        // As root, EACCES is the verifier rejecting a program: its log says why.
        Some(libc::EPERM) | Some(libc::EACCES) if !root => KernelError::PermissionDenied,
        _ => KernelError::Load(error_chain(error)),
    }
}

pub(super) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut current = error.source();
    while let Some(e) = current {
        text.push_str(": ");
        text.push_str(&e.to_string());
        current = e.source();
    }
    text
}
