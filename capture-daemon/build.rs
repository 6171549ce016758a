//! Builds the eBPF programs of `capture-ebpf` and leaves the object in OUT_DIR, where
//! `src/kernel.rs` embeds it: one binary to deploy, never out of step with its programs.
fn main() -> anyhow::Result<()> {
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../capture-ebpf");
    let package = aya_build::Package { name: "capture-ebpf", root_dir, ..Default::default() };
    // The shared record layouts are part of the object too.
    println!("cargo:rerun-if-changed={}", concat!(env!("CARGO_MANIFEST_DIR"), "/../capture-common"));
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
