//! `ringcap doctor` on the test bed: a veth end takes native XDP (tried for real), the
//! ring directory is written to, and what cannot work fails the command with advice.
mod common;

use common::OutputWithin;

use common::{bed, scratch, RINGCAP};
use ringcap_tools::testbed::RX_IF;

#[test]
fn doctor_checks_the_machine_an_interface_and_a_ring_directory() {
    let bed = bed();
    let dir = scratch("doctor-ring");
    std::fs::create_dir_all(&dir).unwrap();
    let out = bed
        .rx(RINGCAP)
        .args(["doctor", "-i", RX_IF, "--dir", dir.to_str().unwrap(), "--json", "--mode", "afxdp"])
        .succeed();
    let report: serde_json::Value = serde_json::from_slice(&out.0).unwrap();
    let checks = report["checks"].as_array().unwrap();
    let status = |name: &str| {
        checks.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("no {name} in {report}"))["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for name in ["kernel", "btf", "bpf_jit", "privileges", "open_files"] {
        assert_eq!(status(name), "ok", "{name}: {report}");
    }
    assert_eq!(status(&format!("interface {RX_IF} xdp")), "ok", "veth takes native XDP: {report}");
    // veth binds AF_XDP sockets in copy mode only, on its one receive queue.
    let af_xdp = checks.iter().find(|c| c["name"] == format!("interface {RX_IF} af_xdp")).unwrap();
    assert_eq!(af_xdp["status"], "warn", "{af_xdp}");
    assert!(af_xdp["found"].as_str().unwrap().starts_with("copy mode on queue 0"), "{af_xdp}");
    assert!(af_xdp["found"].as_str().unwrap().contains("locked-memory limit"), "{af_xdp}");
    let queues = checks.iter().find(|c| c["name"] == format!("interface {RX_IF} queues")).unwrap();
    assert!(queues["found"].as_str().unwrap().contains("receive queue(s) for"), "{queues}");
    assert_eq!(status(&format!("ring {} write speed", dir.display())), "ok", "{report}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "the write probe leaves nothing behind");
    // The interface is free again: the try detached its program.
    let again = bed.rx(RINGCAP).args(["doctor", "-i", RX_IF]).output_within_deadline();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stdout));
    // In ring mode (the default) AF_XDP is not in the way.
    assert!(!String::from_utf8_lossy(&again.stdout).contains("af_xdp"));
    // A directory `run` would create is no failure: its parent's filesystem is checked.
    let missing = dir.join("new/ring");
    let out = bed.rx(RINGCAP).args(["doctor", "--dir", missing.to_str().unwrap()]).succeed();
    let printed = String::from_utf8_lossy(&out.0);
    let line = format!(
        "ok    ring {}: does not exist yet: `ringcap run` creates it in {}",
        missing.display(),
        dir.display()
    );
    assert!(printed.contains(&line), "{printed}");
    assert!(!missing.exists() && std::fs::read_dir(&dir).unwrap().count() == 0, "nothing is made");
    // Under a file, nothing can be made: that fails, saying why.
    let file = scratch("doctor-file");
    std::fs::write(&file, b"x").unwrap();
    let under = file.join("ring");
    let out = bed.rx(RINGCAP).args(["doctor", "--dir", under.to_str().unwrap()]).output_within_deadline();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{printed}");
    assert!(
        printed.contains(&format!("cannot be created: {} is not a directory", file.display())),
        "{printed}"
    );

    let bad = bed
        .rx(RINGCAP)
        .args(["doctor", "-i", "nosuch0", "--dir", "/proc/ringcap-nowhere"])
        .output_within_deadline();
    let stdout = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL  interface nosuch0: no such interface"), "{stdout}");
    assert!(stdout.contains("-> check the name with `ip link`"), "{stdout}");
    assert!(stdout.contains("FAIL  ring /proc/ringcap-nowhere"), "{stdout}");
    assert!(!std::path::Path::new("/proc/ringcap-nowhere").exists());
}
