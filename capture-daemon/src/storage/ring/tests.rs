//! The ring writer alone, on scratch directories.
use super::*;
use crate::pcap::write_record;

fn config(dir: &Path, compression: Compression) -> RingConfig {
    RingConfig {
        snaplen: 2000,
        frame_age: Duration::from_secs(60),
        ..RingConfig::single_file(dir, NameTemplate::parse("t-%s").unwrap(), compression)
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringcap-ring-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A batch of 100-byte packets stamped at these nanoseconds.
fn batch(times_ns: &[u64]) -> Batch {
    let mut batch = Batch::empty(Vec::new());
    for (i, &ns) in times_ns.iter().enumerate() {
        write_record(&mut batch.records, Duration::from_nanos(ns), 100, &[i as u8; 100], 2000).unwrap();
        batch.count(ns);
    }
    batch
}

#[test]
fn the_index_keeps_the_earliest_and_latest_time_of_a_frame() {
    let dir = scratch("earliest");
    let mut ring = RingWriter::open(config(&dir, Compression::Zstd(1)), Arc::default()).unwrap();
    assert!(ring.current_path().is_none(), "nothing is created before the first write");
    // A late record (the reader writes those) after later ones.
    ring.write(&mut batch(&[5_000, 9_000, 2_000, 7_000])).unwrap();
    ring.finish().unwrap();
    let file = DataFile::open(ring.current_path().unwrap()).unwrap();
    let packet_frame = file.frames.iter().find(|f| f.packets > 0).unwrap();
    assert_eq!((packet_frame.earliest_ns, packet_frame.latest_ns), (2_000, 9_000));
    assert_eq!(file.time_range(), Some((2_000, 9_000)));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A batch cut as the reader cuts them (at --frame-bytes) is stored as one frame with
/// the bytes the reader wrote: the writer takes its buffer instead of copying it.
#[test]
fn a_batch_becomes_its_frame_without_a_copy() {
    let dir = scratch("one-copy");
    let config = RingConfig { frame_bytes: 4096, ..config(&dir, Compression::None) };
    let mut ring = RingWriter::open(config, Arc::default()).unwrap();
    let mut frame = batch(&(1..=40).collect::<Vec<_>>());
    assert!(frame.records.len() >= 4096);
    let (content, reader_buffer) = (frame.records.clone(), frame.records.as_ptr());
    ring.write(&mut frame).unwrap();
    assert_ne!(frame.records.as_ptr(), reader_buffer, "the writer took the reader's buffer");
    ring.finish().unwrap();
    let file = DataFile::open(ring.current_path().unwrap()).unwrap();
    let stored: Vec<_> = file.frames.iter().filter(|f| f.packets > 0).collect();
    assert_eq!(stored.len(), 1, "one batch, one frame");
    assert_eq!((stored[0].packets, stored[0].raw_len as usize), (40, content.len()));
    let bytes = std::fs::read(ring.current_path().unwrap()).unwrap();
    assert_eq!(&bytes[stored[0].offset as usize..], &content[..]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Frames compressed on a pool of threads are stored in order: the data file and its
/// index are byte for byte what the writer makes compressing them itself.
#[test]
fn frames_compressed_on_threads_are_stored_in_order() {
    let mut outputs = Vec::new();
    for threads in [0, 1, 3] {
        let dir = scratch(&format!("pool-{threads}"));
        let config =
            RingConfig { frame_bytes: 4096, compress_threads: threads, ..config(&dir, Compression::Zstd(1)) };
        let counters = Arc::new(StorageCounters::default());
        let mut ring = RingWriter::open(config, Arc::clone(&counters)).unwrap();
        for b in 0..50u64 {
            ring.write(&mut batch(&(0..40).map(|i| 1_000 + b * 40 + i).collect::<Vec<_>>())).unwrap();
            ring.tick().unwrap();
        }
        ring.finish().unwrap();
        let data = ring.current_path().unwrap().to_path_buf();
        let file = DataFile::open(&data).unwrap();
        assert_eq!(file.recovered_frames, 0, "every frame is indexed");
        assert!(file.frames.len() > 50, "{} frames", file.frames.len());
        let times: Vec<u64> =
            file.frames.iter().flat_map(|f| [f.earliest_ns, f.latest_ns]).filter(|&t| t > 0).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "frames in time order");
        assert_eq!(counters.packets_written.load(Ordering::Relaxed), 2000);
        assert_eq!(counters.packets_lost.load(Ordering::Relaxed), 0);
        outputs.push((std::fs::read(&data).unwrap(), std::fs::read(index_path(&data)).unwrap()));
        drop(ring);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    assert!(outputs.windows(2).all(|w| w[0] == w[1]), "the same bytes whatever the threads");
}

#[test]
fn a_file_without_its_index_is_scanned_in_windows_and_read_whole() {
    for compression in [Compression::None, Compression::Zstd(1)] {
        let dir = scratch(&format!("scan-{compression:?}"));
        let mut ring = RingWriter::open(config(&dir, compression), Arc::default()).unwrap();
        // About 12 MiB of records: several scan windows.
        let times: Vec<u64> = (0..110_000).collect();
        for chunk in times.chunks(1000) {
            ring.write(&mut batch(chunk)).unwrap();
        }
        ring.finish().unwrap();
        let data = ring.current_path().unwrap().to_path_buf();
        let indexed = DataFile::open(&data).unwrap();
        std::fs::remove_file(index_path(&data)).unwrap();
        let scanned = DataFile::open(&data).unwrap();
        assert!(scanned.index_problem.is_some());
        assert_eq!(scanned.damaged_bytes, 0, "{compression:?}");
        let packets = |file: &DataFile| file.frames.iter().map(|f| u64::from(f.packets)).sum::<u64>();
        assert_eq!(packets(&scanned), 110_000, "{compression:?}");
        assert_eq!(packets(&indexed), 110_000);
        assert_eq!(scanned.complete_len(), std::fs::metadata(&data).unwrap().len());
        assert!(scanned.frames.iter().all(|f| f.raw_len as u64 <= (4 << 20)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn without_a_file_packets_are_counted_lost_and_the_header_still_leads_the_next_file() {
    let dir = scratch("no-file");
    let counters = Arc::new(StorageCounters::default());
    let mut ring = RingWriter::open(config(&dir, Compression::None), Arc::clone(&counters)).unwrap();
    ring.write(&mut batch(&[1, 2, 3])).unwrap();
    let first = ring.current_path().unwrap().to_path_buf();
    // No file can be started now: the manifest (listed before a file is made) cannot
    // be saved, its temporary name taken by a directory that is not empty.
    let blocker = dir.join(format!(".{}.tmp", manifest::MANIFEST_NAME));
    std::fs::create_dir_all(blocker.join("x")).unwrap();
    Sink::rotate(&mut ring).unwrap();
    assert!(ring.current_path().is_none());
    ring.write(&mut batch(&[4, 5])).unwrap();
    ring.tick().unwrap();
    assert_eq!(counters.packets_lost.load(Ordering::Relaxed), 2);
    std::fs::remove_dir_all(&blocker).unwrap();
    ring.write(&mut batch(&[6, 7, 8, 9])).unwrap();
    ring.finish().unwrap();
    let next = ring.current_path().unwrap().to_path_buf();
    assert_ne!(first, next);
    assert_eq!(records_in(&next), 4, "the header leads the next file, then its packets");
    // written + lost = every packet given to the ring
    let written = counters.packets_written.load(Ordering::Relaxed);
    assert_eq!(written + counters.packets_lost.load(Ordering::Relaxed), 9);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The packet records of an uncompressed ring file, behind its header.
fn records_in(data: &Path) -> usize {
    let bytes = std::fs::read(data).unwrap();
    let format = RecordFormat::from_file_header(&bytes).expect("the file starts with its header");
    format.records(&bytes[format.header_len..]).count()
}

#[test]
fn a_file_removed_replaced_truncated_or_overwritten_by_someone_else_is_counted_and_another_started() {
    let dir = scratch("lost-file");
    let counters = Arc::new(StorageCounters::default());
    let mut ring = RingWriter::open(config(&dir, Compression::None), Arc::clone(&counters)).unwrap();
    let name = |path: &Path| path.file_name().unwrap().to_str().unwrap().to_string();
    let listed = |dir: &Path| std::fs::read_to_string(dir.join(manifest::MANIFEST_NAME)).unwrap();
    let mut given = 0;
    let mut give = |ring: &mut RingWriter, times: &[u64]| {
        given += times.len() as u64;
        ring.write(&mut batch(times)).unwrap();
        ring.tick().unwrap();
    };
    give(&mut ring, &[1, 2]);
    let removed = ring.current_path().unwrap().to_path_buf();
    std::fs::remove_file(&removed).unwrap();
    give(&mut ring, &[3, 4, 5]);
    let replaced = ring.current_path().unwrap().to_path_buf();
    assert_ne!(replaced, removed);
    assert!(!listed(&dir).contains(&name(&removed)), "a removed file's name leaves the manifest");
    assert_eq!(counters.files_lost.load(Ordering::Relaxed), 1);
    // Someone else's file under the name: never taken for ringcap's, never removed.
    ring.finish().unwrap();
    std::fs::rename(&replaced, dir.join("aside")).unwrap();
    std::fs::write(&replaced, b"not ringcap's").unwrap();
    give(&mut ring, &[6]);
    assert_eq!(counters.files_lost.load(Ordering::Relaxed), 2);
    assert!(!listed(&dir).contains(&name(&replaced)));
    assert_eq!(std::fs::read(&replaced).unwrap(), b"not ringcap's");
    ring.finish().unwrap();
    let truncated = ring.current_path().unwrap().to_path_buf();
    std::fs::OpenOptions::new().write(true).open(&truncated).unwrap().set_len(10).unwrap();
    give(&mut ring, &[7, 8, 9, 10]);
    assert_eq!(counters.files_lost.load(Ordering::Relaxed), 3);
    assert!(listed(&dir).contains(&name(&truncated)), "a truncated file is still ringcap's");
    ring.finish().unwrap();
    let last = ring.current_path().unwrap().to_path_buf();
    assert_eq!(records_in(&last), 4, "the packets after a loss land in a new file, behind its header");
    // Written over in place, its length unchanged (as `cp` of a file of that size):
    // told by its modification time.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::OpenOptions::new().write(true).open(&last).unwrap().write_all_at(b"theirs", 0).unwrap();
    give(&mut ring, &[11]);
    assert_eq!(counters.files_lost.load(Ordering::Relaxed), 4, "an overwritten file");
    // ...and longer than ringcap made it.
    ring.finish().unwrap();
    let longer = ring.current_path().unwrap().to_path_buf();
    let len = std::fs::metadata(&longer).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&longer).unwrap().write_all_at(b"more", len).unwrap();
    give(&mut ring, &[12]);
    assert_eq!(counters.files_lost.load(Ordering::Relaxed), 5, "a file grown by someone else");
    ring.finish().unwrap();
    let written = counters.packets_written.load(Ordering::Relaxed);
    assert_eq!(written + counters.packets_lost.load(Ordering::Relaxed), given);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_removed_ring_directory_stops_the_writer_with_the_way_out() {
    let dir = scratch("dir-gone");
    let counters = Arc::new(StorageCounters::default());
    let mut ring = RingWriter::open(config(&dir, Compression::None), Arc::clone(&counters)).unwrap();
    ring.write(&mut batch(&[1, 2, 3])).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let error = ring.write(&mut batch(&[4])).unwrap_err();
    assert!(error.to_string().contains("restart ringcap"), "{error}");
    assert_eq!(counters.packets_lost.load(Ordering::Relaxed), 3, "the frame on its way is counted");
    assert!(ring.tick().is_err());
}

/// -G: a batch of a later period starts its file, named for the period's start; a late
/// batch of the period before joins the file being written; a batch further back (the
/// clock was set back) starts a file of its own period.
#[test]
fn periods_start_files_late_batches_join_and_a_clock_set_back_is_followed() {
    let dir = scratch("periods");
    let config = RingConfig { rotate_every: Some(Duration::from_secs(1)), ..config(&dir, Compression::None) };
    let mut ring = RingWriter::open(config, Arc::default()).unwrap();
    let second = 1_000_000_000u64;
    for times in [&[100 * second + 5][..], &[101 * second + 2], &[100 * second + 9], &[50 * second]] {
        ring.write(&mut batch(times)).unwrap();
    }
    ring.period_started(51).unwrap();
    ring.finish().unwrap();
    // Each file: its name, packets and the time range they span.
    type Stored = (String, u64, Option<(u64, u64)>);
    let mut files: Vec<Stored> = crate::storage::manifest::ring_files(&dir)
        .unwrap()
        .into_iter()
        .map(|path| {
            let file = DataFile::open(&path).unwrap();
            let packets = file.frames.iter().map(|f| u64::from(f.packets)).sum();
            (path.file_name().unwrap().to_str().unwrap().to_string(), packets, file.time_range())
        })
        .collect();
    files.sort();
    let s = second;
    assert_eq!(
        files,
        vec![
            ("t-100.pcap".to_string(), 1, Some((100 * s + 5, 100 * s + 5))),
            ("t-101.pcap".to_string(), 2, Some((100 * s + 9, 101 * s + 2))),
            ("t-50.pcap".to_string(), 1, Some((50 * s, 50 * s))),
            ("t-51.pcap".to_string(), 0, None),
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
