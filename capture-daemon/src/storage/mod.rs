//! Storage: the ring of rotated, compressed, crash-safe pcap files.
//!
//! Writing: [`ring::RingWriter`] (a sink) cuts the pcap stream into independent frames
//! ([`frames`]), appends each to the current file in one write, records it in the time
//! [`index`], rotates files on time and size ([`naming`] names them) and keeps the ring
//! within its file count and disk [`budget`]. Reading: [`frames::DataFile`] lists the
//! complete frames of a file, from its index or by scanning, and decodes them.
pub mod budget;
mod compress;
pub mod frames;
pub mod index;
pub mod manifest;
pub mod naming;
pub mod nofollow;
pub mod ring;
pub mod summary;

use std::path::PathBuf;

/// Why storage could not be set up or read; each message says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("bad file name template {template:?}: {why}")]
    BadTemplate { template: String, why: String },
    #[error("cannot use {dir} for the capture ring: {error}; create it or pick a writable --dir")]
    Dir { dir: PathBuf, error: std::io::Error },
    #[error("another ringcap run is writing {dir}: stop it, or give this one another --dir")]
    Busy { dir: PathBuf },
    #[error("{0}")]
    BadLimit(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a pcap file ringcap can read: {why}")]
    NotPcap { path: PathBuf, why: String },
}

impl StorageError {
    /// Whether the file was removed (by rotation, say) before it could be read.
    pub fn is_gone(&self) -> bool {
        matches!(self, StorageError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// How frames are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Plain pcap (`.pcap`).
    None,
    /// zstd frames at this level (`.pcap.zst`).
    Zstd(i32),
}

impl Compression {
    /// The extension of data files holding pcap or pcapng.
    pub fn extension(self, pcapng: bool) -> &'static str {
        match (self, pcapng) {
            (Compression::None, false) => ".pcap",
            (Compression::None, true) => ".pcapng",
            (Compression::Zstd(_), false) => ".pcap.zst",
            (Compression::Zstd(_), true) => ".pcapng.zst",
        }
    }
}

/// The extensions of the ring's data files.
const DATA_EXTENSIONS: [&str; 4] = [".pcap.zst", ".pcapng.zst", ".pcap", ".pcapng"];

/// The name of a data file without its extension; `None` if it is not a data file.
/// Names with control characters (a newline would split a line of the manifest into two
/// names) are never a data file of ringcap's.
pub fn data_stem(name: &str) -> Option<&str> {
    if name.chars().any(char::is_control) {
        return None;
    }
    DATA_EXTENSIONS.iter().find_map(|extension| name.strip_suffix(extension))
}

/// Whether a file name is one of the ring's data files.
pub fn is_data_file(name: &str) -> bool {
    data_stem(name).is_some()
}
