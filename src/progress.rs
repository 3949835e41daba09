//! Counters a long run publishes for a progress display. Updated with relaxed atomics every
//! few thousand packets (and per read chunk for bytes), so that watching costs nothing
//! measurable; the display itself lives in the binary.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Progress {
    /// Bytes read from the file (compressed bytes for a gzip file).
    pub bytes: AtomicU64,
    pub packets: AtomicU64,
    pub flows_kept: AtomicU64,
}

/// Packets between updates of the packet and flow counters.
pub const PUBLISH_EVERY: u64 = 4096;

impl Progress {
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn publish(&self, packets: u64, flows_kept: u64) {
        self.packets.store(packets, Ordering::Relaxed);
        self.flows_kept.store(flows_kept, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> (u64, u64, u64) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.packets.load(Ordering::Relaxed),
            self.flows_kept.load(Ordering::Relaxed),
        )
    }
}

/// A reader that counts the bytes it passes on.
pub struct Counting<R> {
    inner: R,
    progress: std::sync::Arc<Progress>,
}

impl<R> Counting<R> {
    pub fn new(inner: R, progress: std::sync::Arc<Progress>) -> Self {
        Counting { inner, progress }
    }
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add_bytes(n as u64);
        Ok(n)
    }
}
