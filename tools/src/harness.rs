//! Driving the `ringcap` binary from tests, the demo and benchmarks: start it in a
//! namespace, wait until it listens, stop it with a signal, and read what it wrote.
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pcap_file::pcap::PcapReader;

/// A running capture process (ringcap, or tcpdump in benchmarks) whose stderr is
/// collected line by line.
pub struct CaptureProcess {
    pub child: Child,
    lines: mpsc::Receiver<String>,
    pub stderr: Vec<String>,
}

impl CaptureProcess {
    /// Spawns `command` (usually `bed.rx(ringcap)` with arguments) with stderr piped.
    pub fn spawn(mut command: Command) -> std::io::Result<Self> {
        let mut child = command.stderr(Stdio::piped()).spawn()?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(CaptureProcess { child, lines, stderr: Vec::new() })
    }

    /// Waits for a stderr line containing `needle`; false on timeout or exit.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.stderr.push(line);
                    if found {
                        return true;
                    }
                }
                Err(_) => return false,
            }
        }
        false
    }

    /// Waits until the capture programs are attached (the "listening on" line).
    pub fn wait_listening(&mut self) -> bool {
        self.wait_for("listening on", Duration::from_secs(20))
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    /// Waits for the process to exit (killing it after `timeout`) and collects all stderr.
    pub fn finish(self, timeout: Duration) -> (ExitStatus, Vec<String>) {
        let finished = self.finish_measured(timeout);
        (finished.status, finished.stderr)
    }

    /// Like [`CaptureProcess::finish`], also returning the CPU time the process used.
    pub fn finish_measured(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let pid = self.child.id() as libc::pid_t;
        let (status, usage) = loop {
            let mut status = 0;
            // SAFETY: zeroed rusage is a valid out-parameter.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: waiting for our own child with valid out-pointers.
            let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
            if reaped == pid {
                break (ExitStatus::from_raw(status), usage);
            }
            if reaped < 0 {
                panic!("wait4 on the capture process failed: {}", std::io::Error::last_os_error());
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.stderr.push(line);
        }
        Finished { status, stderr: std::mem::take(&mut self.stderr), cpu: rusage_cpu(&usage) }
    }
}

impl Drop for CaptureProcess {
    /// A test that fails while the process runs must not leave it capturing forever.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// User plus system time of a resource usage report.
pub fn rusage_cpu(usage: &libc::rusage) -> Duration {
    let cpu = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    cpu(usage.ru_utime) + cpu(usage.ru_stime)
}

/// How a capture process ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stderr: Vec<String>,
    /// User plus system CPU time of the process.
    pub cpu: Duration,
}

/// A packet read back from a pcap file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadPacket {
    pub timestamp: Duration,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

/// Reads every packet of a classic pcap file.
pub fn read_pcap(path: &Path) -> Result<Vec<ReadPacket>, pcap_file::PcapError> {
    read_pcap_bytes(&std::fs::read(path).map_err(pcap_file::PcapError::IoError)?)
}

/// Reads every packet of classic pcap bytes. Raw records are read because pcap-file's
/// checked reader rejects `orig_len > snaplen`, which libpcap writes for every sliced packet.
pub fn read_pcap_bytes(bytes: &[u8]) -> Result<Vec<ReadPacket>, pcap_file::PcapError> {
    let mut reader = PcapReader::new(bytes)?;
    let nanos = reader.header().ts_resolution == pcap_file::TsResolution::NanoSecond;
    let mut packets = Vec::new();
    while let Some(packet) = reader.next_raw_packet() {
        let packet = packet?;
        let frac = if nanos { packet.ts_frac } else { packet.ts_frac * 1000 };
        packets.push(ReadPacket {
            timestamp: Duration::new(u64::from(packet.ts_sec), frac),
            orig_len: packet.orig_len,
            data: packet.data.into_owned(),
        });
    }
    Ok(packets)
}

/// The number followed by `what` in a summary line: "12 packets captured", or one part of
/// "3 files created, 2 removed for free space, 0 lost to others" (`what` must end the line
/// or a part of it, so "packets written" never matches "packets written to the ring").
pub fn summary_count(stderr: &[String], what: &str) -> Option<u64> {
    stderr.iter().find_map(|line| {
        line.match_indices(what).find_map(|(at, _)| {
            let after = &line[at + what.len()..];
            if !(after.is_empty() || after.starts_with([',', ')']) || after.starts_with(" (")) {
                return None;
            }
            let before = line[..at].strip_suffix(' ')?;
            before.rsplit([' ', '(']).next()?.parse().ok()
        })
    })
}
