//! Merging the packets of frames read in order of their earliest packet into one stream in
//! time order, each packet once.
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};

use super::*;

/// Where each frame's packets go, from the frames' time spans and files in the order they
/// are read (by earliest packet). A frame that no other file's frames meet in time goes
/// straight out in its file's order (a ring's files follow one another); the packets of
/// frames of files that overlap are merged in time order, and a packet goes out once
/// every frame that could hold an earlier one is read.
pub(super) struct MergeOrder {
    pub(super) alone: Vec<bool>,
    /// The earliest packet of the next frame: packets before it can go out.
    pub(super) bound: Vec<u64>,
}

impl MergeOrder {
    /// `frames`: (earliest, latest, file) of each frame, by earliest.
    pub(super) fn of(frames: &[(u64, u64, usize)]) -> Self {
        // The first frame after each one that is of another file (the earliest of them).
        let mut next_other = vec![None; frames.len()];
        for k in (0..frames.len().saturating_sub(1)).rev() {
            next_other[k] = if frames[k + 1].2 != frames[k].2 { Some(k + 1) } else { next_other[k + 1] };
        }
        let mut alone = Vec::with_capacity(frames.len());
        // The latest packet of the frames so far, as (latest, file): the latest of all, and
        // the latest of the files other than that one's.
        let (mut top, mut other_top) = (None::<(u64, usize)>, None::<(u64, usize)>);
        for (k, &(earliest, latest, file)) in frames.iter().enumerate() {
            let before = match top {
                Some((_, f)) if f == file => other_top,
                _ => top,
            };
            let after_others = before.is_none_or(|(before, _)| before < earliest);
            let before_others = next_other[k].is_none_or(|n| latest < frames[n].0);
            alone.push(after_others && before_others);
            match top {
                Some((t, f)) if f == file => top = Some((t.max(latest), file)),
                Some((t, f)) if latest > t => (top, other_top) = (Some((latest, file)), Some((t, f))),
                Some(_) if other_top.is_none_or(|(o, _)| latest > o) => other_top = Some((latest, file)),
                Some(_) => {}
                None => top = Some((latest, file)),
            }
        }
        let bound = (0..frames.len()).map(|k| frames.get(k + 1).map_or(u64::MAX, |next| next.0)).collect();
        MergeOrder { alone, bound }
    }
}

/// What makes two records the same packet: its time, origin, length, and a digest of
/// its bytes (copies of one packet in two files of one origin agree on all, whether they
/// were stored as pcap, without the interface, or as pcapng). The interface is left out:
/// one packet seen on two interfaces at the same nanosecond is two records of one file,
/// and a file's own repeats all go out (see [`Merge`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Identity {
    pub(super) ns: u64,
    pub(super) origin: usize,
    pub(super) orig_len: u32,
    pub(super) digest: u64,
}

impl Identity {
    pub(super) fn of(file: &DataFile, record: &RecordRef<'_>) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        record.data.hash(&mut hasher);
        Identity {
            ns: duration_ns(record.timestamp),
            origin: file.origin,
            orig_len: record.orig_len,
            digest: hasher.finish(),
        }
    }
}

/// A record of an overlapping frame waiting for its turn: where it is in a held frame.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pending {
    pub(super) identity: Identity,
    pub(super) job: usize,
    pub(super) offset: usize,
}

/// The records of overlapping frames, ordered by time (then by identity, so the copies
/// of one packet come out one after another and all but one are dropped).
#[derive(Default)]
pub(super) struct Merge {
    pub(super) pending: BinaryHeap<Reverse<Pending>>,
    /// The content of each frame with records pending, by job, with how many.
    pub(super) held: HashMap<usize, (Vec<u8>, usize)>,
    /// The packet delivered last from the merge, how many copies each file gave of it,
    /// and how many went out (the most any one file holds: a file's own repeats are packets).
    pub(super) last: Option<LastDelivered>,
    pub(super) duplicates: u64,
}

impl Merge {
    /// Keeps the selected records of job `job` (frame `i` of `file`) for the merge.
    pub(super) fn hold(&mut self, job: usize, file: &DataFile, i: usize, read: ReadFrame) {
        let records = file.format.records(file.records_of(i, &read.content)).map_while(Result::ok);
        let mut matches = read.matches.iter().peekable();
        let mut held = 0;
        for (k, record) in records.enumerate() {
            if matches.next_if_eq(&&k).is_none() {
                continue;
            }
            let offset = record.raw.as_ptr() as usize - read.content.as_ptr() as usize;
            self.pending.push(Reverse(Pending { identity: Identity::of(file, &record), job, offset }));
            held += 1;
        }
        if held > 0 {
            self.held.insert(job, (read.content, held));
        }
    }

    /// Delivers, in order, the pending records from before `bound`.
    pub(super) fn deliver_before(
        &mut self,
        bound: u64,
        jobs: &[(usize, usize)],
        files: &[&DataFile],
        output: &mut PullOutput<'_>,
    ) -> std::io::Result<()> {
        while self.pending.peek().is_some_and(|Reverse(p)| p.identity.ns < bound) && !output.stopped {
            let Reverse(next) = self.pending.pop().expect("peeked");
            let f = jobs[next.job].0;
            let deliver = match &mut self.last {
                Some((identity, per_file, delivered)) if *identity == next.identity => {
                    let copies = match per_file.iter_mut().find(|(file, _)| *file == f) {
                        Some((_, n)) => {
                            *n += 1;
                            *n
                        }
                        None => {
                            per_file.push((f, 1));
                            1
                        }
                    };
                    let more = copies > *delivered;
                    *delivered = (*delivered).max(copies);
                    more
                }
                _ => {
                    self.last = Some((next.identity, vec![(f, 1)], 1));
                    true
                }
            };
            let (content, left) = self.held.get_mut(&next.job).expect("a pending record's frame is held");
            if deliver {
                let record = files[f]
                    .format
                    .records(&content[next.offset..])
                    .next()
                    .and_then(Result::ok)
                    .expect("a held record parsed before");
                output.packet(files[f], &record)?;
            } else {
                self.duplicates += 1;
            }
            *left -= 1;
            if *left == 0 {
                self.held.remove(&next.job);
            }
        }
        Ok(())
    }
}
