//! Frames: packets gathered into a frame, compressed (here or on the pool's threads,
//! stored in order) and written, with the disk-full path; packets with nowhere to go are
//! counted as lost.
use super::*;

/// The frame being filled.
#[derive(Default)]
pub(super) struct PendingFrame {
    pub(super) content: Vec<u8>,
    pub(super) packets: u64,
    /// The earliest and latest packet times: the reader may write a late record after
    /// later ones, and a pull must not skip a frame that holds it.
    pub(super) earliest_ns: u64,
    pub(super) latest_ns: u64,
    pub(super) started: Option<Instant>,
    /// The frame is the file header (it must lead the file).
    pub(super) header: bool,
    /// What occurs in the frame, for filtered pulls (see `storage::summary`).
    pub(super) summary: Option<Summary>,
}

impl PendingFrame {
    pub(super) fn add_packet(&mut self, timestamp_ns: u64) {
        if self.packets == 0 {
            self.earliest_ns = timestamp_ns;
            self.latest_ns = timestamp_ns;
            self.started = Some(Instant::now());
        }
        self.earliest_ns = self.earliest_ns.min(timestamp_ns);
        self.latest_ns = self.latest_ns.max(timestamp_ns);
        self.packets += 1;
    }
}

/// How many of the compressed frames [`RingWriter::collect`] waits for.
#[derive(Clone, Copy)]
pub(super) enum Collect {
    /// None: only those already done.
    Ready,
    /// Until another frame may be given.
    Room,
    /// Every one.
    All,
}

impl RingWriter {
    /// Seals the pending frame (if it holds anything) for the current file: compressed here
    /// and stored, or given to the compression threads and stored once they hand it back,
    /// in order. Without a current file (it could not be created) the frame's packets are
    /// counted as lost.
    pub(super) fn write_frame(&mut self) {
        if self.current.is_none() {
            self.drop_pending();
            return;
        }
        if self.pending.content.is_empty() {
            return;
        }
        let mut frame = std::mem::take(&mut self.pending);
        if frame.header || self.pool.is_none() {
            // A header is a few bytes: not worth a trip to another thread, but it must
            // not overtake the frames given before it.
            self.collect(Collect::All);
            if !frame.header {
                frame.summary = summarize_frame(self.record_format(), &frame.content);
            }
            let encoded = self.encoder.encode(&frame.content);
            self.store(frame, encoded);
            return;
        }
        self.collect(Collect::Room);
        let content = std::mem::take(&mut frame.content);
        self.pool.as_mut().expect("checked above").submit(content, frame);
        self.collect(Collect::Ready);
    }

    /// Stores the frames the compression threads have handed back, in order.
    pub(super) fn collect(&mut self, how: Collect) {
        loop {
            let Some(pool) = self.pool.as_mut() else { return };
            let wait = match how {
                Collect::Ready => false,
                Collect::Room => !pool.has_room(),
                Collect::All => !pool.is_empty(),
            };
            let Some(Compressed { content, along: mut frame, bytes, summary }) = pool.next(wait) else {
                return;
            };
            frame.content = content;
            frame.summary = summary;
            self.store(frame, bytes.map(Encoded::Zstd));
        }
    }

    /// Appends an encoded frame to the current file, fdatasyncs it and indexes it; on
    /// a full disk, removes the oldest files and tries once more. A frame that cannot be
    /// stored is counted as lost and cut off, so the file ends at a frame boundary.
    pub(super) fn store(&mut self, frame: PendingFrame, encoded: io::Result<Encoded>) {
        let Some(current) = self.current.as_ref() else {
            bump(&self.counters.packets_lost, frame.packets);
            return;
        };
        if current.raw_offset == 0 && !frame.header {
            // The file's header frame was lost: it goes first, again.
            let mut header = PendingFrame { header: true, ..PendingFrame::default() };
            if write_file_header(&self.config, &mut header.content).is_ok() {
                let encoded = self.encoder.encode(&header.content);
                self.store(header, encoded);
            }
            if self.current.as_ref().is_some_and(|c| c.raw_offset == 0) {
                bump(&self.counters.write_errors, 1);
                bump(&self.counters.packets_lost, frame.packets);
                self.keep_buffer(frame);
                return;
            }
        }
        let current = self.current.as_mut().expect("checked above");
        let write = |current: &mut OpenFile, encoded: &io::Result<Encoded>| match encoded {
            Ok(encoded) => {
                let bytes = encoded.bytes(&frame.content);
                current.file.write_all_at(bytes, current.offset).map(|()| bytes.len() as u64)
            }
            Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
        };
        let mut written = write(current, &encoded);
        if matches!(&written, Err(e) if is_disk_full(e)) {
            bump(&self.counters.disk_full_events, 1);
            let _ = current.file.set_len(current.offset);
            self.free_space_for(frame.content.len() as u64);
            written = write(self.current.as_mut().expect("checked above"), &encoded);
        }
        let current = self.current.as_mut().expect("checked above");
        match written {
            Ok(len) => {
                let entry = FrameEntry {
                    offset: current.offset,
                    len,
                    raw_offset: current.raw_offset,
                    raw_len: frame.content.len() as u32,
                    packets: frame.packets as u32,
                    earliest_ns: frame.earliest_ns,
                    latest_ns: frame.latest_ns,
                };
                if self.config.sync && current.file.sync_data().is_err() {
                    // After a failed fsync the kernel may have dropped the frame's pages
                    // while reporting them clean: the frame is not trusted as written.
                    bump(&self.counters.sync_errors, 1);
                    self.frame_lost(&frame);
                    self.keep_buffer(frame);
                    return;
                }
                if let Some(index) = current.index.as_mut() {
                    match index.append(&entry, frame.summary.as_ref()) {
                        Ok(bytes) => current.index_bytes += bytes,
                        Err(_) => {
                            bump(&self.counters.index_errors, 1);
                            current.index = None;
                        }
                    }
                }
                current.offset += len;
                current.raw_offset += u64::from(entry.raw_len);
                current.frames += 1;
                bump(&self.counters.frames_written, 1);
                bump(&self.counters.bytes_written, len);
                bump(&self.counters.packets_written, frame.packets);
                self.append_snapshot(false);
            }
            Err(_) => self.frame_lost(&frame),
        }
        if let Some(current) = self.current.as_mut() {
            current.last_own_change = SystemTime::now();
        }
        self.keep_buffer(frame);
    }

    /// Counts a frame that could not be stored and cuts off whatever part of it made it,
    /// so the file ends at a frame boundary. (A lost header is written again before the
    /// next frame, see [`Self::store`].)
    pub(super) fn frame_lost(&mut self, frame: &PendingFrame) {
        let current = self.current.as_mut().expect("a frame is written to a file");
        let _ = current.file.set_len(current.offset);
        current.last_own_change = SystemTime::now();
        bump(&self.counters.write_errors, 1);
        bump(&self.counters.packets_lost, frame.packets);
    }

    /// Counts the pending packets as lost when no file could be created to hold them.
    pub(super) fn drop_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        if pending.packets > 0 {
            bump(&self.counters.packets_lost, pending.packets);
        }
        self.keep_buffer(pending);
    }

    /// Reuses a written frame's allocation for the pending frame, if that has none yet.
    pub(super) fn keep_buffer(&mut self, frame: PendingFrame) {
        if self.pending.content.capacity() == 0 {
            let mut buffer = frame.content;
            buffer.clear();
            self.pending.content = buffer;
        }
    }

    /// Appends pcap records to the pending frame, cut at record boundaries so that frames
    /// stay close to --frame-bytes (a copy: used only when a batch cannot be the frame).
    pub(super) fn append(&mut self, mut rest: &[u8]) {
        while !rest.is_empty() {
            if self.current.is_none() {
                // No file could be created: these packets have nowhere to go.
                bump(&self.counters.packets_lost, self.record_format().records(rest).count() as u64);
                break;
            }
            let room = self.config.frame_bytes.saturating_sub(self.pending.content.len());
            let mut take = 0;
            let mut records = self.record_format().records(rest);
            for record in records.by_ref() {
                let Ok(record) = record else {
                    take = rest.len();
                    break;
                };
                if take > 0 && take + record.raw.len() > room {
                    break;
                }
                take += record.raw.len();
                self.pending.add_packet(duration_ns(record.timestamp));
            }
            self.pending.content.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            self.seal_if_due();
        }
    }

    /// Writes the pending frame once it is full or old enough, then rotates on -C and
    /// enforces the limits.
    pub(super) fn seal_if_due(&mut self) {
        let full = self.pending.content.len() >= self.config.frame_bytes;
        let old = self.pending.started.is_some_and(|s| s.elapsed() >= self.config.frame_age);
        if !(full || old) {
            return;
        }
        self.write_frame();
        if let (Some(limit), Some(current)) = (self.rotate_bytes, &self.current) {
            if current.offset >= limit {
                self.rotate_counting_errors();
            }
        }
        self.enforce_limits();
    }
}
