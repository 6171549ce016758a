//! A pin's directory on disk: opened, read, written and removed by descriptor, never
//! through a symlink, and only the files ringcap writes there.
use std::io::Read;

use sha2::Digest;

use super::*;

/// The pins' directory of the ring in `ring_dir`, created if missing, opened without
/// following a symlink (one planted there is refused, with what to do).
pub(super) fn open_pins_dir(ring_dir: &Path) -> std::io::Result<Dir> {
    let ring = Dir::open(ring_dir)?;
    match ring.kind(PINS_DIR)? {
        Some(Kind::Dir) => {}
        None => match std::fs::create_dir(ring_dir.join(PINS_DIR)) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        },
        Some(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a directory (a symbolic link?): ringcap never follows one; remove it",
                    ring_dir.join(PINS_DIR).display()
                ),
            ))
        }
    }
    ring.child(PINS_DIR)
}

/// A pin's manifest.
pub fn read_manifest(pin_dir: &Path) -> std::io::Result<PinManifest> {
    Ok(serde_json::from_slice(&nofollow::read_bounded(&pin_dir.join(PIN_MANIFEST), MAX_RECORD_BYTES)?)?)
}

/// A record of a pin's directory (its manifest, its archive record); one that does not
/// parse is `InvalidData`.
pub(super) fn read_record<T: serde::de::DeserializeOwned>(pin: &Dir, name: &str) -> std::io::Result<T> {
    Ok(serde_json::from_slice(&pin.read_bounded(name, MAX_RECORD_BYTES)?)?)
}

/// The file of a pin's [`ArchiveRecord`].
pub const ARCHIVED_RECORD: &str = "archived.json";

/// Removes the pin directory `name` of `pins`: only the files ringcap writes there, then
/// the directory if that empties it. Never follows a symlink.
pub(super) fn remove_pin_dir(pins: &Dir, name: &str) -> std::io::Result<()> {
    match pins.child(name) {
        Ok(pin) => remove_pin_files(&pin, &[])?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        // A symlink or a file posing as a pin: not ringcap's, left alone.
        Err(_) => return Ok(()),
    }
    pins.remove_dir(name)
}

/// Removes an archived pin's data, keeping its manifest and the record of the archive.
pub(super) fn release_local_copy(pin: &Dir) -> std::io::Result<()> {
    remove_pin_files(pin, &[PIN_MANIFEST, ARCHIVED_RECORD])
}

/// Removes the files ringcap writes in a pin's directory (the data files its manifest
/// lists, their sidecars, the pin manifest, the archive record) but those in `keep`.
pub(super) fn remove_pin_files(pin: &Dir, keep: &[&str]) -> std::io::Result<()> {
    let ours = |name: &str| {
        crate::storage::is_data_file(name)
            || crate::storage::index::SIDECAR_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
            || name == PIN_MANIFEST
            || name == ARCHIVED_RECORD
            || name == crate::storage::manifest::MANIFEST_NAME
            || name == format!(".{}.tmp", crate::storage::manifest::MANIFEST_NAME)
    };
    for name in pin.names()? {
        if ours(&name) && !keep.contains(&name.as_str()) && pin.kind(&name)? == Some(Kind::File) {
            pin.remove_file(&name)?;
        }
    }
    Ok(())
}

/// A file's length and SHA-256 (hex).
pub fn file_digest(path: &Path) -> std::io::Result<(u64, String)> {
    digest(nofollow::open_regular(path)?)
}

/// The length and SHA-256 (hex) of what `file` holds from where it is read on.
pub fn digest(mut file: std::fs::File) -> std::io::Result<(u64, String)> {
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    Ok((total, hex(&hasher.finalize())))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    // A symlink planted in the pin's place is refused, never written through.
    let mut file = nofollow::open_for_writing(path, nofollow::Write::Replace)?;
    file.write_all(bytes)?;
    file.sync_all()
}
