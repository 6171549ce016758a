//! Compression on several cores: frames are independent zstd frames, so a pool of
//! threads compresses them side by side and hands them back in the order they were
//! given, for the writer to store one after another as before.
use std::collections::VecDeque;
use std::io;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};

use super::frames::zstd_compressor;
use super::summary::{summarize_frame, Summary};
use crate::pcap::RecordFormat;

/// A frame's content going to a worker, with what travels along with it.
struct Job<T> {
    content: Vec<u8>,
    along: T,
    done: Sender<Compressed<T>>,
}

/// A frame back from a worker: its content, what came along, the compressed bytes and
/// the frame's summary.
pub struct Compressed<T> {
    pub content: Vec<u8>,
    pub along: T,
    pub bytes: io::Result<Vec<u8>>,
    pub summary: Option<Summary>,
}

/// Threads compressing frames at one zstd level, as [`zstd_compressor`] does.
pub struct CompressPool<T> {
    jobs: Option<Sender<Job<T>>>,
    /// One receiver per frame given and not yet taken back, in order.
    in_flight: VecDeque<Receiver<Compressed<T>>>,
    /// Frames in flight at most: enough to keep every worker busy while the writer
    /// stores, few enough to bound memory (each holds a frame of --frame-bytes).
    capacity: usize,
    workers: Vec<JoinHandle<()>>,
}

impl<T: Send + 'static> CompressPool<T> {
    /// `threads` workers compressing at `level`, and summarizing each frame as records of
    /// `format` (see [`super::summary`]).
    pub fn new(threads: usize, level: i32, format: RecordFormat) -> io::Result<Self> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job<T>>();
        let mut workers = Vec::with_capacity(threads);
        for n in 0..threads {
            let mut zstd = zstd_compressor(level)?;
            let queue = queue.clone();
            let worker = std::thread::Builder::new().name(format!("ringcap-zstd-{n}")).spawn(move || {
                for Job { content, along, done } in queue {
                    // A panic in the library must not take the frame (and its count) with it.
                    let bytes = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let mut bytes = Vec::with_capacity(zstd::zstd_safe::compress_bound(content.len()));
                        zstd.compress_to_buffer(&content, &mut bytes).map(|_| bytes)
                    }))
                    .unwrap_or_else(|_| Err(io::Error::other("zstd panicked compressing a frame")));
                    let summary = summarize_frame(format, &content);
                    // The writer may be gone (shutting down): nothing left to hand back to.
                    let _ = done.send(Compressed { content, along, bytes, summary });
                }
            })?;
            workers.push(worker);
        }
        Ok(CompressPool { jobs: Some(jobs), in_flight: VecDeque::new(), capacity: 2 * threads, workers })
    }

    /// Whether a frame can be given without first taking one back.
    pub fn has_room(&self) -> bool {
        self.in_flight.len() < self.capacity
    }

    pub fn is_empty(&self) -> bool {
        self.in_flight.is_empty()
    }

    /// Gives a frame to the workers.
    pub fn submit(&mut self, content: Vec<u8>, along: T) {
        let (done, back) = crossbeam_channel::bounded(1);
        let jobs = self.jobs.as_ref().expect("present until drop");
        if let Err(crossbeam_channel::SendError(job)) = jobs.send(Job { content, along, done }) {
            // Every worker is gone: hand the frame back uncompressed, as a failed one.
            let bytes = Err(io::Error::other("no compression thread is left"));
            let _ =
                job.done.send(Compressed { content: job.content, along: job.along, bytes, summary: None });
        }
        self.in_flight.push_back(back);
    }

    /// The oldest frame given, once compressed; `wait`: block until it is. Every frame
    /// given comes back, compressed or with the error that stopped it.
    pub fn next(&mut self, wait: bool) -> Option<Compressed<T>> {
        let front = self.in_flight.front()?;
        let compressed = if wait {
            Some(front.recv().expect("a worker answers every job it takes"))
        } else {
            front.try_recv().ok()
        };
        if compressed.is_some() {
            self.in_flight.pop_front();
        }
        compressed
    }
}

impl<T> Drop for CompressPool<T> {
    fn drop(&mut self) {
        self.jobs.take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
