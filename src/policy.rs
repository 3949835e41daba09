//! The keep / truncate / drop policy (what `trim` keeps): the decisions, the options that shape
//! them, and the rules for which units matter. The engine (`crate::engine`) reads the capture
//! and applies these rules to what it finds; `trim` writes what they keep.
//!
//! A flow is kept when it is a WebSocket attempt (an HTTP/1.x request with `Upgrade` or any
//! `Sec-WebSocket-*` header, or WebSocket frames met mid-connection), TLS that may carry one
//! (SNI among `--host`, or without `--host` ALPN offering http/1.1 but not h2, or no ALPN),
//! a flow to a `--port`, a refused or unanswered connect, or HTTP/2 with prior knowledge.
//! Its connect and handshake are kept whole; after them a packet is kept whole when any of its
//! bytes belong to an important unit (control frames, the first `--keep-frames` short data
//! frames, TLS handshake and alert records and the first application-data records); other
//! packets are bulk: cut right after their TCP header, dropped or kept per `--bulk`, within
//! `--bulk-budget`. A packet is never cut inside a frame or record. FIN and RST packets of
//! kept flows are always kept whole.

use crate::flow::{FlowKey, Side};
use crate::proto::tls::{self, RecordHeader};
use crate::proto::websocket::FrameHeader;

/// TLS 1.3 hides the rest of the handshake (EncryptedExtensions, Certificate, Finished,
/// session tickets) in application-data records; this many per direction are kept whole on
/// top of `--keep-frames`, so that the encrypted upgrade request and 101 survive too.
pub const TLS_HIDDEN_HANDSHAKE_RECORDS: u32 = 8;

/// Only data frames up to this much payload are kept whole (the first `--keep-frames` of them);
/// a longer frame is bulk. A packet is never cut inside a frame (Wireshark would read the cut
/// payload as frame headers, or show the frame at a segment where the original does not), and
/// a 16 KiB binary frame would cost as much as the whole handshake many times over.
pub const MAX_WHOLE_FRAME_PAYLOAD_BYTES: u64 = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Bulk {
    /// Drop bulk packets.
    Drop,
    /// Cut bulk packets to their link+IP+TCP headers (the TCP timeline survives).
    Headers,
    /// Keep bulk packets whole.
    Keep,
}

/// What `--host` and `--port` select, one meaning for every command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Lower-cased names; `*.example.com` matches example.com and its subdomains.
    hosts: Vec<String>,
    ports: Vec<u16>,
}

impl Selection {
    pub fn new(hosts: &[String], ports: &[u16]) -> Selection {
        Selection {
            hosts: hosts.iter().map(|h| h.trim_end_matches('.').to_ascii_lowercase()).collect(),
            ports: ports.to_vec(),
        }
    }

    pub fn has_hosts(&self) -> bool {
        !self.hosts.is_empty()
    }

    /// Whether a host name (an SNI, a DNS name, a Host header) is selected.
    /// Compared without a lower-cased copy: every DNS name of a capture comes through here.
    pub fn host_matches(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').as_bytes();
        self.hosts.iter().any(|h| match h.strip_prefix("*.") {
            Some(suffix) => {
                let suffix = suffix.as_bytes();
                name.eq_ignore_ascii_case(suffix)
                    || (name.len() > suffix.len()
                        && name[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                        && name[name.len() - suffix.len() - 1] == b'.')
            }
            None => name.eq_ignore_ascii_case(h.as_bytes()),
        })
    }

    pub fn port_matches(&self, port: u16) -> bool {
        self.ports.contains(&port)
    }

    /// Names given literally (not wildcards): DNS lookups of them are kept.
    pub fn literal_hosts(&self) -> impl Iterator<Item = &String> {
        self.hosts.iter().filter(|h| !h.starts_with("*."))
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub select: Selection,
    pub keep_frames: u32,
    pub bulk: Bulk,
    pub bulk_budget: u64,
    /// Keep every packet (`scrub` without trimming).
    pub keep_all: bool,
    /// Keep a record of each flow forgotten, for `flows`.
    pub record_flows: bool,
    /// Report what each flow carries as `Event`s, for `diagnose`.
    pub observe: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            select: Selection::default(),
            keep_frames: 4,
            bulk: Bulk::Headers,
            bulk_budget: 1 << 20,
            keep_all: false,
            record_flows: false,
            observe: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Keep only this many captured bytes (the original length stays in the record).
    Truncate(u32),
    Drop,
}

/// What a packet waits for when its verdict is not known yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitOn {
    /// The flow is not classified yet.
    Classification,
    /// The packet ended inside a frame or record header of this direction.
    Unit(Side),
    /// The packet arrived ahead of a hole in this direction.
    Reorder(Side),
    /// A DNS transaction (this id, on the ticket's flow) waits for its answer or for a kept
    /// flow to name its host or address.
    /// (The number is the transaction's in the engine's DNS table.)
    Dns(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Now(Verdict),
    Wait(WaitOn),
}

/// What the engine says of one packet.
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    pub decision: Decision,
    /// Where to find the packet again when it must wait.
    pub ticket: Option<Ticket>,
    /// The packet's flow is dropped whole: nothing of it is written or needs scrubbing.
    pub flow_dropped: bool,
    /// When scrubbing: the reassembly did not hand its payload over from its first byte (a
    /// retransmission, a segment ahead of a hole), which names why what of it no patch covers
    /// is overwritten.
    pub reordered: bool,
    /// Where its layers are, when it decoded to a TCP or UDP packet (scrub reads them here
    /// rather than decoding the frame again).
    pub layout: Option<crate::wire::Layout>,
}

/// Where a waiting packet can be found again.
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    pub key: FlowKey,
    pub on: WaitOn,
}

/// Why a flow was kept, or what it turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    Undecided,
    WebSocket,
    Tls,
    Port,
    Refused,
    /// HTTP/2 with prior knowledge (the client's first bytes are the HTTP/2 preface): an
    /// RFC 6455 upgrade cannot happen on it, and that is worth showing.
    H2Preface,
    /// An HTTP `CONNECT` through a forward proxy: the exchange is kept whole, and what the
    /// tunnel carries is read like any connection (corporate proxies break WebSockets).
    Tunnel,
    /// DNS over TCP (port 53), kept whole as a lookup is: it failed, went unanswered, or names
    /// a kept host.
    Lookup,
    /// Not kept: plain HTTP, h2 TLS, other protocols.
    Dropped,
}

impl Class {
    pub fn kept(self) -> bool {
        matches!(
            self,
            Class::WebSocket
                | Class::Tls
                | Class::Port
                | Class::Refused
                | Class::H2Preface
                | Class::Tunnel
                | Class::Lookup
        )
    }
}

/// The verdict for a bulk packet of a kept flow.
pub fn bulk_verdict(opts: &Options, bulk_used: &mut u64, cut: u32) -> Verdict {
    match opts.bulk {
        Bulk::Keep => Verdict::Keep,
        Bulk::Drop => Verdict::Drop,
        Bulk::Headers => {
            if *bulk_used + u64::from(cut) > opts.bulk_budget {
                Verdict::Drop
            } else {
                *bulk_used += u64::from(cut);
                Verdict::Truncate(cut)
            }
        }
    }
}

/// Whether a WebSocket frame is kept whole: every control frame, and the first `keep_frames`
/// data frames of a direction that are short enough (`data_kept` counts them). `Some(n)`: the
/// frame's header and first `n` payload bytes matter.
pub fn frame_importance(h: &FrameHeader, data_kept: &mut u32, keep_frames: u32) -> Option<u64> {
    if h.is_control() {
        return Some(u64::MAX);
    }
    if *data_kept >= keep_frames || h.payload_len > MAX_WHOLE_FRAME_PAYLOAD_BYTES {
        return None;
    }
    *data_kept += 1;
    Some(u64::MAX)
}

/// Whether a TLS record is kept whole: every handshake, alert and ChangeCipherSpec record, and
/// the first application-data records of a direction (`app_seen` counts them). Records stay
/// whole: a cut record cannot be decrypted with a key log.
pub fn record_importance(h: &RecordHeader, app_seen: &mut u32, keep_frames: u32) -> Option<u64> {
    if h.content_type != tls::APPLICATION_DATA {
        return Some(u64::MAX);
    }
    *app_seen += 1;
    (*app_seen <= keep_frames + TLS_HIDDEN_HANDSHAKE_RECORDS).then_some(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::Selection;

    #[test]
    fn host_patterns_match_names_in_any_case_with_or_without_the_root_dot() {
        let s = Selection::new(&["*.Example.com".into(), "ws.test.".into()], &[]);
        for yes in ["example.com", "a.example.com", "A.B.EXAMPLE.COM.", "ws.test", "WS.Test."] {
            assert!(s.host_matches(yes), "{yes}");
        }
        for no in ["badexample.com", "example.com.evil", "xample.com", "", ".", "a.ws.test", "ws.tes"] {
            assert!(!s.host_matches(no), "{no}");
        }
        assert!(!Selection::default().host_matches("example.com"));
    }
}
