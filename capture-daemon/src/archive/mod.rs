//! Beyond one box: the archive in S3-compatible object storage.
//!
//! Pins themselves ([`crate::pins`]) are local: the archive uploads and reads them.
//! - [`upload`]: with `--archive s3://BUCKET/PREFIX`, a thread of its own uploads each pin
//!   (data file, index, statistics, then the manifest that says it is whole) and, with
//!   `--archive-ring`, every closed ring file, within `--archive-rate`; it retries with
//!   backoff, resumes after a restart and counts every failure.
//! - [`remote`]: `ringcap pull --from s3://...` opens the archived data files with their
//!   indexes and reads only the frames a window and filter need, by ranged requests, with
//!   the same pull as the ring's.
//!
//! Layout in the bucket, under the prefix, per host (the gateway's host name):
//! `HOST/pins/NAME/{NAME.pcap.zst, NAME.idx, NAME.stats.json, manifest.json}` and
//! `HOST/ring/{STEM.pcap.zst, STEM.idx, STEM.stats.json}`.
pub mod remote;
pub mod store;
pub mod upload;

use std::path::PathBuf;

use store::ArchiveTarget;

/// Why the archive cannot be used; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("{url:?} is not an archive address: {why} (use s3://BUCKET/PREFIX)")]
    BadUrl { url: String, why: String },
    #[error("no credentials for {target}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or give --archive-credentials FILE")]
    NoCredentials { target: String },
    #[error("cannot read the credentials file {path}: {why}")]
    Credentials { path: PathBuf, why: String },
    #[error("cannot set up the client for {target}: {why}")]
    Setup { target: String, why: String },
    #[error("{target} refused the credentials ({why}): check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or --archive-credentials) and the key's permissions on the bucket")]
    Refused { target: String, why: String },
    #[error("{target}: no such bucket ({why}): create it, or fix the bucket in --archive")]
    NoBucket { target: String, why: String },
    #[error("cannot reach {target}: {why}: check --archive-endpoint (or AWS_ENDPOINT_URL) and that the server runs")]
    Unreachable { target: String, why: String },
    #[error("{target}: {why}")]
    Other { target: String, why: String },
    #[error("--archive-host {0:?}: use 1-64 letters, digits, '-', '_' or '.', not starting with '.'")]
    BadHost(String),
}

impl ArchiveError {
    /// Sorts a client error into what the user must fix.
    pub fn from_store(target: &ArchiveTarget, error: object_store::Error) -> Self {
        let target = target.to_string();
        let why = error.to_string();
        match error {
            object_store::Error::Unauthenticated { .. } | object_store::Error::PermissionDenied { .. } => {
                ArchiveError::Refused { target, why }
            }
            _ if why.contains("InvalidAccessKeyId")
                || why.contains("SignatureDoesNotMatch")
                || why.contains("AccessDenied")
                || why.contains("403 Forbidden") =>
            {
                ArchiveError::Refused { target, why }
            }
            _ if why.contains("NoSuchBucket") => ArchiveError::NoBucket { target, why },
            object_store::Error::NotFound { .. } => ArchiveError::NoBucket { target, why },
            _ if why.contains("error sending request")
                || why.contains("Connection refused")
                || why.contains("connect")
                || why.contains("timed out") =>
            {
                ArchiveError::Unreachable { target, why }
            }
            _ => ArchiveError::Other { target, why },
        }
    }

    /// The `kind` label of the failure counter in `/metrics`.
    pub fn kind(&self) -> &'static str {
        match self {
            ArchiveError::Refused { .. }
            | ArchiveError::NoCredentials { .. }
            | ArchiveError::Credentials { .. } => "auth",
            ArchiveError::NoBucket { .. } => "bucket",
            ArchiveError::Unreachable { .. } => "network",
            _ => "other",
        }
    }
}

/// This machine's host name: the archive keeps each gateway's objects apart.
pub fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: gethostname writes at most the buffer's length.
    let ok = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) } == 0;
    let name = if ok {
        let end = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
        String::from_utf8_lossy(&buffer[..end]).into_owned()
    } else {
        String::new()
    };
    let clean: String =
        name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')).collect();
    if clean.is_empty() {
        "localhost".into()
    } else {
        clean
    }
}

/// The name this gateway's objects are kept under in the archive (and its pins' manifests
/// name): `--archive-host`, else the host name, else (a host name that tells gateways
/// apart nothing, like `localhost`) `machine-` and the machine id.
pub fn gateway_name(named: Option<&str>) -> Result<String, ArchiveError> {
    if let Some(name) = named {
        let ok = (1..=64).contains(&name.len())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !name.starts_with('.');
        if !ok {
            return Err(ArchiveError::BadHost(name.to_string()));
        }
        return Ok(name.to_string());
    }
    let host = host_name();
    if host == "localhost" || host.starts_with("localhost.") {
        let id: String = upload::machine_id().chars().filter(char::is_ascii_alphanumeric).take(32).collect();
        return Ok(format!("machine-{id}"));
    }
    Ok(host)
}
