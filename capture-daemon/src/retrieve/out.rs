//! Retrieval output: classic pcap (nanosecond timestamps) or pcapng, as libpcap writes them.
use std::io::{self, Write};
use std::time::Duration;

use crate::pcap;

/// The file format of a pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Pcap,
    Pcapng,
}

/// Where pulled packets go.
pub trait PacketOut {
    fn packet(&mut self, timestamp: Duration, orig_len: u32, data: &[u8]) -> io::Result<()>;
    fn finish(&mut self) -> io::Result<()>;
}

/// A pcap or pcapng stream over any writer.
pub struct Stream<W: Write> {
    out: W,
    format: Format,
    snaplen: u32,
}

impl<W: Write> Stream<W> {
    /// Writes the file header (pcap) or section and interface blocks (pcapng).
    pub fn new(mut out: W, format: Format, snaplen: u32) -> io::Result<Self> {
        match format {
            Format::Pcap => pcap::write_file_header(&mut out, snaplen)?,
            Format::Pcapng => {
                // Section Header Block: byte-order magic, version 1.0, section length unknown.
                let mut shb = Vec::with_capacity(28);
                shb.extend_from_slice(&0x0a0d_0d0au32.to_le_bytes());
                shb.extend_from_slice(&28u32.to_le_bytes());
                shb.extend_from_slice(&0x1a2b_3c4du32.to_le_bytes());
                shb.extend_from_slice(&1u16.to_le_bytes());
                shb.extend_from_slice(&0u16.to_le_bytes());
                shb.extend_from_slice(&(-1i64).to_le_bytes());
                shb.extend_from_slice(&28u32.to_le_bytes());
                out.write_all(&shb)?;
                // Interface Description Block: Ethernet, snaplen, if_tsresol = 9 (nanoseconds).
                let mut idb = Vec::with_capacity(32);
                idb.extend_from_slice(&1u32.to_le_bytes());
                idb.extend_from_slice(&32u32.to_le_bytes());
                idb.extend_from_slice(&1u16.to_le_bytes());
                idb.extend_from_slice(&0u16.to_le_bytes());
                idb.extend_from_slice(&snaplen.to_le_bytes());
                idb.extend_from_slice(&9u16.to_le_bytes());
                idb.extend_from_slice(&1u16.to_le_bytes());
                idb.extend_from_slice(&[9, 0, 0, 0]);
                idb.extend_from_slice(&[0, 0, 0, 0]);
                idb.extend_from_slice(&32u32.to_le_bytes());
                out.write_all(&idb)?;
            }
        }
        Ok(Stream { out, format, snaplen })
    }
}

impl<W: Write> PacketOut for Stream<W> {
    fn packet(&mut self, timestamp: Duration, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let data = &data[..data.len().min(self.snaplen as usize)];
        match self.format {
            Format::Pcap => pcap::write_record(
                &mut self.out,
                timestamp,
                orig_len.max(data.len() as u32),
                data,
                self.snaplen,
            ),
            Format::Pcapng => {
                // Enhanced Packet Block, interface 0, timestamp in nanoseconds.
                let padded = data.len().div_ceil(4) * 4;
                let total = (32 + padded) as u32;
                let ns = timestamp.as_nanos() as u64;
                let mut head = [0u8; 28];
                head[0..4].copy_from_slice(&6u32.to_le_bytes());
                head[4..8].copy_from_slice(&total.to_le_bytes());
                head[12..16].copy_from_slice(&((ns >> 32) as u32).to_le_bytes());
                head[16..20].copy_from_slice(&(ns as u32).to_le_bytes());
                head[20..24].copy_from_slice(&(data.len() as u32).to_le_bytes());
                head[24..28].copy_from_slice(&orig_len.max(data.len() as u32).to_le_bytes());
                self.out.write_all(&head)?;
                self.out.write_all(data)?;
                self.out.write_all(&[0u8; 3][..padded - data.len()])?;
                self.out.write_all(&total.to_le_bytes())
            }
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
