//! Retrieval: the packets of a time window, filtered, out of the ring while capture goes on.
pub mod out;
pub mod pull;
pub mod stats;
pub mod window;
