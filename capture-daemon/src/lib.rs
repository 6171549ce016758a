//! ringcap: an always-on packet capture appliance (a network flight recorder).
//!
//! Data flows one way: the kernel programs ([`kernel`]) fill a ring buffer, the
//! [`capture`] reader turns records into pcap batches stamped with wall-clock time
//! ([`clock`]), and sinks ([`output`]) write them.
pub mod analysis;
pub mod api;
pub mod capture;
pub mod civil;
pub mod clock;
pub mod config;
pub mod filter;
pub mod kernel;
pub mod output;
pub mod pcap;
pub mod retrieve;
pub mod session;
pub mod storage;
