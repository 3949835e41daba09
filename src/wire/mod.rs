//! Zero-copy decoding of one captured frame down to its transport header: which link layer,
//! which tunnels, which addresses and ports, the TCP fields the flow layer needs, and where
//! the transport payload starts (the truncation point for bulk packets). Link layers and
//! tunnel headers are walked in `link` and `tunnel`; IP and TCP/UDP are sliced by
//! etherparse's lax parser, which tolerates snaplen-truncated frames, except for the common
//! IPv4 case, read by hand below.

use etherparse::{LaxNetSlice, LaxSlicedPacket, TransportSlice};

pub mod checksum;
mod link;
mod tunnel;
pub mod view;

pub use link::{ethertype, header_len as link_header_len, linktype};
pub use tunnel::{Layer, Sum, Tunnels};

use link::{NULL_HEADER_BYTES, SLL_HEADER_BYTES, SLL2_HEADER_BYTES};

/// An IPv4 or IPv6 address in one fixed-size form (IPv4 stored in the first four bytes),
/// so that flow keys hash and compare without branching on the family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Addr {
    pub bytes: [u8; 16],
    pub v6: bool,
}

impl Addr {
    pub fn v4(b: [u8; 4]) -> Addr {
        let mut bytes = [0; 16];
        bytes[..4].copy_from_slice(&b);
        Addr { bytes, v6: false }
    }
    pub fn v6(b: [u8; 16]) -> Addr {
        Addr { bytes: b, v6: true }
    }
    pub fn to_ip(&self) -> std::net::IpAddr {
        if self.v6 {
            std::net::IpAddr::from(self.bytes)
        } else {
            std::net::IpAddr::from(<[u8; 4]>::try_from(&self.bytes[..4]).expect("4 bytes"))
        }
    }
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_ip().fmt(f)
    }
}

/// TCP flag bits as in the header's 13th byte.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp { seq: u32, ack: u32, flags: u8, window: u16 },
    Udp,
}

/// Where a decoded packet's layers lie in its frame. It borrows nothing, so a consumer that
/// rewrites the frame afterwards (scrub) takes it from the one decode instead of decoding again.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    pub src: Addr,
    pub dst: Addr,
    pub sport: u16,
    pub dport: u16,
    pub transport: Transport,
    /// Offset of the IP header in the frame.
    pub ip_offset: usize,
    /// Offset of the TCP or UDP header in the frame.
    pub transport_offset: usize,
    /// Offset of the transport payload in the frame: bulk packets are cut here.
    pub payload_offset: usize,
    /// Captured payload bytes (from `payload_offset`; may be fewer than on the wire).
    pub payload_len: usize,
    /// Payload length on the wire, from the IP length fields; the sequence space it covers.
    pub wire_payload_len: u32,
    /// The packet came through a tunnel (`tunnels` lists the layers; most packets have none,
    /// and the hot path does not carry the list).
    pub tunneled: bool,
}

/// What the flow layer needs to know about one frame: its layout, and the captured payload.
/// It reads as its layout (`d.src`, `d.payload_offset`) through `Deref`.
#[derive(Clone, Copy, Debug)]
pub struct Decoded<'a> {
    pub layout: Layout,
    pub payload: &'a [u8],
}

impl std::ops::Deref for Decoded<'_> {
    type Target = Layout;

    fn deref(&self) -> &Layout {
        &self.layout
    }
}

impl Decoded<'_> {
    pub fn tcp_flags(&self) -> u8 {
        match self.transport {
            Transport::Tcp { flags, .. } => flags,
            Transport::Udp => 0,
        }
    }
}

/// Why a frame could not be attributed to a TCP or UDP flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// A link type this decoder does not know.
    UnsupportedLink,
    /// ARP, other protocols over IP, non-first fragments, or headers cut by snaplen.
    NotTcpUdp,
    /// An encapsulation recognised but not decodable (encrypted, or not implemented).
    Opaque(Opaque),
}

/// Encapsulations whose packets are counted and named rather than silently dropped: a
/// WebSocket inside them cannot be seen, and the user should be told so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Opaque {
    Esp,
    Gre,
    PppCompressed,
    WifiProtected,
    TooDeep,
}

impl Opaque {
    pub const ALL: [Opaque; 5] =
        [Opaque::Esp, Opaque::Gre, Opaque::PppCompressed, Opaque::WifiProtected, Opaque::TooDeep];

    pub fn describe(self) -> &'static str {
        match self {
            Opaque::Esp => "IPsec ESP (encrypted)",
            Opaque::Gre => "GRE with routing or an unsupported payload",
            Opaque::PppCompressed => "compressed or encrypted PPP (CCP/ECP, MPPE)",
            Opaque::WifiProtected => "protected (encrypted) 802.11 frames",
            Opaque::TooDeep => "tunnels nested more than three deep",
        }
    }
}

/// Decodes a frame of the given link type.
pub fn decode(link_type: u32, frame: &[u8]) -> Result<Decoded<'_>, Skip> {
    if let Some(d) = fast_ipv4(link_type, frame) {
        return Ok(d);
    }
    sliced(link_type, frame)
}

/// Where the IPv4 header of a frame starts, for the link layouts the fast path takes.
fn fast_ipv4_offset(link_type: u32, frame: &[u8]) -> Option<usize> {
    const IPV4: u16 = 0x0800;
    let at = match link_type {
        linktype::ETHERNET => match be16(frame, 12)? {
            IPV4 => 14,
            0x8100 if be16(frame, 16)? == IPV4 => 18,
            _ => return None,
        },
        linktype::LINUX_SLL2 if be16(frame, 0)? == IPV4 => SLL2_HEADER_BYTES,
        linktype::LINUX_SLL if be16(frame, 14)? == IPV4 => SLL_HEADER_BYTES,
        linktype::RAW | linktype::RAW_ALT12 | linktype::RAW_ALT14 | linktype::IPV4 => 0,
        linktype::NULL | linktype::LOOP => NULL_HEADER_BYTES,
        _ => return None,
    };
    (frame.get(at)? >> 4 == 4).then_some(at)
}

/// The common case — IPv4, not fragmented, TCP or UDP, headers complete — decoded by hand.
/// etherparse's lax slicer builds and copies several cursor structs per frame, which cost a
/// fifth of a trim's instructions; this reads the dozen fields needed in place. Anything
/// unusual (IPv6, fragments, options beyond the capture, MPLS, QinQ) returns None and goes
/// through etherparse, whose results this matches field for field (tested).
fn fast_ipv4(link_type: u32, frame: &[u8]) -> Option<Decoded<'_>> {
    let ip = fast_ipv4_offset(link_type, frame)?;
    let h = frame.get(ip..ip + 20)?;
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0;
    if ihl < 20 || total < ihl || fragment {
        return None;
    }
    let t = ip + ihl;
    let src = Addr::v4(h[12..16].try_into().ok()?);
    let dst = Addr::v4(h[16..20].try_into().ok()?);
    let (sport, dport, transport, payload_offset) = match h[9] {
        6 => {
            let th = frame.get(t..t + 20)?;
            let doff = usize::from(th[12] >> 4) * 4;
            if doff < 20 || frame.len() < t + doff || total < ihl + doff {
                return None;
            }
            let flags = th[13] & (tcp_flags::FIN | tcp_flags::SYN | tcp_flags::RST | tcp_flags::ACK);
            let tr = Transport::Tcp {
                seq: u32::from_be_bytes(th[4..8].try_into().ok()?),
                ack: u32::from_be_bytes(th[8..12].try_into().ok()?),
                flags,
                window: u16::from_be_bytes([th[14], th[15]]),
            };
            (u16::from_be_bytes([th[0], th[1]]), u16::from_be_bytes([th[2], th[3]]), tr, t + doff)
        }
        17 => {
            let uh = frame.get(t..t + 8)?;
            let ulen = usize::from(u16::from_be_bytes([uh[4], uh[5]]));
            // etherparse takes the UDP length field; keep to the cases where it agrees with IP.
            let (sport, dport) = (u16::from_be_bytes([uh[0], uh[1]]), u16::from_be_bytes([uh[2], uh[3]]));
            if total < ihl + 8 || ulen != total - ihl || tunnel::udp_port(sport, dport) {
                return None;
            }
            (sport, dport, Transport::Udp, t + 8)
        }
        _ => return None,
    };
    let ip_end = ip + total;
    let payload = &frame[payload_offset..frame.len().min(ip_end).max(payload_offset)];
    let wire = ip_end.saturating_sub(payload_offset);
    Some(Decoded {
        layout: Layout {
            src,
            dst,
            sport,
            dport,
            transport,
            ip_offset: ip,
            transport_offset: t,
            payload_offset,
            payload_len: payload.len(),
            wire_payload_len: wire.max(payload.len()) as u32,
            tunneled: false,
        },
        payload,
    })
}

/// The tunnel layers around a frame's innermost packet, outermost first (for scrub, which
/// rewrites their addresses and checksums), or none.
pub fn tunnels(link_type: u32, frame: &[u8]) -> Tunnels {
    let mut t = Tunnels::default();
    let _ = walk(link_type, frame, &mut t);
    t
}

/// Decodes any frame through the general path.
fn sliced(link_type: u32, frame: &[u8]) -> Result<Decoded<'_>, Skip> {
    walk(link_type, frame, &mut Tunnels::default())
}

/// Decodes any frame: the link layer, then IP packets, entering tunnels (listed in
/// `tunnels`) until the innermost TCP or UDP packet.
fn walk<'a>(link_type: u32, frame: &'a [u8], tunnels: &mut Tunnels) -> Result<Decoded<'a>, Skip> {
    let mut at = link::ip_start(link_type, frame)?;
    loop {
        let sliced = LaxSlicedPacket::from_ip(frame.get(at..).ok_or(Skip::NotTcpUdp)?).map_err(|_| Skip::NotTcpUdp)?;
        let net = sliced.net.as_ref().ok_or(Skip::NotTcpUdp)?;
        let (src, dst, ip_offset, ip_end) = match net {
            LaxNetSlice::Ipv4(v4) => {
                let h = v4.header();
                let start = offset_in(frame, h.slice());
                (Addr::v4(h.source()), Addr::v4(h.destination()), start, start + usize::from(h.total_len()))
            }
            LaxNetSlice::Ipv6(v6) => {
                let h = v6.header();
                let start = offset_in(frame, h.slice());
                let plen = usize::from(h.payload_length());
                let end = if plen == 0 { usize::MAX } else { start + 40 + plen };
                (Addr::v6(h.source()), Addr::v6(h.destination()), start, end)
            }
            LaxNetSlice::Arp(_) => return Err(Skip::NotTcpUdp),
        };
        let ip_payload = net.ip_payload_ref().ok_or(Skip::NotTcpUdp)?;
        let payload_at = offset_in(frame, ip_payload.payload);
        let proto = ip_payload.ip_number.0;
        if let Some((inner, layer)) = tunnel::inner(frame, ip_offset, proto, payload_at, ip_end, ip_payload.fragmented)?
        {
            tunnels.push(layer)?;
            at = inner;
            continue;
        }
        let (sport, dport, transport, payload, header) = match sliced.transport.as_ref().ok_or(Skip::NotTcpUdp)? {
            TransportSlice::Tcp(t) => {
                let mut flags = 0;
                for (on, bit) in [
                    (t.fin(), tcp_flags::FIN),
                    (t.syn(), tcp_flags::SYN),
                    (t.rst(), tcp_flags::RST),
                    (t.ack(), tcp_flags::ACK),
                ] {
                    if on {
                        flags |= bit;
                    }
                }
                let tr = Transport::Tcp {
                    seq: t.sequence_number(),
                    ack: t.acknowledgment_number(),
                    flags,
                    window: t.window_size(),
                };
                (t.source_port(), t.destination_port(), tr, t.payload(), t.header_slice())
            }
            TransportSlice::Udp(u) => {
                (u.source_port(), u.destination_port(), Transport::Udp, u.payload(), u.header_slice())
            }
            _ => return Err(Skip::NotTcpUdp),
        };
        let payload_offset = offset_in(frame, payload);
        let wire = if ip_end == usize::MAX { payload.len() } else { ip_end.saturating_sub(payload_offset) };
        return Ok(Decoded {
            layout: Layout {
                src,
                dst,
                sport,
                dport,
                transport,
                ip_offset,
                transport_offset: offset_in(frame, header),
                payload_offset,
                payload_len: payload.len(),
                wire_payload_len: wire.max(payload.len()) as u32,
                tunneled: !tunnels.is_empty(),
            },
            payload,
        });
    }
}

/// Offset and version (true: IPv6) of the outermost IP header of a frame of a known link
/// type, found without parsing further (for frames `decode` does not take: ICMP, fragments,
/// other protocols over IP, tunnels it cannot enter).
pub fn ip_offset(link_type: u32, frame: &[u8]) -> Option<(usize, bool)> {
    let at = link::ip_start(link_type, frame).ok()?;
    match frame.get(at)? >> 4 {
        4 if frame.len() >= at + 20 => Some((at, false)),
        6 if frame.len() >= at + 40 => Some((at, true)),
        _ => None,
    }
}

pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Offset of a sub-slice inside the frame it was sliced from.
fn offset_in(frame: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).saturating_sub(frame.as_ptr() as usize).min(frame.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-written IPv4 path agrees with etherparse on every frame it takes: all the
    /// shipped captures' frames, each also cut short and with header bytes mutated.
    #[test]
    fn fast_path_matches_etherparse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
        let mut frames: Vec<(u32, Vec<u8>)> = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            let name = path.to_string_lossy().into_owned();
            if !(name.ends_with(".pcap") || name.ends_with(".pcapng") || name.ends_with(".gz")) {
                continue;
            }
            let input = crate::capture::Input::open(&path).unwrap();
            let mut r = crate::capture::Reader::new(input).unwrap();
            while let Ok(Some(item)) = r.next_item() {
                if let crate::capture::Item::Packet(p) = item {
                    frames.push((p.meta.link_type, p.data().to_vec()));
                }
            }
        }
        frames.push((linktype::ETHERNET, tcp_v4_frame(b"hello")));
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut taken, mut compared) = (0, 0);
        for (link, f) in &frames {
            let mut variants = vec![f.clone()];
            for cut in [f.len() / 2, 34, 40, 54, 60] {
                variants.push(f[..cut.min(f.len())].to_vec());
            }
            for _ in 0..24 {
                let mut m = f.clone();
                let at = (rnd() as usize) % m.len().clamp(1, 80);
                m[at] = rnd() as u8;
                variants.push(m);
            }
            for v in variants {
                compared += 1;
                if let Some(fast) = fast_ipv4(*link, &v) {
                    taken += 1;
                    let slow = sliced(*link, &v);
                    assert_eq!(format!("{:?}", Ok::<_, Skip>(fast)), format!("{slow:?}"), "frame {v:02x?}");
                }
            }
        }
        assert!(taken > compared / 2, "the fast path takes most frames ({taken} of {compared})");
    }

    fn tcp_v4_frame(payload: &[u8]) -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(51000, 8080, 1000, 65535);
        let mut v = Vec::new();
        builder.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn tcp_over_ethernet_gives_ports_and_payload_offset() {
        let f = tcp_v4_frame(b"GET / HTTP/1.1\r\n");
        let d = decode(linktype::ETHERNET, &f).unwrap();
        assert_eq!((d.sport, d.dport), (51000, 8080));
        assert_eq!(d.payload_offset, 14 + 20 + 20);
        assert_eq!(d.payload, b"GET / HTTP/1.1\r\n");
        assert_eq!(d.wire_payload_len, 16);
    }

    #[test]
    fn snaplen_cut_frame_keeps_wire_length() {
        let f = tcp_v4_frame(&[7u8; 100]);
        let d = decode(linktype::ETHERNET, &f[..60]).unwrap();
        assert_eq!(d.payload.len(), 6);
        assert_eq!(d.wire_payload_len, 100);
    }

    #[test]
    fn headers_cut_inside_tcp_are_skipped_not_panics() {
        let f = tcp_v4_frame(b"x");
        for n in 0..f.len() {
            let _ = decode(linktype::ETHERNET, &f[..n]);
            let _ = decode(linktype::LINUX_SLL2, &f[..n]);
            let _ = decode(linktype::NULL, &f[..n]);
        }
    }

    #[test]
    fn mpls_labelled_ip_is_decoded() {
        let f = tcp_v4_frame(b"GET / HTTP/1.1\r\n");
        let mut m = f[..12].to_vec();
        m.extend_from_slice(&[0x88, 0x47, 0x00, 0x01, 0x00, 0x40, 0x00, 0x02, 0x01, 0x40]);
        m.extend_from_slice(&f[14..]);
        let d = decode(linktype::ETHERNET, &m).unwrap();
        assert_eq!((d.dport, d.payload_offset), (8080, 14 + 8 + 40));
    }

    #[test]
    fn pppoe_session_ip_is_decoded_with_either_protocol_field() {
        let f = tcp_v4_frame(b"GET / HTTP/1.1\r\n");
        for ppp in [&[0x00u8, 0x21][..], &[0x21][..]] {
            let mut m = f[..12].to_vec();
            let len = (f.len() - 14 + ppp.len()) as u16;
            m.extend_from_slice(&[0x88, 0x64, 0x11, 0x00, 0x00, 0x2d]);
            m.extend_from_slice(&len.to_be_bytes());
            m.extend_from_slice(ppp);
            m.extend_from_slice(&f[14..]);
            let d = decode(linktype::ETHERNET, &m).unwrap();
            assert_eq!((d.dport, d.payload_offset), (8080, 14 + 6 + ppp.len() + 40));
            assert_eq!(ip_offset(linktype::ETHERNET, &m), Some((14 + 6 + ppp.len(), false)));
        }
    }

    #[test]
    fn unknown_link_type_is_reported() {
        assert_eq!(decode(147, &[0; 60]).unwrap_err(), Skip::UnsupportedLink);
    }
}
