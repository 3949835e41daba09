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

mod dns;
pub mod event;
mod inner;

use rustc_hash::FxHashSet;

use crate::capture::RecordMeta;
use crate::decrypt::KeyLog;
use crate::flow::reassembly::{HeldSegment, Placement, Stream};
use crate::flow::{FlowKey, FlowTable, PROTO_TCP, PROTO_UDP, Side};
use crate::proto::units::{Fed, Walker};
use crate::proto::websocket::{self, Frames};
use crate::proto::{http, tls};
use crate::wire::{self, Addr, Decoded, Layout, Opaque, Skip, Transport, tcp_flags};

use self::dns::{DnsTable, OpenIds, name_key};
use self::event::Events;
pub use self::event::{At, Content, Event, Observed};
use self::inner::{DirTls, Keyed};
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
    /// Records of a keyed session, but a header was not captured (a trimmed capture cuts bulk
    /// records): bulk until a segment starts with a record that the keys open at a later
    /// sequence number, which shows a boundary again (`decrypt::Direction::find_seq`).
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
    masked_runs: u32,
    unmasked_runs: u32,
    /// After this direction's ChangeCipherSpec (TLS 1.2), its alerts are encrypted.
    encrypted: bool,
    /// A close frame whose status code a segment boundary cut: code bytes so far, how many,
    /// and the mask.
    pending_close: Option<([u8; 2], usize, [u8; 4])>,
    /// Where the first segments start in `head`, and their packets, while the flow is not
    /// classified (a WebSocket met mid-connection is read from them).
    segments: Vec<(u32, At)>,
    /// A keyed TLS session's state for this direction (none for every other flow, so that
    /// the common `Dir` stays small).
    tls: Option<Box<DirTls>>,
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
            tls: None,
            pending_close: None,
            segments: Vec::new(),
        }
    }
}

impl Dir {
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

pub struct Flow {
    /// Tells this connection apart from an earlier one on the same addresses and ports.
    pub conv: u64,
    pub class: Class,
    pub content: Content,
    pub proto: Proto,
    /// Why the flow was kept or dropped, in a few words.
    pub why: &'static str,
    /// The side that opened the connection (SYN), or that sent the request / masked frames.
    pub client: Option<Side>,
    syn_seen: bool,
    synack_seen: bool,
    payload_segments: u32,
    dirs: [Dir; 2],
    /// Packets waiting for the classification, in capture order: the one forced is the
    /// oldest, taken from the front in constant time (a flow with 200,000 waiting packets
    /// made every forced one a scan of them all).
    waiting: std::collections::VecDeque<Waiting>,
    bulk_used: u64,
    pub packets: u64,
    pub bytes: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    /// Counted once in `Stats::flows_kept` (a DNS flow when its first lookup is kept).
    counted_kept: bool,
    /// FIN seen from side A (bit 0) or B (bit 1), RST seen (bit 2). A half-closed connection
    /// is still open: its other side may send data and its own FIN much later.
    ends: u8,
    /// UDP has no close; its flows (mostly one DNS exchange each) are forgotten when quiet
    /// (a lookup answered more than `CLOSED_LINGER_NS` later is then met as a new one).
    udp: bool,
    dns_ids: OpenIds,
    /// The server answered the client's TLS in plaintext HTTP (`Event::PlainAnswer`).
    plain_answer: bool,
    /// A CONNECT was answered 2xx: the bytes after the heads are the tunnelled connection.
    tunnel_open: bool,
    /// A ClientHello offering h2 waits for the server's first bytes: a plaintext HTTP answer
    /// (https:// pointed at a plain port) is kept whatever the hello offered. Where the hello
    /// was, so that its event cites its own packet.
    hello_waits: Option<At>,
    hello_timed_out: bool,
    /// A TLS session the key log has keys for: decrypted, and judged by what it carries.
    keyed: Option<Box<Keyed>>,
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
    /// Boxed: a bucket of the table then costs a pointer, so a table sized for many flows
    /// does not reserve a whole `Flow` per empty bucket.
    flows: FlowTable<Box<Flow>>,
    /// Names of kept flows (SNI, Host, --host), as `name_key`s: a DNS lookup of one is kept.
    kept_names: FxHashSet<u64>,
    kept_addrs: FxHashSet<Addr>,
    dns: DnsTable,
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
    /// Whether the packet being decided belongs to a flow dropped whole.
    last_flow_dropped: bool,
    /// Flows forgotten since the last `take_retired`, when `Options::record_flows` is set.
    retired: Vec<FlowRecord>,
    ev: Events,
    next_conv: u64,
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
            resolved: Vec::new(),
            kept_tls_randoms: Vec::new(),
            keys: KeyLog::default(),
            notes: Vec::new(),
            stats: Stats::default(),
            last_sweep_ns: 0,
            last_flow_dropped: false,
            retired: Vec::new(),
            ev: Events { on: opts_observe, ..Events::default() },
            next_conv: 0,
        }
    }

    /// Events found since the last call (with `Options::observe`).
    pub fn take_events(&mut self) -> std::vec::Drain<'_, Observed> {
        self.ev.list.drain(..)
    }

    /// Counts and opens a flow not in the table, making room first when it is full.
    fn new_flow(&mut self, key: FlowKey, side: Side, ts: u64) {
        self.stats.flows_seen += 1;
        if self.flows.len() >= MAX_FLOWS {
            self.evict_oldest(MAX_FLOWS / 8);
        }
        self.open_flow(key, side, ts);
    }

    /// Puts a new flow in the table.
    fn open_flow(&mut self, key: FlowKey, side: Side, ts: u64) {
        self.next_conv += 1;
        let conv = self.next_conv;
        self.flows.insert(key, Box::new(Flow::new(ts, conv)));
        self.ev.push(conv, key, side, Event::Open);
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

    /// How the flow of `key` is to be read, as far as known.
    pub fn reading(&self, key: &FlowKey) -> Option<Reading> {
        self.flows.get(key).map(|f| Reading {
            content: f.content,
            client: f.client,
            tunnel: f.class == Class::Tunnel,
            plain_answer: f.plain_answer,
        })
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
        self.flows.iter().map(|(k, f)| (k, &**f))
    }

    /// The decision for one packet. With `Options::keep_all` (`scrub` alone) every packet is
    /// written, but the flow is read all the same, and a packet of an undecided flow still
    /// waits: the scrubber must know what a flow carries before it rewrites its bytes.
    pub fn packet(&mut self, meta: &RecordMeta, frame: &[u8]) -> Outcome {
        // A packet that decodes to no flow is dropped whole (decide says otherwise for flows).
        self.last_flow_dropped = true;
        let (mut decision, ticket, layout) = self.decide(meta, frame);
        if self.opts.keep_all {
            self.last_flow_dropped = false;
            if let Decision::Now(v) = &mut decision {
                *v = Verdict::Keep;
            }
        }
        Outcome { decision, ticket, flow_dropped: self.last_flow_dropped, layout }
    }

    fn decide(&mut self, meta: &RecordMeta, frame: &[u8]) -> (Decision, Option<Ticket>, Option<Layout>) {
        let d = match wire::decode(meta.link_type, frame) {
            Ok(d) => d,
            Err(Skip::UnsupportedLink) => {
                self.stats.unsupported_link += 1;
                self.stats.unsupported_link_type.get_or_insert(meta.link_type);
                return (Decision::Now(Verdict::Drop), None, None);
            }
            Err(Skip::Opaque(o)) => {
                self.stats.opaque[o as usize] += 1;
                return (Decision::Now(Verdict::Drop), None, None);
            }
            Err(Skip::NotTcpUdp) => {
                self.stats.not_tcp_udp += 1;
                return (Decision::Now(Verdict::Drop), None, None);
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
        }
        if proto == PROTO_UDP {
            let decision = self.udp_packet(key, side, &d, meta);
            let ticket = match decision {
                Decision::Wait(on) => Some(Ticket { key, on }),
                Decision::Now(_) => None,
            };
            return (decision, ticket, Some(d.layout()));
        }
        // Most packets of a capture belong to flows already dropped whole (bulk transfers,
        // other protocols): one table lookup decides them. (Each lookup hashes and compares a
        // 40-byte key; the TCP path below looks a flow up again only after a call that may
        // have changed the table.)
        let flow = match self.flows.get_mut(&key) {
            Some(f) if f.class == Class::Dropped => {
                f.note_end(side, d.tcp_flags());
                f.count(meta);
                self.last_flow_dropped = true;
                return (Decision::Now(Verdict::Drop), None, Some(d.layout()));
            }
            Some(f) => f,
            None => {
                self.new_flow(key, side, ts);
                self.flows.get_mut(&key).expect("flow inserted above")
            }
        };
        flow.count(meta);
        let cut = (d.payload_offset as u32).min(meta.caplen);
        let decision = self.tcp_packet(key, side, &d, meta.number, cut);
        if self.ev.on
            && let Some(f) = self.flows.get(&key)
            && f.class != Class::Dropped
        {
            let flags = d.tcp_flags();
            let payload = d.wire_payload_len > 0 && flags & tcp_flags::SYN == 0;
            let ack = flags & tcp_flags::ACK != 0 && flags & tcp_flags::SYN == 0;
            self.ev.push(f.conv, key, side, Event::Packet { payload, ack });
        }
        // A packet dropped from a kept flow (past the bulk budget) is not a flow dropped whole.
        self.last_flow_dropped =
            decision == Decision::Now(Verdict::Drop) && self.flows.get(&key).is_none_or(|f| f.class == Class::Dropped);
        let ticket = match decision {
            Decision::Wait(on) => Some(Ticket { key, on }),
            Decision::Now(_) => None,
        };
        (decision, ticket, Some(d.layout()))
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
        // A hello waiting for its answer is decided by a FIN or RST too.
        if (payload.is_some() || fin_rst) && flow.needs_content() && (payload.is_some() || flow.hello_waits.is_some()) {
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
            (_, Consumed::Important) => self.resolved.push((seg.packet, Verdict::Keep)),
            (_, Consumed::Bulk) => {
                let v = bulk_verdict(&self.opts, &mut flow.bulk_used, cut);
                self.resolved.push((seg.packet, v));
            }
        }
    }

    /// Runs new in-order bytes of one direction through its phase. `start` is the stream
    /// offset of `bytes[0]`; `base` is where the packet's TCP payload starts (a bulk packet's cut).
    fn consume(&mut self, key: FlowKey, side: Side, start: u64, bytes: &[u8], packet: u64, base: u32) -> Consumed {
        let keep_frames = self.opts.keep_frames;
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let class = flow.class;
        let client = flow.client;
        let conv = flow.conv;
        let dir = &mut flow.dirs[side.index()];
        match dir.phase {
            Phase::Collect | Phase::AwaitPeer => {
                if dir.head.is_empty() {
                    dir.head_start = start;
                }
                if class == Class::Undecided
                    && client.is_none()
                    && dir.segments.len() < MID_STREAM_CLASSIFY_SEGMENTS as usize
                {
                    // Where each segment starts in the head: frames met mid-connection are read
                    // from it segment by segment, citing the packet that carried them.
                    dir.segments.push((dir.head.len() as u32, self.ev.at));
                }
                if dir.head.len() < http::MAX_HEAD_BYTES {
                    let room = http::MAX_HEAD_BYTES - dir.head.len();
                    dir.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
                if class == Class::Undecided && client.is_none() {
                    match websocket::segment_is_frames(bytes) {
                        Some(true) => dir.masked_runs += 1,
                        Some(false) => dir.unmasked_runs += 1,
                        None => {}
                    }
                }
                if class.kept() {
                    self.advance_heads(key);
                }
                Consumed::Important
            }
            Phase::Bulk => Consumed::Bulk,
            Phase::FramesLost => {
                // A whole segment that is exactly a run of frames, masked as this side masks
                // (RFC 6455 §5.1: clients mask, servers do not), starts at a boundary again.
                if websocket::segment_is_frames(bytes) != Some(client == Some(side)) {
                    return Consumed::Bulk;
                }
                dir.frames.resync();
                dir.pending_close = None;
                dir.phase = Phase::Frames;
                let fed = feed_units(dir, bytes, keep_frames, &mut self.ev, (conv, key, side));
                self.after_feed(key, side, fed, start, bytes.len() as u64, packet, base)
            }
            Phase::PlainAnswer(left) => {
                let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                dir.phase = if n >= left { Phase::Bulk } else { Phase::PlainAnswer(left - n) };
                Consumed::Important
            }
            Phase::Records
                if client.is_some_and(|c| c != side)
                    && dir.records.at_boundary()
                    && !dir.records.failed()
                    && start == dir.handshake_end.unwrap_or(0)
                    && matches!(http::plaintext_answer(bytes), Some(Some(_))) =>
            {
                // The server's first bytes are plaintext, not a TLS record.
                let status = http::plaintext_answer(bytes).flatten().unwrap_or(0);
                self.ev.push(conv, key, side, Event::PlainAnswer { status });
                flow.plain_answer = true;
                let dir = &mut flow.dirs[side.index()];
                let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                dir.phase = Phase::PlainAnswer(PLAIN_ANSWER_BYTES.saturating_sub(n));
                Consumed::Important
            }
            Phase::RecordsLost => {
                let Some(dec) = dir.tls.as_mut().and_then(|t| t.dec.as_mut()) else {
                    dir.phase = Phase::Bulk;
                    return Consumed::Bulk;
                };
                if !dec.resync(bytes) {
                    return Consumed::Bulk;
                }
                dir.records.resync();
                dir.records.capture_units();
                dir.phase = Phase::Records;
                let mut fed = feed_units(dir, bytes, keep_frames, &mut self.ev, (conv, key, side));
                fed.important |= self.after_records(key, side, base);
                self.after_feed(key, side, fed, start, bytes.len() as u64, packet, base)
            }
            Phase::Frames | Phase::Records => {
                let mut fed = feed_units(dir, bytes, keep_frames, &mut self.ev, (conv, key, side));
                if dir.tls.as_ref().is_some_and(|t| t.dec.is_some() || t.server_hello.is_some()) {
                    fed.important |= self.after_records(key, side, base);
                }
                self.after_feed(key, side, fed, start, bytes.len() as u64, packet, base)
            }
        }
    }

    /// Records what a walker found: resolves packets that waited on a header it completed,
    /// and says whether this segment is important, bulk, or itself ends in an open header.
    #[allow(clippy::too_many_arguments)]
    fn after_feed(
        &mut self,
        key: FlowKey,
        side: Side,
        fed: Fed,
        start: u64,
        len: u64,
        packet: u64,
        base: u32,
    ) -> Consumed {
        let flow = self.flows.get_mut(&key).expect("flow exists");
        if let Some(important) = fed.completed_open {
            let open: Vec<Waiting> = {
                let dir = &mut flow.dirs[side.index()];
                let (unit, reorder): (Vec<_>, Vec<_>) = dir.open.drain(..).partition(|w| w.cut & REORDER_MARK == 0);
                dir.open = reorder;
                unit
            };
            for w in open {
                let v = if important { Verdict::Keep } else { bulk_verdict(&self.opts, &mut flow.bulk_used, w.cut) };
                self.resolved.push((w.packet, v));
            }
        }
        let dir = &mut flow.dirs[side.index()];
        if fed.failed {
            dir.phase = Phase::Bulk;
        }
        if fed.important {
            dir.remember_important(start, start + len);
            Consumed::Important
        } else if fed.open_header {
            // If the unit turns out bulk, the packet is cut after its TCP header like any bulk.
            dir.open.push(Waiting { packet, cut: base });
            Consumed::Open
        } else {
            Consumed::Bulk
        }
    }

    /// Parses HTTP heads collected so far and moves the directions of a kept flow on.
    fn advance_heads(&mut self, key: FlowKey) {
        let keep_frames = self.opts.keep_frames;
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let Some(client) = flow.client else { return };
        let (ci, si) = (client.index(), client.other().index());
        if !matches!(flow.class, Class::WebSocket | Class::Port | Class::Tunnel) {
            return;
        }
        if !matches!(flow.content, Content::Http | Content::Unknown) {
            return;
        }
        let conv = flow.conv;
        // Client: the request head.
        if flow.dirs[ci].phase == Phase::Collect && flow.dirs[ci].handshake_end.is_none() {
            let head = &flow.dirs[ci].head;
            if let Some(n) = http::head_len(head) {
                let request = http::parse_request(&head[..n]);
                let body = request.as_ref().map_or(0, |r| r.content_length);
                let dir = &mut flow.dirs[ci];
                dir.handshake_end = Some(dir.head_start.saturating_add(n as u64).saturating_add(body));
                dir.phase = Phase::AwaitPeer;
                if let Some(r) = request {
                    self.ev.push(conv, key, client, Event::Request(Box::new(r)));
                }
            } else if head.len() >= http::MAX_HEAD_BYTES {
                flow.dirs[ci].phase = Phase::Bulk;
            }
        }
        // Server: response heads until a final one (skipping 1xx other than 101).
        loop {
            let dir = &flow.dirs[si];
            if dir.phase != Phase::Collect || dir.head.is_empty() {
                break;
            }
            let Some(n) = http::head_len(&dir.head) else {
                if dir.head.len() >= http::MAX_HEAD_BYTES || http::looks_like_response(&dir.head) == Some(false) {
                    flow.dirs[si].phase = Phase::Bulk;
                    flow.dirs[ci].phase = Phase::Bulk;
                }
                break;
            };
            let response = http::parse_response(&dir.head[..n]);
            let status = response.as_ref().map_or(0, |r| r.status);
            let content_length = response.as_ref().and_then(|r| r.content_length);
            let end = dir.head_start + n as u64;
            if (100..200).contains(&status) && status != 101 {
                let dir = &mut flow.dirs[si];
                dir.head.drain(..n);
                dir.head_start = end;
                continue;
            }
            if let Some(r) = response {
                self.ev.push(conv, key, client.other(), Event::Response(Box::new(r)));
            }
            flow.dirs[si].handshake_end = Some(end);
            if flow.class == Class::Tunnel && !flow.tunnel_open && (200..300).contains(&status) {
                flow.tunnel_open = true;
                // The tunnel is open: what follows each head is a new connection's first
                // bytes (TLS, or plain HTTP for ws://), read and classified afresh.
                flow.content = Content::Unknown;
                for (i, skip_to) in [(si, end), (ci, flow.dirs[ci].handshake_end.unwrap_or(0))] {
                    let dir = &mut flow.dirs[i];
                    let from = (skip_to.saturating_sub(dir.head_start) as usize).min(dir.head.len());
                    dir.head.drain(..from);
                    dir.head_start = skip_to.max(dir.head_start);
                    dir.handshake_end = None;
                    dir.phase = Phase::Collect;
                }
                let flow_has_inner = flow.dirs.iter().any(|d| !d.head.is_empty());
                if flow_has_inner {
                    self.try_classify(key);
                }
                return;
            }
            let next = if status == 101 { Phase::Frames } else { Phase::Bulk };
            // The body of a refusal (a proxy's 407 page, a 403, a 502) is kept whole up to
            // PLAIN_ANSWER_BYTES: Wireshark shows the response only when it can reassemble it.
            let body_left = if status == 101 || status == 204 || status == 304 {
                0
            } else {
                let want =
                    content_length.map_or(u64::from(PLAIN_ANSWER_BYTES), |n| n.min(u64::from(PLAIN_ANSWER_BYTES)));
                let here =
                    (flow.dirs[si].head.len() as u64).saturating_sub(end.saturating_sub(flow.dirs[si].head_start));
                want.saturating_sub(here) as u32
            };
            for (i, skip_to) in [(si, end), (ci, flow.dirs[ci].handshake_end.unwrap_or(0))] {
                let dir = &mut flow.dirs[i];
                if dir.phase == Phase::Bulk {
                    continue;
                }
                dir.phase = if i == si && body_left > 0 { Phase::PlainAnswer(body_left) } else { next };
                if dir.handshake_end.is_none() {
                    dir.handshake_end = Some(skip_to);
                }
                if next == Phase::Frames {
                    // Replay bytes that followed the head into the frame walker.
                    let from = (skip_to.saturating_sub(dir.head_start) as usize).min(dir.head.len());
                    let rest = std::mem::take(&mut dir.head);
                    let side = if i == ci { client } else { client.other() };
                    let _ = feed_units(dir, &rest[from..], keep_frames, &mut self.ev, (conv, key, side));
                } else {
                    dir.head = Vec::new();
                }
            }
            break;
        }
    }

    /// Classifies an undecided flow from the bytes collected so far (and finds what a flow to
    /// a `--port` carries, without changing that it is kept).
    fn try_classify(&mut self, key: FlowKey) {
        let flow = self.flows.get_mut(&key).expect("flow exists");
        // Kept whatever it carries (a --port flow, an open CONNECT tunnel), still read as
        // what it carries.
        let to_port = matches!(flow.class, Class::Port | Class::Tunnel);
        if to_port && flow.dirs.iter().all(|d| d.head.is_empty()) {
            // Nothing of what it carries has arrived yet (a tunnel just opened).
            return;
        }
        let order = match flow.client {
            Some(c) => [c, c.other()],
            None => [Side::A, Side::B],
        };
        let mut class = Class::Undecided;
        let mut content = Content::Unknown;
        let mut label = (Proto::Unknown, "");
        let mut names: Vec<String> = Vec::new();
        let mut undecided_any = false;
        let mut hello = None;
        for s in order {
            let head = &flow.dirs[s.index()].head;
            // The server's bytes are read only when the client's side is missing from the capture.
            if head.is_empty() || flow.client.is_some_and(|c| c != s && !flow.dirs[c.index()].head.is_empty()) {
                continue;
            }
            let server_side = flow.client.is_some_and(|c| c != s);
            if !server_side && head.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(head) {
                undecided_any = true;
                continue;
            }
            if !server_side && head.starts_with(H2_PREFACE) {
                flow.client = Some(s);
                class = Class::H2Preface;
                content = Content::H2Preface;
                label = (Proto::H2c, "HTTP/2 with prior knowledge (no upgrade possible)");
                break;
            }
            match if server_side { Some(false) } else { http::looks_like_request(head) } {
                Some(true) => match http::head_len(head) {
                    Some(n) => {
                        let req = http::parse_request(&head[..n]);
                        flow.client = Some(s);
                        content = Content::Http;
                        if let Some(r) = req.as_ref().filter(|r| r.is_websocket_attempt()) {
                            class = Class::WebSocket;
                            label = (Proto::WebSocket, "WebSocket upgrade request");
                            names.extend(r.host_name());
                        } else if let Some(r) = req.as_ref().filter(|r| r.method.eq_ignore_ascii_case("CONNECT")) {
                            class = Class::Tunnel;
                            label = (Proto::Connect, "HTTP CONNECT through a forward proxy");
                            names.push(http::strip_port(&r.path));
                        } else {
                            class = Class::Dropped;
                            label = match req {
                                Some(_) => (Proto::Http, "HTTP without an upgrade"),
                                None => (Proto::Http, "unparsable HTTP request"),
                            };
                        }
                        break;
                    }
                    None if head.len() >= http::MAX_HEAD_BYTES => {
                        class = Class::Dropped;
                        content = Content::Http;
                        label = (Proto::Http, "HTTP head over 64 KiB");
                        break;
                    }
                    None => {
                        undecided_any = true;
                        continue;
                    }
                },
                None => {
                    undecided_any = true;
                    continue;
                }
                Some(false) => {}
            }
            // Met from the server's side (the request was not captured): a 101 that switches
            // to websocket is a WebSocket; any other response, plain HTTP.
            if flow.client.is_none_or(|c| c != s) && http::looks_like_response(head) == Some(true) {
                let Some(n) = http::head_len(head) else {
                    undecided_any = true;
                    continue;
                };
                let ws = http::parse_response(&head[..n]).is_some_and(|r| {
                    r.status == 101
                        && (r.upgrade.as_deref().is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
                            || r.accept.is_some())
                });
                flow.client = Some(s.other());
                content = Content::Http;
                (class, label) = if ws {
                    (Class::WebSocket, (Proto::WebSocket, "WebSocket 101 (its request not captured)"))
                } else {
                    (Class::Dropped, (Proto::Http, "HTTP response without an upgrade"))
                };
                break;
            }
            if server_side {
                continue;
            }
            match tls::parse_client_hello(head) {
                tls::Hello::Parsed(ch) => {
                    flow.client = Some(s);
                    content = Content::Tls;
                    let sni = ch.sni.clone().unwrap_or_default();
                    let h2 = ch.alpn.iter().any(|p| p == "h2");
                    let h1 = ch.alpn.iter().any(|p| p == "http/1.1");
                    let mut keep = if !self.opts.select.has_hosts() {
                        ch.alpn.is_empty() || (h1 && !h2)
                    } else {
                        self.opts.select.host_matches(&sni)
                    };
                    let proto = if h2 {
                        Proto::TlsH2
                    } else if h1 || ch.alpn.is_empty() {
                        Proto::TlsHttp1
                    } else {
                        Proto::Other
                    };
                    let mut plain = false;
                    if !keep && !self.opts.select.has_hosts() {
                        // Dropped for what it offers, unless the server answers in plaintext.
                        let answer = &flow.dirs[s.other().index()].head;
                        match http::plaintext_answer(answer) {
                            Some(Some(_)) => (keep, plain) = (true, true),
                            None if flow.ends == 0 && !flow.hello_timed_out => {
                                flow.hello_waits.get_or_insert(self.ev.at);
                                undecided_any = true;
                                content = Content::Unknown;
                                continue;
                            }
                            _ => {}
                        }
                    }
                    class = if keep { Class::Tls } else { Class::Dropped };
                    let keys = !plain && !self.opts.select.has_hosts() && self.keys.get(&ch.random).is_some();
                    // What it is judged by its hello alone: its verdict, or a keyed session's
                    // should its plaintext never be read.
                    let by_hello = match (keep, !self.opts.select.has_hosts(), proto) {
                        _ if plain => "TLS answered in plaintext HTTP",
                        (true, false, _) => "SNI matches --host",
                        (false, false, _) => "SNI not among --host",
                        (true, true, _) if ch.alpn.is_empty() => "TLS without ALPN (HTTP/1.1 possible)",
                        (true, true, _) => "TLS offering HTTP/1.1 only",
                        (false, true, Proto::TlsH2) => "TLS offering h2",
                        (false, true, _) => "TLS for another protocol",
                    };
                    label = (proto, by_hello);
                    if keys {
                        label.1 = "TLS with keys: judged by what it carries";
                        flow.keyed = Some(Keyed::new(&ch.random, (class, proto, by_hello), self.ev.at.frame));
                        class = Class::Tls;
                        keep = true;
                    }
                    if (keep || to_port) && !sni.is_empty() {
                        names.push(sni);
                    }
                    // A keyed session's keys follow its verdict (`inner`).
                    if (keep || to_port)
                        && !keys
                        && let Ok(r) = <[u8; 32]>::try_from(ch.random.as_slice())
                    {
                        self.kept_tls_randoms.push((r, None));
                    }
                    hello = Some((s, ch));
                    break;
                }
                tls::Hello::NeedMore => {
                    undecided_any = true;
                    continue;
                }
                tls::Hello::NotTls => {}
            }
        }
        if class == Class::Undecided && flow.client.is_none() {
            // Met mid-connection: a WebSocket shows masked frames one way, unmasked the other.
            let (a, b) = (&flow.dirs[0], &flow.dirs[1]);
            let client = if a.masked_runs >= 2 || (a.masked_runs >= 1 && b.unmasked_runs >= 1) {
                Some(Side::A)
            } else if b.masked_runs >= 2 || (b.masked_runs >= 1 && a.unmasked_runs >= 1) {
                Some(Side::B)
            } else {
                None
            };
            if let Some(c) = client {
                flow.client = Some(c);
                class = Class::WebSocket;
                content = Content::Frames;
                label = (Proto::WebSocket, "WebSocket frames mid-connection");
                let now = self.ev.at;
                for (i, d) in flow.dirs.iter_mut().enumerate() {
                    d.phase = Phase::Frames;
                    d.handshake_end = Some(d.stream.delivered());
                    // The segments that showed the frames are frames too (a close frame in
                    // them is the story): read them, each citing its own packet.
                    let head = std::mem::take(&mut d.head);
                    let marks = std::mem::take(&mut d.segments);
                    for (k, &(from, at)) in marks.iter().enumerate() {
                        let to = marks.get(k + 1).map_or(head.len(), |m| m.0 as usize).min(head.len());
                        let Some(seg) = head.get(from as usize..to) else { break };
                        self.ev.at = at;
                        let side = if i == 0 { Side::A } else { Side::B };
                        let _ = feed_units(d, seg, self.opts.keep_frames, &mut self.ev, (flow.conv, key, side));
                    }
                }
                self.ev.at = now;
            }
        }
        if class == Class::Undecided && !undecided_any {
            let limit_hit = flow.payload_segments >= MID_STREAM_CLASSIFY_SEGMENTS
                || flow.client.is_some()
                || flow.dirs.iter().any(|d| d.head.len() >= http::MAX_HEAD_BYTES);
            if limit_hit {
                class = Class::Dropped;
                content = Content::Other;
                label = (Proto::Other, "not HTTP, TLS or WebSocket");
            }
        }
        if content == Content::Unknown {
            return;
        }
        flow.content = content;
        if to_port {
            // Kept whatever it carries; still read as what it carries.
            class = flow.class;
            if class == Class::Port {
                flow.proto = label.0;
            }
        } else {
            flow.class = class;
            (flow.proto, flow.why) = label;
        }
        let conv = flow.conv;
        if let Some((s, ch)) = hello {
            let now = self.ev.at;
            self.ev.at = flow.hello_waits.take().unwrap_or(now);
            self.ev.push(conv, key, s, Event::ClientHello(Box::new(ch)));
            self.ev.at = now;
        }
        let flow = self.flows.get_mut(&key).expect("flow exists");
        match content {
            Content::Tls if class.kept() => {
                let keyed = flow.keyed.is_some();
                for s in [Side::A, Side::B] {
                    let d = &mut flow.dirs[s.index()];
                    if keyed {
                        d.records.capture_units();
                        d.tls = Some(Box::default());
                    }
                    let head = std::mem::take(&mut d.head);
                    d.handshake_end = Some(d.head_start);
                    if flow.client != Some(s)
                        && let Some(Some(status)) = http::plaintext_answer(&head)
                    {
                        // Answered in plaintext before the hello was decided (it offered h2).
                        self.ev.push(conv, key, s, Event::PlainAnswer { status });
                        flow.plain_answer = true;
                        let n = u32::try_from(head.len()).unwrap_or(u32::MAX);
                        flow.dirs[s.index()].phase = Phase::PlainAnswer(PLAIN_ANSWER_BYTES.saturating_sub(n));
                        continue;
                    }
                    d.phase = Phase::Records;
                    let _ = feed_units(d, &head, self.opts.keep_frames, &mut self.ev, (conv, key, s));
                }
            }
            Content::H2Preface | Content::Other => {
                for d in &mut flow.dirs {
                    d.handshake_end.get_or_insert(d.stream.delivered());
                    d.phase = Phase::Bulk;
                    d.head = Vec::new();
                }
            }
            _ => {}
        }
        if class == Class::Dropped {
            for d in &mut flow.dirs {
                d.head = Vec::new();
            }
        }
        self.kept_names.extend(names.iter().map(|n| name_key(n)));
        if to_port {
            self.report_class(key);
            self.advance_heads(key);
            return;
        }
        if self.flows.get(&key).is_some_and(|f| f.keyed.as_ref().is_some_and(|k| k.pending)) {
            // Its packets wait for what the plaintext is (`inner`); say what it is so far.
            self.report_class(key);
            // The heads just fed may hold the ServerHello already.
            for s in [Side::A, Side::B] {
                let d = &self.flows.get(&key).expect("flow exists").dirs[s.index()];
                if d.tls.as_ref().is_some_and(|t| t.dec.is_some() || t.server_hello.is_some()) {
                    self.after_records(key, s, 0);
                }
            }
            return;
        }
        self.on_classified(key);
        if matches!(class, Class::WebSocket | Class::Tunnel) {
            self.advance_heads(key);
        }
    }

    /// Reports what the flow was found to be (`Event::Classified`).
    fn report_class(&mut self, key: FlowKey) {
        let f = self.flows.get(&key).expect("flow exists");
        let (class, content, client, why) = (f.class, f.content, f.client, f.why);
        self.ev.push(f.conv, key, client.unwrap_or(Side::A), Event::Classified { class, content, client, why });
    }

    /// Resolves the packets that waited for this flow's classification, and DNS lookups
    /// that named its host or address.
    fn on_classified(&mut self, key: FlowKey) {
        self.report_class(key);
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let kept = flow.class.kept();
        if kept && !flow.counted_kept {
            flow.counted_kept = true;
            self.stats.flows_kept += 1;
        }
        let v = if kept { Verdict::Keep } else { Verdict::Drop };
        for w in flow.waiting.drain(..) {
            self.resolved.push((w.packet, v));
        }
        if !kept {
            return;
        }
        if let Some(c) = flow.client {
            self.kept_addrs.insert(key.addr(c.other()));
        } else {
            self.kept_addrs.insert(key.a);
            self.kept_addrs.insert(key.b);
        }
        self.resolve_dns_matches();
    }

    // ---------------------------------------------------------------- forcing and sweeping

    /// Decides a waiting packet now: the caller's buffer is full or the packet waited too
    /// long. Evidence wins over size: an undecided connect is kept if its SYN was seen, a
    /// half-parsed unit is kept whole, an unanswered DNS query is kept; a DNS lookup for a
    /// name no kept flow used is dropped.
    pub fn force(&mut self, packet: u64, ticket: Ticket) -> Verdict {
        let v = self.force_one(packet, ticket);
        if self.opts.keep_all { Verdict::Keep } else { v }
    }

    fn force_one(&mut self, packet: u64, ticket: Ticket) -> Verdict {
        match ticket.on {
            WaitOn::Dns(n) => self.force_dns(n, packet),
            WaitOn::Classification => {
                let Some(flow) = self.flows.get_mut(&ticket.key) else {
                    return Verdict::Drop;
                };
                if flow.hello_waits.is_some() {
                    // No answer came in time: decided as what the hello offered.
                    flow.hello_timed_out = true;
                    self.try_classify(ticket.key);
                    let flow = self.flows.get_mut(&ticket.key).expect("flow exists");
                    forget_waiting(&mut flow.waiting, packet);
                    return if flow.class.kept() { Verdict::Keep } else { Verdict::Drop };
                }
                forget_waiting(&mut flow.waiting, packet);
                if !flow.syn_seen {
                    return Verdict::Drop;
                }
                if flow.why.is_empty() {
                    flow.why = if flow.synack_seen {
                        "a connect with too little payload to classify"
                    } else {
                        "an unanswered connect"
                    };
                }
                if !flow.counted_kept {
                    flow.counted_kept = true;
                    self.stats.flows_kept += 1;
                }
                Verdict::Keep
            }
            WaitOn::Unit(side) => {
                if let Some(flow) = self.flows.get_mut(&ticket.key) {
                    flow.dirs[side.index()].open.retain(|w| w.packet != packet);
                }
                Verdict::Keep
            }
            WaitOn::Reorder(side) => {
                let Some(flow) = self.flows.get_mut(&ticket.key) else {
                    return Verdict::Keep;
                };
                flow.dirs[side.index()].open.retain(|w| w.packet != packet);
                // Whatever this packet waited for will not come: parse no further in this
                // direction, and let the rest of what was held go as bulk.
                let held = flow.dirs[side.index()].stream.skip_hole();
                let dir = &mut flow.dirs[side.index()];
                if dir.phase != Phase::Collect {
                    dir.phase = Phase::Bulk;
                }
                for seg in held {
                    if let Some(pos) = flow.dirs[side.index()].open.iter().position(|w| w.packet == seg.packet) {
                        let w = flow.dirs[side.index()].open.remove(pos);
                        let v = if flow.class.kept() {
                            bulk_verdict(&self.opts, &mut flow.bulk_used, w.cut & !REORDER_MARK)
                        } else {
                            Verdict::Drop
                        };
                        self.resolved.push((w.packet, v));
                    }
                }
                Verdict::Keep
            }
        }
    }

    /// Forgets `n` flows when the table is full: those that matter least and were quiet
    /// longest.
    fn evict_oldest(&mut self, n: usize) {
        let rank = |f: &Flow| -> u8 {
            match f.class {
                Class::Dropped => 0,
                _ if f.closed() => 1,
                Class::Undecided if !f.has_waiters() => 2,
                Class::Undecided => 3,
                _ => 4,
            }
        };
        let candidates = self.flows.iter().map(|(k, f)| (rank(f), f.last_ns, *k)).collect();
        for key in crate::flow::least_telling(candidates, n) {
            if let Some(f) = self.flows.remove(&key) {
                if self.opts.record_flows {
                    self.retired.push(f.record(key));
                }
                self.stats.flows_evicted += 1;
            }
        }
    }

    /// Forgets flows that ended or went quiet, so the table does not grow with the capture.
    fn sweep(&mut self, now: u64) {
        self.last_sweep_ns = now;
        let before = self.flows.len();
        let record = self.opts.record_flows;
        let retired = &mut self.retired;
        self.flows.retain(|k, f| {
            if f.has_waiters() {
                return true;
            }
            let idle = now.saturating_sub(f.last_ns);
            let limit = if f.closed() || f.udp {
                CLOSED_LINGER_NS
            } else if f.class == Class::Dropped || f.class == Class::Undecided {
                DROPPED_IDLE_NS
            } else {
                OPEN_IDLE_NS
            };
            let keep = idle < limit;
            if !keep && record {
                retired.push(f.record(*k));
            }
            keep
        });
        self.stats.flows_evicted += (before - self.flows.len()) as u64;
    }
}

/// Removes a forced packet from its flow's waiting list: usually the front.
fn forget_waiting(waiting: &mut std::collections::VecDeque<Waiting>, packet: u64) {
    if waiting.front().is_some_and(|w| w.packet == packet) {
        waiting.pop_front();
    } else {
        waiting.retain(|w| w.packet != packet);
    }
}

/// Marks a waiting entry of `Dir::open` as held for reordering (not for an open header).
const REORDER_MARK: u32 = 1 << 31;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Consumed {
    /// Some bytes are important: the packet is kept whole. A packet is whole or cut after its
    /// TCP header, never inside a frame or record (see `Bulk`).
    Important,
    /// Not important. A bulk packet is cut right after its TCP header, never inside a frame
    /// or record: Wireshark takes the first bytes of a cut segment for a header, invents frames
    /// (reserved opcodes, "Pong [FRAGMENT]") and loses the frames after them.
    Bulk,
    Open,
}

/// Which flow and side bytes belong to, for the events they yield.
type Source = (u64, FlowKey, Side);

/// Feeds bytes to the direction's frame or record walker, judging importance and reporting
/// what the units are.
fn feed_units(dir: &mut Dir, bytes: &[u8], keep_frames: u32, ev: &mut Events, src: Source) -> Fed {
    let (conv, key, side) = src;
    let data_units = &mut dir.data_units;
    match dir.phase {
        Phase::Frames => {
            // The rest of a close status code that a segment boundary cut off: the walker
            // takes these bytes as the frame's body; they are only read here.
            if let Some((mut code, mut have, mask)) = dir.pending_close.take() {
                for &b in bytes.iter().take(2 - have) {
                    code[have] = b ^ mask[have];
                    have += 1;
                }
                if have == 2 {
                    ev.push(conv, key, side, Event::CloseCode(u16::from_be_bytes(code)));
                } else {
                    dir.pending_close = Some((code, have, mask));
                }
            }
            let pending = &mut dir.pending_close;
            let fed = dir.frames.feed(bytes, |h, body| {
                let close_code = websocket::close_code(h, body);
                if h.opcode == websocket::OP_CLOSE && close_code.is_none() && h.payload_len >= 2 {
                    let mask = h.mask.unwrap_or([0; 4]);
                    let mut first = [0u8; 2];
                    for (k, &b) in body.iter().take(2).enumerate() {
                        first[k] = b ^ mask[k];
                    }
                    *pending = Some((first, body.len().min(2), mask));
                }
                ev.push(conv, key, side, Event::Frame { opcode: h.opcode, payload_len: h.payload_len, close_code });
                frame_importance(h, data_units, keep_frames)
            });
            if fed.failed {
                dir.phase = Phase::FramesLost;
            }
            fed
        }
        Phase::Records => {
            let encrypted = &mut dir.encrypted;
            let want_hello = dir.tls.is_some();
            let keyed = dir.tls.as_ref().is_some_and(|t| t.dec.is_some());
            let mut found_hello = None;
            let tls_state = &mut dir.tls;
            let on_unit = |h: &tls::RecordHeader, body: Option<&[u8]>| {
                let Some(t) = tls_state.as_mut() else { return };
                if let Some(d) = t.dec.as_mut() {
                    d.record(h, body);
                } else if t.held.len() < MAX_HELD_RECORDS {
                    t.held.push((*h, body.map(<[u8]>::to_vec)));
                }
            };
            let fed = dir.records.feed_units(
                bytes,
                |h, body| {
                    match h.content_type {
                        tls::CHANGE_CIPHER_SPEC => {
                            *encrypted = true;
                            ev.push(conv, key, side, Event::ChangeCipherSpec);
                        }
                        // A protected alert of a keyed session is reported once decrypted.
                        tls::ALERT if keyed && *encrypted => {}
                        tls::ALERT => {
                            let clear = !*encrypted && body.len() >= 2;
                            let (level, description) = (clear.then(|| body[0]), clear.then(|| body[1]));
                            ev.push(conv, key, side, Event::Alert { level, description });
                        }
                        tls::APPLICATION_DATA => ev.push(conv, key, side, Event::ApplicationData),
                        // A keyed session's ServerHello may follow a ChangeCipherSpec: TLS 1.3 sends
                        // one after a HelloRetryRequest for compatibility.
                        tls::HANDSHAKE
                            if (ev.on || want_hello)
                                && (!*encrypted || (want_hello && !keyed))
                                && body.len() == usize::from(h.len) =>
                        {
                            let mut rec = vec![
                                tls::HANDSHAKE,
                                (h.version >> 8) as u8,
                                h.version as u8,
                                (h.len >> 8) as u8,
                                h.len as u8,
                            ];
                            rec.extend_from_slice(body);
                            if let tls::Hello::Parsed(sh) = tls::parse_server_hello(&rec) {
                                ev.push(conv, key, side, Event::ServerAlpn(sh.alpn.clone().unwrap_or_default()));
                                if want_hello {
                                    found_hello = Some(sh);
                                }
                            }
                        }
                        _ => {}
                    }
                    record_importance(h, data_units, keep_frames)
                },
                on_unit,
            );
            if let (Some(sh), Some(t)) = (found_hello, dir.tls.as_mut()) {
                t.server_hello = Some(sh);
            }
            fed
        }
        _ => Fed::default(),
    }
}

/// The capture lost bytes of this direction (a hole given up on): frames resynchronise at the
/// next segment that is a run of whole frames; anything else is read no further.
fn lose_sync(dir: &mut Dir) {
    let dec = dir.tls.as_mut().and_then(|t| t.dec.as_mut());
    let keyed = dec.is_some();
    if let Some(d) = dec {
        d.lost = None;
    }
    dir.phase = match dir.phase {
        Phase::Collect => Phase::Collect,
        Phase::Frames | Phase::FramesLost => Phase::FramesLost,
        Phase::Records | Phase::RecordsLost if keyed => Phase::RecordsLost,
        _ => Phase::Bulk,
    };
}

/// Stream bytes that were on the wire but not captured: frame and record walks pass over
/// them when they are body bytes; a lost header loses sync.
fn skip_uncaptured(dir: &mut Dir, n: u64) {
    match dir.phase {
        Phase::Frames => {
            if !dir.frames.skip(n) {
                dir.phase = Phase::FramesLost;
            }
        }
        Phase::Records => {
            if !dir.records.skip(n) {
                let dec = dir.tls.as_mut().and_then(|t| t.dec.as_mut());
                dir.phase = if dec.is_some() { Phase::RecordsLost } else { Phase::Bulk };
                if let Some(d) = dec {
                    d.add_lost(n);
                }
            }
        }
        Phase::RecordsLost => {
            if let Some(d) = dir.tls.as_mut().and_then(|t| t.dec.as_mut()) {
                d.add_lost(n);
            }
        }
        Phase::FramesLost | Phase::Bulk | Phase::PlainAnswer(_) => {}
        Phase::Collect | Phase::AwaitPeer => dir.phase = Phase::Bulk,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_state_stays_small() {
        // The table may hold a million flows (a SYN flood); keep each one cheap.
        assert!(std::mem::size_of::<Flow>() <= 1024, "Flow is {} bytes", std::mem::size_of::<Flow>());
    }
}
