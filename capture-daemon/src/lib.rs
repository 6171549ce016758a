//! ringcap: an always-on packet capture appliance (a network flight recorder).
//!
//! Data flows one way: the kernel programs ([`kernel`]) fill per-CPU ring buffers or
//! AF_XDP sockets ([`xsk`]); the [`capture`] reader merges their records in time order,
//! in place, into pcap batches stamped with wall-clock time ([`clock`]), one copy per
//! packet; and sinks ([`output`], [`storage`]) write them; [`retrieve`] reads them back.
pub mod api;
pub mod archive;
pub mod bench;
pub mod capture;
pub mod config;
pub mod daemon;
pub mod doctor;
pub mod filter;
pub mod health;
pub mod kernel;
pub mod output;
pub mod pcap;
pub mod pins;
pub mod privileges;
pub mod records;
pub mod retrieve;
pub mod session;
pub mod storage;
pub mod timefmt;
