//! The `ringcap` command line: one module per subcommand, over the library.
mod args;
mod bench;
mod capture;
mod choices;
mod doctor;
mod pin;
mod pull;
mod run;
mod stats;
#[cfg(test)]
mod tests;
mod top;
mod triggers;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use capture::CaptureArgs;
use clap::{CommandFactory, Parser, Subcommand};
use doctor::DoctorArgs;
use pull::PullArgs;
use run::RunArgs;
use stats::StatsArgs;

/// ringcap: an always-on packet capture appliance, a network flight recorder.
#[derive(Parser)]
#[command(name = "ringcap", version, about, args_override_self = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Capture packets from an interface into one pcap file, like `tcpdump -w`.
    Capture(CaptureArgs),
    /// Capture continuously into a ring of rotated, zstd-compressed pcap files, like
    /// `tcpdump -G 3600 -W 24 -w FILE`, within a file count and disk budget.
    Run(Box<RunArgs>),
    /// Pull the packets of a time window out of a ring, filtered, while capture goes on.
    Pull(PullArgs),
    /// Print a running daemon's TCP health and counters (from its `--http` API).
    Stats(StatsArgs),
    /// Show a running daemon's TCP connections, the worst first (retransmissions, RTT,
    /// bytes, resets...), refreshed like top(1), and the servers behind unanswered and
    /// refused connection attempts and the hosts sending resets: `ringcap top -o rtt`.
    Top(top::TopArgs),
    /// Keep a window of a running daemon's ring out of rotation (and, with its
    /// `--archive`, upload it): `ringcap pin --last 10m host 10.0.1.5 --name incident-42`.
    Pin(pin::PinArgs),
    /// Release a pinned window: its bytes go back to the ring.
    Unpin(pin::UnpinArgs),
    /// List a running daemon's pinned windows and where each is (copying, pinned, archived).
    Pins(pin::PinsArgs),
    /// Show a running daemon's trigger rules and the alerts posted to it: each one's state
    /// (idle, pending, firing, cooling_down), its values now, its firings and what was
    /// suppressed: `ringcap triggers`.
    Triggers(triggers::TriggersArgs),
    /// Check whether this machine can run ringcap well, and say what to do when not.
    Doctor(DoctorArgs),
    /// Measure how fast this box captures without loss (zero-loss search per frame size
    /// and mode), where it loses first, its CPU and disk, and write report.json and
    /// report.html.
    Bench(Box<bench::BenchArgs>),
    /// Print a shell completion script: `ringcap completions bash > /etc/bash_completion.d/ringcap`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (ringcap.1, ringcap-run.1, ...) into DIR (used by packaging).
    #[command(hide = true)]
    Manpages { dir: PathBuf },
}

/// The command line, with `run --config FILE` expanded in place (the file's settings
/// first, so options given on the command line override them), and FILE.
pub(crate) fn arguments() -> Result<(Vec<String>, Option<String>), capture_daemon::config::ConfigError> {
    let mut args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("run") {
        if let Some(at) = args.iter().position(|a| a == "--config" || a.starts_with("--config=")) {
            let path = match args[at].strip_prefix("--config=") {
                Some(path) => {
                    let path = path.to_string();
                    args.remove(at);
                    path
                }
                None if at + 1 < args.len() => {
                    let path = args.remove(at + 1);
                    args.remove(at);
                    path
                }
                None => return Ok((args, None)),
            };
            let from_file = capture_daemon::config::arguments(Path::new(&path), &run_keys())?;
            // The file's options go right after `run`, so later ones from the command line win.
            args.splice(2..2, from_file);
            return Ok((args, Some(path)));
        }
    }
    Ok((args, None))
}

/// The keys a config file may set: `run`'s long options, `_` for `-` (not `config`,
/// `help` or `version`: a file that asks for help would stop a service "successfully").
fn run_keys() -> Vec<String> {
    let command = Cli::command();
    let run = command.find_subcommand("run").expect("run is a subcommand");
    run.get_arguments()
        .filter_map(|arg| arg.get_long())
        .filter(|long| !["config", "help", "version"].contains(long))
        .map(|long| long.replace('-', "_"))
        .collect()
}

pub fn main() -> ExitCode {
    let (args, config) = match arguments() {
        Ok(expanded) => expanded,
        Err(error) => {
            eprintln!("ringcap: error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let cli = Cli::try_parse_from(args).unwrap_or_else(|error| {
        if let (Some(path), true) = (config, error.use_stderr()) {
            // Which file the option came from: its keys read as `--key=value` here.
            eprintln!(
                "ringcap: in the options of {path} (key = value read as --key=value) or the command line:"
            );
        }
        error.exit()
    });
    let result = match cli.command {
        Command::Capture(args) => capture::capture(args),
        Command::Run(args) => run::run(*args),
        Command::Pull(args) => pull::pull(args),
        Command::Stats(args) => {
            stop_quietly_on_closed_pipe();
            stats::stats(args)
        }
        Command::Top(args) => {
            stop_quietly_on_closed_pipe();
            top::top(args)
        }
        Command::Pin(args) => pin::pin(args),
        Command::Unpin(args) => pin::unpin(args),
        Command::Pins(args) => pin::pins(args),
        Command::Triggers(args) => triggers::triggers(args),
        Command::Doctor(args) => doctor::doctor(args),
        Command::Bench(args) => bench::bench(*args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ringcap", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Manpages { dir } => manpages(&dir),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("ringcap: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// For the commands that only print (`stats`, `top`): a reader that goes away (`| head`)
/// ends the process quietly, as it ends cat or grep, instead of a panic on the next line.
/// Their HTTP requests are unaffected (sockets write with MSG_NOSIGNAL).
fn stop_quietly_on_closed_pipe() {
    // SAFETY: restores the default action of one signal before any thread is started.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}

/// One page for ringcap and one for each subcommand (`ringcap-run.1`, ...), from the
/// same definitions that parse the command line, so the pages never fall behind.
pub(crate) fn manpages(dir: &Path) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    Ok(ExitCode::SUCCESS)
}
