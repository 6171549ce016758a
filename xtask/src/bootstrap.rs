//! Installs what a fresh machine lacks for a task, and no more: the demo gets what building
//! and running ringcap needs; the tests add their peers (tshark, a browser, an S3 server);
//! a no-op when all is there.
use std::process::{Command, Stdio};

use anyhow::Result;

use crate::run as run_checked;

/// What a task needs installed; each includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Build ringcap and run it: `build`, `demo`, `bench`.
    Build,
    /// Also build and check the Debian package: `package`.
    Package,
    /// Also every peer the tests compare against: `test`.
    Test,
}

/// Debian packages to build and run ringcap: LLVM 22 for bpf-linker, zstd for the zstd
/// crate, libpcap (its filter compiler is ringcap's), and what the demo and benchmarks run.
const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libclang-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "libpcap-dev",
    // The kernel's view of the loaded programs (run time statistics in the benchmarks).
    "bpftool",
    "iproute2",
    "iputils-ping",
    // The peer of the benchmarks, and the demo's reader of a pulled file.
    "tcpdump",
    "zstd",
];

/// systemd-analyze, which checks the shipped unit.
const PACKAGE_PACKAGES: &[&str] = &["systemd"];

/// The real peers the tests compare against.
const TEST_PACKAGES: &[&str] = &[
    "tshark",
    "util-linux",
    "curl",
    // A FUSE filesystem whose fsync fails on demand (the ring's fault tests).
    "python3-fusepy",
    // The Prometheus project's OpenMetrics parser, which reads /metrics in the tests.
    "python3-prometheus-client",
    // A real browser, headless: the bench report's HTML must render.
    "chromium",
    // The unit's system call filter is checked against a traced daemon.
    "strace",
    // Real TLS (s_server, s_client) for the per-flow cut of encrypted flows.
    "openssl",
    // Loss on one port beside clean flows, and SYNs dropped (the per-flow view's tests).
    "nftables",
    // Pings with DF set through a smaller MTU (the ICMP path-MTU test).
    "iputils-ping",
    // A real resolver for the DNS health test.
    "dnsmasq-base",
    // The real alerting chain of the trigger tests: Prometheus scrapes ringcap, an alert
    // rule fires, Alertmanager posts its webhook to ringcap.
    "prometheus",
    "prometheus-alertmanager",
];

fn run_quiet(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).stderr(Stdio::null()).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Installs what `scope` needs and is missing.
pub fn run(scope: Scope) -> Result<()> {
    let mut wanted = BUILD_PACKAGES.to_vec();
    if scope >= Scope::Package {
        wanted.extend(PACKAGE_PACKAGES);
    }
    if scope >= Scope::Test {
        wanted.extend(TEST_PACKAGES);
    }
    let missing: Vec<&str> = wanted
        .into_iter()
        .filter(|package| {
            run_quiet("dpkg-query", &["-W", "-f=${Status}", package])
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if !missing.is_empty() {
        eprintln!("xtask: installing {}", missing.join(" "));
        run_checked(Command::new("apt-get").arg("update").arg("-q"))?;
        run_checked(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    let has_nightly = run_quiet("rustup", &["toolchain", "list"]).is_some_and(|l| l.contains("nightly"));
    if !has_nightly {
        eprintln!("xtask: installing the nightly toolchain");
        run_checked(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let has_rust_src = run_quiet("rustup", &["component", "list", "--toolchain", "nightly", "--installed"])
        .is_some_and(|l| l.lines().any(|c| c.starts_with("rust-src")));
    if !has_rust_src {
        eprintln!("xtask: adding rust-src to nightly");
        run_checked(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    }
    if scope >= Scope::Package && run_quiet("cargo", &["deb", "--version"]).is_none() {
        eprintln!("xtask: installing cargo-deb (about 2 minutes)");
        run_checked(Command::new("cargo").args(["install", "cargo-deb", "--version", "3.8.0", "--locked"]))?;
    }
    if run_quiet("bpf-linker", &["--version"]).is_none() {
        eprintln!("xtask: building bpf-linker against LLVM 22 (about 2 minutes)");
        run_checked(
            Command::new("cargo")
                .args([
                    "install",
                    "bpf-linker",
                    "--version",
                    "0.13.0",
                    "--no-default-features",
                    "--features",
                    "llvm-22",
                ])
                .env("LLVM_PREFIX", "/usr/lib/llvm-22"),
        )?;
    }
    // The archive tests' object store: a real S3-compatible server (Garage, one node),
    // built once from crates.io with the lock file it ships.
    let garage_version = run_quiet("garage", &["--version"]);
    if scope >= Scope::Test && !garage_version.as_deref().is_some_and(|v| v.contains(GARAGE_VERSION)) {
        eprintln!("xtask: building Garage {GARAGE_VERSION}, the S3 server of the archive tests (10 to 16 minutes on 2 cores)");
        run_checked(Command::new("cargo").args([
            "install",
            "--locked",
            &format!("garage@{GARAGE_VERSION}"),
            "--no-default-features",
            "--features",
            "bundled-libs,lmdb",
        ]))?;
    }
    Ok(())
}

/// The Garage release the archive tests run against.
const GARAGE_VERSION: &str = "2.5.0";
