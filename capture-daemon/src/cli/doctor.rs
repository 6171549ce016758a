//! `ringcap doctor`: whether this machine can run ringcap well.
use std::path::PathBuf;
use std::process::ExitCode;

use capture_daemon::session::CaptureMode;
use clap::Args;

use super::choices::choice;

#[derive(Args)]
pub(crate) struct DoctorArgs {
    /// An interface to check (XDP support is tried); repeat for several.
    #[arg(short = 'i', long = "interface", value_name = "IFACE")]
    pub(crate) interface: Vec<String>,
    /// The ring's directory: free space and write speed.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
    /// The capture mode to check for: `afxdp` also binds an AF_XDP socket and checks the
    /// locked-memory limit its UMEMs need.
    #[arg(long, value_parser = choice::<CaptureMode>(), default_value = "ring")]
    pub(crate) mode: CaptureMode,
    /// Print the checks as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn doctor(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    use capture_daemon::doctor::Status;
    let afxdp = args.mode == CaptureMode::Afxdp;
    let checks = capture_daemon::doctor::run(&args.interface, args.dir.as_deref(), afxdp);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "checks": checks }))?);
    } else {
        for check in &checks {
            let status = match check.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            println!("{status}  {}: {}", check.name, check.found);
            if let Some(advice) = &check.advice {
                println!("      -> {advice}");
            }
        }
    }
    let blocked = checks.iter().filter(|c| c.status == Status::Fail).count();
    if blocked > 0 && !args.json {
        eprintln!("ringcap: {blocked} check(s) failed: capture cannot work until they are fixed");
    }
    Ok(if blocked > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
