//! Test tooling for ringcap: a network-namespace test bed, frame builders, and a
//! line-rate traffic generator driven by `BPF_PROG_TEST_RUN` live frames.
pub mod bpf;
pub mod frames;
pub mod generator;
pub mod harness;
pub mod testbed;
