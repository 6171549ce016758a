//! The consumer side of a BPF ring buffer, read in place.
//!
//! aya's ring buffer releases a record as soon as the next one is taken, which leaves a
//! reader no choice but to copy it out first. This consumer lets the reader look at the
//! oldest record where the kernel wrote it ([`PacketRing::peek`]), copy it once into the
//! pcap frame that goes to the file, and hand the space back in bulk afterwards
//! ([`PacketRing::release`]). The layout is the kernel's (`kernel/bpf/ringbuf.c`): a
//! consumer page (ours, read-write), then a producer page and the data area mapped twice
//! in a row (read-only), so a record that wraps around the end is contiguous in memory.
//! Beside it, the CPU's in-flight stamp tells how early a record still to come can be
//! ([`PacketRing::unseen_from`]), so the reader can merge the CPUs' rings without waiting.
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use aya::maps::MapData;
use capture_common::{InFlight, RecordHeader, RECORD_HEADER_LEN};

use crate::capture::mmap::Mapping;

/// The record is reserved and not yet submitted or discarded.
const BUSY_BIT: u32 = 1 << 31;
/// The program discarded the record: skip it.
const DISCARD_BIT: u32 = 1 << 30;
/// The kernel's header in front of every record: its length (with the bits above) and
/// the page offset the kernel uses to find the ring from a record.
const KERNEL_HEADER_LEN: u64 = 8;

/// How long a CPU's store to its in-flight stamp may take to reach other CPUs, and
/// its clock read may run ahead of it: far more than a store buffer ever holds.
const STORE_SLACK_NS: u64 = 100_000;

/// One BPF ring buffer map, mapped for reading records in place.
pub struct PacketRing {
    /// Keeps the map (and so the rings' memory) alive.
    map: MapData,
    consumer: Mapping,
    producer: Mapping,
    /// The page of the in-flight stamps holding this CPU's, and where in it.
    in_flight: (Mapping, u64),
    page: u64,
    mask: u64,
    /// Where the next record to look at starts.
    cursor: u64,
    /// The producer position last read: records before it are reserved or submitted.
    known_end: u64,
    /// The record `peek` found at `cursor`, and the size it takes in the ring.
    head: Option<(RecordHeader, u64)>,
    /// Records too short for their header, skipped (should never happen).
    pub malformed: u64,
}

impl PacketRing {
    /// Maps the ring buffer `map` of `bytes` (a power of two, at least a page) of CPU
    /// `cpu`, and that CPU's entry of the in-flight stamps (the array `in_flight`).
    pub fn new(map: MapData, bytes: u32, in_flight: &MapData, cpu: u32) -> io::Result<Self> {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        let fd = map.fd().as_fd().as_raw_fd();
        let consumer = Mapping::shared(fd, page as usize, 0, true)?;
        let producer = Mapping::shared(fd, (page + 2 * u64::from(bytes)) as usize, page, false)?;
        let entry = u64::from(cpu) * size_of::<InFlight>() as u64;
        let stamp_page = entry - entry % page;
        let stamps = Mapping::shared(in_flight.fd().as_fd().as_raw_fd(), page as usize, stamp_page, true)?;
        let mut ring = PacketRing {
            map,
            consumer,
            producer,
            in_flight: (stamps, entry - stamp_page),
            page,
            mask: u64::from(bytes) - 1,
            cursor: 0,
            known_end: 0,
            head: None,
            malformed: 0,
        };
        ring.cursor = ring.consumer_pos().load(Ordering::Acquire);
        Ok(ring)
    }

    fn consumer_pos(&self) -> &AtomicU64 {
        // SAFETY: the first word of the consumer page, aligned, shared with the kernel.
        unsafe { &*self.consumer.at::<AtomicU64>(0) }
    }

    fn producer_pos(&self) -> &AtomicU64 {
        // SAFETY: the first word of the producer page, aligned, written by the kernel only.
        unsafe { &*self.producer.at::<AtomicU64>(0) }
    }

    /// The oldest submitted record, left in the ring until [`Self::advance`] and
    /// [`Self::release`]: its header and its packet bytes.
    pub fn peek(&mut self) -> Option<(RecordHeader, &[u8])> {
        let (header, _) = self.head_record()?;
        let start = self.page + (self.cursor & self.mask) + KERNEL_HEADER_LEN + RECORD_HEADER_LEN as u64;
        // SAFETY: within the double-mapped data area (a record never exceeds the ring),
        // submitted by the kernel and not released, so the kernel leaves it alone.
        let data =
            unsafe { std::slice::from_raw_parts(self.producer.at::<u8>(start), header.cap_len as usize) };
        Some((header, data))
    }

    /// The header of the oldest submitted record, skipping discarded and malformed ones.
    fn head_record(&mut self) -> Option<(RecordHeader, u64)> {
        if let Some(head) = self.head {
            return Some(head);
        }
        loop {
            if self.cursor >= self.known_end {
                // Read only when the records known are used up: the producer's cache
                // line is written by every CPU's program.
                self.known_end = self.producer_pos().load(Ordering::Acquire);
                if self.cursor >= self.known_end {
                    return None;
                }
            }
            let at = self.page + (self.cursor & self.mask);
            // SAFETY: a record header inside the data area, 8-byte aligned.
            let word = unsafe { &*self.producer.at::<AtomicU32>(at) }.load(Ordering::Acquire);
            if word & BUSY_BIT != 0 {
                // Reserved but not submitted: records are consumed in ring order.
                return None;
            }
            let len = u64::from(word & !(BUSY_BIT | DISCARD_BIT));
            let size = (len + KERNEL_HEADER_LEN + 7) & !7;
            if word & DISCARD_BIT == 0 {
                if len >= RECORD_HEADER_LEN as u64 {
                    // SAFETY: the record holds at least a header; plain data written by the kernel.
                    let header: RecordHeader =
                        unsafe { std::ptr::read_unaligned(self.producer.at(at + KERNEL_HEADER_LEN)) };
                    if u64::from(header.cap_len) <= len - RECORD_HEADER_LEN as u64 {
                        self.head = Some((header, size));
                        return self.head;
                    }
                }
                self.malformed += 1;
            }
            self.cursor += size;
        }
    }

    /// Moves past the record `peek` returned; its space stays taken until `release`.
    pub fn advance(&mut self) {
        if let Some((_, size)) = self.head.take() {
            self.cursor += size;
        }
    }

    /// Hands the space of every record moved past back to the kernel.
    pub fn release(&mut self) {
        self.consumer_pos().store(self.cursor, Ordering::Release);
    }

    pub fn fd(&self) -> RawFd {
        self.map.fd().as_fd().as_raw_fd()
    }

    /// The earliest time stamp a record not yet in the ring can have, given the
    /// monotonic time `now` (read before) and the most a record may take from its stamp to
    /// the ring. Read before looking at the ring: a program that was done by then has
    /// its record in the ring, and one that starts later reads the clock after `now`.
    pub fn unseen_from(&self, now: u64, in_flight: u64) -> u64 {
        let (page, offset) = &self.in_flight;
        // SAFETY: this CPU's entry, aligned, written by its programs only.
        let stamp = unsafe { &*page.at::<AtomicU64>(*offset) }.load(Ordering::Acquire);
        let worst = now.saturating_sub(in_flight);
        match stamp {
            // A store may still be on its way from the other CPU: allow for it.
            InFlight::IDLE => now.saturating_sub(STORE_SLACK_NS),
            InFlight::READING_CLOCK => worst,
            stamp => stamp.min(now).max(worst),
        }
    }
}
