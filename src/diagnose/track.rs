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
    pub pings: Vec<At>,
    pub pongs: Vec<At>,
    pub closes: Vec<CloseFrame>,
    /// Last WebSocket frame other than a close (or the 101), for the idle gap before the close.
    pub last_activity: Option<At>,
    pub dir_stats: [DirStats; 2],
    pub retransmissions: Vec<u64>,
    pub zero_windows: Vec<u64>,
    payload_segments: u32,
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
            pings: Vec::new(),
            pongs: Vec::new(),
            closes: Vec::new(),
            last_activity: None,
            dir_stats: [DirStats::default(), DirStats::default()],
            retransmissions: Vec::new(),
            zero_windows: Vec::new(),
            payload_segments: 0,
            dirs: [Dir::default(), Dir::default()],
        }
    }

    pub fn upgraded(&self) -> bool {
        self.response.as_ref().is_some_and(|(r, _)| r.status == 101)
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

#[derive(Default)]
pub struct Tracker {
    pub convs: Vec<Conv>,
    index: FxHashMap<FlowKey, usize>,
    pub lookups: Vec<Lookup>,
    dns_index: FxHashMap<(FlowKey, u16), usize>,
}

impl Tracker {
    pub fn packet(&mut self, meta: &RecordMeta, frame: &[u8]) {
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
                let i = *self.index.entry(key).or_insert_with(|| {
                    self.convs.push(Conv::new(key, at));
                    self.convs.len() - 1
                });
                let c = &mut self.convs[i];
                // A port reused for a new connection after a close starts a new conversation.
                if flags & tcp_flags::SYN != 0
                    && flags & tcp_flags::ACK == 0
                    && (!c.fins.is_empty() || !c.rsts.is_empty())
                {
                    self.convs.push(Conv::new(key, at));
                    let n = self.convs.len() - 1;
                    self.index.insert(key, n);
                    return self.tcp(n, side, seq, flags, window, d.payload, d.wire_payload_len, at);
                }
                self.tcp(i, side, seq, flags, window, d.payload, d.wire_payload_len, at);
            }
        }
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
        let c = &mut self.convs[i];
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
            c.zero_windows.push(at.frame);
        }
        if syn || wire_len == 0 {
            return;
        }
        c.payload_segments += 1;
        let before = c.last_payload;
        match c.dirs[side.index()].stream.place(seq, wire_len, payload, at.frame) {
            Placement::InOrder { skip } => {
                if skip > 0 {
                    c.retransmissions.push(at.frame);
                }
                let new = payload.get(skip..).unwrap_or(&[]);
                feed(c, side, new, at, before);
                // Bytes on the wire but not in the capture (snaplen, or a trimmed packet).
                let missing = u64::from(wire_len).saturating_sub(payload.len().max(skip) as u64);
                if missing > 0 {
                    skip_uncaptured(c, side, missing);
                }
            }
            Placement::Old { .. } => c.retransmissions.push(at.frame),
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
        if head.starts_with(b"PRI * HTTP/2.0") {
            c.kind = Kind::Other;
            c.client = Some(side);
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
                Some(r) => {
                    let end = n + r.content_length as usize;
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
    let (pings, pongs, closes, last, stats) =
        (&mut c.pings, &mut c.pongs, &mut c.closes, &mut c.last_activity, &mut c.dir_stats[s]);
    let fed = dir.frames.feed(bytes, |h, body| {
        match h.opcode {
            websocket::OP_PING => pings.push(at),
            websocket::OP_PONG => pongs.push(at),
            websocket::OP_CLOSE => {
                closes.push(CloseFrame {
                    code: websocket::close_code(h, body),
                    from: side,
                    at,
                    activity_before: before,
                });
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
