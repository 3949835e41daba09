//! pcap-surgery: trim, scrub and diagnose captures of failing WebSocket connections.
//!
//! A packet's path: `capture` reads a record → `engine` runs the one pass: `wire` decodes
//! link, IP and TCP/UDP, `flow` keys it and puts its bytes in stream order, `proto`
//! classifiers say what the bytes are, and the engine reports typed `engine::Event`s and
//! applies `policy` (keep / truncate / drop) → `trim` writes the packet in input order through
//! `capture`'s writer, `scrub` rewriting it first when asked; `flows` and `diagnose` run the
//! same pass with the output thrown away and read its flow records and events.

pub mod annotate;
pub mod batch;
pub mod capture;
#[cfg(feature = "cli")]
pub mod cli;
pub mod decrypt;
pub mod diagnose;
pub mod engine;
pub mod error;
pub mod flow;
pub mod flows;
#[doc(hidden)]
pub mod fuzzing;
pub mod interrupt;
pub mod policy;
pub mod progress;
pub mod proto;
pub mod report;
pub mod scrub;
#[cfg(test)]
mod test_rng;
pub mod trim;
pub mod wire;

pub use error::{Error, Result};
