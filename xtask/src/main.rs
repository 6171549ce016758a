//! `cargo xtask`: set up a machine, build, test, demo and benchmark ringcap.
//!
//! Every command that needs the toolchain first runs [`bootstrap`], which installs only
//! what is missing (apt packages, nightly `rust-src`, `bpf-linker` for LLVM 22), so each
//! command works on a fresh machine and costs nothing extra on a prepared one.
mod bootstrap;
mod demo;
mod package;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use bootstrap::Scope;

#[derive(Parser)]
#[command(about = "ringcap's build, test, demo and benchmark tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install whatever is missing to build and test ringcap (idempotent).
    Bootstrap,
    /// Build the eBPF object and target/release/ringcap (the object embedded in it).
    Build,
    /// Run every test: formatting, clippy (user space and eBPF), unit and kernel tests.
    Test {
        /// Arguments passed to `cargo test` after `--` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run the built-in demo: a test bed, generated and real traffic, capture, summary.
    Demo,
    /// Build the Debian package (target/debian/ringcap_VERSION_amd64.deb) and check it.
    Package,
    /// Run a benchmark (capture, ...) and write its figures to target/bench/NAME.json.
    Bench {
        /// Which benchmark.
        name: String,
        /// Extra arguments for the benchmark.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    let root = workspace_root();
    std::env::set_current_dir(&root)?;
    match Cli::parse().command {
        Task::Bootstrap => bootstrap::run(Scope::Test),
        Task::Build => {
            bootstrap::run(Scope::Build)?;
            build()
        }
        Task::Test { args } => {
            bootstrap::run(Scope::Test)?;
            test(&args)
        }
        Task::Demo => {
            bootstrap::run(Scope::Build)?;
            build_demo()?;
            demo::run(&root)
        }
        Task::Package => {
            bootstrap::run(Scope::Package)?;
            build()?;
            let deb = package::build(&root)?;
            package::verify(&deb)?;
            println!(
                "package: {} (contents, conffiles, man pages, completions, unit verified)",
                deb.display()
            );
            Ok(())
        }
        Task::Bench { name, args } => {
            bootstrap::run(Scope::Build)?;
            build()?;
            let status = Command::new(root.join("target/release/ringcap-bench"))
                .arg(&name)
                .args(&args)
                .status()
                .context("running ringcap-bench")?;
            if !status.success() {
                bail!("benchmark {name} failed");
            }
            Ok(())
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf()
}

/// Runs a command, failing with its description if it fails.
pub(crate) fn run(command: &mut Command) -> Result<()> {
    let description = format!("{command:?}");
    let status = command.status().with_context(|| format!("cannot run {description}"))?;
    if !status.success() {
        bail!("{description} failed ({status})");
    }
    Ok(())
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn build() -> Result<()> {
    run(cargo().args(["build", "--release"]))
}

/// What the demo runs: `ringcap`, and `ringcap-gen` for its traffic.
fn build_demo() -> Result<()> {
    run(cargo().args(["build", "--release", "-p", "capture-daemon", "-p", "ringcap-tools"]).args([
        "--bin",
        "ringcap",
        "--bin",
        "ringcap-gen",
    ]))
}

fn test(args: &[String]) -> Result<()> {
    run(cargo().args(["fmt", "--all", "--check"]))?;
    run(cargo().args(["clippy", "--release", "--all-targets", "--", "-D", "warnings"]))?;
    run(Command::new("rustup")
        .args(["run", "nightly", "cargo", "clippy", "--release", "-p", "capture-ebpf"])
        .args([
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--",
            "-D",
            "warnings",
            "-C",
            "panic=abort",
        ]))?;
    build()?;
    let mut child = cargo().args(["test", "--release", "--"]).args(args).stdout(Stdio::piped()).spawn()?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let line = line?;
        println!("{line}");
        if let Some(result) = line.strip_prefix("test result: ") {
            passed += count_before(result, " passed");
            failed += count_before(result, " failed");
        }
    }
    let status = child.wait()?;
    // The package is tested too: built from the binary just tested, unpacked and checked.
    let packaged = package::build(&workspace_root()).and_then(|deb| package::verify(&deb));
    match &packaged {
        Ok(()) => passed += 1,
        Err(e) => {
            eprintln!("package: {e:#}");
            failed += 1;
        }
    }
    // One closing line for the whole run: cargo prints one per test binary.
    println!("tests: {passed} passed, {failed} failed");
    if !status.success() || packaged.is_err() {
        bail!("tests failed");
    }
    Ok(())
}

/// The number just before `label` in a cargo "test result" line.
fn count_before(text: &str, label: &str) -> u64 {
    text.split(';')
        .find_map(|part| {
            part.trim().trim_start_matches("ok. ").trim_start_matches("FAILED. ").strip_suffix(label)
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}
