//! Disk limits: a byte budget for the ring and a floor of free space on its filesystem.
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::StorageError;

/// A size given in bytes or as a percentage of the filesystem (`--max-disk`, `--min-free`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DiskLimit {
    Bytes(u64),
    Percent(f64),
}

impl DiskLimit {
    /// Parses `10G`, `500M`, `1048576`, `20%` (K, M, G, T are powers of 1024).
    pub fn parse(text: &str) -> Result<Self, StorageError> {
        let bad = || {
            StorageError::BadLimit(format!(
                "{text:?} is not a size: use bytes (500M, 10G) or a percentage (20%)"
            ))
        };
        let text = text.trim();
        if let Some(percent) = text.strip_suffix('%') {
            let value: f64 = percent.trim().parse().map_err(|_| bad())?;
            if value.is_nan() || value <= 0.0 || value >= 100.0 {
                return Err(StorageError::BadLimit(format!("{text} is not a percentage between 0 and 100")));
            }
            return Ok(DiskLimit::Percent(value));
        }
        let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
            Some((at, _)) => text.split_at(at),
            None => (text, ""),
        };
        let scale: u64 = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
            "" => 1,
            "K" => 1 << 10,
            "M" => 1 << 20,
            "G" => 1 << 30,
            "T" => 1 << 40,
            _ => return Err(bad()),
        };
        let value: f64 = number.trim().parse().map_err(|_| bad())?;
        // Zero bytes is allowed: `--min-free 0` turns the free-space floor off.
        if value.is_nan() || value < 0.0 || value * scale as f64 > 1e18 {
            return Err(bad());
        }
        Ok(DiskLimit::Bytes((value * scale as f64) as u64))
    }

    /// The limit in bytes for a filesystem of `total` bytes.
    pub fn bytes(self, total: u64) -> u64 {
        match self {
            DiskLimit::Bytes(b) => b,
            DiskLimit::Percent(p) => (total as f64 * p / 100.0) as u64,
        }
    }
}

/// Size and free space of the filesystem holding `path`.
#[derive(Clone, Copy, Debug)]
pub struct FsSpace {
    pub total: u64,
    pub available: u64,
}

pub fn fs_space(path: &Path) -> std::io::Result<FsSpace> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: zeroed statvfs is a valid out-parameter; the path is NUL-terminated.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let unit = stat.f_frsize as u64;
    Ok(FsSpace { total: stat.f_blocks as u64 * unit, available: stat.f_bavail as u64 * unit })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_percentages() {
        assert_eq!(DiskLimit::parse("1048576").unwrap(), DiskLimit::Bytes(1 << 20));
        assert_eq!(DiskLimit::parse("10G").unwrap(), DiskLimit::Bytes(10 << 30));
        assert_eq!(DiskLimit::parse("1.5MiB").unwrap(), DiskLimit::Bytes(3 << 19));
        assert_eq!(DiskLimit::parse("20%").unwrap(), DiskLimit::Percent(20.0));
        assert_eq!(DiskLimit::Percent(25.0).bytes(1000), 250);
        assert_eq!(DiskLimit::parse("0").unwrap(), DiskLimit::Bytes(0));
        for bad in ["", "-5", "10X", "150%", "0%", "abc", "1e30"] {
            assert!(DiskLimit::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
