//! The one pass over a capture: every command reads packets through it. A packet's path:
//! `wire` decodes link, IP and TCP/UDP → the flow table keys it → `flow::reassembly` puts its
//! bytes in stream order → the classifiers (`proto`: HTTP heads, TLS records and hellos,
//! WebSocket frames, DNS) say what the bytes are → the engine reports what it found as `Event`s
//! and applies the keep/drop rules of `policy` to give each packet its `Outcome`.
//!
//! Each TCP direction goes through phases:
//!
//! ```text
//! client:  Collect(request head) -> AwaitPeer -> Frames (after 101) | Bulk (any other status)
//! server:  Collect(response head)              -> Frames (after 101) | Bulk
//! TLS:     Records (handshake, alerts, first application-data records whole)
//! ```
//!
//! A packet whose verdict depends on bytes not seen yet (its flow is not classified, its last
//! bytes are half a frame header, it arrived ahead of a hole) gets `Decision::Wait`; the
//! verdict arrives later through `Engine::take_resolutions`, or `Engine::force` decides it
//! when the caller cannot wait any longer.

mod bounds;
mod classify;
mod dns;
pub mod event;
mod inner;
mod phase;
mod readable;
mod redact;

use rustc_hash::FxHashSet;

use crate::capture::RecordMeta;
use crate::decrypt::KeyLog;
use crate::flow::reassembly::{HeldSegment, Placement, Stream};
use crate::flow::{FlowKey, FlowTable, PROTO_TCP, PROTO_UDP, Side};
use crate::proto::units::{Fed, Walker};
use crate::proto::websocket::{self, Frames};
use crate::proto::{http, tls};
use crate::wire::{self, Addr, Decoded, Opaque, Skip, Transport, tcp_flags};

use self::dns::{DnsTable, OpenIds, TcpLookup, TcpLookups, name_key};
use self::event::Events;
pub use self::event::{At, Content, DnsFacts, Event, Observed, PacketRun, RUN_SLOT_NS};
use self::inner::{DirTls, Keyed};
use self::phase::{Consumed, feed_units, lose_sync, skip_uncaptured};
use crate::policy::{
    Class, Decision, Options, Outcome, Ticket, Verdict, WaitOn, bulk_verdict, frame_importance, record_importance,
};

pub const DNS_PORT: u16 = 53;
/// A client's first bytes on an HTTP/2 connection with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How much of a plaintext HTTP answer to a ClientHello, or of the body of a refusal (a
/// proxy's 407 page), is kept whole: error pages are a few hundred bytes; a server that
/// streams more is cut after this.
const PLAIN_ANSWER_BYTES: u32 = 16 * 1024;
/// Payload segments a mid-connection flow may show before it is judged not to be WebSocket.
const MID_STREAM_CLASSIFY_SEGMENTS: u32 = 8;
/// Records of a keyed session held until its keys are set up (the ServerHello's flight).
const MAX_HELD_RECORDS: usize = 64;
/// Important byte ranges remembered per direction, for judging retransmissions.
const IMPORTANT_RANGES: usize = 32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Bytes collected for classification or an HTTP head.
    Collect,
    /// The client's head is complete; its further bytes wait for the server's answer.
    AwaitPeer,
    Frames,
    /// Frames, but a header was not captured: bulk until a segment that is exactly a run of
    /// frames (masked as this side masks) shows a boundary again.
    FramesLost,
    /// Records, but a header was not captured (a trimmed capture cuts bulk records): bulk
    /// until a boundary shows again. In a keyed session, a segment that starts with a record
    /// the keys open at a later sequence number (`decrypt::Direction::find_seq`); without
    /// keys, a whole segment that is exactly a run of records.
    RecordsLost,
    Records,
    /// A server that answered a ClientHello in plaintext HTTP (a `wss://` URL on a `ws://`
    /// port): its answer is kept whole, up to this many more bytes.
    PlainAnswer(u32),
    Bulk,
}

/// What a waiting packet needs to get its verdict later.
#[derive(Clone, Copy, Debug)]
struct Waiting {
    packet: u64,
    cut: u32,
}

struct Dir {
    stream: Stream,
    head: Vec<u8>,
    /// Stream offset of `head[0]`.
    head_start: u64,
    phase: Phase,
    /// Offset where the HTTP head (and request body) ends: bytes before it are handshake.
    handshake_end: Option<u64>,
    frames: Walker<Frames>,
    records: Walker<tls::Records>,
    data_units: u32,
    open: Vec<Waiting>,
    /// Recent important byte ranges (a ring of `IMPORTANT_RANGES`, allocated on first use:
    /// most flows are dropped before they have any).
    important: Vec<(u64, u64)>,
    important_next: usize,
    /// Mid-connection evidence: payload segments that were whole runs of masked / unmasked frames.
    masked_runs: u16,
    unmasked_runs: u16,
    /// After this direction's ChangeCipherSpec (TLS 1.2), its alerts are encrypted.
    encrypted: bool,
    /// A reader of the output (diagnose of the trimmed capture, Wireshark) has lost track
    /// of where frames start: a frame header was in bytes cut from it (`readable.rs`,
    /// `follow_reader`).
    out_lost: bool,
    /// Stream bytes from the first of the bulk segments waiting in `open` to be kept whole
    /// for the frame headers they carry (`readable.rs`, `follow_reader`); 0: none waits.
    chain: u32,
    /// A close frame whose status code a segment boundary cut: code bytes so far, how many,
    /// and the mask.
    pending_close: Option<([u8; 2], usize, [u8; 4])>,
    /// Where the first segments start in `head`, and their packets, while the flow is not
    /// classified (a WebSocket met mid-connection is read from them).
    segments: Vec<(u32, At)>,
    /// A keyed TLS session's state for this direction (none for every other flow, so that
    /// the common `Dir` stays small).
    tls: Option<Box<DirTls>>,
    /// How far the head was searched for its end, and walked for a whole TLS hello
    /// (`Dir::head_len`, `Dir::hello_pending`).
    scans: std::cell::Cell<Scans>,
}

/// Searches of a growing head that resume where they stopped. They hold for the head starting
/// at stream offset `start` while it has not shrunk: a head only grows by appending, and
/// every cut moves `head_start`.
#[derive(Clone, Copy, Default)]
struct Scans {
    start: u64,
    /// Bytes searched for the head's end without finding one.
    head: u32,
    hello: tls::HelloScan,
}

impl Default for Dir {
    fn default() -> Self {
        Dir {
            stream: Stream::default(),
            head: Vec::new(),
            head_start: 0,
            phase: Phase::Collect,
            handshake_end: None,
            frames: Walker::default(),
            records: Walker::default(),
            data_units: 0,
            open: Vec::new(),
            important: Vec::new(),
            important_next: 0,
            masked_runs: 0,
            unmasked_runs: 0,
            encrypted: false,
            out_lost: false,
            chain: 0,
            tls: None,
            pending_close: None,
            segments: Vec::new(),
            scans: std::cell::Cell::new(Scans::default()),
        }
    }
}

impl Dir {
    /// The resumable searches, as they stand for the current head (`Scans`).
    fn scans(&self) -> Scans {
        let s = self.scans.get();
        if s.start == self.head_start && s.head as usize <= self.head.len() && s.hello.walked() <= self.head.len() {
            s
        } else {
            Scans { start: self.head_start, ..Scans::default() }
        }
    }

    /// `http::head_len` of the bytes collected, resuming where the last search of the same
    /// head stopped: a head sent a byte per segment was searched whole again for every byte
    /// (0.5 s for one 60 KB head, and an attacker's capture can hold many).
    fn head_len(&self) -> Option<usize> {
        let mut s = self.scans();
        let found = http::head_len_from(&self.head, s.head as usize);
        s.head = if found.is_none() { u32::try_from(self.head.len()).unwrap_or(u32::MAX) } else { 0 };
        self.scans.set(s);
        found
    }

    /// `tls::hello_pending` of the bytes collected, resumed as `head_len` is: a hello cut
    /// into many records was walked (and copied) again at every segment.
    fn hello_pending(&self) -> bool {
        let mut s = self.scans();
        let pending = tls::hello_pending(&self.head, &mut s.hello);
        self.scans.set(s);
        pending
    }

    fn remember_important(&mut self, from: u64, to: u64) {
        if self.important.len() < IMPORTANT_RANGES {
            self.important.push((from, to));
        } else {
            self.important[self.important_next % IMPORTANT_RANGES] = (from, to);
        }
        self.important_next += 1;
    }

    fn was_important(&self, from: u64, to: u64) -> bool {
        self.handshake_end.is_none_or(|end| from < end)
            || self.important.iter().any(|&(a, b)| a < to && from < b && b > a)
    }

    /// Keeps the packets that waited for a unit to end (not those held for reordering, nor a
    /// chain's, `readable.rs`): the unit has ended.
    fn keep_unit_waiters(&mut self, resolved: &mut Vec<(u64, Verdict)>) {
        if self.open.iter().any(|w| w.cut & MARKS == 0) {
            let (unit, other): (Vec<_>, Vec<_>) = self.open.drain(..).partition(|w| w.cut & MARKS == 0);
            self.open = other;
            resolved.extend(unit.iter().map(|w| (w.packet, Verdict::Keep)));
        }
    }

    /// Reads this direction no further: its bytes are bulk from here.
    fn stop_reading(&mut self) {
        self.phase = Phase::Bulk;
        self.head = Vec::new();
    }
}

/// What a flow carries, as `flows` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Proto {
    #[default]
    Unknown,
    WebSocket,
    /// TLS offering HTTP/1.1 (or no ALPN, where HTTP/1.1 is the default).
    TlsHttp1,
    TlsH2,
    Http,
    H2c,
    Connect,
    Dns,
    Other,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::Unknown => "unknown",
            Proto::WebSocket => "websocket",
            Proto::TlsHttp1 => "tls-http1",
            Proto::TlsH2 => "tls-h2",
            Proto::Http => "http",
            Proto::H2c => "h2c",
            Proto::Connect => "http-connect",
            Proto::Dns => "dns",
            Proto::Other => "other",
        }
    }
}

/// A flow as `flows` lists it when it is forgotten or the capture ends.
#[derive(Clone, Debug)]
pub struct FlowRecord {
    pub key: FlowKey,
    pub client: Option<Side>,
    pub first_ns: u64,
    pub last_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    pub proto: Proto,
    pub kept: bool,
    pub why: &'static str,
}

/// Laid out by hand (`repr(C)`), the fields every packet touches first: a DNS query flood
/// looks up one of thousands of flows per packet, each lookup a cache miss, and with the
/// compiler's order those fields were spread over five cache lines of the 1 KiB flow. Here
/// what a UDP packet reads (counters, labels, open DNS ids) follows the key in the first three
/// lines of its table entry (`FlowTable`), and the per-direction stream state, which UDP
/// never touches, comes last.
#[repr(C)]
pub struct Flow {
    pub packets: u64,
    pub bytes: u64,
    pub last_ns: u64,
    /// Tells this connection apart from an earlier one on the same addresses and ports.
    pub conv: u64,
    /// Why the flow was kept or dropped, in a few words.
    pub why: &'static str,
    pub class: Class,
    pub content: Content,
    pub proto: Proto,
    /// The side that opened the connection (SYN), or that sent the request / masked frames.
    pub client: Option<Side>,
    /// UDP has no close; its flows (mostly one DNS exchange each) are forgotten when quiet
    /// (a lookup answered more than `CLOSED_LINGER_NS` later is then met as a new one).
    udp: bool,
    /// Counted once in `Stats::flows_kept` (a DNS flow when its first lookup is kept).
    counted_kept: bool,
    /// FIN seen from side A (bit 0) or B (bit 1), RST seen (bit 2). A half-closed connection
    /// is still open: its other side may send data and its own FIN much later.
    ends: u8,
    syn_seen: bool,
    synack_seen: bool,
    /// The server answered the client's TLS in plaintext HTTP (`Event::PlainAnswer`).
    plain_answer: bool,
    /// A CONNECT was answered 2xx: the bytes after the heads are the tunnelled connection.
    tunnel_open: bool,
    hello_timed_out: bool,
    payload_segments: u32,
    dns_ids: OpenIds,
    pub first_ns: u64,
    bulk_used: u64,
    /// A ClientHello offering h2 waits for the server's first bytes: a plaintext HTTP answer
    /// (https:// pointed at a plain port) is kept whatever the hello offered. Where the hello
    /// was, so that its event cites its own packet.
    hello_waits: Option<At>,
    /// A TLS session the key log has keys for: decrypted, and judged by what it carries.
    keyed: Option<Box<Keyed>>,
    /// DNS over TCP: what its messages said so far (none for every other flow).
    lookup: Option<Box<TcpLookup>>,
    /// Packets waiting for the classification, in capture order: the one forced is the
    /// oldest, taken from the front in constant time (a flow with 200,000 waiting packets
    /// made every forced one a scan of them all).
    waiting: std::collections::VecDeque<Waiting>,
    dirs: [Dir; 2],
    /// When scrubbing, where this flow's redaction cursors are in `Redaction`'s slab (0:
    /// none yet). A handle, not a box: a field that must be dropped with every flow cost the
    /// commands that never scrub 5% of their time.
    redactor: u32,
}

/// What an emptied slot of the flow table holds (nothing allocated).
impl Default for Flow {
    fn default() -> Self {
        Flow::new(0, 0)
    }
}

impl Flow {
    fn new(ts: u64, conv: u64) -> Flow {
        Flow {
            conv,
            class: Class::Undecided,
            content: Content::Unknown,
            proto: Proto::Unknown,
            why: "",
            client: None,
            syn_seen: false,
            synack_seen: false,
            payload_segments: 0,
            dirs: [Dir::default(), Dir::default()],
            waiting: std::collections::VecDeque::new(),
            bulk_used: 0,
            packets: 0,
            bytes: 0,
            first_ns: ts,
            last_ns: ts,
            hello_waits: None,
            hello_timed_out: false,
            keyed: None,
            lookup: None,
            redactor: 0,
            counted_kept: false,
            ends: 0,
            udp: false,
            dns_ids: OpenIds::default(),
            plain_answer: false,
            tunnel_open: false,
        }
    }

    fn record(&self, key: FlowKey) -> FlowRecord {
        let kept = self.class.kept() || self.counted_kept;
        let why = match (self.why, self.class) {
            ("", Class::Undecided) if self.payload_segments == 0 && !self.udp => "no payload to classify",
            ("", Class::Undecided) => "too little payload to classify",
            ("", _) if self.udp => "not DNS",
            (w, _) => w,
        };
        let proto = match self.proto {
            Proto::Unknown if self.udp || self.class == Class::Dropped => Proto::Other,
            p => p,
        };
        // A DNS client is the side not on port 53.
        let client = self.client.or(match (key.port_a, key.port_b) {
            (DNS_PORT, p) if p != DNS_PORT => Some(Side::B),
            (p, DNS_PORT) if p != DNS_PORT => Some(Side::A),
            _ => None,
        });
        FlowRecord {
            key,
            client,
            first_ns: self.first_ns,
            last_ns: self.last_ns,
            packets: self.packets,
            bytes: self.bytes,
            proto,
            kept,
            why,
        }
    }

    /// Counts one more packet of this flow.
    fn count(&mut self, meta: &RecordMeta) {
        self.packets += 1;
        self.bytes += u64::from(meta.orig_len);
        self.last_ns = self.last_ns.max(meta.ts_ns);
    }

    fn note_end(&mut self, side: Side, flags: u8) {
        if flags & tcp_flags::FIN != 0 {
            self.ends |= 1 << side.index();
        }
        if flags & tcp_flags::RST != 0 {
            self.ends |= 4;
        }
    }

    /// Counts the flow once in `Stats::flows_kept` (a DNS flow when its first lookup is kept).
    fn count_kept(&mut self, stats: &mut Stats) {
        if !self.counted_kept {
            self.counted_kept = true;
            stats.flows_kept += 1;
        }
    }

    fn closed(&self) -> bool {
        self.ends & 4 != 0 || self.ends & 3 == 3
    }

    /// Whether what the flow carries is still to be found: it is undecided, or kept for its
    /// port before its bytes said what they are.
    fn needs_content(&self) -> bool {
        self.class == Class::Undecided
            || (matches!(self.class, Class::Port | Class::Tunnel) && self.content == Content::Unknown)
    }

    fn has_waiters(&self) -> bool {
        !self.waiting.is_empty() || self.dirs.iter().any(|d| !d.open.is_empty() || d.stream.has_held())
    }
}

/// How a flow's bytes are to be read: what the engine found it carries.
#[derive(Clone, Copy, Debug)]
pub struct Reading {
    pub content: Content,
    pub client: Option<Side>,
    /// An HTTP CONNECT through a forward proxy.
    pub tunnel: bool,
    /// The server answered the client's TLS in plaintext HTTP.
    pub plain_answer: bool,
}

#[derive(Default, Clone, Copy, Debug)]
pub struct Stats {
    pub flows_seen: u64,
    pub flows_kept: u64,
    pub unsupported_link: u64,
    /// The first link type met that is not supported, to name it.
    pub unsupported_link_type: Option<u32>,
    /// Packets inside each encapsulation that is recognised but not decoded.
    pub opaque: [u64; Opaque::ALL.len()],
    pub not_tcp_udp: u64,
    pub flows_evicted: u64,
}

pub struct Engine {
    opts: Options,
    /// Flows held in the table's slab, not boxed: the hash index's empty buckets are 4
    /// bytes, and a lookup reads the key and the flow's first fields in one cache line.
    flows: FlowTable<Flow>,
    /// Names of kept flows (SNI, Host, --host), as `name_key`s: a DNS lookup of one is kept.
    kept_names: FxHashSet<u64>,
    kept_addrs: FxHashSet<Addr>,
    dns: DnsTable,
    /// Answered DNS-over-TCP flows still waiting for a kept flow to name what they looked up.
    tcp_lookups: TcpLookups,
    resolved: Vec<(u64, Verdict)>,
    /// Client randoms of TLS flows kept since the last call to `take_kept_tls_randoms`, each
    /// with the packet its key-log lines must precede when that packet is still waiting (a
    /// keyed session is kept only once its plaintext is read, after its ClientHello).
    kept_tls_randoms: Vec<([u8; 32], Option<u64>)>,
    /// TLS secrets from `--keylog` and the input's Decryption Secrets Blocks.
    keys: KeyLog,
    /// Things the user should know that are not findings (sessions read without keys).
    notes: Vec<String>,
    pub stats: Stats,
    last_sweep_ns: u64,
    /// Flows forgotten since the last `take_retired`, when `Options::record_flows` is set.
    retired: Vec<FlowRecord>,
    /// The list a full table's eviction ranks its flows in, kept (`flow::least_telling`).
    evict_candidates: Vec<(u8, u64, u32)>,
    ev: Events,
    next_conv: u64,
    /// Decrypted plaintext is being read (`inner.rs`): its units come a record at a time,
    /// with no packet of their own to wait.
    reading_inner: bool,
    /// Scrubbing (`redact.rs`). One boxed field: the commands that do not scrub read none of
    /// it, and fields added to the engine itself moved the ones every packet reads.
    scrubbing: Option<Box<redact::Scrubbing>>,
}

/// How long (capture time) a flow may stay idle in the table, by state.
const CLOSED_LINGER_NS: u64 = 30_000_000_000;
const DROPPED_IDLE_NS: u64 = 300_000_000_000;
const OPEN_IDLE_NS: u64 = 3_600_000_000_000;
const SWEEP_EVERY_NS: u64 = 10_000_000_000;
/// Flows in the table at once. Beyond this the oldest idle ones are forgotten (an eighth at a
/// time), dropped and closed flows first, kept ones last; a forgotten flow that speaks again
/// is met as a new one mid-connection. A `Flow` with its buffers is about 1 KiB.
pub const MAX_FLOWS: usize = 65_536;

impl Engine {
    pub fn new(opts: Options) -> Engine {
        let opts_observe = opts.observe;
        let kept_names = opts.select.literal_hosts().map(|n| name_key(n)).collect();
        Engine {
            opts,
            flows: FlowTable::default(),
            kept_names,
            kept_addrs: FxHashSet::default(),
            dns: DnsTable::default(),
            tcp_lookups: TcpLookups::default(),
            resolved: Vec::new(),
            kept_tls_randoms: Vec::new(),
            keys: KeyLog::default(),
            notes: Vec::new(),
            stats: Stats::default(),
            last_sweep_ns: 0,
            retired: Vec::new(),
            evict_candidates: Vec::new(),
            ev: Events::new(opts_observe),
            next_conv: 0,
            reading_inner: false,
            scrubbing: None,
        }
    }

    /// Events found since the last call (with `Options::observe`). The packets of the last
    /// conversation seen wait for its next event (`Event::Packets`), or for `end_events`.
    pub fn take_events(&mut self) -> std::vec::Drain<'_, Observed> {
        self.ev.list.drain(..)
    }

    /// The input ended: the packets still gathered in a run become an event.
    pub fn end_events(&mut self) {
        self.ev.end_run();
    }

    /// Counts and opens a flow not in the table, making room first when it is full.
    fn new_flow(&mut self, key: FlowKey, side: Side, ts: u64) {
        self.stats.flows_seen += 1;
        if self.flows.len() >= MAX_FLOWS {
            self.evict_oldest(MAX_FLOWS / 8);
        }
        self.next_conv += 1;
        let conv = self.next_conv;
        self.ev.push(conv, key, side, Event::Open);
        self.flows.insert(key, Flow::new(ts, conv));
    }

    /// Flows forgotten since the last call (with `Options::record_flows`).
    pub fn take_retired(&mut self) -> std::vec::Drain<'_, FlowRecord> {
        self.retired.drain(..)
    }

    /// The flows still in the table, at the end of the capture.
    pub fn remaining(&self) -> impl Iterator<Item = FlowRecord> + '_ {
        self.flows.iter().map(|(k, f)| f.record(*k))
    }

    /// Whether the flow of `key` is dropped whole (or forgotten).
    pub fn flow_dropped(&self, key: &FlowKey) -> bool {
        self.flows.get(key).is_none_or(|f| f.class == Class::Dropped)
    }

    /// Why the flow of `key` was kept or dropped, and what it carries.
    pub fn flow_label(&self, key: &FlowKey) -> Option<(Proto, &'static str)> {
        self.flows.get(key).map(|f| (f.proto, f.why))
    }

    /// Verdicts for packets that were told to wait, decided since the last call.
    pub fn take_resolutions(&mut self) -> impl Iterator<Item = (u64, Verdict)> + '_ {
        let keep_all = self.opts.keep_all;
        self.resolved.drain(..).map(move |(n, v)| (n, if keep_all { Verdict::Keep } else { v }))
    }

    /// Client randoms of the TLS sessions kept since the last call: their key-log lines may
    /// go into the output.
    /// Adds TLS secrets (NSS key-log text): sessions whose ClientHello comes later are
    /// decrypted. Returns the number of lines taken.
    pub fn add_key_log(&mut self, text: &[u8]) -> usize {
        self.keys.add(text)
    }

    /// Notes for the user since the last call (sessions read without keys, a key log cut).
    pub fn take_notes(&mut self) -> Vec<String> {
        if std::mem::take(&mut self.keys.truncated) {
            self.notes.push(format!(
                "the key log is read only up to {} MiB; sessions with later lines are read without keys",
                crate::decrypt::keylog::MAX_KEY_LOG_BYTES >> 20
            ));
        }
        std::mem::take(&mut self.notes)
    }

    pub fn take_kept_tls_randoms(&mut self) -> std::vec::Drain<'_, ([u8; 32], Option<u64>)> {
        self.kept_tls_randoms.drain(..)
    }

    pub fn flows(&self) -> impl Iterator<Item = (&FlowKey, &Flow)> {
        self.flows.iter()
    }

    /// The decision for one packet. With `Options::keep_all` (`scrub` alone) every packet is
    /// written, but the flow is read all the same, and a packet of an undecided flow still
    /// waits: the scrubber must know what a flow carries before it rewrites its bytes.
    pub fn packet(&mut self, meta: &RecordMeta, frame: &[u8]) -> Outcome {
        let mut out = self.decide(meta, frame);
        // What a packet waits for can end within its own call (held segments it released
        // ended its unit): its verdict is then this call's, not a resolution of a packet the
        // caller has not queued yet.
        if matches!(out.decision, Decision::Wait(_))
            && let Some(i) = self.resolved.iter().position(|r| r.0 == meta.number)
        {
            out.decision = Decision::Now(self.resolved.remove(i).1);
        }
        if self.opts.keep_all {
            out.flow_dropped = false;
            if let Decision::Now(v) = &mut out.decision {
                *v = Verdict::Keep;
            }
        }
        out.reordered = self.scrubbing.is_some() && self.redact_packet(meta.number, frame);
        out
    }

    /// The outcome but `reordered` (the redaction's, after the call).
    fn decide(&mut self, meta: &RecordMeta, frame: &[u8]) -> Outcome {
        // A packet that decodes to no flow is dropped whole.
        let no_flow = Outcome {
            decision: Decision::Now(Verdict::Drop),
            ticket: None,
            flow_dropped: true,
            reordered: false,
            layout: None,
        };
        let d = match wire::decode(meta.link_type, frame) {
            Ok(d) => d,
            Err(Skip::UnsupportedLink) => {
                self.stats.unsupported_link += 1;
                self.stats.unsupported_link_type.get_or_insert(meta.link_type);
                return no_flow;
            }
            Err(Skip::Opaque(o)) => {
                self.stats.opaque[o as usize] += 1;
                return no_flow;
            }
            Err(Skip::NotTcpUdp) => {
                self.stats.not_tcp_udp += 1;
                return no_flow;
            }
        };
        let proto = match d.transport {
            Transport::Tcp { .. } => PROTO_TCP,
            Transport::Udp => PROTO_UDP,
        };
        let (key, side) = FlowKey::of(d.src, d.sport, d.dst, d.dport, proto);
        let ts = meta.ts_ns;
        self.ev.at = At { frame: meta.number, ts_ns: ts };
        if ts >= self.last_sweep_ns + SWEEP_EVERY_NS {
            self.sweep(ts);
        }
        // A SYN on the addresses and ports of a connection that ended opens a new one.
        if proto == PROTO_TCP
            && d.tcp_flags() & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN
            && let Some(f) = self.flows.get(&key)
            && f.ends != 0
            && !f.has_waiters()
        {
            let old = self.flows.remove(&key).expect("flow present");
            if self.opts.record_flows {
                self.retired.push(old.record(key));
            }
            self.forget_redactor(old.redactor);
        }
        let (decision, flow_dropped) = if proto == PROTO_UDP {
            self.udp_packet(key, side, &d, meta)
        } else {
            self.tcp_flow_packet(key, side, &d, meta)
        };
        let ticket = match decision {
            Decision::Wait(on) => Some(Ticket { key, on }),
            Decision::Now(_) => None,
        };
        Outcome { decision, ticket, flow_dropped, reordered: false, layout: Some(d.layout) }
    }

    /// A TCP packet: its flow is looked up once — most packets of a capture belong to flows
    /// already dropped whole (bulk transfers, other protocols), and that one lookup decides
    /// them — then counted and read (`tcp_packet`). Each lookup hashes and compares a 40-byte
    /// key; the TCP path looks a flow up again only after a call that may have changed the
    /// table. Also says whether the packet's flow is dropped whole.
    fn tcp_flow_packet(&mut self, key: FlowKey, side: Side, d: &Decoded<'_>, meta: &RecordMeta) -> (Decision, bool) {
        let flow = match self.flows.get_mut(&key) {
            Some(f) if f.class == Class::Dropped => {
                f.note_end(side, d.tcp_flags());
                f.count(meta);
                if self.opts.keep_all && self.scrubbing.is_some() {
                    self.deliver_dropped(key, side, d, meta.number);
                }
                return (Decision::Now(Verdict::Drop), true);
            }
            Some(f) => f,
            None => {
                self.new_flow(key, side, meta.ts_ns);
                self.flows.get_mut(&key).expect("flow inserted above")
            }
        };
        flow.count(meta);
        let cut = (d.payload_offset as u32).min(meta.caplen);
        let decision = self.tcp_packet(key, side, d, meta.number, cut);
        if self.ev.on
            && let Some(f) = self.flows.get(&key)
            && f.class != Class::Dropped
        {
            let flags = d.tcp_flags();
            let payload = d.wire_payload_len > 0 && flags & tcp_flags::SYN == 0;
            let ack = flags & tcp_flags::ACK != 0 && flags & tcp_flags::SYN == 0;
            self.ev.packet(f.conv, key, side, payload, ack);
        }
        // A packet dropped from a kept flow (past the bulk budget) is not a flow dropped whole.
        let flow_dropped =
            decision == Decision::Now(Verdict::Drop) && self.flows.get(&key).is_none_or(|f| f.class == Class::Dropped);
        (decision, flow_dropped)
    }

    // ---------------------------------------------------------------- TCP

    fn tcp_packet(&mut self, key: FlowKey, side: Side, d: &Decoded<'_>, packet: u64, cut: u32) -> Decision {
        let Transport::Tcp { seq, flags, window, .. } = d.transport else { unreachable!("tcp_packet gets TCP") };
        let select = &self.opts.select;
        let mut flow = self.flows.get_mut(&key).expect("flow inserted by decide");
        let syn = flags & tcp_flags::SYN != 0;
        let ack = flags & tcp_flags::ACK != 0;
        let fin_rst = flags & (tcp_flags::FIN | tcp_flags::RST) != 0;
        flow.note_end(side, flags);
        if flow.class == Class::Dropped {
            return Decision::Now(Verdict::Drop);
        }
        if self.ev.on {
            let conv = flow.conv;
            if syn {
                self.ev.push(conv, key, side, Event::Syn { ack });
            }
            if flags & tcp_flags::FIN != 0 {
                self.ev.push(conv, key, side, Event::Fin);
            }
            if flags & tcp_flags::RST != 0 {
                self.ev.push(conv, key, side, Event::Rst);
            }
            if window == 0 && flags & (tcp_flags::RST | tcp_flags::SYN | tcp_flags::FIN) == 0 {
                self.ev.push(conv, key, side, Event::ZeroWindow);
            }
        }
        if syn {
            flow.dirs[side.index()].stream.syn(seq);
            if ack {
                flow.synack_seen = true;
                flow.client.get_or_insert(side.other());
            } else {
                flow.syn_seen = true;
                flow.client.get_or_insert(side);
            }
        }
        if flow.class == Class::Undecided {
            let server_port = flow.client.map(|c| key.port(c.other()));
            let port_hit = match server_port {
                Some(p) => select.port_matches(p),
                None => select.port_matches(key.port_a) || select.port_matches(key.port_b),
            };
            if port_hit {
                flow.class = Class::Port;
                flow.why = "to a --port";
            } else if flags & tcp_flags::RST != 0
                && flow.syn_seen
                && !flow.synack_seen
                && flow.client == Some(side.other())
            {
                // A SYN answered by RST: the whole story of a refused connect.
                flow.class = Class::Refused;
                flow.why = "connection refused (SYN answered by RST)";
            }
            if flow.class != Class::Undecided {
                self.on_classified(key);
                flow = self.flows.get_mut(&key).expect("flow inserted above");
            }
        }
        let bytes = d.payload;
        let payload = if d.wire_payload_len > 0 && !syn {
            flow.payload_segments += 1;
            let dir = &mut flow.dirs[side.index()];
            let placement = dir.stream.place(seq, d.wire_payload_len, bytes, packet);
            Some(placement)
        } else {
            None
        };
        // Only a direction holding segments ahead of a hole has any to release.
        let held = flow.dirs[side.index()].stream.has_held();
        let mut verdict = match payload {
            None => None,
            Some(Placement::Empty) => None,
            Some(Placement::Held) => return self.wait_reorder(key, side, packet, cut, fin_rst),
            Some(Placement::Old { offset }) => {
                let dir = &flow.dirs[side.index()];
                // A keep-alive probe: one byte at the sequence number before the next expected
                // one (Wireshark's "TCP Keep-Alive"), not a retransmission.
                let keep_alive = d.wire_payload_len == 1 && offset + 1 == dir.stream.delivered() && !fin_rst;
                if keep_alive {
                    self.ev.push(flow.conv, key, side, Event::KeepAlive);
                } else {
                    self.ev.push(flow.conv, key, side, Event::Retransmission);
                }
                Some(dir.was_important(offset, offset + u64::from(d.wire_payload_len)))
            }
            Some(Placement::Gap) => {
                lose_sync(&mut flow.dirs[side.index()]);
                self.note_loss(key, side);
                Some(false)
            }
            Some(Placement::InOrder { skip }) => {
                if skip > 0 {
                    self.ev.push(flow.conv, key, side, Event::Retransmission);
                }
                let start = flow.dirs[side.index()].stream.delivered() - u64::from(d.wire_payload_len) + skip as u64;
                let new = bytes.get(skip..).unwrap_or(&[]);
                // Bytes on the wire but not in the capture (snaplen, or an earlier trim).
                let uncaptured = u64::from(d.wire_payload_len).saturating_sub(bytes.len().max(skip) as u64);
                // Before the held segments this one releases: the order of the stream.
                if self.scrubbing.is_some() {
                    self.note_delivery(key, side, packet, d, skip);
                }
                let consumed = self.consume(key, side, start, new, packet, cut);
                if uncaptured > 0 {
                    skip_uncaptured(&mut self.flows.get_mut(&key).expect("flow exists").dirs[side.index()], uncaptured);
                }
                match consumed {
                    Consumed::Important => Some(true),
                    Consumed::Bulk => Some(false),
                    Consumed::Open => {
                        if fin_rst && self.flows[&key].class.kept() {
                            Some(true)
                        } else {
                            // Segments held behind this one are in order now.
                            if held {
                                self.release_ready(key, side);
                            }
                            return Decision::Wait(WaitOn::Unit(side));
                        }
                    }
                }
            }
        };
        if held {
            self.release_ready(key, side);
        }
        let mut flow = self.flows.get_mut(&key).expect("flow exists");
        // A hello waiting for its answer is decided by a FIN or RST too; a DNS flow reads each
        // message that arrives, kept or not.
        let dns = payload.is_some() && flow.content == Content::Dns;
        if dns
            || ((payload.is_some() || fin_rst)
                && flow.needs_content()
                && (payload.is_some() || flow.hello_waits.is_some()))
        {
            self.try_classify(key);
            flow = self.flows.get_mut(&key).expect("flow exists");
        }
        match flow.class {
            Class::Dropped => Decision::Now(Verdict::Drop),
            // Also a keyed TLS session until its plaintext says what it carries.
            c if c == Class::Undecided || flow.keyed.as_ref().is_some_and(|k| k.pending) => {
                flow.waiting.push_back(Waiting { packet, cut });
                Decision::Wait(WaitOn::Classification)
            }
            _ => {
                if fin_rst || syn {
                    return Decision::Now(Verdict::Keep);
                }
                if payload.is_some() && flow.lookup_partial(side) {
                    flow.dirs[side.index()].open.push(Waiting { packet, cut });
                    return Decision::Wait(WaitOn::Unit(side));
                }
                if verdict.is_none() {
                    // No payload: part of the handshake until both heads are through.
                    verdict = Some(flow.dirs.iter().any(|d| matches!(d.phase, Phase::Collect | Phase::AwaitPeer)));
                }
                if verdict == Some(true) {
                    Decision::Now(Verdict::Keep)
                } else {
                    Decision::Now(bulk_verdict(&self.opts, &mut flow.bulk_used, cut))
                }
            }
        }
    }

    fn wait_reorder(&mut self, key: FlowKey, side: Side, packet: u64, cut: u32, fin_rst: bool) -> Decision {
        let flow = self.flows.get_mut(&key).expect("flow exists");
        if fin_rst && flow.class.kept() {
            return Decision::Now(Verdict::Keep);
        }
        flow.dirs[side.index()].open.push(Waiting { packet, cut: cut | REORDER_MARK });
        Decision::Wait(WaitOn::Reorder(side))
    }

    /// Feeds segments that became in order after a hole filled.
    fn release_ready(&mut self, key: FlowKey, side: Side) {
        loop {
            let flow = self.flows.get_mut(&key).expect("flow exists");
            let Some((seg, skip)) = flow.dirs[side.index()].stream.pop_ready() else {
                return;
            };
            self.replay_held(key, side, seg, skip);
        }
    }

    fn replay_held(&mut self, key: FlowKey, side: Side, seg: HeldSegment, skip: usize) {
        // Facts found in the replayed bytes cite the packet that carried them.
        let now = self.ev.at;
        self.ev.at.frame = seg.packet;
        self.replay_segment(key, side, &seg, skip);
        self.ev.at = now;
    }

    fn replay_segment(&mut self, key: FlowKey, side: Side, seg: &HeldSegment, skip: usize) {
        if self.scrubbing.is_some() {
            self.note_held_delivery(key, side, seg, skip);
        }
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let dir = &mut flow.dirs[side.index()];
        // A packet that did not wait (a kept FIN or RST) still has its bytes read.
        let pos = dir.open.iter().position(|w| w.packet == seg.packet && w.cut & REORDER_MARK != 0);
        let waiting = pos.map(|pos| dir.open.remove(pos).cut & !REORDER_MARK);
        let cut = waiting.unwrap_or(0);
        let start = seg.offset + skip as u64;
        let consumed = if skip >= seg.bytes.len() {
            Consumed::Bulk
        } else {
            self.consume(key, side, start, &seg.bytes[skip..], seg.packet, cut)
        };
        let uncaptured = u64::from(seg.wire_len).saturating_sub(seg.bytes.len().max(skip) as u64);
        let flow = self.flows.get_mut(&key).expect("flow exists");
        if uncaptured > 0 {
            skip_uncaptured(&mut flow.dirs[side.index()], uncaptured);
        }
        if waiting.is_none() {
            return;
        }
        match (flow.class, consumed) {
            (Class::Undecided, _) => flow.waiting.push_back(Waiting { packet: seg.packet, cut }),
            (Class::Dropped, _) => self.resolved.push((seg.packet, Verdict::Drop)),
            (_, Consumed::Open) => {}
            // Part of a DNS message: decided with the packet that reads it (`read_lookups`),
            // so that the scrubber gets the message's packets together.
            (_, Consumed::Important) if flow.content == Content::Dns => {
                flow.dirs[side.index()].open.push(Waiting { packet: seg.packet, cut })
            }
            (_, Consumed::Important) => self.resolved.push((seg.packet, Verdict::Keep)),
            (_, Consumed::Bulk) => {
                let v = bulk_verdict(&self.opts, &mut flow.bulk_used, cut);
                self.resolved.push((seg.packet, v));
            }
        }
    }
}

/// Marks a waiting entry of `Dir::open` as held for reordering (not for an open header).
const REORDER_MARK: u32 = 1 << 31;
/// Marks a waiting entry of `Dir::open` as carrying a bulk frame's header (`follow_reader`).
const CARRIER_MARK: u32 = 1 << 30;
/// Marks a waiting entry of `Dir::open` as bulk behind a chain of carriers: it waits only so
/// that the scrubber gets the direction's packets in order.
const BEHIND_MARK: u32 = 1 << 29;
/// Entries of `Dir::open` that wait for something else than a unit's end.
const MARKS: u32 = REORDER_MARK | CARRIER_MARK | BEHIND_MARK;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_state_stays_small() {
        // The table may hold a million flows (a SYN flood); keep each one cheap.
        assert!(std::mem::size_of::<Flow>() <= 1024, "Flow is {} bytes", std::mem::size_of::<Flow>());
    }
}
