//! Reading a pull's frames: which frames (the plan), and the worker threads that decode
//! and filter them, given back in the plan's order.
use super::*;
use crate::filter::prefilter::Prefilter;

/// Threads decompressing and filtering frames at most.
pub(super) const MAX_WORKERS: usize = 16;

/// A frame decoded by a worker: its content and which of its records are to go out.
pub(super) struct ReadFrame {
    pub(super) content: Vec<u8>,
    /// Indexes of the records in the window that the filter selects, ascending.
    pub(super) matches: Vec<usize>,
    /// The frame ends in a damaged record (those before it count).
    pub(super) damaged: bool,
}

/// Decompresses frame `i` of `file` and filters its records (on a worker thread).
pub(super) fn read_frame(
    file: &DataFile,
    i: usize,
    window: &Window,
    filter: &Filter,
) -> Result<ReadFrame, String> {
    let content = file.content(i).map_err(|e| e.to_string())?;
    let mut matches = Vec::new();
    let mut damaged = false;
    for (k, record) in file.format.records(file.records_of(i, &content)).enumerate() {
        let Ok(record) = record else {
            damaged = true;
            break;
        };
        if window.contains(duration_ns(record.timestamp)) && filter.matches(record.data, record.orig_len) {
            matches.push(k);
        }
    }
    Ok(ReadFrame { content, matches, damaged })
}

/// The frames a pull reads, in the order their packets go out.
pub(super) struct Plan<'a> {
    /// The files that overlap the window, by their first packet.
    pub(super) files: Vec<&'a DataFile>,
    /// (file, frame) of each frame to read: in the window and not ruled out by its summary.
    pub(super) jobs: Vec<(usize, usize)>,
    pub(super) order: MergeOrder,
}

impl<'a> Plan<'a> {
    /// Plans the reading of `opened` for `window` and `filter`: files outside the window
    /// and frames that cannot match are left out (counted in `report`), damage noted.
    pub(super) fn new(
        opened: &'a [DataFile],
        report: &mut PullReport,
        window: &Window,
        filter: &Filter,
    ) -> Self {
        let mut files = Vec::new();
        for file in opened {
            let path = file.path.display();
            if let Some(problem) = &file.index_problem {
                report.warnings.push(format!("{path}: {problem}"));
            }
            if file.damaged_bytes > 0 {
                report.bytes_damaged += file.damaged_bytes;
                report.warnings.push(format!(
                    "{path}: {} damaged bytes skipped ({} at the end)",
                    file.damaged_bytes, file.damaged_tail
                ));
            }
            if let Some((first, last)) = file.time_range().filter(|&(f, l)| window.overlaps(f, l)) {
                files.push((first, last, file));
            }
        }
        files.sort_by_key(|(first, last, _)| (*first, *last));
        let files: Vec<&DataFile> = files.into_iter().map(|(_, _, file)| file).collect();
        let prefilter = Prefilter::of_expression(&filter.expression);
        let mut jobs = Vec::new();
        for (f, file) in files.iter().enumerate() {
            report.files_read += 1;
            for (i, frame) in file.frames.iter().enumerate() {
                if frame.packets == 0 || !window.overlaps(frame.earliest_ns, frame.latest_ns) {
                    continue;
                }
                let summary = file.summaries.get(i).and_then(Option::as_ref);
                if let (Some(prefilter), Some(summary)) = (&prefilter, summary) {
                    if !prefilter.may_match(summary) {
                        report.frames_skipped += 1;
                        continue;
                    }
                }
                jobs.push((f, i));
            }
        }
        let span =
            |&(f, i): &(usize, usize)| (files[f].frames[i].earliest_ns, files[f].frames[i].latest_ns, f);
        jobs.sort_by_key(|job| span(job).0);
        let order = MergeOrder::of(&jobs.iter().map(span).collect::<Vec<_>>());
        Plan { files, jobs, order }
    }
}

/// Worker threads that decode and filter a plan's frames, handed out a few ahead of the
/// one awaited and given back in the plan's order: memory stays bounded, output in order.
pub(super) struct Workers<'p> {
    pub(super) jobs: &'p [(usize, usize)],
    pub(super) job_sender: Option<crossbeam_channel::Sender<(usize, usize, usize)>>,
    pub(super) done: crossbeam_channel::Receiver<(usize, Result<ReadFrame, String>)>,
    pub(super) given: usize,
    pub(super) ahead: usize,
    pub(super) waiting: std::collections::BTreeMap<usize, Result<ReadFrame, String>>,
}

impl<'p> Workers<'p> {
    pub(super) fn start<'scope, 'env>(
        scope: &'scope std::thread::Scope<'scope, 'env>,
        plan: &'p Plan<'env>,
        window: &'env Window,
        filter: &'env Filter,
    ) -> Self
    where
        'p: 'scope,
    {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_WORKERS);
        let (job_sender, job_receiver) = crossbeam_channel::unbounded::<(usize, usize, usize)>();
        let (done_sender, done) = crossbeam_channel::unbounded::<(usize, Result<ReadFrame, String>)>();
        for _ in 0..workers {
            let (jobs, done, files) = (job_receiver.clone(), done_sender.clone(), &plan.files);
            scope.spawn(move || {
                for (n, f, i) in jobs {
                    // A frame that makes the worker fail is one damaged frame, never a pull
                    // that waits forever for its answer.
                    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        read_frame(files[f], i, window, filter)
                    }))
                    .unwrap_or_else(|_| Err("the frame could not be decoded".into()));
                    if done.send((n, read)).is_err() {
                        return;
                    }
                }
            });
        }
        Workers {
            jobs: &plan.jobs,
            job_sender: Some(job_sender),
            done,
            given: 0,
            ahead: 4 * workers,
            waiting: std::collections::BTreeMap::new(),
        }
    }

    /// The plan's frame `next` read (frames are asked for in order, each once).
    pub(super) fn read(&mut self, next: usize) -> std::io::Result<Result<ReadFrame, String>> {
        let sender = self.job_sender.as_ref().expect("not stopped");
        while self.given < self.jobs.len() && self.given < next + self.ahead {
            let (f, i) = self.jobs[self.given];
            sender.send((self.given, f, i)).expect("the workers outlive the jobs");
            self.given += 1;
        }
        loop {
            if let Some(result) = self.waiting.remove(&next) {
                return Ok(result);
            }
            let (n, result) = self
                .done
                .recv()
                .map_err(|_| std::io::Error::other("the pull's workers ended before every frame was read"))?;
            self.waiting.insert(n, result);
        }
    }

    /// No more frames: the workers end once they finish the ones given.
    pub(super) fn stop(&mut self) {
        self.job_sender = None;
    }
}
