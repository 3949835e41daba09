//! Typed errors of the library. The binary adds the file name and maps them to exit codes;
//! here every error already says which packet (1-based, as Wireshark numbers frames) or byte
//! offset is at fault, because "bad capture" alone sends a user to a hex editor.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a pcap or pcapng file (starts with {0:02x?})")]
    NotACapture(Vec<u8>),
    #[error("empty file: no capture header")]
    Empty,
    #[error("bad capture header: {0}")]
    BadHeader(String),
    #[error("packet {packet} at byte offset {offset}: {what}")]
    BadRecord { packet: u64, offset: u64, what: String },
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("{0}")]
    Usage(String),
    /// SIGINT or SIGTERM while reading a file: the run is abandoned, nothing is written.
    #[error("interrupted by signal {0}")]
    Interrupted(i32),
}

impl Error {
    /// A read error after some packets: the caller may keep what came before.
    pub fn is_truncation(&self) -> bool {
        matches!(self, Error::BadRecord { what, .. } if what.starts_with("truncated"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;
