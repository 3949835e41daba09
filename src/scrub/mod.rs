//! Length-preserving redaction (SPEC "What scrubbing changes"), in two parts.
//!
//! A flow's TCP bytes are redacted as the engine reads them (`stream`): the engine's one
//! reassembly hands each direction's in-order bytes to that flow's cursors, which say what
//! each byte is (an HTTP head, a body, a WebSocket frame, a TLS record, a DNS message, or
//! nothing they can vouch for) and give back a patch per packet. Then each written packet is
//! finished here (`Scrubber::frame`): whatever part of its TCP payload no patch covered is
//! overwritten, and so is every payload no stream reads (UDP other than DNS, fragments, ICMP
//! quotes, trailers); addresses are mapped (`--pseudonymize`) and checksums made right.
//! It fails closed: bytes it cannot place are overwritten, never passed through. Packet
//! lengths never change.

pub mod http;
pub mod pseudonym;
pub mod stream;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::capture::RecordMeta;
use crate::flow::{PROTO_TCP, PROTO_UDP};
use crate::wire::{self, Transport, checksum, tcp_flags};

use self::pseudonym::Pseudonymizer;

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

/// What was overwritten so far, per rule, as counted while scrubbing (a report is made of it
/// once, at the end: a map updated for every packet cost more than the rules did).
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts([RuleCount; Rule::ALL.len()]);

impl Counts {
    /// Adds another part's counts (the streams' redaction and the packets' finishing).
    pub fn add(&mut self, other: &Counts) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            a.bytes += b.bytes;
            a.packets += b.packets;
        }
    }

    pub fn report(&self) -> ScrubReport {
        let rules = Rule::ALL.iter().zip(&self.0).filter(|(_, c)| c.bytes > 0).map(|(r, c)| (r.name(), *c)).collect();
        ScrubReport { rules }
    }
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
    pub fn any(&self) -> bool {
        self.bytes.iter().any(|&n| n > 0)
    }

    /// Bytes overwritten since the last fold, all rules.
    pub fn total(&self) -> u64 {
        self.bytes.iter().sum()
    }

    pub fn fold_into(&mut self, counts: &mut Counts) {
        for (n, c) in self.bytes.iter_mut().zip(&mut counts.0) {
            if *n > 0 {
                c.bytes += std::mem::take(n);
                c.packets += 1;
            }
        }
    }
}

/// The scrubbing of each written packet: what no stream reads, the addresses, the checksums.
pub struct Scrubber {
    pseudo: Option<Pseudonymizer>,
    pub counts: Counts,
    tally: Tally,
}

/// What the engine's redaction did to a packet's TCP payload (`stream::Patch`), and what its
/// finishing needs to know of the original.
#[derive(Clone, Copy, Debug, Default)]
pub struct PacketScrub {
    /// The part of the payload patches rewrote (offset, length; none when the length is 0);
    /// the rest is overwritten.
    pub covered: (u32, u32),
    /// The patch overwrote or mapped something.
    pub changed: bool,
    /// The sum of the original captured payload of a segment cut by the snaplen (its checksum
    /// is updated, not computed: the bytes past the cut are not known).
    pub old_sum: u16,
    /// The reassembly found some of the payload a retransmission or ahead of a hole
    /// (`Outcome::reordered`): why what no patch covers is overwritten, for the report.
    pub reordered: bool,
    /// Where the captured TCP payload is in the frame (offset, length), from the engine's
    /// decode: patches are written there without decoding the frame again.
    payload: (u32, u32),
    /// The payload is not written (the packet is cut after its headers): patches and filler
    /// are summed for its checksum instead of written into the frame (`payload_sum`).
    summed: bool,
    payload_sum: u16,
}

impl PacketScrub {
    /// Taken before any patch, from the engine's decode of the frame (`layout`): where its
    /// payload is, and a cut segment's payload sum.
    pub fn of(frame: &[u8], layout: Option<&wire::Layout>, reordered: bool) -> PacketScrub {
        let (payload, old_sum) = match layout {
            Some(d) => {
                let sum = if d.payload_len != d.wire_payload_len as usize {
                    checksum::sum(&frame[d.payload_offset..d.payload_offset + d.payload_len])
                } else {
                    0
                };
                ((d.payload_offset as u32, d.payload_len as u32), sum)
            }
            None => ((0, 0), 0),
        };
        PacketScrub { covered: (0, 0), changed: false, old_sum, reordered, payload, summed: false, payload_sum: 0 }
    }

    /// For a packet written cut after its headers, whole on the wire: most of a trimmed
    /// capture's packets (bulk), whose scrubbed payload only its checksum tells of. Its bytes
    /// are summed, not written into the frame (which holds anything there).
    pub fn summed(self) -> PacketScrub {
        PacketScrub { summed: true, ..self }
    }

    /// Writes a patch's bytes into the packet's frame (adds them to its sum, `summed`).
    pub fn apply(&mut self, frame: &mut [u8], patch: &stream::Patch, bytes: stream::PatchBytes<'_>) {
        let (at, len) = (self.payload.0 as usize, self.payload.1 as usize);
        let Some(payload) = frame.get_mut(at..at + len) else { return };
        let from = patch.offset as usize;
        // Only what was captured: a patch never reaches past it, but a frame is not trusted to.
        let Some(to) = from.checked_add(bytes.len()).filter(|&t| t <= payload.len()) else { return };
        if self.summed {
            self.payload_sum = checksum::add(self.payload_sum, bytes.sum_at(from));
        } else {
            bytes.write(&mut payload[from..to]);
        }
        // A payload may be patched in pieces (the rest of a segment waited for more of its
        // stream): they follow one another. One that does not is overwritten at the finish.
        self.covered = match self.covered {
            (_, 0) => (patch.offset, bytes.len() as u32),
            (o, l) if o + l == patch.offset => (o, l + bytes.len() as u32),
            keep => keep,
        };
        self.changed |= patch.changed;
    }
}

impl Scrubber {
    pub fn new(opts: &ScrubOptions) -> Scrubber {
        Scrubber {
            pseudo: opts.pseudonymize.map(|k| Pseudonymizer::new(&k)),
            counts: Counts::default(),
            tally: Tally::default(),
        }
    }

    /// Finishes one frame in place (the packet data of a record), after the engine's patch
    /// (`tcp`) was written into it: the part of a TCP payload no patch covered is overwritten,
    /// and the rest of what is described above.
    ///
    /// `layout` is where the engine's decode of this frame found its layers (None: not a TCP
    /// or UDP packet it could read); the frame is not decoded again.
    pub fn frame(&mut self, meta: &RecordMeta, frame: &mut [u8], layout: Option<&wire::Layout>, tcp: &PacketScrub) {
        let Some(d) = layout else {
            let first_fragment = self.undecodable(meta.link_type, frame);
            if let Some(p) = &mut self.pseudo {
                p.link_addresses(meta.link_type, frame, &mut self.tally);
            }
            // After the addresses are mapped: the pseudo-header is summed with them.
            if let Some(f) = first_fragment {
                f.fill_checksum(frame);
            }
            self.tally.fold_into(&mut self.counts);
            return;
        };
        let (sport, dport) = (d.sport, d.dport);
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
        let old_sum = if whole { 0 } else { tcp.old_sum };
        // Set by the caller only for a whole TCP segment that is not tunneled.
        let summed = tcp.summed && whole;
        let mut payload_sum = tcp.payload_sum;
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
            Transport::Tcp { flags, .. } => {
                // What the engine's redaction did not cover: bytes it never read in order
                // (retransmitted, after a hole, data in a SYN), or that it had not read when
                // the packet was written (its flow not understood in time).
                let payload = &mut frame[pay_off..cap_end];
                let (from, len) = (tcp.covered.0 as usize, tcp.covered.1 as usize);
                let from = from.min(payload.len());
                let to = (from + len).min(payload.len());
                let n = payload.len() - (to - from);
                if n > 0 {
                    if summed {
                        let fill = checksum::add(
                            checksum::sum_of_fill(FILL, 0, from),
                            checksum::sum_of_fill(FILL, to, payload.len() - to),
                        );
                        payload_sum = checksum::add(payload_sum, fill);
                    } else {
                        payload[..from].fill(FILL);
                        payload[to..].fill(FILL);
                    }
                    let reordered = tcp.reordered && flags & tcp_flags::SYN == 0;
                    let rule = if reordered { Rule::RetransmittedOrReordered } else { Rule::Unparsed };
                    self.tally.add(rule, n);
                }
            }
        }
        let new_sum = if whole { 0 } else { checksum::sum(&frame[pay_off..cap_end]) };
        let rewritten = if whole { self.tally.any() || tcp.changed } else { new_sum != old_sum };
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
            let v = if summed {
                checksum::transport_summed(frame, ip_off, l4_off, pay_off, cap_end, proto, payload_sum)
            } else if whole {
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
        self.tally.fold_into(&mut self.counts);
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
