//! Sinks: where batches of pcap records end up.
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use crate::capture::Batch;
use crate::pcap;

/// How the reader should cut batches for a sink that stores each one as a unit.
#[derive(Clone, Copy, Debug)]
pub struct BatchLimits {
    /// A batch ends once it holds this many bytes...
    pub bytes: usize,
    /// ...or its first packet is this old...
    pub age: Duration,
    /// ...or the wall clock enters a new period of this many seconds.
    pub period: Option<u64>,
}

/// A consumer of batches, driven by the writer thread.
pub trait Sink: Send {
    /// Appends a batch. The sink may keep the batch's buffer (swapping in one of its own,
    /// possibly empty) rather than copy its bytes.
    fn write(&mut self, batch: &mut Batch) -> io::Result<()>;
    /// The batches the sink wants, if it has a preference (the reader's defaults otherwise).
    fn batch_limits(&self) -> Option<BatchLimits> {
        None
    }
    /// Called at least every 100 ms with or without traffic, so timers (flushes,
    /// rotation) never depend on packets arriving.
    fn tick(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Starts a new file now (SIGHUP); sinks without files ignore it.
    fn rotate(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Every record stamped before -G period `period` began has been written (sent only
    /// when [`BatchLimits::period`] is set).
    fn period_started(&mut self, _period: u64) -> io::Result<()> {
        Ok(())
    }
    /// Flushes and closes everything; called once at the end.
    fn finish(&mut self) -> io::Result<()>;
}

/// One pcap stream: a file or standard output (`-w -`), like `tcpdump -w`.
///
/// Batches are already large, so they go straight to the file descriptor: a buffered
/// writer would copy every byte once more, and std's line-buffered stdout would scan
/// binary data for newlines.
pub struct PcapStream {
    out: File,
}

impl PcapStream {
    /// Creates `path` (`-` for standard output) and writes the pcap file header, or the
    /// pcapng section header and one interface block per name when `pcapng` is given.
    pub fn create(path: &Path, snaplen: u32, pcapng: Option<&[&str]>) -> io::Result<Self> {
        let mut out = if path == Path::new("-") {
            File::from(io::stdout().as_fd().try_clone_to_owned()?)
        } else {
            File::create(path)?
        };
        let mut header = Vec::with_capacity(pcap::FILE_HEADER_LEN);
        match pcapng {
            Some(interfaces) => pcap::write_pcapng_header(&mut header, snaplen, interfaces)?,
            None => pcap::write_file_header(&mut header, snaplen)?,
        }
        out.write_all(&header)?;
        Ok(PcapStream { out })
    }
}

impl Sink for PcapStream {
    fn write(&mut self, batch: &mut Batch) -> io::Result<()> {
        self.out.write_all(&batch.records)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
