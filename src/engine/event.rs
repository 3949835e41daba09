//! What the engine finds in a flow, as typed events in capture order. Each names its flow,
//! side and packet, so a consumer (`diagnose`) needs nothing else; none of them re-reads bytes.

use crate::flow::{FlowKey, Side};
use crate::policy::Class;
use crate::proto::{dns, http, tls};

/// What a flow's bytes are, whatever the policy does with them (a flow to a `--port` is kept
/// whatever it carries, but is still read as what it carries).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Content {
    #[default]
    Unknown,
    Http,
    Tls,
    /// WebSocket frames met mid-connection.
    Frames,
    H2Preface,
    /// DNS messages over TCP, each after its two-byte length.
    Dns,
    Other,
}

/// A packet's place in the capture: its frame number (1-based, as Wireshark numbers frames)
/// and time. Every fact the engine reports carries one, so that a diagnosis can cite it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct At {
    pub frame: u64,
    pub ts_ns: u64,
}

/// A fact the engine found in a flow, in capture order. The engine's parse is the only one:
/// `diagnose` builds its report from these events alone, and `trim` decides from the same
/// state, so the two cannot disagree about what a flow carried.
#[derive(Clone, Debug)]
pub enum Event {
    /// The flow entered the table (first packet, or a new connection on a reused port).
    Open,
    Syn {
        ack: bool,
    },
    Fin,
    Rst,
    ZeroWindow,
    Retransmission,
    /// A keep-alive probe (one byte just before the next expected sequence number).
    KeepAlive,
    /// The TCP packets of the flow since its last other event (each after the events it
    /// caused), at most one `RUN_SLOT_NS` of capture time of them. The observed `at` is the
    /// last one's. Most packets of a kept flow tell nothing else, and an event each was a
    /// tenth of a diagnosis.
    Packets(PacketRun),
    Classified {
        class: Class,
        content: Content,
        client: Option<Side>,
        /// Why the flow was kept or dropped, in a few words (as `flows` says it).
        why: &'static str,
    },
    // Heads and hellos are boxed: they are rare, and a small `Event` keeps the per-packet
    // events cheap.
    Request(Box<http::RequestHead>),
    Response(Box<http::ResponseHead>),
    ClientHello(Box<tls::ClientHello>),
    ServerAlpn(String),
    /// A TLS alert; level and description are None when the alert was encrypted.
    Alert {
        level: Option<u8>,
        description: Option<u8>,
    },
    ApplicationData,
    /// The server answered a TLS ClientHello with plaintext HTTP (this status).
    PlainAnswer {
        status: u16,
    },
    /// A TLS ChangeCipherSpec record: with one each way, a TLS 1.2 handshake finished.
    ChangeCipherSpec,
    Frame {
        opcode: u8,
        payload_len: u64,
        close_code: Option<u16>,
    },
    /// The status code of the last close frame, when a segment boundary cut it off.
    CloseCode(u16),
    Dns(DnsFacts),
}

/// What a diagnosis reads of a DNS message. Not the whole message: a flood of queries makes
/// one of these a packet, and a boxed message with a list of names cost three allocations
/// each (a tenth of `diagnose` of a flood); a query with a short name costs none.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsFacts {
    pub id: u16,
    pub response: bool,
    pub rcode: u8,
    /// The first name asked (lower case, no trailing dot); empty if none.
    pub name: NameText,
    pub addrs: Box<[crate::wire::Addr]>,
}

impl From<dns::Message> for DnsFacts {
    fn from(m: dns::Message) -> DnsFacts {
        let name = NameText::from(m.names.first().map_or("", String::as_str));
        DnsFacts { id: m.id, response: m.response, rcode: m.rcode, name, addrs: m.addrs.into_boxed_slice() }
    }
}

/// Bytes of a name held in the event itself: as many as fit in the event's size beside the
/// other facts (most names are shorter).
const INLINE_NAME: usize = 30;

/// A name held in place when short, boxed when longer, so that most DNS events allocate
/// nothing.
#[derive(Clone, PartialEq)]
pub enum NameText {
    Inline { len: u8, bytes: [u8; INLINE_NAME] },
    Boxed(Box<str>),
}

impl NameText {
    pub fn as_str(&self) -> &str {
        match self {
            // Copied whole from a `str` (`From<&str>`): valid UTF-8.
            NameText::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default(),
            NameText::Boxed(b) => b,
        }
    }
}

impl From<&str> for NameText {
    fn from(s: &str) -> NameText {
        if s.len() > INLINE_NAME {
            return NameText::Boxed(s.into());
        }
        let mut bytes = [0u8; INLINE_NAME];
        bytes[..s.len()].copy_from_slice(s.as_bytes());
        NameText::Inline { len: s.len() as u8, bytes }
    }
}

impl std::fmt::Debug for NameText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// Capture time is cut into slots of this length, and a run of packets (`Event::Packets`)
/// never spans two: a consumer that sweeps its state once a slot, at the first event of a
/// new slot, then sees what it would see with an event a packet. A minute: a sweep reads
/// every conversation tracked, and with ten-second slots a ten-minute capture of 6,000
/// attempts spent 30 ms sweeping.
pub const RUN_SLOT_NS: u64 = 60_000_000_000;

/// Packets of one conversation in a row: how many each side sent, and what a diagnosis reads
/// of them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketRun {
    /// Packets sent by side A and side B.
    pub sent: [u64; 2],
    /// A side sent an ACK (other than its SYN's): a client's ACK after its SYN proves a
    /// SYN-ACK it got, captured or not.
    pub acked: [bool; 2],
    /// Capture time of the run's first packet (in the slot the whole run is in).
    pub first_ns: u64,
    /// The run's last packet that carried payload (activity, as a proxy's idle timer sees it).
    pub last_payload: Option<At>,
}

/// An event with where it happened: which flow (`conv` tells connections on a reused port
/// apart), which side sent the bytes, and the packet.
#[derive(Clone, Debug)]
pub struct Observed {
    pub conv: u64,
    pub key: FlowKey,
    pub side: Side,
    pub at: At,
    pub event: Event,
}

/// Where events go while a packet is processed: off unless a consumer asked for them (trim
/// pays nothing for them).
#[derive(Default)]
pub(crate) struct Events {
    pub(crate) on: bool,
    pub(crate) list: Vec<Observed>,
    /// The packet being processed (or the held segment being replayed).
    pub(crate) at: At,
    /// The packets of one conversation since its last event, not yet pushed: the next event
    /// of any flow, a packet of another conversation or a new time slot pushes them first, so
    /// that events stay in capture order.
    run: Option<Run>,
}

/// A run of packets being gathered: its conversation, and the side and place of its last
/// packet (the `Observed` it becomes).
struct Run {
    conv: u64,
    key: FlowKey,
    side: Side,
    at: At,
    packets: PacketRun,
}

impl Events {
    pub(crate) fn new(on: bool) -> Events {
        Events { on, ..Events::default() }
    }

    pub(crate) fn push(&mut self, conv: u64, key: FlowKey, side: Side, event: Event) {
        if self.on {
            self.end_run();
            self.list.push(Observed { conv, key, side, at: self.at, event });
        }
    }

    /// A TCP packet of `conv`, after the events it caused: added to the run.
    pub(crate) fn packet(&mut self, conv: u64, key: FlowKey, side: Side, payload: bool, ack: bool) {
        if !self.on {
            return;
        }
        let at = self.at;
        let joins = self
            .run
            .as_ref()
            .is_some_and(|r| r.conv == conv && r.packets.first_ns / RUN_SLOT_NS == at.ts_ns / RUN_SLOT_NS);
        if !joins {
            self.end_run();
            let packets = PacketRun { first_ns: at.ts_ns, ..PacketRun::default() };
            self.run = Some(Run { conv, key, side, at, packets });
        }
        let r = self.run.as_mut().expect("a run");
        (r.side, r.at) = (side, at);
        r.packets.sent[side.index()] += 1;
        r.packets.acked[side.index()] |= ack;
        if payload {
            r.packets.last_payload = Some(at);
        }
    }

    /// Pushes the pending run of packets.
    pub(crate) fn end_run(&mut self) {
        if let Some(Run { conv, key, side, at, packets }) = self.run.take() {
            self.list.push(Observed { conv, key, side, at, event: Event::Packets(packets) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::wire::Addr;

    /// The DNS facts fit in the event's size (a bigger `Event` costs every event a copy more),
    /// and names of any length come back as given.
    #[test]
    fn dns_facts_keep_the_event_small_and_names_whole() {
        assert!(std::mem::size_of::<DnsFacts>() <= std::mem::size_of::<PacketRun>());
        for name in
            ["", "a", "ws.example.com", &"x".repeat(INLINE_NAME), &"y".repeat(INLINE_NAME + 1), &"é".repeat(100)]
        {
            assert_eq!(NameText::from(name).as_str(), name);
        }
    }

    fn at(frame: u64, s: u64) -> At {
        At { frame, ts_ns: s * 1_000_000_000 }
    }

    #[test]
    fn packets_run_until_another_event_conversation_or_slot() {
        let (key, _) = FlowKey::of(Addr::v4([10, 0, 0, 1]), 1000, Addr::v4([10, 0, 0, 2]), 80, 6);
        let mut ev = Events::new(true);
        let packet = |ev: &mut Events, conv, side, frame, s, payload, ack| {
            ev.at = at(frame, s);
            ev.packet(conv, key, side, payload, ack);
        };
        packet(&mut ev, 1, Side::A, 1, 1, false, false);
        packet(&mut ev, 1, Side::B, 2, 2, true, true);
        packet(&mut ev, 1, Side::A, 3, 3, false, true);
        // Another event ends the run before it; so does another conversation, and a new slot.
        ev.at = at(4, 4);
        ev.push(1, key, Side::B, Event::Fin);
        packet(&mut ev, 1, Side::B, 4, 4, false, true);
        packet(&mut ev, 2, Side::A, 5, 5, true, false);
        packet(&mut ev, 2, Side::A, 6, 61, false, false);
        assert_eq!(ev.list.len(), 4, "the last run waits");
        ev.end_run();
        let got: Vec<(u64, u64, Option<PacketRun>)> = ev
            .list
            .iter()
            .map(|o| (o.conv, o.at.frame, if let Event::Packets(r) = o.event { Some(r) } else { None }))
            .collect();
        let run = |sent, acked, first: u64, last_payload| {
            Some(PacketRun { sent, acked, first_ns: first * 1_000_000_000, last_payload })
        };
        assert_eq!(
            got,
            vec![
                (1, 3, run([2, 1], [true, true], 1, Some(at(2, 2)))),
                (1, 4, None),
                (1, 4, run([0, 1], [false, true], 4, None)),
                (2, 5, run([1, 0], [false, false], 5, Some(at(5, 5)))),
                (2, 6, run([1, 0], [false, false], 61, None)),
            ]
        );
        let mut off = Events::default();
        off.packet(1, key, Side::A, true, true);
        off.end_run();
        assert!(off.list.is_empty(), "nothing is gathered unless asked for");
    }
}
