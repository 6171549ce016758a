//! `ringcap pull`: a window of a ring, filtered, while capture goes on.
use std::io::IsTerminal;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::sync::Arc;

use anyhow::Context;
use capture_daemon::archive::remote::open_archived;
use capture_daemon::filter::Filter;
use capture_daemon::pcap::DEFAULT_SNAPLEN;
use capture_daemon::retrieve::{
    self,
    out::{Format, Stream},
    pull::PullLimits,
    window::Window,
};
use capture_daemon::storage::budget::DiskLimit;
use clap::Args;

use super::choices::choice;

use super::args::{parse_disk_limit, ArchiveArgs, WindowArgs};

#[derive(Args)]
pub(crate) struct PullArgs {
    /// Directory of the ring (as given to `ringcap run --dir`).
    #[arg(long, value_name = "DIR", required_unless_present = "from", conflicts_with = "from")]
    pub(crate) dir: Option<PathBuf>,
    /// Pull from the archive instead (`ringcap run --archive`): its pins and ring files,
    /// with the same index and filter.
    #[arg(long, value_name = "s3://BUCKET/PREFIX")]
    pub(crate) from: Option<String>,
    #[command(flatten)]
    pub(crate) archive: ArchiveArgs,
    #[command(flatten)]
    pub(crate) window: WindowArgs,
    /// Output file; `-` (the default) streams to standard output.
    #[arg(short = 'w', value_name = "FILE", default_value = "-")]
    pub(crate) write: PathBuf,
    /// Output format; default: pcapng when the files hold pcapng (`--direction both`,
    /// several interfaces: each packet keeps its direction and interface), else pcap.
    #[arg(long, value_parser = choice::<Format>())]
    pub(crate) format: Option<Format>,
    /// Stop after this many packets.
    #[arg(long, value_name = "N")]
    pub(crate) max_packets: Option<u64>,
    /// Stop after reading this many bytes of pcap from the ring (e.g. 2G).
    #[arg(long, value_name = "SIZE", value_parser = parse_disk_limit)]
    pub(crate) max_bytes: Option<DiskLimit>,
    /// Also write the window's TCP statistics and counters to FILE.stats.json.
    #[arg(long)]
    pub(crate) with_stats: bool,
    /// Filter expression in tcpdump syntax.
    /// Options may come before or after it, as with tcpdump (`--` ends them).
    #[arg(value_name = "EXPRESSION")]
    pub(crate) expression: Vec<String>,
}

pub(crate) fn pull(args: PullArgs) -> anyhow::Result<ExitCode> {
    let window = Window::from_args(
        args.window.last.as_deref(),
        args.window.since.as_deref(),
        args.window.until.as_deref(),
        capture_daemon::timefmt::unix_now(),
    )
    .map_err(anyhow::Error::msg)?;
    let filter = Filter::compile(&args.expression.join(" "))?;
    if args.with_stats && args.write == Path::new("-") {
        anyhow::bail!("--with-stats writes FILE.stats.json beside the capture: give -w FILE");
    }
    if let Some(dir) = args.dir.as_ref().filter(|d| !d.is_dir()) {
        anyhow::bail!("{} is not a directory: give the --dir of `ringcap run`", dir.display());
    }
    if args.with_stats && args.from.is_some() {
        anyhow::bail!(
            "--with-stats reads the ring's own snapshots: with --from, each archived pin has its statistics in NAME.stats.json"
        );
    }
    let limits = PullLimits {
        max_packets: args.max_packets.unwrap_or(u64::MAX),
        max_bytes: match args.max_bytes {
            Some(DiskLimit::Bytes(b)) => b,
            Some(DiskLimit::Percent(_)) => {
                anyhow::bail!("--max-bytes takes a size (like 2G), not a percentage")
            }
            None => u64::MAX,
        },
    };
    let sink: Box<dyn std::io::Write> = if args.write == Path::new("-") {
        if std::io::stdout().is_terminal() {
            anyhow::bail!(
                "refusing to write a capture to a terminal: use -w FILE or a pipe (| wireshark -k -i -)"
            );
        }
        Box::new(std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?))
    } else {
        Box::new(
            std::fs::File::create(&args.write)
                .with_context(|| format!("cannot create {}", args.write.display()))?,
        )
    };
    let (files, opened) = match (&args.dir, &args.from) {
        (Some(dir), _) => retrieve::pull::open_ring(dir)
            .with_context(|| format!("cannot read the ring in {}", dir.display()))?,
        (None, Some(url)) => open_archived(&Arc::new(args.archive.connect(url)?), window)?,
        (None, None) => unreachable!("clap requires --dir or --from"),
    };
    // pcapng unless told otherwise when the files hold it: their packets keep their
    // direction and interface.
    let format = args.format.unwrap_or(if files.iter().any(|f| f.format.pcapng) {
        Format::Pcapng
    } else {
        Format::Pcap
    });
    let mut out = Stream::new(std::io::BufWriter::with_capacity(1 << 20, sink), format, DEFAULT_SNAPLEN)?;
    let report = retrieve::pull::pull_files(files, opened, window, &filter, limits, &mut out)
        .context("writing the pulled packets")?;
    for warning in &report.warnings {
        eprintln!("ringcap: warning: {warning}");
    }
    if out.directions_dropped() > 0 {
        eprintln!(
            "ringcap: warning: {} packets were written without their direction and interface: classic pcap has no field for them (--format pcapng keeps them)",
            out.directions_dropped()
        );
    }
    if args.with_stats {
        let stats_file = PathBuf::from(format!("{}.stats.json", args.write.display()));
        match retrieve::stats::window_stats(args.dir.as_deref().unwrap_or(Path::new(".")), window) {
            Ok(stats) => {
                std::fs::write(&stats_file, serde_json::to_string_pretty(&stats)?)
                    .with_context(|| format!("cannot write {}", stats_file.display()))?;
                eprintln!("ringcap: statistics of the window in {}", stats_file.display());
            }
            Err(why) => eprintln!("ringcap: warning: no statistics for this window: {why}"),
        }
    }
    eprintln!(
        "ringcap: pulled {} packets from {} files ({} frames read, {} skipped by their summaries, {} damaged frames and {} damaged bytes skipped, {} unreadable files)",
        report.packets,
        report.files_read,
        report.frames_read,
        report.frames_skipped,
        report.frames_damaged,
        report.bytes_damaged,
        report.files_unreadable
    );
    Ok(ExitCode::SUCCESS)
}
