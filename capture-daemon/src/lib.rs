//! ringcap: an always-on packet capture appliance (a network flight recorder).
//!
//! Data flows one way: the kernel programs ([`kernel`]) fill per-CPU ring buffers or
//! AF_XDP sockets ([`capture::xsk`]); the [`capture`] reader merges their records in time
//! order, in place, into pcap batches stamped with wall-clock time ([`capture::clock`]),
//! one copy per packet; a [`session`] runs it and the sinks ([`output`], the ring writer
//! of [`storage`]) write them; [`health`] keeps the TCP health the programs measure.
//! Files -> index -> [`retrieve`]; the ring -> [`pins`] -> [`archive`]. [`daemon`]
//! assembles `ringcap run`; [`records`] defines what ringcap writes for itself and reads back.
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
pub mod triggers;
