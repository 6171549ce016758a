//! `ringcap pin`, `ringcap unpin`, `ringcap pins`: a running daemon's pinned windows,
//! through its API (the daemon owns the ring's budget, so it makes and removes pins).
use std::process::ExitCode;
use std::time::{Duration, Instant};

use capture_daemon::records::PinManifest;
use clap::Args;
use serde_json::Value;

use super::args::{answer_error, ApiArgs, WindowArgs};

#[derive(Args)]
pub(crate) struct PinArgs {
    #[command(flatten)]
    pub(crate) api: ApiArgs,
    #[command(flatten)]
    pub(crate) window: WindowArgs,
    /// The pin's name (letters, digits, '-', '_', '.'); default: pin-START.
    #[arg(long, value_name = "NAME")]
    pub(crate) name: Option<String>,
    /// Return at once instead of waiting for the copy.
    #[arg(long)]
    pub(crate) no_wait: bool,
    /// Keep only the packets this filter selects (tcpdump syntax).
    /// Options may come before or after it, as with tcpdump (`--` ends them).
    #[arg(value_name = "EXPRESSION")]
    pub(crate) expression: Vec<String>,
}

#[derive(Args)]
pub(crate) struct UnpinArgs {
    #[command(flatten)]
    pub(crate) api: ApiArgs,
    /// The pin to release.
    pub(crate) name: String,
}

#[derive(Args)]
pub(crate) struct PinsArgs {
    #[command(flatten)]
    pub(crate) api: ApiArgs,
}

/// Percent-encodes a query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn describe(pin: &Value) -> String {
    let manifest = serde_json::from_value::<PinManifest>(pin["manifest"].clone()).ok();
    let mut line = format!(
        "{} {}: {} bytes",
        pin["name"].as_str().unwrap_or_default(),
        pin["state"].as_str().unwrap_or_default(),
        pin["bytes"]
    );
    if let Some(manifest) = manifest {
        line.push_str(&format!(
            ", {} packets from {} to {}, filter {:?}",
            manifest.packets, manifest.first_packet, manifest.last_packet, manifest.filter
        ));
    }
    if let Some(until) = pin["growing_until"].as_str() {
        line.push_str(&format!(" so far, growing with capture until {until}"));
    }
    if let Some(error) = pin["error"].as_str() {
        line.push_str(&format!(": {error}"));
    }
    if let Some(error) = pin["upload_error"].as_str() {
        line.push_str(&format!("; its upload failed (retried): {error}"));
    }
    line
}

pub(crate) fn pin(args: PinArgs) -> anyhow::Result<ExitCode> {
    let mut query = Vec::new();
    for (key, value) in [
        ("last", &args.window.last),
        ("since", &args.window.since),
        ("until", &args.window.until),
        ("name", &args.name),
    ] {
        if let Some(value) = value {
            query.push(format!("{key}={}", encode(value)));
        }
    }
    let expression = args.expression.join(" ");
    if !expression.is_empty() {
        query.push(format!("filter={}", encode(&expression)));
    }
    let (status, pin) = args.api.call("POST", &format!("/v1/pins?{}", query.join("&")))?;
    if status != 202 {
        return Err(answer_error(status, &pin));
    }
    let name = pin["name"].as_str().unwrap_or_default().to_string();
    if args.no_wait {
        println!("{}", describe(&pin));
        return Ok(ExitCode::SUCCESS);
    }
    let (started, mut last_said) = (Instant::now(), Instant::now());
    loop {
        let (status, pin) = args.api.call("GET", &format!("/v1/pins/{}", encode(&name)))?;
        if status != 200 {
            return Err(answer_error(status, &pin));
        }
        match pin["state"].as_str() {
            Some("copying") => {
                if last_said.elapsed() >= Duration::from_secs(10) {
                    eprintln!("ringcap: still copying {name} ({} s)...", started.elapsed().as_secs());
                    last_said = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Some("failed") => {
                anyhow::bail!("pin {name} failed: {}", pin["error"].as_str().unwrap_or_default())
            }
            _ => {
                println!("{}", describe(&pin));
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

pub(crate) fn unpin(args: UnpinArgs) -> anyhow::Result<ExitCode> {
    let (status, pin) = args.api.call("DELETE", &format!("/v1/pins/{}", encode(&args.name)))?;
    if status != 200 {
        return Err(answer_error(status, &pin));
    }
    println!("unpinned {}", describe(&pin));
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn pins(args: PinsArgs) -> anyhow::Result<ExitCode> {
    let (status, body) = args.api.call("GET", "/v1/pins")?;
    if status != 200 {
        return Err(answer_error(status, &body));
    }
    let pins = body["pins"].as_array().cloned().unwrap_or_default();
    if pins.is_empty() {
        println!("no pins: every window of the ring rotates as usual");
    }
    for pin in &pins {
        println!("{}", describe(pin));
    }
    Ok(ExitCode::SUCCESS)
}
