//! One pass over the packets, collecting per TCP conversation and per DNS exchange the facts a
//! diagnosis needs, each with the frame number (1-based, as Wireshark numbers frames) that
//! proves it. Bytes go through the same reassembly and classifiers as `trim`.

use rustc_hash::FxHashMap;

use crate::capture::RecordMeta;
use crate::flow::reassembly::{Placement, Stream};
use crate::flow::{FlowKey, PROTO_TCP, PROTO_UDP, Side};
use crate::proto::units::Walker;
use crate::proto::websocket::{self, Frames};
use crate::proto::{dns, http, tls};
use crate::wire::{self, Addr, Transport, tcp_flags};

/// Payload segments a conversation may show before it is judged not to be HTTP or TLS.
const CLASSIFY_SEGMENTS: u32 = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Unknown,
    Http,
    Tls,
    /// WebSocket frames met mid-connection.
    Frames,
    Other,
}

#[derive(Clone, Copy, Debug)]
pub struct At {
    pub frame: u64,
    pub ts_ns: u64,
}

#[derive(Clone, Debug)]
pub struct Alert {
    pub level: Option<u8>,
    /// None when the alert was encrypted.
    pub description: Option<u8>,
    pub from: Side,
    pub at: At,
}

#[derive(Clone, Debug)]
pub struct CloseFrame {
    pub code: Option<u16>,
    pub from: Side,
    pub at: At,
    /// The last payload-carrying packet before the one with this frame.
    pub activity_before: Option<At>,
}

#[derive(Clone, Debug, Default)]
pub struct DirStats {
    pub data_frames: u64,
    pub data_bytes: u64,
    pub app_records: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Head,
    AwaitPeer,
    Frames,
    /// Frames, but a header was lost (not captured): waiting for a segment that starts at
    /// a frame boundary.
    FramesLost,
    Records,
    Done,
}

struct Dir {
    stream: Stream,
    head: Vec<u8>,
    phase: Phase,
    frames: Walker<Frames>,
    records: Walker<tls::Records>,
    encrypted: bool,
    masked_runs: u32,
    unmasked_runs: u32,
    /// A close frame whose status code had not arrived by the end of its header's segment:
    /// (index in `closes`, code bytes so far, how many, mask).
    pending_close: Option<(usize, [u8; 2], usize, [u8; 4])>,
}

impl Default for Dir {
    fn default() -> Self {
        Dir {
            stream: Stream::default(),
            head: Vec::new(),
            phase: Phase::Head,
            frames: Walker::default(),
            records: Walker::default(),
            encrypted: false,
            masked_runs: 0,
            unmasked_runs: 0,
            pending_close: None,
        }
    }
}

/// How often something happened, and when first and last: enough for a mean interval without
/// keeping every occurrence of a connection that pings for days.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub count: u64,
    pub first: Option<At>,
    pub last: Option<At>,
}

impl Tally {
    fn add(&mut self, at: At) {
        self.count += 1;
        self.first.get_or_insert(at);
        self.last = Some(at);
    }
}

/// Frames a finding can cite: counted in full, the first few kept as evidence.
#[derive(Clone, Debug, Default)]
pub struct Evidence {
    pub count: u64,
    pub frames: Vec<u64>,
}

impl Evidence {
    const KEPT: usize = 8;

    fn add(&mut self, frame: u64) {
        self.count += 1;
        if self.frames.len() < Self::KEPT {
            self.frames.push(frame);
        }
    }
}

/// Everything seen of one TCP conversation.
pub struct Conv {
    pub key: FlowKey,
    pub client: Option<Side>,
    pub kind: Kind,
    pub first: At,
    pub last: At,
    pub syns: Vec<At>,
    pub synack: Option<At>,
    /// FIN and RST packets, with the last payload-carrying packet before each.
    pub fins: Vec<(Side, At, Option<At>)>,
    pub rsts: Vec<(Side, At, Option<At>)>,
    /// The last packet that carried payload, either way: activity, as a proxy's idle timer
    /// sees it (it needs only headers, so it survives trimming).
    pub last_payload: Option<At>,
    pub request: Option<(http::RequestHead, At)>,
    pub response: Option<(http::ResponseHead, At)>,
    pub client_hello: Option<(tls::ClientHello, At)>,
    pub server_alpn: Option<String>,
    pub alerts: Vec<Alert>,
    /// First application data record after the handshake, per direction.
    pub app_data: [Option<At>; 2],
    pub h2_preface: Option<At>,
    pub pings: Tally,
    pub pongs: Tally,
    pub closes: Vec<CloseFrame>,
    /// Last WebSocket frame other than a close (or the 101), for the idle gap before the close.
    pub last_activity: Option<At>,
    pub dir_stats: [DirStats; 2],
    pub retransmissions: Evidence,
    pub zero_windows: Evidence,
    payload_segments: u32,
    /// The reassembly state was dropped after the conversation ended.
    released: bool,
    dirs: [Dir; 2],
}

impl Conv {
    fn new(key: FlowKey, at: At) -> Conv {
        Conv {
            key,
            client: None,
            kind: Kind::Unknown,
            first: at,
            last: at,
            syns: Vec::new(),
            synack: None,
            fins: Vec::new(),
            rsts: Vec::new(),
            last_payload: None,
            request: None,
            response: None,
            client_hello: None,
            server_alpn: None,
            alerts: Vec::new(),
            app_data: [None, None],
            h2_preface: None,
            pings: Tally::default(),
            pongs: Tally::default(),
            closes: Vec::new(),
            last_activity: None,
            dir_stats: [DirStats::default(), DirStats::default()],
            retransmissions: Evidence::default(),
            zero_windows: Evidence::default(),
            payload_segments: 0,
            released: false,
            dirs: [Dir::default(), Dir::default()],
        }
    }

    pub fn upgraded(&self) -> bool {
        self.response.as_ref().is_some_and(|(r, _)| r.status == 101)
    }

    /// Whether this conversation is a WebSocket attempt, or a connection that may have been
    /// one (to a port or host the user named, TLS that could carry HTTP/1.1, a failed connect,
    /// HTTP/2 where an upgrade was expected).
    pub fn is_attempt(&self, hosts: &[String], ports: &[u16]) -> bool {
        let to_port = self.client.is_some_and(|cl| ports.contains(&self.key.port(cl.other())));
        let failed_connect = !self.syns.is_empty() && self.synack.is_none();
        match self.kind {
            Kind::Http => self.request.as_ref().is_some_and(|(r, _)| r.is_websocket_attempt()) || to_port,
            Kind::Tls => {
                let Some((ch, _)) = &self.client_hello else { return to_port };
                if !hosts.is_empty() {
                    let sni = ch.sni.as_deref().unwrap_or_default();
                    return to_port || hosts.iter().any(|h| h.eq_ignore_ascii_case(sni));
                }
                let h1 = ch.alpn.iter().any(|p| p == "http/1.1");
                let h2 = ch.alpn.iter().any(|p| p == "h2");
                to_port || ch.alpn.is_empty() || (h1 && !h2)
            }
            Kind::Frames => true,
            Kind::Unknown | Kind::Other => failed_connect || to_port || self.h2_preface.is_some(),
        }
    }

    /// Whether what the conversation is has been decided for good (so that `is_attempt`
    /// will not change).
    fn settled(&self) -> bool {
        match self.kind {
            Kind::Unknown => false,
            Kind::Http => {
                self.request.is_some() || self.client.is_some_and(|cl| self.dirs[cl.index()].phase == Phase::Done)
            }
            Kind::Tls | Kind::Frames | Kind::Other => {
                self.client.is_some() && (self.syns.is_empty() || self.synack.is_some())
            }
        }
    }

    /// After a reset, or a FIN each way: nothing more will be parsed.
    fn ended(&self) -> bool {
        !self.rsts.is_empty() || (self.fins.iter().any(|f| f.0 == Side::A) && self.fins.iter().any(|f| f.0 == Side::B))
    }
}

/// One DNS query and its answer.
#[derive(Clone, Debug)]
pub struct Lookup {
    pub name: String,
    pub query: Option<At>,
    pub response: Option<At>,
    pub rcode: Option<u8>,
    pub addrs: Vec<Addr>,
}

/// Where a flow's packets go: a conversation still of interest, or nowhere (a settled
/// conversation that cannot be a WebSocket attempt; only its last packet time is kept, so that
/// idle ones can be forgotten).
#[derive(Clone, Copy)]
enum Slot {
    Live(usize),
    Gone { last_ns: u64 },
}

/// Conversations not yet ended that are tracked at once. Beyond this the least telling and
/// quietest eighth is forgotten (counted, and said in a warning): a SYN flood or a million
/// idle connections must not take the memory of a million conversations.
pub const MAX_OPEN_CONVS: usize = 20_000;

/// Packets between sweeps of idle state.
const SWEEP_EVERY: u64 = 1 << 16;
/// Capture time after which an idle flow that is not an attempt, or the memory of a dropped
/// one, is forgotten. A flow that resumes later is met again as mid-connection.
const FORGET_IDLE_NS: u64 = 300_000_000_000;

/// Tracks conversations as long as they may matter to a diagnosis. Memory follows the
/// attempts (which the report lists anyway), not the capture: conversations that settle as
/// something else are dropped, and a finished attempt keeps its facts but not its buffers.
pub struct Tracker {
    convs: Vec<Option<Box<Conv>>>,
    index: FxHashMap<FlowKey, Slot>,
    pub lookups: Vec<Lookup>,
    dns_index: FxHashMap<(FlowKey, u16), usize>,
    hosts: Vec<String>,
    ports: Vec<u16>,
    packets: u64,
    /// Conversations dropped because they settled as something other than an attempt.
    pub dropped: u64,
    /// Conversations forgotten because too many were open at once.
    pub evicted: u64,
    /// Tracked conversations that have not ended.
    open: usize,
}

impl Tracker {
    pub fn new(hosts: &[String], ports: &[u16]) -> Tracker {
        Tracker {
            convs: Vec::new(),
            index: FxHashMap::default(),
            lookups: Vec::new(),
            dns_index: FxHashMap::default(),
            hosts: hosts.to_vec(),
            ports: ports.to_vec(),
            packets: 0,
            dropped: 0,
            evicted: 0,
            open: 0,
        }
    }

    /// The conversation numbered `i` by [`Tracker::conversations`].
    pub fn conv(&self, i: usize) -> &Conv {
        self.convs[i].as_deref().expect("attempts refer to live conversations")
    }

    /// Conversations kept to the end, with stable numbers in order of first packet.
    pub fn conversations(&self) -> impl Iterator<Item = (usize, &Conv)> {
        self.convs.iter().enumerate().filter_map(|(i, c)| c.as_deref().map(|c| (i, c)))
    }

    pub fn packet(&mut self, meta: &RecordMeta, frame: &[u8]) {
        self.packets += 1;
        if self.packets.is_multiple_of(SWEEP_EVERY) {
            self.sweep(meta.ts_ns);
        }
        let Ok(d) = wire::decode(meta.link_type, frame) else { return };
        let at = At { frame: meta.number, ts_ns: meta.ts_ns };
        match d.transport {
            Transport::Udp => {
                if d.sport == 53 || d.dport == 53 {
                    let (key, _) = FlowKey::of(d.src, d.sport, d.dst, d.dport, PROTO_UDP);
                    if let Some(m) = dns::parse(d.payload) {
                        self.dns(key, &m, at);
                    }
                }
            }
            Transport::Tcp { seq, flags, window, .. } => {
                let (key, side) = FlowKey::of(d.src, d.sport, d.dst, d.dport, PROTO_TCP);
                let opening = flags & tcp_flags::SYN != 0 && flags & tcp_flags::ACK == 0;
                let i = match self.index.get_mut(&key) {
                    Some(Slot::Live(i)) => {
                        let i = *i;
                        let c = self.convs[i].as_deref().expect("live slot");
                        // A port reused for a new connection after a close starts a new one.
                        if opening && (!c.fins.is_empty() || !c.rsts.is_empty()) { self.open(key, at) } else { i }
                    }
                    Some(Slot::Gone { last_ns }) => {
                        if !opening {
                            *last_ns = at.ts_ns;
                            return;
                        }
                        self.open(key, at)
                    }
                    None => self.open(key, at),
                };
                self.tcp(i, side, seq, flags, window, d.payload, d.wire_payload_len, at);
                self.settle(i);
            }
        }
    }

    fn open(&mut self, key: FlowKey, at: At) -> usize {
        if self.open >= MAX_OPEN_CONVS {
            self.evict_oldest(MAX_OPEN_CONVS / 8);
        }
        self.open += 1;
        self.convs.push(Some(Box::new(Conv::new(key, at))));
        let i = self.convs.len() - 1;
        self.index.insert(key, Slot::Live(i));
        i
    }

    /// Drops a conversation that can no longer become an attempt, and the buffers of one
    /// that has ended.
    fn settle(&mut self, i: usize) {
        let Some(c) = self.convs[i].as_deref_mut() else { return };
        if c.settled() && !c.is_attempt(&self.hosts, &self.ports) {
            let last_ns = c.last.ts_ns;
            if !c.released {
                self.open -= 1;
            }
            self.index.insert(c.key, Slot::Gone { last_ns });
            self.convs[i] = None;
            self.dropped += 1;
        } else if c.ended() && !c.released {
            self.open -= 1;
            c.released = true;
            c.dirs = Default::default();
            for d in &mut c.dirs {
                d.phase = Phase::Done;
            }
        }
    }

    /// Forgets `n` open conversations: those that say least (not attempts, then connects that
    /// never got an answer) and were quiet longest.
    fn evict_oldest(&mut self, n: usize) {
        let (hosts, ports) = (&self.hosts, &self.ports);
        let convs = &self.convs;
        let candidates = self
            .index
            .values()
            .filter_map(|slot| {
                let Slot::Live(i) = *slot else { return None };
                let c = convs[i].as_deref().filter(|c| !c.released)?;
                let rank = if !c.is_attempt(hosts, ports) {
                    0
                } else if c.synack.is_none() && c.last_payload.is_none() {
                    1
                } else {
                    2
                };
                Some((rank, c.last.ts_ns, i))
            })
            .collect();
        for i in crate::flow::least_telling(candidates, n) {
            if let Some(c) = self.convs[i].take() {
                self.index.remove(&c.key);
                self.open -= 1;
                self.evicted += 1;
            }
        }
    }

    /// Forgets flows idle for long in capture time: the dropped ones, and undecided ones that
    /// are not attempts (ACKs of a connection whose start was not captured, say).
    fn sweep(&mut self, now_ns: u64) {
        let Tracker { convs, index, hosts, ports, dropped, open, .. } = self;
        index.retain(|_, slot| match *slot {
            Slot::Gone { last_ns } => now_ns.saturating_sub(last_ns) < FORGET_IDLE_NS,
            Slot::Live(i) => {
                let Some(c) = convs[i].as_deref() else { return false };
                if now_ns.saturating_sub(c.last.ts_ns) < FORGET_IDLE_NS || c.is_attempt(hosts, ports) {
                    return true;
                }
                if !c.released {
                    *open -= 1;
                }
                convs[i] = None;
                *dropped += 1;
                false
            }
        });
        self.dns_index.retain(|_, &mut l| {
            let l = &self.lookups[l];
            l.response.is_none() && l.query.is_some_and(|q| now_ns.saturating_sub(q.ts_ns) < FORGET_IDLE_NS)
        });
    }

    fn dns(&mut self, key: FlowKey, m: &dns::Message, at: At) {
        let i = *self.dns_index.entry((key, m.id)).or_insert_with(|| {
            self.lookups.push(Lookup {
                name: m.names.first().cloned().unwrap_or_default(),
                query: None,
                response: None,
                rcode: None,
                addrs: Vec::new(),
            });
            self.lookups.len() - 1
        });
        let l = &mut self.lookups[i];
        if m.response {
            l.response.get_or_insert(at);
            l.rcode = Some(m.rcode);
            l.addrs.extend(m.addrs.iter().copied());
            if l.name.is_empty() {
                l.name = m.names.first().cloned().unwrap_or_default();
            }
        } else {
            l.query.get_or_insert(at);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn tcp(&mut self, i: usize, side: Side, seq: u32, flags: u8, window: u16, payload: &[u8], wire_len: u32, at: At) {
        let Some(c) = self.convs[i].as_deref_mut() else { return };
        c.last = at;
        let syn = flags & tcp_flags::SYN != 0;
        if syn {
            c.dirs[side.index()].stream.syn(seq);
            if flags & tcp_flags::ACK != 0 {
                c.synack.get_or_insert(at);
                c.client.get_or_insert(side.other());
            } else {
                c.syns.push(at);
                c.client.get_or_insert(side);
            }
        }
        if flags & tcp_flags::FIN != 0 {
            c.fins.push((side, at, c.last_payload));
        }
        if flags & tcp_flags::RST != 0 {
            c.rsts.push((side, at, c.last_payload));
        }
        if window == 0 && flags & (tcp_flags::RST | tcp_flags::SYN | tcp_flags::FIN) == 0 {
            c.zero_windows.add(at.frame);
        }
        if syn || wire_len == 0 {
            return;
        }
        c.payload_segments += 1;
        let before = c.last_payload;
        match c.dirs[side.index()].stream.place(seq, wire_len, payload, at.frame) {
            Placement::InOrder { skip } => {
                if skip > 0 {
                    c.retransmissions.add(at.frame);
                }
                let new = payload.get(skip..).unwrap_or(&[]);
                feed(c, side, new, at, before);
                // Bytes on the wire but not in the capture (snaplen, or a trimmed packet).
                let missing = u64::from(wire_len).saturating_sub(payload.len().max(skip) as u64);
                if missing > 0 {
                    skip_uncaptured(c, side, missing);
                }
            }
            Placement::Old { .. } => c.retransmissions.add(at.frame),
            Placement::Held | Placement::Empty => {}
            Placement::Gap => c.dirs[side.index()].phase = Phase::Done,
        }
        while let Some((seg, skip)) = c.dirs[side.index()].stream.pop_ready() {
            feed(c, side, &seg.bytes[skip..], At { frame: seg.packet, ts_ns: at.ts_ns }, before);
            let missing = u64::from(seg.wire_len).saturating_sub(seg.bytes.len().max(skip) as u64);
            if missing > 0 {
                skip_uncaptured(c, side, missing);
            }
        }
        c.last_payload = Some(at);
    }
}

/// Uncaptured stream bytes: frame and record walks pass over them if they are body bytes.
fn skip_uncaptured(c: &mut Conv, side: Side, n: u64) {
    let dir = &mut c.dirs[side.index()];
    match dir.phase {
        Phase::Frames => {
            if !dir.frames.skip(n) {
                dir.phase = Phase::FramesLost;
            }
        }
        Phase::Records => {
            if !dir.records.skip(n) {
                dir.phase = Phase::Done;
            }
        }
        Phase::FramesLost | Phase::Done => {}
        Phase::Head | Phase::AwaitPeer => dir.phase = Phase::Done,
    }
}

/// In-order bytes of one direction; `before` is the last payload packet before this one.
fn feed(c: &mut Conv, side: Side, bytes: &[u8], at: At, before: Option<At>) {
    if bytes.is_empty() {
        return;
    }
    let s = side.index();
    match c.dirs[s].phase {
        Phase::Done => {}
        Phase::Frames => feed_frames(c, side, bytes, at, before),
        Phase::FramesLost => {
            // A whole segment that is exactly a run of frames, masked as this side masks
            // (RFC 6455 §5.1: clients mask, servers do not), starts at a boundary again.
            let client = c.client == Some(side);
            if websocket::segment_is_frames(bytes) == Some(client) {
                c.dirs[s].frames.resync();
                c.dirs[s].phase = Phase::Frames;
                feed_frames(c, side, bytes, at, before);
            }
        }
        Phase::Records => feed_records(c, side, bytes, at),
        Phase::Head | Phase::AwaitPeer => {
            let dir = &mut c.dirs[s];
            if dir.head.len() < http::MAX_HEAD_BYTES {
                let room = http::MAX_HEAD_BYTES - dir.head.len();
                dir.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
            }
            if c.kind == Kind::Unknown && c.client.is_none() {
                match websocket::segment_is_frames(bytes) {
                    Some(true) => c.dirs[s].masked_runs += 1,
                    Some(false) => c.dirs[s].unmasked_runs += 1,
                    None => {}
                }
            }
            if c.kind == Kind::Unknown {
                classify(c, side, at);
            }
            if c.kind == Kind::Http {
                heads(c, at);
            }
        }
    }
}

/// Decides what a conversation carries from its first bytes.
fn classify(c: &mut Conv, side: Side, at: At) {
    let head = &c.dirs[side.index()].head;
    if c.client.is_none_or(|cl| cl == side) {
        const PREFACE: &[u8] = b"PRI * HTTP/2.0";
        if head.len() < PREFACE.len() && PREFACE.starts_with(head) {
            return;
        }
        if head.starts_with(PREFACE) {
            c.kind = Kind::Other;
            c.client = Some(side);
            c.h2_preface = Some(at);
            return;
        }
        match http::looks_like_request(head) {
            Some(true) => {
                c.kind = Kind::Http;
                c.client = Some(side);
                return;
            }
            None => return,
            Some(false) => {}
        }
        match tls::parse_client_hello(head) {
            tls::Hello::Parsed(ch) => {
                c.kind = Kind::Tls;
                c.client = Some(side);
                c.client_hello = Some((ch, at));
                // Both directions walk records from their first byte from now on.
                for s in [Side::A, Side::B] {
                    let head = std::mem::take(&mut c.dirs[s.index()].head);
                    c.dirs[s.index()].phase = Phase::Records;
                    feed_records(c, s, &head, at);
                }
                return;
            }
            tls::Hello::NeedMore => return,
            tls::Hello::NotTls => {}
        }
    }
    if c.client.is_none() && http::looks_like_response(head) == Some(true) {
        c.kind = Kind::Http;
        c.client = Some(side.other());
        return;
    }
    let (a, b) = (&c.dirs[0], &c.dirs[1]);
    let mid = if a.masked_runs >= 2 || (a.masked_runs >= 1 && b.unmasked_runs >= 1) {
        Some(Side::A)
    } else if b.masked_runs >= 2 || (b.masked_runs >= 1 && a.unmasked_runs >= 1) {
        Some(Side::B)
    } else {
        None
    };
    if let (Some(cl), None) = (mid, c.client) {
        c.kind = Kind::Frames;
        c.client = Some(cl);
        for d in &mut c.dirs {
            d.phase = Phase::Frames;
            d.head = Vec::new();
        }
        return;
    }
    if c.payload_segments >= CLASSIFY_SEGMENTS || c.client.is_some() {
        c.kind = Kind::Other;
        for d in &mut c.dirs {
            d.phase = Phase::Done;
            d.head = Vec::new();
        }
    }
}

/// Parses complete HTTP heads and moves the directions on after the response.
fn heads(c: &mut Conv, at: At) {
    let Some(client) = c.client else { return };
    let (ci, si) = (client.index(), client.other().index());
    if c.request.is_none() && c.dirs[ci].phase == Phase::Head {
        if let Some(n) = http::head_len(&c.dirs[ci].head) {
            match http::parse_request(&c.dirs[ci].head[..n]) {
                Some(mut r) => {
                    let end = n + r.content_length as usize;
                    // What a diagnosis shows is pasted into tickets: no query tokens.
                    r.path = http::mask_query_values(&r.path);
                    c.request = Some((r, at));
                    let dir = &mut c.dirs[ci];
                    dir.head.drain(..end.min(dir.head.len()));
                    dir.phase = Phase::AwaitPeer;
                }
                None => c.dirs[ci].phase = Phase::Done,
            }
        } else if c.dirs[ci].head.len() >= http::MAX_HEAD_BYTES {
            c.dirs[ci].phase = Phase::Done;
        }
    }
    while c.response.is_none() && c.dirs[si].phase == Phase::Head && !c.dirs[si].head.is_empty() {
        let Some(n) = http::head_len(&c.dirs[si].head) else { break };
        let Some(r) = http::parse_response(&c.dirs[si].head[..n]) else {
            c.dirs[si].phase = Phase::Done;
            break;
        };
        if (100..200).contains(&r.status) && r.status != 101 {
            c.dirs[si].head.drain(..n);
            continue;
        }
        let upgraded = r.status == 101;
        let mut r = r;
        r.location = r.location.as_deref().map(http::mask_query_values);
        c.response = Some((r, at));
        if upgraded {
            c.last_activity = Some(at);
            for i in [si, ci] {
                let rest = std::mem::take(&mut c.dirs[i].head);
                let from = if i == si { n } else { 0 };
                c.dirs[i].phase = Phase::Frames;
                let before = c.last_payload;
                feed_frames(
                    c,
                    if i == ci { client } else { client.other() },
                    &rest[from.min(rest.len())..],
                    at,
                    before,
                );
            }
        } else {
            for i in [si, ci] {
                c.dirs[i].phase = Phase::Done;
                c.dirs[i].head = Vec::new();
            }
        }
        break;
    }
}

fn feed_frames(c: &mut Conv, side: Side, bytes: &[u8], at: At, before: Option<At>) {
    let s = side.index();
    let dir = &mut c.dirs[s];
    // The rest of a close status code cut off by a segment boundary: the walker consumes
    // these bytes as the frame's body; they are only read here.
    if let Some((i, mut code, mut have, mask)) = dir.pending_close.take() {
        for &b in bytes.iter().take(2 - have) {
            code[have] = b ^ mask[have];
            have += 1;
        }
        if have == 2 {
            if let Some(cf) = c.closes.get_mut(i) {
                cf.code = Some(u16::from_be_bytes(code));
            }
        } else {
            dir.pending_close = Some((i, code, have, mask));
        }
    }
    let pending = &mut dir.pending_close;
    let (pings, pongs, closes, last, stats) =
        (&mut c.pings, &mut c.pongs, &mut c.closes, &mut c.last_activity, &mut c.dir_stats[s]);
    let fed = dir.frames.feed(bytes, |h, body| {
        match h.opcode {
            websocket::OP_PING => pings.add(at),
            websocket::OP_PONG => pongs.add(at),
            websocket::OP_CLOSE => {
                let code = websocket::close_code(h, body);
                if code.is_none() && h.payload_len >= 2 {
                    let mask = h.mask.unwrap_or([0; 4]);
                    let mut first = [0u8; 2];
                    let have = body.len().min(2);
                    for (k, &b) in body.iter().take(have).enumerate() {
                        first[k] = b ^ mask[k];
                    }
                    *pending = Some((closes.len(), first, have, mask));
                }
                closes.push(CloseFrame { code, from: side, at, activity_before: before });
                return None;
            }
            _ => {
                stats.data_frames += 1;
                stats.data_bytes += h.payload_len;
            }
        }
        *last = Some(at);
        None
    });
    if fed.failed {
        dir.phase = Phase::FramesLost;
    }
}

fn feed_records(c: &mut Conv, side: Side, bytes: &[u8], at: At) {
    let s = side.index();
    let dir = &mut c.dirs[s];
    let encrypted = &mut dir.encrypted;
    let (alerts, app) = (&mut c.alerts, &mut c.app_data[s]);
    let stats = &mut c.dir_stats[s];
    let server_alpn = &mut c.server_alpn;
    let from_server = c.client.is_some_and(|cl| cl != side);
    let fed = dir.records.feed(bytes, |h, body| {
        match h.content_type {
            tls::HANDSHAKE if from_server && server_alpn.is_none() && body.len() == usize::from(h.len) => {
                let mut rec =
                    vec![tls::HANDSHAKE, (h.version >> 8) as u8, h.version as u8, (h.len >> 8) as u8, h.len as u8];
                rec.extend_from_slice(body);
                if let tls::Hello::Parsed(sh) = tls::parse_server_hello(&rec) {
                    *server_alpn = Some(sh.alpn.unwrap_or_default());
                }
            }
            tls::CHANGE_CIPHER_SPEC => *encrypted = true,
            tls::ALERT => {
                let clear = !*encrypted && body.len() >= 2;
                alerts.push(Alert {
                    level: clear.then(|| body[0]),
                    description: clear.then(|| body[1]),
                    from: side,
                    at,
                });
            }
            tls::APPLICATION_DATA => {
                stats.app_records += 1;
                app.get_or_insert(at);
            }
            _ => {}
        }
        None
    });
    if fed.failed {
        dir.phase = Phase::Done;
    }
}
