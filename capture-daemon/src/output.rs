//! Sinks: where batches of pcap records end up.
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::capture::Batch;
use crate::pcap;

/// A consumer of batches, driven by the writer thread.
pub trait Sink: Send {
    /// Appends a batch.
    fn write(&mut self, batch: &Batch) -> io::Result<()>;
    /// Called at least every 100 ms with or without traffic, so timers (flushes,
    /// rotation) never depend on packets arriving.
    fn tick(&mut self) -> io::Result<()> {
        Ok(())
    }
    /// Flushes and closes everything; called once at the end.
    fn finish(&mut self) -> io::Result<()>;
}

/// One pcap stream: a file or standard output (`-w -`), like `tcpdump -w`.
pub struct PcapStream {
    out: BufWriter<Box<dyn Write + Send>>,
    /// Flush what is buffered at every tick: a live reader (`tcpdump -r -`) sees packets promptly.
    flush_on_tick: bool,
}

impl PcapStream {
    /// Creates `path` (`-` for standard output) and writes the pcap file header.
    pub fn create(path: &Path, snaplen: u32) -> io::Result<Self> {
        let (out, flush_on_tick): (Box<dyn Write + Send>, bool) = if path == Path::new("-") {
            (Box::new(io::stdout()), true)
        } else {
            (Box::new(File::create(path)?), false)
        };
        let mut out = BufWriter::with_capacity(1 << 20, out);
        pcap::write_file_header(&mut out, snaplen)?;
        Ok(PcapStream { out, flush_on_tick })
    }
}

impl Sink for PcapStream {
    fn write(&mut self, batch: &Batch) -> io::Result<()> {
        self.out.write_all(&batch.records)
    }

    fn tick(&mut self) -> io::Result<()> {
        if self.flush_on_tick {
            self.out.flush()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
