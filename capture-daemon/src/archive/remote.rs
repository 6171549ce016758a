//! Reading the archive: `ringcap pull --from s3://BUCKET/PREFIX`.
//!
//! The archived data files are opened like the ring's: their index is fetched (a few
//! bytes a frame) and the frames a window and filter need are read by ranged requests, on
//! the pull's workers, so a pull reads from the archive what it would read from disk.
//! Every archived ring file and whole pin of a host is read, and a packet that several of
//! them hold (a pin is a copy of ring packets; pins may overlap) goes out once, in time
//! order with the rest. A pin is whole once its manifest is in the bucket; one without is
//! an upload still under way and is left out.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStoreExt};

use super::store::Archive;
use super::{ArchiveError, PIN_MANIFEST};
use crate::retrieve::pull::PullReport;
use crate::retrieve::window::Window;
use crate::storage::frames::{ByteSource, DataFile};
use crate::storage::index::parse_index;
use crate::storage::{data_stem, is_data_file};

/// An archived object read by ranges.
struct RemoteObject {
    archive: Arc<Archive>,
    key: ObjectPath,
}

impl ByteSource for RemoteObject {
    fn read_at(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let bytes =
            self.archive.block_on(self.archive.store.get_range(&self.key, offset..offset + len)).map_err(
                |e| std::io::Error::other(ArchiveError::from_store(&self.archive.target, e).to_string()),
            )?;
        if bytes.len() as u64 != len {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the archive sent a short range",
            ));
        }
        Ok(bytes.to_vec())
    }
}

/// The archived objects of one host.
#[derive(Default)]
struct Host {
    /// Ring files: data file name -> object.
    ring: BTreeMap<String, ObjectMeta>,
    /// Pins: name -> file name -> object.
    pins: BTreeMap<String, BTreeMap<String, ObjectMeta>>,
}

/// Lists the archive under its prefix and opens the data files that may hold packets of
/// `window`; what cannot be opened is counted in the report.
pub fn open_archived(
    archive: &Arc<Archive>,
    window: Window,
) -> Result<(Vec<DataFile>, PullReport), ArchiveError> {
    let target = &archive.target;
    let objects: Vec<ObjectMeta> = archive.block_on(async {
        let mut listing = archive.store.list(target.prefix_path().as_ref());
        let mut objects = Vec::new();
        while let Some(object) = listing.next().await {
            objects.push(object.map_err(|e| ArchiveError::from_store(target, e))?);
        }
        Ok::<_, ArchiveError>(objects)
    })?;
    let mut hosts: BTreeMap<String, Host> = BTreeMap::new();
    for object in objects {
        let parts: Vec<&str> = object.location.as_ref().split('/').collect();
        match parts[..] {
            [.., host, "ring", file] => {
                let file = file.to_string();
                hosts.entry(host.to_string()).or_default().ring.insert(file, object);
            }
            [.., host, "pins", pin, file] => {
                let (pin, file) = (pin.to_string(), file.to_string());
                hosts.entry(host.to_string()).or_default().pins.entry(pin).or_default().insert(file, object);
            }
            _ => {}
        }
    }
    let mut report = PullReport::default();
    let mut files = Vec::new();
    for (origin, (host, objects)) in hosts.iter().enumerate() {
        // (data object, index object) pairs to open: the ring files and the whole pins. A
        // pin holds copies of packets that ring files may hold too (and the ring file being
        // written when the pin was made is archived only once it is closed, if at all): the
        // pull delivers each packet of the host once.
        let mut chosen: Vec<(&ObjectMeta, Option<&ObjectMeta>)> = Vec::new();
        for (name, data) in objects.ring.iter().filter(|(name, _)| is_data_file(name)) {
            let index = data_stem(name).and_then(|stem| objects.ring.get(&format!("{stem}.idx")));
            chosen.push((data, index));
        }
        for (pin, pin_objects) in &objects.pins {
            let Some(manifest) = pin_objects.get(PIN_MANIFEST) else {
                report.warnings.push(format!("{host}: pin {pin} is still being uploaded: left out"));
                continue;
            };
            let manifest = fetch_json(archive, &manifest.location)?;
            let first = manifest["first_packet_ns"].as_u64().unwrap_or(0);
            let last = manifest["last_packet_ns"].as_u64().unwrap_or(u64::MAX);
            if !window.overlaps(first, last) {
                continue;
            }
            let Some(data) = manifest["data"].as_str().and_then(|name| pin_objects.get(name)) else {
                report.unreadable(&format!("{target}/{host}/pins/{pin}"), &"its data file is missing");
                continue;
            };
            let index = manifest["data"]
                .as_str()
                .and_then(data_stem)
                .and_then(|s| pin_objects.get(&format!("{s}.idx")));
            chosen.push((data, index));
        }
        for (data, index) in chosen {
            let name = PathBuf::from(format!("s3://{}/{}", target.bucket, data.location));
            let index = match index {
                Some(index) => fetch(archive, &index.location)
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .and_then(|bytes| parse_index(&bytes)),
                None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no index in the archive")),
            };
            let source = Box::new(RemoteObject { archive: Arc::clone(archive), key: data.location.clone() });
            match DataFile::from_source(&name, source, data.size, index) {
                Ok(mut file) => {
                    file.origin = origin;
                    files.push(file);
                }
                Err(e) => report.unreadable(&name.display(), &e),
            }
        }
    }
    Ok((files, report))
}

/// A whole object's bytes.
fn fetch(archive: &Archive, key: &ObjectPath) -> Result<Vec<u8>, ArchiveError> {
    archive
        .block_on(async { archive.store.get(key).await?.bytes().await })
        .map(|bytes| bytes.to_vec())
        .map_err(|e| ArchiveError::from_store(&archive.target, e))
}

fn fetch_json(archive: &Archive, key: &ObjectPath) -> Result<serde_json::Value, ArchiveError> {
    let bytes = fetch(archive, key)?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ArchiveError::Other { target: archive.target.to_string(), why: format!("{key}: {e}") })
}
