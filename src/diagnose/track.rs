//! The facts a diagnosis needs, per TCP conversation and per DNS exchange, each with the frame
//! number (1-based, as Wireshark numbers frames) that proves it. Nothing here reads bytes: the
//! facts are the engine's events (`engine::Event`), so `diagnose` sees every flow exactly as
//! `trim` and `flows` do.

use rustc_hash::FxHashMap;

pub use crate::engine::At;
use crate::engine::{Content, DNS_PORT, DnsFacts, Event, Observed, RUN_SLOT_NS};
use crate::flow::{FlowKey, PROTO_UDP, Side};
use crate::policy::Class;
use crate::proto::{http, tls, websocket};
use crate::wire::Addr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Unknown,
    Http,
    Tls,
    /// WebSocket frames met mid-connection.
    Frames,
    Other,
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
    /// Conversations in the order they began (their slots in the tracker are reused).
    pub seq: u64,
    pub client: Option<Side>,
    pub kind: Kind,
    /// What the engine made of the flow (kept as a WebSocket, TLS, for a port, …).
    pub class: Class,
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
    /// ChangeCipherSpec per direction: both, and a TLS 1.2 handshake finished.
    pub ccs: [Option<At>; 2],
    /// The server answered the ClientHello in plaintext HTTP: its status.
    pub plain_answer: Option<(u16, At)>,
    pub h2_preface: Option<At>,
    pub pings: Tally,
    pub pongs: Tally,
    /// Who sent the first ping and the first pong (the ladder draws them).
    pub ping_from: Option<Side>,
    pub pong_from: Option<Side>,
    pub closes: Vec<CloseFrame>,
    /// Last WebSocket frame other than a close (or the 101), for the idle gap before the close.
    pub last_activity: Option<At>,
    pub dir_stats: [DirStats; 2],
    pub retransmissions: Evidence,
    pub zero_windows: Evidence,
    /// Packets seen from each side, and whether a side sent an ACK (other than a SYN-ACK).
    pub sent: [u64; 2],
    pub acked: [bool; 2],
    /// Counted among the open conversations (not yet ended).
    open: bool,
}

impl Conv {
    fn new(key: FlowKey, seq: u64, at: At) -> Conv {
        Conv {
            key,
            seq,
            client: None,
            kind: Kind::Unknown,
            class: Class::Undecided,
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
            ccs: [None, None],
            plain_answer: None,
            h2_preface: None,
            pings: Tally::default(),
            pongs: Tally::default(),
            ping_from: None,
            pong_from: None,
            closes: Vec::new(),
            last_activity: None,
            dir_stats: [DirStats::default(), DirStats::default()],
            retransmissions: Evidence::default(),
            zero_windows: Evidence::default(),
            sent: [0, 0],
            acked: [false, false],
            open: true,
        }
    }

    pub fn upgraded(&self) -> bool {
        self.response.as_ref().is_some_and(|(r, _)| r.status == 101)
    }

    /// Whether this conversation is a WebSocket attempt, or a connection that may have been
    /// one: exactly the flows `trim` keeps as such (a WebSocket upgrade, TLS that could carry
    /// HTTP/1.1 or names a `--host`, a flow to a `--port`, a refused connect, HTTP/2 with prior
    /// knowledge), and connects never answered.
    pub fn is_attempt(&self) -> bool {
        self.class.kept()
            || (self.class == Class::Undecided && !self.syns.is_empty() && self.synack.is_none() && !self.one_sided())
    }

    /// Only one side's packets were captured (a client-side filter, a mirror port): that side
    /// ACKed what the other sent — a client's ACK after its SYN proves a SYN-ACK — yet nothing
    /// from the other side is in the capture.
    pub fn one_sided(&self) -> bool {
        match self.sent {
            [0, 0] => false,
            [n, 0] | [0, n] if n > 0 => self.acked[if self.sent[0] > 0 { 0 } else { 1 }],
            _ => false,
        }
    }

    /// What evicting and sweeping read of it.
    fn summary(&self) -> Summary {
        let rank = if !self.is_attempt() {
            0
        } else if self.synack.is_none() && self.last_payload.is_none() {
            1
        } else {
            2
        };
        Summary { last_ns: self.last.ts_ns, rank, open: self.open }
    }

    /// After a reset, or a FIN each way: nothing more will happen.
    fn ended(&self) -> bool {
        !self.rsts.is_empty() || (self.fins.iter().any(|f| f.0 == Side::A) && self.fins.iter().any(|f| f.0 == Side::B))
    }

    fn event(&mut self, side: Side, at: At, event: Event) {
        let s = side.index();
        match event {
            Event::Open | Event::Dns(_) | Event::KeepAlive => {}
            Event::PlainAnswer { status } => {
                self.plain_answer.get_or_insert((status, at));
            }
            Event::ChangeCipherSpec => {
                self.ccs[s].get_or_insert(at);
            }
            Event::Syn { ack } => {
                if ack {
                    self.synack.get_or_insert(at);
                    self.client.get_or_insert(side.other());
                } else {
                    self.syns.push(at);
                    self.client.get_or_insert(side);
                }
            }
            Event::Fin => self.fins.push((side, at, self.last_payload)),
            Event::Rst => self.rsts.push((side, at, self.last_payload)),
            Event::ZeroWindow => self.zero_windows.add(at.frame),
            Event::Retransmission => self.retransmissions.add(at.frame),
            Event::Packets(run) => {
                self.last = at;
                for s in 0..2 {
                    self.sent[s] += run.sent[s];
                    self.acked[s] |= run.acked[s];
                }
                if run.last_payload.is_some() {
                    self.last_payload = run.last_payload;
                }
            }
            Event::Classified { class, content, client, .. } => {
                self.class = class;
                if client.is_some() {
                    self.client = client;
                }
                self.kind = match content {
                    Content::Unknown => Kind::Unknown,
                    Content::Http => Kind::Http,
                    Content::Tls => Kind::Tls,
                    Content::Frames => Kind::Frames,
                    Content::H2Preface | Content::Dns | Content::Other => Kind::Other,
                };
                if content == Content::H2Preface {
                    self.h2_preface.get_or_insert(at);
                }
            }
            Event::Request(r) => {
                let mut r = *r;
                if self.request.is_none() {
                    // What a diagnosis shows is pasted into tickets: no query tokens.
                    r.path = http::mask_query_values(&r.path);
                    self.request = Some((r, at));
                }
            }
            Event::Response(r) => {
                let mut r = *r;
                if self.response.is_none() {
                    if r.status == 101 {
                        self.last_activity = Some(at);
                    }
                    r.location = r.location.as_deref().map(http::mask_query_values);
                    self.response = Some((r, at));
                }
            }
            Event::ClientHello(ch) => {
                self.client_hello.get_or_insert((*ch, at));
            }
            Event::ServerAlpn(alpn) => {
                if self.client.is_some_and(|c| c != side) {
                    self.server_alpn.get_or_insert(alpn);
                }
            }
            Event::Alert { level, description } => self.alerts.push(Alert { level, description, from: side, at }),
            Event::ApplicationData => {
                self.dir_stats[s].app_records += 1;
                self.app_data[s].get_or_insert(at);
            }
            Event::Frame { opcode, payload_len, close_code } => {
                // This packet's own packet count comes after its frames (in `Packets`):
                // `last_payload` is still the activity before it.
                let before = self.last_payload;
                match opcode {
                    websocket::OP_PING => {
                        self.pings.add(at);
                        self.ping_from.get_or_insert(side);
                    }
                    websocket::OP_PONG => {
                        self.pongs.add(at);
                        self.pong_from.get_or_insert(side);
                    }
                    websocket::OP_CLOSE => {
                        // In capture order (frames met mid-connection are read a side at a time).
                        let pos = self.closes.partition_point(|c| c.at.frame <= at.frame);
                        self.closes
                            .insert(pos, CloseFrame { code: close_code, from: side, at, activity_before: before });
                        return;
                    }
                    _ => {
                        self.dir_stats[s].data_frames += 1;
                        self.dir_stats[s].data_bytes += payload_len;
                    }
                }
                self.last_activity = Some(at);
            }
            Event::CloseCode(code) => {
                if let Some(c) = self.closes.iter_mut().rev().find(|c| c.from == side) {
                    c.code.get_or_insert(code);
                }
            }
        }
    }
}

/// What evicting and sweeping read of a conversation, kept beside it: those walks visit every
/// conversation tracked, and reading each one's box cost a cache miss (a SYN flood's
/// evictions took a second).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Summary {
    last_ns: u64,
    /// How much it tells: 0 not an attempt, 1 a connect never answered, 2 more.
    rank: u8,
    open: bool,
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

/// Conversations not yet ended that are tracked at once. Beyond this the least telling and
/// quietest eighth is forgotten (counted, and said in a warning): a SYN flood or a million
/// idle connections must not take the memory of a million conversations.
pub const MAX_OPEN_CONVS: usize = 20_000;
/// How many open conversations a full tracker forgets at once.
const EVICTED_AT_ONCE: usize = MAX_OPEN_CONVS / 8;

/// DNS lookups analysed per capture; a flood beyond is counted, not kept.
pub const MAX_LOOKUPS: usize = 20_000;

/// Capture time after which an idle conversation that is not an attempt is forgotten.
const FORGET_IDLE_NS: u64 = 300_000_000_000;

/// Collects the engine's events into conversations and lookups. Memory follows the attempts
/// (which the report lists anyway), not the capture: a conversation the engine drops is
/// forgotten at once.
pub struct Tracker {
    /// Conversations by slot. A slot emptied (a conversation dropped or forgotten) is reused,
    /// so the list follows the conversations tracked at once, not all a capture ever had.
    convs: Vec<Option<Box<Conv>>>,
    /// Each live conversation's `Summary`, by slot, as of its last event.
    summaries: Vec<Summary>,
    free: Vec<usize>,
    /// Conversations forgotten, kept for the next ones (`Spares`).
    spares: Spares,
    /// The list an eviction ranks open conversations in, kept (`flow::least_telling`).
    evict_candidates: Vec<(u8, u64, u64)>,
    /// The next conversation's `seq`.
    next_seq: u64,
    /// The engine's conversation number → index in `convs`.
    index: FxHashMap<u64, usize>,
    /// The conversation of the last event and its index: a packet's events, and a burst's
    /// packets, mostly come in a row for one conversation, which then needs no map lookup.
    recent: (u64, usize),
    pub lookups: Vec<Lookup>,
    /// Lookups not analysed because `MAX_LOOKUPS` were already.
    pub lookups_dropped: u64,
    /// Lookups by the conversation they are in (the engine's flow, so a message matches the
    /// query the engine matched it to, and not one of an earlier flow on the same ports) and
    /// id. A short key: hashing the 40-byte flow key, and comparing it in entries spread over
    /// a megabyte, was most of the time a flood of lookups spent here.
    dns_index: FxHashMap<(u64, u16), usize>,
    /// The capture-time slot (`RUN_SLOT_NS`) of the last sweep of idle state.
    swept_slot: u64,
    /// Conversations dropped because they settled as something other than an attempt.
    pub dropped: u64,
    /// Conversations forgotten because too many were open at once.
    pub evicted: u64,
    /// Tracked conversations that have not ended.
    open: usize,
    /// Conversations that are not attempts, by what they are (for a report with none).
    pub not_attempts: std::collections::BTreeMap<&'static str, u64>,
}

/// Forgotten conversations, their boxes and lists kept for new ones: a flood of connections
/// that each say nothing (a SYN flood) made and freed one a packet, and the allocator's work
/// was a third of a diagnosis.
// Boxes, not conversations: the box itself is what a slot of `convs` takes back.
#[allow(clippy::vec_box)]
#[derive(Default)]
struct Spares(Vec<Box<Conv>>);

/// Spare conversations kept at most: as many as one eviction forgets (more only hold memory).
const MAX_SPARES: usize = EVICTED_AT_ONCE;

impl Spares {
    fn keep(&mut self, c: Option<Box<Conv>>) {
        if let Some(c) = c
            && self.0.len() < MAX_SPARES
        {
            self.0.push(c);
        }
    }

    /// A new conversation, in a spare's box and lists when there is one.
    fn conv(&mut self, key: FlowKey, seq: u64, at: At) -> Box<Conv> {
        let Some(mut b) = self.0.pop() else { return Box::new(Conv::new(key, seq, at)) };
        let mut lists = (
            std::mem::take(&mut b.syns),
            std::mem::take(&mut b.fins),
            std::mem::take(&mut b.rsts),
            std::mem::take(&mut b.alerts),
            std::mem::take(&mut b.closes),
        );
        lists.0.clear();
        lists.1.clear();
        lists.2.clear();
        lists.3.clear();
        lists.4.clear();
        *b = Conv::new(key, seq, at);
        (b.syns, b.fins, b.rsts, b.alerts, b.closes) = lists;
        b
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new()
    }
}

impl Tracker {
    pub fn new() -> Tracker {
        Tracker {
            convs: Vec::new(),
            summaries: Vec::new(),
            free: Vec::new(),
            spares: Spares::default(),
            evict_candidates: Vec::new(),
            next_seq: 0,
            index: FxHashMap::default(),
            recent: (u64::MAX, 0),
            lookups: Vec::new(),
            lookups_dropped: 0,
            dns_index: FxHashMap::default(),
            swept_slot: 0,
            dropped: 0,
            evicted: 0,
            open: 0,
            not_attempts: Default::default(),
        }
    }

    /// The conversation numbered `i` by [`Tracker::conversations`].
    pub fn conv(&self, i: usize) -> &Conv {
        self.convs[i].as_deref().expect("attempts refer to live conversations")
    }

    /// Conversations kept to the end, by slot number (`Conv::seq` gives their order).
    pub fn conversations(&self) -> impl Iterator<Item = (usize, &Conv)> {
        self.convs.iter().enumerate().filter_map(|(i, c)| c.as_deref().map(|c| (i, c)))
    }

    pub fn observe(&mut self, o: Observed) {
        // Once a slot of capture time, at its first packet: a run of packets stays in one.
        let ts = if let Event::Packets(r) = &o.event { r.first_ns } else { o.at.ts_ns };
        if ts / RUN_SLOT_NS > self.swept_slot {
            self.swept_slot = ts / RUN_SLOT_NS;
            self.sweep(ts);
        }
        if let Event::Dns(m) = &o.event {
            self.dns(o.conv, m, o.at);
            return;
        }
        let found = if self.recent.0 == o.conv { Some(self.recent.1) } else { self.index.get(&o.conv).copied() };
        let i = match (&o.event, found) {
            (_, Some(i)) => i,
            // DNS over UDP is read as lookups (`dns`): a conversation of it would tell nothing
            // and never end, and thousands would crowd out connections that may be attempts.
            (Event::Open, None) if o.key.proto == PROTO_UDP && o.key.has_port(DNS_PORT) => {
                return;
            }
            (Event::Open, None) => self.open_conv(o.conv, o.key, o.at),
            _ => return,
        };
        self.recent = (o.conv, i);
        let Some(c) = self.convs[i].as_deref_mut() else { return };
        let dropped = match o.event {
            // A lookup over TCP is no attempt: its messages come as `Event::Dns`.
            Event::Classified { class: Class::Dropped | Class::Lookup, why, .. } => {
                *self.not_attempts.entry(why).or_insert(0) += 1;
                true
            }
            _ => false,
        };
        c.event(o.side, o.at, o.event);
        if dropped {
            if c.open {
                self.open -= 1;
            }
            self.spares.keep(self.convs[i].take());
            self.free.push(i);
            self.index.remove(&o.conv);
            self.recent = (u64::MAX, 0);
            self.dropped += 1;
            return;
        }
        if c.open && c.ended() {
            c.open = false;
            self.open -= 1;
        }
        self.summaries[i] = c.summary();
    }

    fn open_conv(&mut self, conv: u64, key: FlowKey, at: At) -> usize {
        if self.open >= MAX_OPEN_CONVS {
            self.evict_oldest(EVICTED_AT_ONCE);
        }
        self.open += 1;
        let c = self.spares.conv(key, self.next_seq, at);
        self.next_seq += 1;
        let summary = c.summary();
        let c = Some(c);
        let i = match self.free.pop() {
            Some(i) => {
                self.convs[i] = c;
                self.summaries[i] = summary;
                i
            }
            None => {
                self.convs.push(c);
                self.summaries.push(summary);
                self.convs.len() - 1
            }
        };
        self.index.insert(conv, i);
        i
    }

    /// Forgets `n` open conversations: those that say least (not attempts, then connects that
    /// never got an answer) and were quiet longest.
    fn evict_oldest(&mut self, n: usize) {
        self.recent = (u64::MAX, 0);
        let summaries = &self.summaries;
        let mut candidates = std::mem::take(&mut self.evict_candidates);
        candidates.clear();
        candidates.extend(self.index.iter().filter_map(|(&conv, &i)| {
            let s = summaries[i];
            s.open.then_some((s.rank, s.last_ns, conv))
        }));
        for &(_, _, conv) in crate::flow::least_telling(&mut candidates, n) {
            if let Some(i) = self.index.remove(&conv)
                && let Some(c) = self.convs[i].take()
            {
                self.spares.keep(Some(c));
                self.free.push(i);
                self.open -= 1;
                self.evicted += 1;
            }
        }
        self.evict_candidates = candidates;
    }

    /// Forgets conversations idle for long in capture time that are not attempts (ACKs of a
    /// connection whose start was not captured, say).
    fn sweep(&mut self, now_ns: u64) {
        self.recent = (u64::MAX, 0);
        let Tracker { convs, summaries, free, index, dropped, open, spares, .. } = self;
        index.retain(|_, &mut i| {
            let s = summaries[i];
            if now_ns.saturating_sub(s.last_ns) < FORGET_IDLE_NS || s.rank > 0 {
                return true;
            }
            if s.open {
                *open -= 1;
            }
            spares.keep(convs[i].take());
            free.push(i);
            *dropped += 1;
            false
        });
        self.dns_index.retain(|_, &mut l| {
            let l = &self.lookups[l];
            l.response.is_none() && l.query.is_some_and(|q| now_ns.saturating_sub(q.ts_ns) < FORGET_IDLE_NS)
        });
    }

    fn dns(&mut self, conv: u64, m: &DnsFacts, at: At) {
        if self.lookups.len() >= MAX_LOOKUPS && !self.dns_index.contains_key(&(conv, m.id)) {
            // Beyond this a capture is a flood, not a lookup before a WebSocket: counted,
            // and said in a warning.
            self.lookups_dropped += 1;
            return;
        }
        let i = *self.dns_index.entry((conv, m.id)).or_insert_with(|| {
            self.lookups.push(Lookup {
                name: m.name.as_str().to_string(),
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
                l.name = m.name.as_str().to_string();
            }
        } else {
            l.query.get_or_insert(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Content;
    use crate::wire::Addr;

    fn observed(conv: u64, ts_s: u64, event: Event) -> Observed {
        let (key, side) = FlowKey::of(Addr::v4([10, 0, 0, 1]), 1000 + conv as u16, Addr::v4([10, 0, 0, 2]), 80, 6);
        Observed { conv, key, side, at: At { frame: conv, ts_ns: ts_s * 1_000_000_000 }, event }
    }

    /// An answer is matched to the query of its own flow, as the engine matches it: on the
    /// same ports and id but in a later flow (the first forgotten after a quiet half minute),
    /// it answers no earlier query, which stays unanswered.
    #[test]
    fn an_answer_in_a_later_flow_answers_no_earlier_query() {
        let (key, side) = FlowKey::of(Addr::v4([10, 0, 0, 1]), 5353, Addr::v4([10, 0, 0, 53]), 53, 17);
        let dns = |conv, ts_s, response| Observed {
            conv,
            key,
            side: if response { side.other() } else { side },
            at: At { frame: ts_s, ts_ns: ts_s * 1_000_000_000 },
            event: Event::Dns(DnsFacts { id: 7, response, rcode: 0, name: "ws.test".into(), addrs: Box::default() }),
        };
        let mut t = Tracker::new();
        t.observe(dns(1, 1, false));
        t.observe(dns(1, 2, true));
        t.observe(dns(1, 3, false));
        t.observe(dns(2, 40, true));
        let seen: Vec<(Option<u64>, Option<u64>)> =
            t.lookups.iter().map(|l| (l.query.map(|a| a.frame), l.response.map(|a| a.frame))).collect();
        assert_eq!(seen, [(Some(1), Some(2)), (None, Some(40))]);
    }

    /// A capture of many short conversations that are not attempts (plain HTTP, say) must not
    /// grow the tracker: each dropped one frees its slot for the next.
    #[test]
    fn dropped_conversations_free_their_slots_and_order_stays_by_first_packet() {
        let mut t = Tracker::new();
        for conv in 0..10_000u64 {
            t.observe(observed(conv, 1, Event::Open));
            let class = if conv % 1000 == 7 { Class::WebSocket } else { Class::Dropped };
            let why = "plain HTTP";
            t.observe(observed(
                conv,
                1,
                Event::Classified { class, content: Content::Http, client: Some(Side::A), why },
            ));
        }
        assert!(t.convs.len() <= 2 + 10, "{} slots for 10 live conversations", t.convs.len());
        let seqs: Vec<u64> = t.conversations().map(|(_, c)| c.seq).collect();
        assert_eq!(seqs.len(), 10);
        let mut sorted = seqs.clone();
        sorted.sort();
        assert_eq!(sorted, (0..10).map(|k| k * 1000 + 7).collect::<Vec<u64>>());
        assert_eq!(t.dropped, 9_990);
        for (i, c) in t.conversations() {
            assert_eq!(t.summaries[i], c.summary(), "the summary beside a slot is its conversation's");
        }
    }
}
