//! pcap-surgery: trim, scrub and diagnose captures of failing WebSocket connections.
//!
//! A packet's path: `capture` reads a record → `wire` decodes link, IP and TCP/UDP →
//! `flow` keys it and places its bytes in the stream → `proto` classifiers say what the bytes
//! are → `policy` decides keep / truncate / drop → `trim` writes it, in input order, through
//! `capture`'s writer.

pub mod annotate;
pub mod batch;
pub mod capture;
#[cfg(feature = "cli")]
pub mod cli;
pub mod diagnose;
pub mod error;
pub mod flow;
pub mod flows;
#[doc(hidden)]
pub mod fuzzing;
pub mod policy;
pub mod progress;
pub mod proto;
pub mod report;
pub mod scrub;
pub mod trim;
pub mod wire;

pub use error::{Error, Result};
