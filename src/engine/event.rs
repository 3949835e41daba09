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
    /// A TCP packet of the flow, after the events it caused; `payload`: it carried payload
    /// (activity, as a proxy's idle timer sees it).
    Packet {
        payload: bool,
        /// The ACK flag (a client's ACK after its SYN proves a SYN-ACK it got, captured or not).
        ack: bool,
    },
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
    Dns(Box<dns::Message>),
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
}

impl Events {
    pub(crate) fn push(&mut self, conv: u64, key: FlowKey, side: Side, event: Event) {
        if self.on {
            self.list.push(Observed { conv, key, side, at: self.at, event });
        }
    }
}
