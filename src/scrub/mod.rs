//! Length-preserving redaction (SPEC "What scrubbing changes").
//!
//! The scrubber sees every packet of every flow that is not dropped, in input order, and
//! rewrites a copy of it before it is queued or written. Each TCP direction has a cursor that
//! knows what the next stream byte is: part of an HTTP head (see `http`), an HTTP body, a
//! WebSocket frame header or payload, a TLS record header or body — or nothing it can vouch
//! for. It fails closed: bytes it cannot place (unknown protocols, segments after a hole,
//! retransmitted copies, what follows a parse error) are overwritten, never passed through.
//! Packet lengths never change; TCP/UDP checksums are updated incrementally (`checksum`).

pub mod http;
pub mod pseudonym;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::capture::RecordMeta;
use crate::engine::{Content, Engine, Reading};
use crate::flow::reassembly::{Placement, Stream};
use crate::flow::{FlowKey, FlowTable, PROTO_TCP, PROTO_UDP, Side};
use crate::proto::units::{Header, UnitFormat};
use crate::proto::websocket::{self, Frames};
use crate::proto::{dns, tls};
use crate::wire::{self, Transport, checksum, tcp_flags};

use self::http::{Fate, HeadRedactor, Rest, Step};
use self::pseudonym::{HelloByte, Pseudonymizer};

/// The byte that replaces secrets: printable, so redacted HTTP stays readable text.
pub const FILL: u8 = b'x';
const DNS_PORT: u16 = 53;

#[derive(Clone, Debug, Default)]
pub struct ScrubOptions {
    pub keep_comments: bool,
    /// Key for `--pseudonymize` (None: no pseudonymization).
    pub pseudonymize: Option<[u8; 32]>,
}

/// What was overwritten, per rule: bytes and packets (`--scrub-report`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ScrubReport {
    pub rules: BTreeMap<&'static str, RuleCount>,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct RuleCount {
    pub bytes: u64,
    pub packets: u64,
}

/// The redaction rules, as named in the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    QueryValue,
    HeaderValue,
    HttpBody,
    WebSocketPayload,
    CloseReason,
    TlsApplicationData,
    TlsHandshakeBody,
    Unparsed,
    RetransmittedOrReordered,
    PseudonymizedAddress,
    PseudonymizedName,
}

impl Rule {
    const ALL: [Rule; 11] = [
        Rule::QueryValue,
        Rule::HeaderValue,
        Rule::HttpBody,
        Rule::WebSocketPayload,
        Rule::CloseReason,
        Rule::TlsApplicationData,
        Rule::TlsHandshakeBody,
        Rule::Unparsed,
        Rule::RetransmittedOrReordered,
        Rule::PseudonymizedAddress,
        Rule::PseudonymizedName,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Rule::QueryValue => "http-query-value",
            Rule::HeaderValue => "http-header-value",
            Rule::HttpBody => "http-body",
            Rule::WebSocketPayload => "websocket-payload",
            Rule::CloseReason => "websocket-close-reason",
            Rule::TlsApplicationData => "tls-application-data",
            Rule::TlsHandshakeBody => "tls-handshake-body",
            Rule::Unparsed => "unparsed-payload",
            Rule::RetransmittedOrReordered => "retransmitted-or-reordered-payload",
            Rule::PseudonymizedAddress => "pseudonymized-address",
            Rule::PseudonymizedName => "pseudonymized-name",
        }
    }
}

/// Per-packet tally, folded into the report once per packet.
#[derive(Default)]
pub struct Tally {
    bytes: [u64; Rule::ALL.len()],
}

impl Tally {
    pub fn add(&mut self, rule: Rule, n: usize) {
        self.bytes[rule as usize] += n as u64;
    }

    /// Whether anything was overwritten since the last fold (one frame's worth).
    fn any(&self) -> bool {
        self.bytes.iter().any(|&n| n > 0)
    }

    fn fold_into(&mut self, report: &mut ScrubReport) {
        for r in Rule::ALL {
            let n = std::mem::take(&mut self.bytes[r as usize]);
            if n > 0 {
                let e = report.rules.entry(r.name()).or_default();
                e.bytes += n;
                e.packets += 1;
            }
        }
    }
}

/// What the next bytes of one direction are.
#[derive(Clone, Debug)]
enum Mode {
    /// Nothing seen yet: what the engine says of the flow decides (`start_mode`).
    Start,
    /// An HTTP flow's direction before its first byte: a request or response head (or TLS
    /// records after a `CONNECT`).
    Sniff,
    /// WebSocket frames met mid-connection: the first segment that is exactly a run of frames
    /// masked as this side masks starts the walk; segments before it are overwritten.
    FramesAt {
        masked: bool,
    },
    Head(Box<HeadRedactor>),
    Body {
        left: u64,
        then_response: bool,
    },
    /// A chunked body (RFC 9112 §7.1): sizes and line ends stay, chunk data and trailer
    /// values go.
    Chunked(ChunkCursor),
    /// A request head ended; the next bytes are another request, or frames after a 101.
    AfterRequest,
    Frames(FrameCursor),
    Records(RecordCursor),
    /// DNS over TCP: the bytes left of the current message (a whole one, so they stay), and
    /// what replaces them when it was pseudonymized whole.
    Dns {
        left: usize,
        with: Vec<u8>,
    },
    Opaque,
}

#[derive(Clone, Debug, Default)]
struct FrameCursor {
    header: [u8; 14],
    header_len: usize,
    left: u64,
    pos: u64,
    mask: [u8; 4],
    close: bool,
}

#[derive(Clone, Debug, Default)]
struct ChunkCursor {
    then_response: bool,
    at: ChunkAt,
    size: u64,
    left: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkAt {
    #[default]
    Size,
    /// Chunk extensions after `;`, to the end of the size line.
    Extension,
    Data,
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    TrailerLineStart,
    Trailer,
}

#[derive(Clone, Debug, Default)]
struct RecordCursor {
    header: [u8; 5],
    header_len: usize,
    /// Body bytes left in the current record.
    left: u64,
    content_type: u8,
    /// After this direction's ChangeCipherSpec (TLS 1.2), handshake records are encrypted.
    encrypted: bool,
    /// Handshake messages span records: the current one's header and what is left of it.
    hs_header: [u8; 4],
    hs_header_len: usize,
    hs_left: u64,
    hs_keep: bool,
    hs_type: u8,
    /// Where the server name is in the ClientHello being read (`--pseudonymize`).
    hello: pseudonym::HelloCursor,
    /// Body bytes of the current record read so far.
    pos: u64,
    /// The current handshake record is a ClientHello in the clear even after a
    /// ChangeCipherSpec (TLS 1.3 after a HelloRetryRequest).
    clear_hello: bool,
}

impl RecordCursor {
    /// One byte of a handshake record body: message headers stay, the bodies of ClientHello
    /// and ServerHello stay, the bodies of the others (certificates, key exchanges, tickets)
    /// are filled. Returns whether the byte stays.
    fn handshake_byte(&mut self, c: u8) -> bool {
        if self.encrypted && !self.clear_hello {
            return false;
        }
        if self.hs_left > 0 {
            self.hs_left -= 1;
            return self.hs_keep;
        }
        self.hs_header[self.hs_header_len] = c;
        self.hs_header_len += 1;
        if self.hs_header_len == 4 {
            let h = self.hs_header;
            self.hs_header_len = 0;
            self.hs_left = u64::from(h[1]) << 16 | u64::from(h[2]) << 8 | u64::from(h[3]);
            self.hs_keep = matches!(h[0], 1 | 2);
            self.hs_type = h[0];
            self.hello = pseudonym::HelloCursor::default();
        }
        true
    }
}

struct Direction {
    stream: Stream,
    mode: Mode,
}

impl Default for Direction {
    fn default() -> Self {
        Direction { stream: Stream::default(), mode: Mode::Start }
    }
}

#[derive(Default)]
struct ScrubFlow {
    dirs: [Direction; 2],
    /// An HTTP CONNECT (the engine's `Class::Tunnel`): a 2xx opens a new connection inside.
    tunnel: bool,
    last_ns: u64,
    /// A FIN or RST was seen: only stragglers are still to come.
    closed: bool,
}

/// Tells the other direction what a finished head means for it.
enum Event {
    None,
    Switching,
    /// A 2xx to a CONNECT: both directions carry a new connection's first bytes now.
    TunnelOpen,
}

pub struct Scrubber {
    /// The engine's kind of table (a slab behind an index), capped like it (`engine::MAX_FLOWS`).
    flows: FlowTable<ScrubFlow>,
    pseudo: Option<Pseudonymizer>,
    pub report: ScrubReport,
    tally: Tally,
    last_sweep_ns: u64,
}

const SWEEP_EVERY_NS: u64 = 10_000_000_000;
/// How long (capture time) a quiet flow's cursors are kept: long for open connections (an
/// idle WebSocket resumes after minutes), short once a FIN or RST was seen.
const IDLE_NS: u64 = 600_000_000_000;
const CLOSED_LINGER_NS: u64 = 30_000_000_000;

impl Scrubber {
    pub fn new(opts: &ScrubOptions) -> Scrubber {
        Scrubber {
            flows: FlowTable::default(),
            pseudo: opts.pseudonymize.map(|k| Pseudonymizer::new(&k)),
            report: ScrubReport::default(),
            tally: Tally::default(),
            last_sweep_ns: 0,
        }
    }

    /// Rewrites one frame in place (the packet data of a record). `engine` says what each flow
    /// carries: the scrubber reads a stream as HTTP, TLS or WebSocket frames only when the
    /// engine does, and overwrites every other stream whole.
    ///
    /// `layout` is where the engine's decode of this frame found its layers (None: not a TCP
    /// or UDP packet it could read); the frame is not decoded again. `ahead` is what follows
    /// this segment's payload in its stream, as far as the caller holds it (the segments
    /// queued after it): an HTTP head sent in many small segments is then judged as if whole,
    /// where judging each segment alone overwrites what it cannot see the end of.
    pub fn frame(
        &mut self,
        meta: &RecordMeta,
        frame: &mut [u8],
        layout: Option<&wire::Layout>,
        engine: &Engine,
        ahead: &[u8],
    ) {
        let Some(d) = layout else {
            let first_fragment = self.undecodable(meta.link_type, frame);
            if let Some(p) = &mut self.pseudo {
                p.link_addresses(meta.link_type, frame, &mut self.tally);
            }
            // After the addresses are mapped: the pseudo-header is summed with them.
            if let Some(f) = first_fragment {
                f.fill_checksum(frame);
            }
            self.tally.fold_into(&mut self.report);
            return;
        };
        let (src, dst, sport, dport) = (d.src, d.dst, d.sport, d.dport);
        let (ip_off, l4_off, pay_off) = (d.ip_offset, d.transport_offset, d.payload_offset);
        let wire_len = d.wire_payload_len;
        let transport = d.transport;
        // The tunnel layers, read before anything inside them is rewritten.
        let tunnels = if d.tunneled { wire::tunnels(meta.link_type, frame) } else { wire::Tunnels::default() };
        let cap_end = pay_off + d.payload_len;
        let proto = if matches!(transport, Transport::Tcp { .. }) { PROTO_TCP } else { PROTO_UDP };
        // A whole segment's checksum is computed afresh if anything changes (one pass over
        // it); only a segment cut by the snaplen needs the sums before and after.
        let whole = cap_end - pay_off == wire_len as usize;
        let old_sum = if whole { 0 } else { checksum::sum(&frame[pay_off..cap_end]) };
        match transport {
            Transport::Udp => {
                if sport == DNS_PORT || dport == DNS_PORT {
                    if let Some(p) = &mut self.pseudo {
                        p.dns_message(&mut frame[pay_off..cap_end], &mut self.tally);
                    }
                } else {
                    let n = cap_end - pay_off;
                    frame[pay_off..cap_end].fill(FILL);
                    self.tally.add(Rule::Unparsed, n);
                }
            }
            Transport::Tcp { seq, flags, .. } => {
                let (key, side) = FlowKey::of(src, sport, dst, dport, PROTO_TCP);
                if meta.ts_ns >= self.last_sweep_ns + SWEEP_EVERY_NS {
                    self.sweep(meta.ts_ns);
                }
                if self.flows.len() >= crate::engine::MAX_FLOWS && !self.flows.contains_key(&key) {
                    self.evict_oldest(crate::engine::MAX_FLOWS / 8);
                }
                let flow = self.flows.get_or_default(key);
                flow.last_ns = flow.last_ns.max(meta.ts_ns);
                flow.closed |= flags & (tcp_flags::FIN | tcp_flags::RST) != 0;
                if flags & tcp_flags::SYN != 0 {
                    flow.dirs[side.index()].stream.syn(seq);
                    // Data in a SYN (TCP Fast Open) is read by nothing: it goes.
                    let n = cap_end - pay_off;
                    if n > 0 {
                        frame[pay_off..cap_end].fill(FILL);
                        self.tally.add(Rule::Unparsed, n);
                    }
                } else if wire_len > 0 {
                    let dir = &mut flow.dirs[side.index()];
                    if matches!(dir.mode, Mode::Start) {
                        let reading = engine.reading(&key);
                        dir.mode = start_mode(reading, side);
                        flow.tunnel |= reading.is_some_and(|r| r.tunnel);
                    }
                    tcp_payload(
                        flow,
                        side,
                        (seq, wire_len, meta.number),
                        &mut frame[pay_off..cap_end],
                        ahead,
                        &mut self.tally,
                        self.pseudo.as_mut(),
                    );
                }
            }
        }
        let new_sum = if whole { 0 } else { checksum::sum(&frame[pay_off..cap_end]) };
        let rewritten = if whole { self.tally.any() } else { new_sum != old_sum };
        // Bytes after the IP datagram (Ethernet padding and trailers) belong to no packet a
        // tool reads; they go, outside every checksum.
        if cap_end < frame.len() {
            let n = frame.len() - cap_end;
            frame[cap_end..].fill(0);
            self.tally.add(Rule::Unparsed, n);
        }
        let mapped = self.pseudo.is_some();
        if let Some(p) = &mut self.pseudo {
            p.ip_and_link(meta.link_type, frame, ip_off, l4_off, proto, &mut self.tally);
        }
        let hc = wire::view::Transport::new_checked(&frame[l4_off..], proto).map(|t| t.checksum());
        // A zero UDP checksum means "none" and stays so.
        let none = proto == PROTO_UDP && hc == Some(0);
        if (rewritten || mapped)
            && !none
            && let Some(hc) = hc
        {
            // A rewritten packet gets a correct checksum, whatever it had: a wrong
            // (offloaded) one kept "wrong the same way" would tell the sum of the removed
            // bytes. Only a segment cut by the snaplen is updated incrementally (its sum
            // cannot be known, nor told).
            let v = if whole {
                checksum::transport(frame, ip_off, l4_off, cap_end, proto)
            } else if new_sum != old_sum {
                checksum::update(hc, old_sum, new_sum)
            } else {
                hc
            };
            let v = if proto == PROTO_UDP && v == 0 { 0xffff } else { v };
            if let Some(mut t) = wire::view::Transport::new_checked(&mut frame[l4_off..], proto) {
                t.set_checksum(v);
            }
        }
        // (IPv6 has no header checksum; the view takes IPv4 only.)
        if mapped && let Some(mut h) = wire::view::Ipv4::new_checked(&mut frame[ip_off..]) {
            h.fill_checksum();
        }
        if !tunnels.is_empty() {
            if let Some(p) = &mut self.pseudo {
                p.tunnels(frame, &tunnels, &mut self.tally);
            }
            // Innermost first: an outer sum covers the inner ones.
            for l in tunnels.iter().rev() {
                if let Some(s) = &l.sum {
                    checksum::recompute_tunnel(frame, l.ip, s);
                }
            }
        }
        self.tally.fold_into(&mut self.report);
    }

    /// Frames that are not TCP/UDP over IP, failing closed: an IP packet keeps its IP header
    /// (and an ICMP header) and loses the rest — a fragment's payload, an ICMP error's quoted
    /// packet, other protocols; ARP stays; any other payload after a known link header goes;
    /// a frame of an unknown link type is filled whole. The first fragment of a UDP datagram
    /// keeps its UDP header, whose checksum (over the whole datagram, all of it filler now) the
    /// caller computes once the addresses are final: returned.
    fn undecodable(&mut self, link_type: u32, frame: &mut [u8]) -> Option<FirstFragment> {
        let keep = match wire::ip_offset(link_type, frame) {
            Some((ip, v6)) => {
                let (hlen, proto, first, more) = if v6 {
                    // A fragment header right after the fixed one (the common shape) stays
                    // (RFC 8200 §4.5), so that the fragments still reassemble.
                    match frame.get(ip + 40..ip + 48) {
                        Some(f) if frame[ip + 6] == 44 => {
                            let (offset, m) = (u16::from_be_bytes([f[2], f[3]]) >> 3, f[3] & 1 != 0);
                            (48, f[0], offset == 0, m)
                        }
                        _ => (40, frame[ip + 6], true, false),
                    }
                } else {
                    let flags = u16::from_be_bytes([frame[ip + 6], frame[ip + 7]]);
                    (usize::from(frame[ip] & 0x0f) * 4, frame[ip + 9], flags & 0x1fff == 0, flags & 0x2000 != 0)
                };
                let l4 = ip + hlen;
                if first && more && proto == 17 && frame.len() >= l4 + 8 {
                    let n = frame.len() - (l4 + 8);
                    frame[l4 + 8..].fill(FILL);
                    self.tally.add(Rule::Unparsed, n);
                    let ulen = u16::from_be_bytes([frame[l4 + 4], frame[l4 + 5]]);
                    let sum = u16::from_be_bytes([frame[l4 + 6], frame[l4 + 7]]);
                    // A zero checksum means "none" and stays so.
                    return (sum != 0 && ulen >= 8).then_some(FirstFragment { ip, l4, ulen });
                }
                let ip_end = if v6 {
                    ip + 40 + usize::from(u16::from_be_bytes([frame[ip + 4], frame[ip + 5]]))
                } else {
                    ip + usize::from(u16::from_be_bytes([frame[ip + 2], frame[ip + 3]]))
                };
                if first && (proto == 1 || proto == 58) && frame.len() >= l4 + 8 && ip_end >= l4 + 8 {
                    // The ICMP header stays; what it quotes (a packet's headers and payload)
                    // goes, and so do bytes after the datagram.
                    let end = ip_end.min(frame.len());
                    let old = checksum::sum(&frame[l4 + 8..end]);
                    let n = frame.len() - (l4 + 8);
                    frame[l4 + 8..end].fill(FILL);
                    frame[end..].fill(0);
                    self.tally.add(Rule::Unparsed, n);
                    let v = if ip_end <= frame.len() {
                        // Whole: computed afresh, so a wrong checksum tells nothing of what went.
                        checksum::icmp(frame, ip, l4, ip_end, v6)
                    } else {
                        let hc = u16::from_be_bytes([frame[l4 + 2], frame[l4 + 3]]);
                        checksum::update(hc, old, checksum::sum(&frame[l4 + 8..end]))
                    };
                    frame[l4 + 2..l4 + 4].copy_from_slice(&v.to_be_bytes());
                    return None;
                }
                l4
            }
            None => match wire::link_header_len(link_type, frame) {
                Some(_)
                    if link_type == wire::linktype::ETHERNET
                        && wire::ethertype(frame, 0).is_some_and(|(et, _)| et == 0x0806) =>
                {
                    return None;
                }
                Some(n) => n,
                None => 0,
            },
        };
        if keep < frame.len() {
            let n = frame.len() - keep;
            frame[keep..].fill(FILL);
            self.tally.add(Rule::Unparsed, n);
        }
        None
    }

    /// Forgets the `n` quietest flows when the table is full. A forgotten flow that speaks
    /// again starts over as unknown bytes, which are overwritten: memory is bounded by failing
    /// closed, never by letting bytes through.
    fn evict_oldest(&mut self, n: usize) {
        let candidates = self.flows.iter().map(|(k, f)| (0, f.last_ns, *k)).collect();
        for key in crate::flow::least_telling(candidates, n) {
            self.flows.remove(&key);
        }
    }

    fn sweep(&mut self, now: u64) {
        self.last_sweep_ns = now;
        self.flows.retain(|_, f| now.saturating_sub(f.last_ns) < if f.closed { CLOSED_LINGER_NS } else { IDLE_NS });
    }
}

/// The first fragment of a UDP datagram, its header kept and its payload filled, as every
/// later fragment's is: its checksum is computed once the addresses are final.
struct FirstFragment {
    ip: usize,
    l4: usize,
    ulen: u16,
}

impl FirstFragment {
    fn fill_checksum(&self, frame: &mut [u8]) {
        let v = checksum::udp_over_filler(frame, self.ip, self.l4, self.ulen, FILL);
        frame[self.l4 + 6..self.l4 + 8].copy_from_slice(&v.to_be_bytes());
    }
}

/// How a direction's first payload is read, from what the engine made of its flow: HTTP heads
/// only in an HTTP flow, records from the first byte in a TLS flow (a server's plaintext
/// alert before any ServerHello included), frames in a WebSocket met mid-connection;
/// anything else, or a flow the engine does not know, is overwritten whole.
fn start_mode(reading: Option<Reading>, side: Side) -> Mode {
    let Some(r) = reading else { return Mode::Opaque };
    // A tunnel's CONNECT and its answer are HTTP, whatever the tunnel carries; so is the
    // server's side of a TLS client answered in plaintext.
    if r.tunnel || (r.plain_answer && r.client != Some(side)) {
        return Mode::Sniff;
    }
    match r.content {
        Content::Http => Mode::Sniff,
        Content::Tls => Mode::Records(RecordCursor::default()),
        Content::Frames => Mode::FramesAt { masked: r.client == Some(side) },
        Content::Dns => Mode::Dns { left: 0, with: Vec::new() },
        _ => Mode::Opaque,
    }
}

/// Places one segment's payload in its direction's stream and rewrites it in place: bytes in
/// order run through the direction's cursor, everything else (retransmitted, reordered, after
/// a hole) is overwritten. Takes the flow, not its key: one table lookup a packet.
fn tcp_payload(
    flow: &mut ScrubFlow,
    side: Side,
    seg: (u32, u32, u64),
    payload: &mut [u8],
    ahead: &[u8],
    tally: &mut Tally,
    mut pseudo: Option<&mut Pseudonymizer>,
) {
    let (seq, wire_len, packet) = seg;
    let dir = &mut flow.dirs[side.index()];
    match dir.stream.place(seq, wire_len, payload, packet) {
        Placement::InOrder { skip } => {
            let skip = skip.min(payload.len());
            let (old, new) = payload.split_at_mut(skip);
            old.fill(FILL);
            tally.add(Rule::RetransmittedOrReordered, skip);
            redact(flow, side, new, ahead, tally, pseudo.as_deref_mut());
        }
        Placement::Old { .. } | Placement::Held => {
            payload.fill(FILL);
            tally.add(Rule::RetransmittedOrReordered, payload.len());
        }
        Placement::Gap => {
            payload.fill(FILL);
            tally.add(Rule::RetransmittedOrReordered, payload.len());
            dir.mode = Mode::Opaque;
        }
        Placement::Empty => {}
    }
    // Segments that were ahead of a hole and are now in order advance the cursor; their
    // packets were already written fully overwritten (so what they held is not counted).
    while let Some((seg, skip)) = flow.dirs[side.index()].stream.pop_ready() {
        let mut bytes = seg.bytes;
        redact(flow, side, &mut bytes[skip..], &[], &mut Tally::default(), pseudo.as_deref_mut());
    }
    let dir = &mut flow.dirs[side.index()];
    if dir.stream.gap {
        dir.mode = Mode::Opaque;
    }
}

/// Runs in-order bytes of one direction through its cursor, rewriting them in place; `ahead`
/// is what follows them in the stream, as far as known.
fn redact(
    flow: &mut ScrubFlow,
    side: Side,
    mut b: &mut [u8],
    ahead: &[u8],
    tally: &mut Tally,
    mut pseudo: Option<&mut Pseudonymizer>,
) {
    while !b.is_empty() {
        let dir = &mut flow.dirs[side.index()];
        let (used, event) = step_mode(&mut dir.mode, b, ahead, tally, pseudo.as_deref_mut(), flow.tunnel);
        if let Event::TunnelOpen = event {
            let other = &mut flow.dirs[side.other().index()];
            if matches!(other.mode, Mode::AfterRequest | Mode::Start | Mode::Sniff) {
                other.mode = Mode::Sniff;
            }
        }
        if let Event::Switching = event {
            // A 101: the other direction's bytes after its request are frames now.
            let other = &mut flow.dirs[side.other().index()];
            other.mode = match other.mode {
                Mode::AfterRequest | Mode::Start | Mode::Sniff => Mode::Frames(FrameCursor::default()),
                _ => Mode::Opaque,
            };
        }
        b = &mut b[used..];
    }
}

/// Consumes a prefix of `b` in the current mode; returns how many bytes and what the other
/// direction must learn.
fn step_mode(
    mode: &mut Mode,
    b: &mut [u8],
    ahead: &[u8],
    tally: &mut Tally,
    mut pseudo: Option<&mut Pseudonymizer>,
    tunnel: bool,
) -> (usize, Event) {
    match mode {
        Mode::FramesAt { masked } => {
            if websocket::segment_is_frames(b) == Some(*masked) {
                *mode = Mode::Frames(FrameCursor::default());
                return (0, Event::None);
            }
            b.fill(FILL);
            tally.add(Rule::Unparsed, b.len());
            (b.len(), Event::None)
        }
        Mode::Start => {
            *mode = Mode::Opaque;
            (0, Event::None)
        }
        Mode::Sniff | Mode::AfterRequest => {
            *mode = if b[0] == tls::HANDSHAKE {
                Mode::Records(RecordCursor::default())
            } else {
                Mode::Head(Box::default())
            };
            (0, Event::None)
        }
        Mode::Dns { left, with } if *left > 0 => {
            let n = (*left).min(b.len());
            if !with.is_empty() {
                b[..n].copy_from_slice(&with[..n]);
                with.drain(..n);
            }
            *left -= n;
            (n, Event::None)
        }
        Mode::Dns { left, with } => {
            // A message and its length stay only once the whole of it parses as DNS (here, or
            // with what follows in the stream); anything else ends the reading.
            let joined;
            let framed = if b.len() >= 2 && b.len() >= 2 + usize::from(u16::from_be_bytes([b[0], b[1]])) {
                &b[..]
            } else {
                joined = [&b[..], ahead].concat();
                &joined[..]
            };
            let dns::TcpFrame::Whole(n) = dns::tcp_frame(framed) else {
                *mode = Mode::Opaque;
                return (0, Event::None);
            };
            if 2 + n <= b.len() {
                if let Some(p) = pseudo.as_deref_mut() {
                    p.dns_message(&mut b[2..2 + n], tally);
                }
                return (2 + n, Event::None);
            }
            // Split over segments: kept as it is, or pseudonymized whole, this segment's part
            // now and the rest as its segments come.
            *left = 2 + n;
            if let Some(p) = pseudo.as_deref_mut() {
                let mut whole = framed[..2 + n].to_vec();
                p.dns_message(&mut whole[2..], tally);
                *with = whole;
            }
            (0, Event::None)
        }
        Mode::Opaque => {
            b.fill(FILL);
            tally.add(Rule::Unparsed, b.len());
            (b.len(), Event::None)
        }
        Mode::Head(h) => {
            // The few decisions that look ahead (where a userinfo or a query item ends, whether
            // a line has a colon) see past this segment into the ones queued after it. They
            // look only at bytes after the one being judged, which this loop has not rewritten.
            let mut i = 0;
            while i < b.len() {
                let c = b[i];
                match h.step(c, Rest { seg: &b[i + 1..], ahead }) {
                    Step::Byte(Fate::Keep) => {}
                    Step::Byte(Fate::QueryValue) => {
                        b[i] = FILL;
                        tally.add(Rule::QueryValue, 1);
                    }
                    Step::Byte(Fate::HeaderValue) => {
                        b[i] = FILL;
                        tally.add(Rule::HeaderValue, 1);
                    }
                    Step::End(end) => {
                        let used = i + 1;
                        if let Some(p) = pseudo.as_deref_mut() {
                            p.http_head_done(tally);
                        }
                        if end.response {
                            if end.status == 101 {
                                *mode = Mode::Frames(FrameCursor::default());
                                return (used, Event::Switching);
                            }
                            if tunnel && (200..300).contains(&end.status) {
                                // The tunnel's first bytes: TLS records or an HTTP head.
                                *mode = Mode::Sniff;
                                return (used, Event::TunnelOpen);
                            }
                            *mode = if (100..200).contains(&end.status) || end.status == 204 || end.status == 304 {
                                Mode::Head(Box::default())
                            } else if end.chunked {
                                Mode::Chunked(ChunkCursor { then_response: true, ..ChunkCursor::default() })
                            } else {
                                match end.content_length {
                                    Some(0) => Mode::Head(Box::default()),
                                    Some(n) => Mode::Body { left: n, then_response: true },
                                    None => Mode::Opaque,
                                }
                            };
                        } else {
                            *mode = if end.chunked {
                                Mode::Chunked(ChunkCursor::default())
                            } else {
                                match end.content_length {
                                    Some(n) if n > 0 => Mode::Body { left: n, then_response: false },
                                    _ => Mode::AfterRequest,
                                }
                            };
                        }
                        return (used, Event::None);
                    }
                    Step::NotHttp => {
                        *mode = Mode::Opaque;
                        return (i, Event::None);
                    }
                }
                if let Some(p) = pseudo.as_deref_mut() {
                    p.http_byte(h, &mut b[i], tally);
                }
                i += 1;
            }
            (b.len(), Event::None)
        }
        Mode::Body { left, then_response } => {
            let n = (*left).min(b.len() as u64) as usize;
            b[..n].fill(FILL);
            tally.add(Rule::HttpBody, n);
            *left -= n as u64;
            if *left == 0 {
                *mode = if *then_response { Mode::Head(Box::default()) } else { Mode::AfterRequest };
            }
            (n, Event::None)
        }
        Mode::Chunked(c) => {
            let byte = b[0];
            match c.at {
                ChunkAt::Data => {
                    let n = c.left.min(b.len() as u64) as usize;
                    b[..n].fill(FILL);
                    tally.add(Rule::HttpBody, n);
                    c.left -= n as u64;
                    if c.left == 0 {
                        c.at = ChunkAt::DataEnd;
                    }
                    return (n, Event::None);
                }
                ChunkAt::Size => match byte {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (byte as char).to_digit(16).unwrap_or(0);
                        c.size = c.size.saturating_mul(16).saturating_add(u64::from(d));
                    }
                    b';' => c.at = ChunkAt::Extension,
                    b'\r' | b' ' | b'\t' => {}
                    b'\n' => {
                        c.left = c.size;
                        c.at = if c.size == 0 { ChunkAt::TrailerLineStart } else { ChunkAt::Data };
                        c.size = 0;
                    }
                    _ => {
                        *mode = Mode::Opaque;
                        return (0, Event::None);
                    }
                },
                ChunkAt::Extension => {
                    if byte == b'\n' {
                        c.left = c.size;
                        c.at = if c.size == 0 { ChunkAt::TrailerLineStart } else { ChunkAt::Data };
                        c.size = 0;
                    } else if byte != b'\r' {
                        b[0] = FILL;
                        tally.add(Rule::HttpBody, 1);
                    }
                }
                ChunkAt::DataEnd => {
                    if byte == b'\n' {
                        c.at = ChunkAt::Size;
                    } else if byte != b'\r' {
                        *mode = Mode::Opaque;
                        return (0, Event::None);
                    }
                }
                ChunkAt::TrailerLineStart => match byte {
                    b'\r' => {}
                    b'\n' => {
                        *mode = if c.then_response { Mode::Head(Box::default()) } else { Mode::AfterRequest };
                    }
                    _ => {
                        b[0] = FILL;
                        tally.add(Rule::HeaderValue, 1);
                        c.at = ChunkAt::Trailer;
                    }
                },
                ChunkAt::Trailer => {
                    if byte == b'\n' {
                        c.at = ChunkAt::TrailerLineStart;
                    } else if byte != b'\r' {
                        b[0] = FILL;
                        tally.add(Rule::HeaderValue, 1);
                    }
                }
            }
            (1, Event::None)
        }
        Mode::Frames(f) => {
            if f.left > 0 {
                let n = f.left.min(b.len() as u64) as usize;
                // The close status code stays (masked or not, it unmasks to itself).
                let keep = if f.close { (2u64.saturating_sub(f.pos) as usize).min(n) } else { 0 };
                let pos = f.pos as usize + keep;
                let pattern: [u8; 4] = std::array::from_fn(|i| FILL ^ f.mask[(pos + i) % 4]);
                let mut chunks = b[keep..n].chunks_exact_mut(4);
                for c in &mut chunks {
                    c.copy_from_slice(&pattern);
                }
                for (byte, p) in chunks.into_remainder().iter_mut().zip(pattern) {
                    *byte = p;
                }
                tally.add(if f.close { Rule::CloseReason } else { Rule::WebSocketPayload }, n - keep);
                f.pos += n as u64;
                f.left -= n as u64;
                return (n, Event::None);
            }
            f.header[f.header_len] = b[0];
            f.header_len += 1;
            match Frames::parse(&f.header[..f.header_len]) {
                Header::NeedMore if f.header_len < 14 => {}
                Header::Complete { header, body, .. } => {
                    *f = FrameCursor {
                        left: body,
                        mask: header.mask.unwrap_or([0; 4]),
                        close: header.opcode == websocket::OP_CLOSE,
                        ..FrameCursor::default()
                    };
                }
                _ => {
                    // Lost sync: this byte and the rest are overwritten.
                    *mode = Mode::Opaque;
                    return (0, Event::None);
                }
            }
            (1, Event::None)
        }
        Mode::Records(r) => {
            if r.left > 0 {
                let n = r.left.min(b.len() as u64) as usize;
                match r.content_type {
                    tls::HANDSHAKE => {
                        for byte in &mut b[..n] {
                            let in_hello = (!r.encrypted || r.clear_hello) && r.hs_left > 0 && r.hs_type == 1;
                            match if in_hello { r.hello.step(*byte) } else { HelloByte::Plain } {
                                HelloByte::Name => {
                                    if let Some(p) = pseudo.as_deref_mut() {
                                        p.client_hello_name_byte(&mut r.hello, byte, tally);
                                    }
                                }
                                HelloByte::Secret => {
                                    // Consumed as a handshake byte, but not kept.
                                    r.handshake_byte(*byte);
                                    *byte = FILL;
                                    tally.add(Rule::TlsHandshakeBody, 1);
                                    continue;
                                }
                                HelloByte::Plain => {}
                            }
                            if !r.handshake_byte(*byte) {
                                *byte = FILL;
                                tally.add(Rule::TlsHandshakeBody, 1);
                            }
                        }
                    }
                    // An alert is two bytes, a ChangeCipherSpec one: anything more is not
                    // what they say, and goes.
                    tls::CHANGE_CIPHER_SPEC | tls::ALERT => {
                        let keep = if r.content_type == tls::ALERT { 2 } else { 1 };
                        let from = (keep as u64).saturating_sub(r.pos).min(n as u64) as usize;
                        if from < n {
                            b[from..n].fill(FILL);
                            tally.add(Rule::TlsApplicationData, n - from);
                        }
                    }
                    _ => {
                        b[..n].fill(FILL);
                        tally.add(Rule::TlsApplicationData, n);
                    }
                }
                r.pos += n as u64;
                r.left -= n as u64;
                return (n, Event::None);
            }
            r.header[r.header_len] = b[0];
            r.header_len += 1;
            match tls::Records::parse(&r.header[..r.header_len]) {
                Header::NeedMore => {}
                Header::Complete { header, body, .. } => {
                    r.header_len = 0;
                    r.left = body;
                    r.pos = 0;
                    r.content_type = header.content_type;
                    if header.content_type == tls::CHANGE_CIPHER_SPEC {
                        r.encrypted = true;
                    }
                    // After a HelloRetryRequest, a TLS 1.3 client sends its compatibility
                    // ChangeCipherSpec and then a second ClientHello in the clear: a record
                    // that is exactly one ClientHello is read as one (an encrypted TLS 1.2
                    // Finished matches that shape once in 2^24).
                    r.clear_hello = header.content_type == tls::HANDSHAKE
                        && b.get(1..5).is_some_and(|h| {
                            h[0] == 1 && (u64::from(h[1]) << 16 | u64::from(h[2]) << 8 | u64::from(h[3])) + 4 == body
                        });
                    return (1, Event::None);
                }
                Header::Invalid => {
                    *mode = Mode::Opaque;
                    return (0, Event::None);
                }
            }
            (1, Event::None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: &mut Mode, bytes: &[u8]) -> Vec<u8> {
        let mut b = bytes.to_vec();
        let mut t = Tally::default();
        let mut rest = &mut b[..];
        while !rest.is_empty() {
            let (n, _) = step_mode(mode, rest, &[], &mut t, None, false);
            rest = &mut rest[n..];
        }
        b
    }

    #[test]
    fn masked_payload_unmasks_to_filler_and_close_code_stays() {
        let mut m = Mode::Frames(FrameCursor::default());
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut frame = vec![0x81, 0x85];
        frame.extend_from_slice(&mask);
        frame.extend(b"hello".iter().enumerate().map(|(i, c)| c ^ mask[i % 4]));
        frame.extend_from_slice(&[0x88, 0x85]);
        frame.extend_from_slice(&mask);
        frame.extend([0x03, 0xe8, b'b', b'y', b'e'].iter().enumerate().map(|(i, c)| c ^ mask[i % 4]));
        let out = run(&mut m, &frame);
        let unmask = |p: &[u8]| p.iter().enumerate().map(|(i, c)| c ^ mask[i % 4]).collect::<Vec<u8>>();
        assert_eq!(unmask(&out[6..11]), b"xxxxx");
        assert_eq!(&out[11..17], &frame[11..17], "close frame header and mask kept");
        assert_eq!(unmask(&out[17..22]), [0x03, 0xe8, b'x', b'x', b'x']);
    }

    #[test]
    fn chunked_body_keeps_its_framing_and_the_next_response() {
        let mut m = Mode::Sniff;
        let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let out = run(&mut m, resp);
        let s = String::from_utf8(out).unwrap();
        // The reason phrases go too (SPEC: the code says it all).
        assert!(s.starts_with("HTTP/1.1 200 xx\r\n"), "{s}");
        assert!(s.contains("\r\n5\r\nxxxxx\r\n0\r\n\r\nHTTP/1.1 204 xxxxxxxxxx\r\n\r\n"), "{s}");
    }

    #[test]
    fn unknown_protocol_is_overwritten_whole() {
        let mut m = Mode::Sniff;
        assert_eq!(run(&mut m, b"\x00secret binary"), vec![FILL; 14]);
    }

    #[test]
    fn tls_keeps_hellos_and_headers_and_fills_certificates_and_application_data() {
        let mut m = Mode::Sniff;
        // ClientHello (type 1, 2-byte body), then a Certificate (type 11, 3-byte body)
        // split over two records, then application data.
        let mut rec = vec![22, 3, 3, 0, 6, 1, 0, 0, 2, 7, 7];
        rec.extend_from_slice(&[22, 3, 3, 0, 5, 11, 0, 0, 3, 5]);
        rec.extend_from_slice(&[22, 3, 3, 0, 2, 5, 5]);
        rec.extend_from_slice(&[23, 3, 3, 0, 3, 9, 9, 9]);
        let out = run(&mut m, &rec);
        assert_eq!(&out[..20], &rec[..20], "hello and certificate header kept");
        assert_eq!(out[20], FILL, "certificate body filled");
        assert_eq!(&out[21..26], &rec[21..26]);
        assert_eq!(&out[26..28], &[FILL; 2]);
        assert_eq!(&out[28..33], &rec[28..33]);
        assert_eq!(&out[33..], &[FILL; 3]);
    }
}
