//! `cargo xtask package`: the Debian package (cargo-deb) with the binary, the systemd unit
//! and its user, the example configuration, man pages and shell completions generated
//! from the CLI itself; and the checks `cargo xtask test` makes of it: what it holds, and
//! that what it installs works, unpacked into a scratch root.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::{cargo, run};

/// Files the package must install, under the root it is unpacked into.
const INSTALLED: &[&str] = &[
    "usr/bin/ringcap",
    "lib/systemd/system/ringcap.service",
    "usr/lib/sysusers.d/ringcap.conf",
    "etc/ringcap/ringcap.toml",
    "usr/share/ringcap/grafana/ringcap.json",
    "usr/share/man/man1/ringcap.1",
    "usr/share/man/man1/ringcap-run.1",
    "usr/share/man/man1/ringcap-capture.1",
    "usr/share/man/man1/ringcap-pull.1",
    "usr/share/man/man1/ringcap-stats.1",
    "usr/share/man/man1/ringcap-doctor.1",
    "usr/share/bash-completion/completions/ringcap",
    "usr/share/zsh/vendor-completions/_ringcap",
    "usr/share/fish/vendor_completions.d/ringcap.fish",
    "usr/share/doc/ringcap/README.md",
];

/// The most exposure `systemd-analyze security` may rate the unit, in tenths (it rates 2.1 now; 4.3
/// before PrivateDevices, ProtectKernelLogs, ProtectProc, the system call filter and the rest).
const UNIT_EXPOSURE_MAX: u32 = 25;

fn output(command: &mut Command) -> Result<String> {
    let description = format!("{command:?}");
    let out = command.output().with_context(|| format!("cannot run {description}"))?;
    if !out.status.success() {
        bail!("{description} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// Builds the package from target/release/ringcap; returns the .deb's path.
pub fn build(root: &Path) -> Result<PathBuf> {
    let ringcap = root.join("target/release/ringcap");
    let generated = root.join("target/release/package");
    let _ = std::fs::remove_dir_all(&generated);
    std::fs::create_dir_all(generated.join("completions"))?;
    run(Command::new(&ringcap).arg("manpages").arg(generated.join("man")))?;
    for (shell, file) in [("bash", "ringcap.bash"), ("zsh", "_ringcap"), ("fish", "ringcap.fish")] {
        let script = output(Command::new(&ringcap).args(["completions", shell]))?;
        std::fs::write(generated.join("completions").join(file), script)?;
    }
    let out_dir = root.join("target/debian");
    let printed =
        output(cargo().args(["deb", "-p", "capture-daemon", "--no-build", "--output"]).arg(&out_dir))?;
    let deb = printed.lines().last().map(PathBuf::from).context("cargo deb printed no package path")?;
    ensure!(deb.is_file(), "cargo deb made no {}", deb.display());
    Ok(deb)
}

/// Checks what the package holds and that it works unpacked into a scratch root.
pub fn verify(deb: &Path) -> Result<()> {
    let info = output(Command::new("dpkg-deb").arg("--info").arg(deb))?;
    for needle in ["Package: ringcap", "Depends: libc6", "libpcap0.8", "Architecture: amd64"] {
        ensure!(info.contains(needle), "the package's control lacks {needle:?}:\n{info}");
    }
    let scratch = std::env::temp_dir().join(format!("ringcap-package-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let root = scratch.join("root");
    std::fs::create_dir_all(&root)?;
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&root))?;
    run(Command::new("dpkg-deb").arg("-e").arg(deb).arg(scratch.join("control")))?;
    for path in INSTALLED {
        ensure!(root.join(path).is_file(), "the package does not install /{path}");
    }
    let conffiles = std::fs::read_to_string(scratch.join("control/conffiles"))?;
    ensure!(conffiles.contains("/etc/ringcap/ringcap.toml"), "the configuration is no conffile: {conffiles}");
    ensure!(scratch.join("control/postinst").is_file(), "no postinst to create the ringcap user");
    ensure!(scratch.join("control/prerm").is_file(), "no prerm to stop the daemon on removal");
    for script in ["postinst", "prerm", "postrm"] {
        run(Command::new("sh").arg("-n").arg(scratch.join("control").join(script)))?;
    }
    let binary = root.join("usr/bin/ringcap");
    let version = output(Command::new(&binary).arg("--version"))?;
    ensure!(version.starts_with("ringcap "), "unexpected --version: {version}");
    let page = std::fs::read_to_string(root.join("usr/share/man/man1/ringcap-run.1"))?;
    ensure!(page.starts_with(".ie") || page.contains(".TH"), "ringcap-run.1 is no man page");
    ensure!(page.contains("\\-\\-user") && page.contains("\\-\\-max\\-disk"), "ringcap-run.1 misses options");
    let bash = std::fs::read_to_string(root.join("usr/share/bash-completion/completions/ringcap"))?;
    ensure!(bash.contains("_ringcap()") && bash.contains("--max-disk"), "the bash completion is incomplete");
    // The unit as installed, pointed at the unpacked binary, passes systemd's own checks.
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/ringcap.service"))?;
    ensure!(unit.contains("ExecStart=/usr/bin/ringcap "), "the unit does not run the packaged binary");
    let checked = scratch.join("ringcap.service");
    std::fs::write(&checked, unit.replace("/usr/bin/ringcap", binary.to_str().context("utf-8 path")?))?;
    let verify = Command::new("systemd-analyze").arg("verify").arg(&checked).output()?;
    let complaints = String::from_utf8_lossy(&verify.stderr);
    ensure!(verify.status.success() && complaints.trim().is_empty(), "systemd-analyze verify: {complaints}");
    // systemd's own exposure rating of the sandbox (0 best, 10 worst), checked so it only
    // ever improves.
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true", &format!("--threshold={UNIT_EXPOSURE_MAX}")])
        .arg(&checked)
        .output()?;
    let rating = String::from_utf8_lossy(&security.stdout);
    ensure!(
        security.status.success(),
        "systemd-analyze security rates the unit above {UNIT_EXPOSURE_MAX}:\n{}",
        rating.lines().last().unwrap_or_default()
    );
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}
