//! `ringcap triggers`: a running daemon's trigger rules and the alerts posted to it, each
//! with its state, last readings, firings and suppressed firings (from `/v1/triggers`).
use std::process::ExitCode;

use capture_daemon::records::Reading;
use clap::Args;
use serde_json::Value;

use super::args::{answer_error, ApiArgs};

#[derive(Args)]
pub(crate) struct TriggersArgs {
    #[command(flatten)]
    pub(crate) api: ApiArgs,
    /// Print the daemon's answer as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `expr = value (vs threshold)` for each reading of a trigger.
fn readings(trigger: &Value) -> String {
    let readings: Vec<Reading> = serde_json::from_value(trigger["readings"].clone()).unwrap_or_default();
    readings.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

fn describe(trigger: &Value) -> String {
    let text = |key: &str| trigger[key].as_str().unwrap_or_default().to_string();
    let mut line = format!("{} [{}] {}", text("name"), text("source"), text("state"));
    for (key, label) in [
        ("pending_since", "pending since"),
        ("fired_at", "fired at"),
        ("cooling_down_until", "cooling down until"),
    ] {
        if let Some(at) = trigger[key].as_str() {
            line.push_str(&format!(", {label} {at}"));
        }
    }
    line.push_str(&format!(", {} firings", trigger["firings"]));
    let suppressed: Vec<String> = trigger["suppressed"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, n)| n.as_u64() > Some(0))
                .map(|(reason, n)| format!("{n} {reason}"))
                .collect()
        })
        .unwrap_or_default();
    if !suppressed.is_empty() {
        line.push_str(&format!(", suppressed: {}", suppressed.join(", ")));
    }
    if let Some(pin) = trigger["last_pin"].as_str() {
        line.push_str(&format!(", last pin {pin}"));
        if let Some(state) = trigger["last_pin_state"].as_str() {
            line.push_str(&format!(" ({state}"));
            if let Some(error) = trigger["last_pin_error"].as_str() {
                line.push_str(&format!(": {error}"));
            }
            line.push(')');
        }
    }
    if !text("rule").is_empty() {
        line.push_str(&format!("\n    {}", text("rule")));
    }
    let readings = readings(trigger);
    if !readings.is_empty() {
        let on: Vec<&str> = trigger["group"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|pair| pair[1].as_str())
            .collect();
        let on = if on.is_empty() { String::new() } else { format!(" on {}", on.join(" ")) };
        line.push_str(&format!("\n    now{on}: {readings}"));
    }
    line
}

pub(crate) fn triggers(args: TriggersArgs) -> anyhow::Result<ExitCode> {
    let (status, body) = args.api.call("GET", "/v1/triggers")?;
    if status != 200 {
        return Err(answer_error(status, &body));
    }
    if args.json {
        println!("{body}");
        return Ok(ExitCode::SUCCESS);
    }
    let triggers = body["triggers"].as_array().cloned().unwrap_or_default();
    if triggers.is_empty() {
        println!("no trigger rules (ringcap run --trigger 'NAME: CONDITION') and no alerts received");
    }
    for trigger in &triggers {
        println!("{}", describe(trigger));
    }
    Ok(ExitCode::SUCCESS)
}
