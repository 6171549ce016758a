//! A test bed of two network namespaces joined by a veth pair.
//!
//! Every test bed gets uniquely named namespaces, so tests run in parallel without
//! clashing; inside them the interface names and addresses are always the same.
//! Dropping the bed deletes both namespaces (and with them the veth pair), also when
//! a test panics; [`TestBed::remove_stale`] cleans up after killed test processes.
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Interface name of the sending end, in the `tx` namespace.
pub const TX_IF: &str = "veth-tx";
/// Interface name of the receiving (captured) end, in the `rx` namespace.
pub const RX_IF: &str = "veth-rx";
pub const TX_IP: &str = "10.77.0.1";
pub const RX_IP: &str = "10.77.0.2";
pub const TX_MAC: [u8; 6] = [0x02, 0x72, 0x63, 0, 0, 1];
pub const RX_MAC: [u8; 6] = [0x02, 0x72, 0x63, 0, 0, 2];
/// The second pair of a two-pair bed (`TestBedOptions::pairs = 2`).
pub const TX2_IF: &str = "veth-tx2";
pub const RX2_IF: &str = "veth-rx2";
/// Destination of generated frames: no host has it, so the receiving stack drops them
/// quietly (no ICMP errors, no ARP) and captures hold exactly what was generated.
pub const SINK_MAC: [u8; 6] = [0x02, 0x72, 0x63, 0, 0, 0xff];
const PREFIX: &str = "rcap";

#[derive(Debug, thiserror::Error)]
pub enum TestBedError {
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot run `{command}`: {source}")]
    Spawn { command: String, source: std::io::Error },
}

/// Two namespaces, `tx` and `rx`, joined by `veth-tx` <-> `veth-rx`.
pub struct TestBed {
    pub tx_ns: String,
    pub rx_ns: String,
}

/// Options of a new test bed.
#[derive(Clone, Copy, Debug)]
pub struct TestBedOptions {
    pub mtu: u32,
    /// IPv6 stays off by default: its router and multicast chatter would add packets
    /// to captures whose exact contents a test controls.
    pub ipv6: bool,
    /// veth pairs between the namespaces: 1, or 2 for multi-interface captures.
    pub pairs: u8,
}

impl Default for TestBedOptions {
    fn default() -> Self {
        TestBedOptions { mtu: 1500, ipv6: false, pairs: 1 }
    }
}

impl TestBed {
    /// Creates a test bed with the default options.
    pub fn new() -> Result<Self, TestBedError> {
        Self::with_options(TestBedOptions::default())
    }

    pub fn with_options(options: TestBedOptions) -> Result<Self, TestBedError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!("{PREFIX}{}x{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let bed = TestBed { tx_ns: format!("{id}-tx"), rx_ns: format!("{id}-rx") };
        bed.build(options)?;
        Ok(bed)
    }

    fn build(&self, options: TestBedOptions) -> Result<(), TestBedError> {
        let (tx, rx) = (self.tx_ns.as_str(), self.rx_ns.as_str());
        let mtu = options.mtu.to_string();
        run(&["ip", "netns", "add", tx])?;
        run(&["ip", "netns", "add", rx])?;
        if !options.ipv6 {
            for ns in [tx, rx] {
                for conf in ["all", "default"] {
                    run(&[
                        "ip",
                        "netns",
                        "exec",
                        ns,
                        "sysctl",
                        "-qw",
                        &format!("net.ipv6.conf.{conf}.disable_ipv6=1"),
                    ])?;
                }
            }
        }
        let mut ends = vec![(tx, TX_IF, TX_MAC, TX_IP.to_string()), (rx, RX_IF, RX_MAC, RX_IP.to_string())];
        run(&["ip", "-n", tx, "link", "add", TX_IF, "type", "veth", "peer", "name", RX_IF, "netns", rx])?;
        if options.pairs > 1 {
            run(&[
                "ip", "-n", tx, "link", "add", TX2_IF, "type", "veth", "peer", "name", RX2_IF, "netns", rx,
            ])?;
            let (mut tx_mac, mut rx_mac) = (TX_MAC, RX_MAC);
            tx_mac[5] = 3;
            rx_mac[5] = 4;
            ends.push((tx, TX2_IF, tx_mac, "10.78.0.1".into()));
            ends.push((rx, RX2_IF, rx_mac, "10.78.0.2".into()));
        }
        for (ns, ifname, mac, ip) in ends {
            let mac = mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
            run(&["ip", "-n", ns, "link", "set", ifname, "address", &mac, "mtu", &mtu])?;
            run(&["ip", "-n", ns, "addr", "add", &format!("{ip}/24"), "dev", ifname])?;
            run(&["ip", "-n", ns, "link", "set", ifname, "up"])?;
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// A command that runs `program` inside namespace `ns`.
    pub fn command_in(ns: &str, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", ns, program]);
        command
    }

    /// A command run in the sending namespace.
    pub fn tx(&self, program: &str) -> Command {
        Self::command_in(&self.tx_ns, program)
    }

    /// A command run in the receiving (captured) namespace.
    pub fn rx(&self, program: &str) -> Command {
        Self::command_in(&self.rx_ns, program)
    }

    /// Runs `work` on a thread that has entered namespace `ns` (namespace switches are
    /// per thread, so the caller's own thread stays where it is).
    pub fn in_namespace<T: Send + 'static>(
        ns: &str,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<std::io::Result<T>> {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path)?;
            // SAFETY: a valid namespace file descriptor; only this thread switches.
            if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(work())
        })
    }

    /// Packets the captured interface (`veth-rx`) has received so far, XDP or not.
    pub fn rx_packets(&self) -> std::io::Result<u64> {
        link_counter(&self.rx_ns, RX_IF, "RX:", "packets")
    }

    /// Frames the veth pair has dropped on their way to `veth-rx` so far: a sender that
    /// outruns the receiver's queue loses frames before any program or capture sees them,
    /// and veth counts them as `veth-tx`'s TX drops (drops at the receiver's XDP program,
    /// such as an AF_XDP socket's full ring, are `veth-rx`'s RX drops, and not counted here).
    pub fn pair_drops(&self) -> std::io::Result<u64> {
        link_counter(&self.tx_ns, TX_IF, "TX:", "dropped")
    }

    /// Attaches an `XDP_PASS` program to `veth-rx` (with `ringcap-gen hold-pass`) for
    /// receivers that have no XDP program of their own: veth needs one to accept live
    /// frames. The program stays until the returned holder is dropped.
    pub fn hold_pass(&self, generator: &str) -> std::io::Result<PassHolder> {
        let mut child = self
            .rx(generator)
            .args(["hold-pass", "-i", RX_IF])
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let mut ready = String::new();
        let stdout = child.stdout.as_mut().expect("piped");
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut ready)?;
        if ready.trim() != "ready" {
            let _ = child.kill();
            return Err(std::io::Error::other("ringcap-gen hold-pass did not attach"));
        }
        Ok(PassHolder(child))
    }

    /// Removes namespaces left behind by test processes that no longer exist.
    pub fn remove_stale() {
        let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else { return };
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            let Some(rest) = name.strip_prefix(PREFIX) else { continue };
            let pid: Option<u32> = rest.split('x').next().and_then(|p| p.parse().ok());
            if pid.is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = run(&["ip", "netns", "del", name]);
            }
        }
    }
}

/// The `ringcap-gen hold-pass` process of [`TestBed::hold_pass`]; dropping it detaches
/// the program.
pub struct PassHolder(std::process::Child);

impl Drop for PassHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        let _ = run(&["ip", "netns", "del", &self.tx_ns]);
        let _ = run(&["ip", "netns", "del", &self.rx_ns]);
    }
}

/// One counter of `dev` in namespace `ns`, as `ip -s -o link` shows it: `direction` "RX:" or
/// "TX:", `name` a column ("packets", "dropped"), read from the line of values under it.
fn link_counter(ns: &str, dev: &str, direction: &str, name: &str) -> std::io::Result<u64> {
    let output = TestBed::command_in(ns, "ip").args(["-s", "-o", "link", "show", dev]).output()?;
    // "... RX:  bytes packets errors dropped ... \    BYTES PACKETS ERRORS DROPPED ... \ ..."
    let text = String::from_utf8_lossy(&output.stdout);
    let mut parts = text.split(direction).nth(1).map(|rest| rest.split('\\'));
    let value = parts.as_mut().and_then(|parts| {
        let column = parts.next()?.split_whitespace().position(|header| header == name)?;
        parts.next()?.split_whitespace().nth(column)?.parse().ok()
    });
    value.ok_or_else(|| {
        std::io::Error::other(format!("no {direction} {name} of {dev} in `ip -s -o link`: {text}"))
    })
}

/// Runs a command, turning a non-zero exit into an error with its stderr.
pub fn run(args: &[&str]) -> Result<Output, TestBedError> {
    let command = args.join(" ");
    let output = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|source| TestBedError::Spawn { command: command.clone(), source })?;
    if !output.status.success() {
        return Err(TestBedError::Command {
            command,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(output)
}
