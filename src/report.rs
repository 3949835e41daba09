//! Per-file summary: one human line on stderr, or one JSON object for scripts.

use serde::Serialize;

use crate::scrub::ScrubReport;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    pub file: String,
    pub packets_in: u64,
    pub packets_out: u64,
    pub packets_truncated: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub flows_seen: u64,
    pub flows_kept: u64,
    pub flows_evicted: u64,
    pub unsupported_link: u64,
    pub over_snaplen: u64,
    /// TLS sessions whose key-log lines were carried into the output.
    pub tls_sessions_with_keys: u64,
    pub elapsed_s: f64,
    /// Reading stopped at SIGINT/SIGTERM (a live capture, written up to there).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    pub warnings: Vec<String>,
    /// What scrubbing overwrote, per rule (absent when not scrubbing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrub: Option<ScrubReport>,
    /// Key-log lines of the kept TLS sessions, for `--keylog-out`.
    #[serde(skip)]
    pub key_log: Vec<u8>,
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

impl Summary {
    pub fn line(&self, verb: &str) -> String {
        format!(
            "{verb}: {}: packets {} -> {}, bytes {} -> {}, flows {} -> {} kept, {:.2} s",
            self.file,
            self.packets_in,
            self.packets_out,
            human_bytes(self.bytes_in),
            human_bytes(self.bytes_out),
            self.flows_seen,
            self.flows_kept,
            self.elapsed_s
        ) + &if self.interrupted { format!(", interrupted after {} packets", self.packets_in) } else { String::new() }
    }

    /// Adds another file's counts (for the total of a batch).
    pub fn add(&mut self, o: &Summary) {
        self.packets_in += o.packets_in;
        self.packets_out += o.packets_out;
        self.packets_truncated += o.packets_truncated;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.flows_seen += o.flows_seen;
        self.flows_kept += o.flows_kept;
        self.flows_evicted += o.flows_evicted;
        self.unsupported_link += o.unsupported_link;
        self.over_snaplen += o.over_snaplen;
        self.tls_sessions_with_keys += o.tls_sessions_with_keys;
        self.elapsed_s += o.elapsed_s;
        self.interrupted |= o.interrupted;
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("summary serializes")
    }
}
