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
use super::ArchiveError;
use crate::pins::PIN_MANIFEST;
use crate::records::PinManifest;
use crate::retrieve::pull::PullReport;
use crate::retrieve::window::Window;
use crate::storage::frames::{ByteSource, DataFile};
use crate::storage::index::{parse_index, MAX_INDEX_BYTES};
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
    /// Pins: name -> key below the pin (`FILE`, or `GENERATION/FILE`) -> object.
    pins: BTreeMap<String, BTreeMap<String, ObjectMeta>>,
}

/// What an archive key below the prefix names: exactly one of the layout's shapes, so no
/// name can pose as another kind (a pin named `ring` is a pin).
#[derive(Debug, PartialEq, Eq)]
enum ArchivedKey<'a> {
    /// `HOST/ring/FILE`
    Ring { host: &'a str, file: &'a str },
    /// `HOST/pins/NAME/FILE` or `HOST/pins/NAME/GENERATION/FILE`
    Pin { host: &'a str, pin: &'a str, file: String },
}

fn parse_key<'a>(prefix: &str, key: &'a str) -> Option<ArchivedKey<'a>> {
    let rest = if prefix.is_empty() { key } else { key.strip_prefix(prefix)?.strip_prefix('/')? };
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return None;
    }
    match parts[..] {
        [host, "ring", file] => Some(ArchivedKey::Ring { host, file }),
        [host, "pins", pin, file] => Some(ArchivedKey::Pin { host, pin, file: file.to_string() }),
        [host, "pins", pin, generation, file] => {
            Some(ArchivedKey::Pin { host, pin, file: format!("{generation}/{file}") })
        }
        _ => None,
    }
}

/// The largest pin manifest read from the archive.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// Lists the archive under its prefix and opens the data files that may hold packets of
/// `window`; what cannot be read (a damaged or hostile object, a manifest that does not
/// parse) is skipped with a warning and counted in the report, and the rest delivered.
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
    let prefix = target.prefix_path().map(|p| p.to_string()).unwrap_or_default();
    let mut hosts: BTreeMap<String, Host> = BTreeMap::new();
    for object in objects {
        let key = object.location.to_string();
        match parse_key(&prefix, &key) {
            Some(ArchivedKey::Ring { host, file }) => {
                hosts.entry(host.to_string()).or_default().ring.insert(file.to_string(), object);
            }
            Some(ArchivedKey::Pin { host, pin, file }) => {
                let host = hosts.entry(host.to_string()).or_default();
                host.pins.entry(pin.to_string()).or_default().insert(file, object);
            }
            None => {}
        }
    }
    let mut report = PullReport::default();
    let mut files = Vec::new();
    for (origin, (host, objects)) in hosts.iter().enumerate() {
        // (data object, index object, the time its packets span if known) to open: the
        // ring files and the whole pins. A pin holds copies of packets that ring files may
        // hold too (and the ring file being written when the pin was made is archived only
        // once it is closed, if at all): the pull delivers each packet of the host once.
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
            let shown = format!("s3://{}/{}", target.bucket, manifest.location);
            let manifest = match fetch_manifest(archive, manifest) {
                Ok(manifest) => manifest,
                Err(why) => {
                    report.unreadable(&shown, &why);
                    continue;
                }
            };
            if !window.overlaps(manifest.first_packet_ns, manifest.last_packet_ns) {
                continue;
            }
            // The files of the generation the manifest names (pins made before generations
            // keep theirs beside the manifest).
            let below = |file: &str| match manifest.generation {
                Some(_) => pin_objects.get(&format!("{}/{file}", manifest.archive_generation())),
                None => pin_objects.get(file),
            };
            let data_name =
                Some(manifest.data.as_str()).filter(|name| is_data_file(name) && !name.contains('/'));
            let Some(data) = data_name.and_then(below) else {
                report.unreadable(&format!("{target}/{host}/pins/{pin}"), &"its data file is missing");
                continue;
            };
            let index = data_name.and_then(data_stem).and_then(|s| below(&format!("{s}.idx")));
            chosen.push((data, index));
        }
        for (data, index) in chosen {
            let name = PathBuf::from(format!("s3://{}/{}", target.bucket, data.location));
            let index = match index {
                Some(index) if index.size > MAX_INDEX_BYTES => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("its index holds {} bytes, more than an index can", index.size),
                )),
                Some(index) => fetch(archive, &index.location)
                    .map_err(|e| std::io::Error::other(e.to_string()))
                    .and_then(|bytes| parse_index(&bytes)),
                None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no index in the archive")),
            };
            // A file whose whole index lies outside the window is not opened at all.
            if let Ok(entries) = &index {
                let covers =
                    entries.last().is_some_and(|(e, _)| e.offset.checked_add(e.len) == Some(data.size));
                let mut with_packets = entries.iter().map(|(e, _)| e).filter(|e| e.packets > 0);
                let outside = with_packets.all(|e| !window.overlaps(e.earliest_ns, e.latest_ns));
                if covers && outside {
                    continue;
                }
            }
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

/// A pin manifest, refused if it is larger than a manifest can be or does not parse.
fn fetch_manifest(archive: &Archive, object: &ObjectMeta) -> Result<PinManifest, String> {
    if object.size > MAX_MANIFEST_BYTES {
        return Err(format!("{} bytes: not a pin manifest", object.size));
    }
    let bytes = fetch(archive, &object.location).map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("not a pin manifest ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_by_their_whole_shape() {
        use ArchivedKey::*;
        assert_eq!(
            parse_key("fleet", "fleet/gw1/ring/a.pcap.zst"),
            Some(Ring { host: "gw1", file: "a.pcap.zst" })
        );
        // A pin named `ring` is a pin of gw1, not ring files of a host called "pins".
        assert_eq!(
            parse_key("fleet", "fleet/gw1/pins/ring/manifest.json"),
            Some(Pin { host: "gw1", pin: "ring", file: "manifest.json".into() })
        );
        assert_eq!(
            parse_key("fleet", "fleet/gw1/pins/x/123/x.pcap.zst"),
            Some(Pin { host: "gw1", pin: "x", file: "123/x.pcap.zst".into() })
        );
        assert_eq!(parse_key("", "gw1/ring/a.pcap"), Some(Ring { host: "gw1", file: "a.pcap" }));
        for other in
            ["fleet/gw1/owner.json", "fleetx/gw1/ring/a.pcap", "fleet/a/b/gw1/ring/a.pcap", "fleet//ring/a"]
        {
            assert_eq!(parse_key("fleet", other), None, "{other}");
        }
    }
}
