//! Link layers: where the IP packet of a captured frame starts. Each layout is a few fixed
//! fields, read in place; etherparse knows Ethernet and VLAN but not PPP, NFLOG, 802.11,
//! PPPoE or MPLS, so all of them are walked here the same way and etherparse starts at IP.

use super::{Opaque, Skip, be16};

/// pcap LINKTYPE_* values this decoder understands.
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const PPP: u32 = 9;
    pub const RAW_ALT12: u32 = 12;
    pub const RAW_ALT14: u32 = 14;
    pub const PPP_HDLC: u32 = 50;
    pub const PPP_ETHER: u32 = 51;
    pub const RAW: u32 = 101;
    pub const IEEE802_11: u32 = 105;
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IEEE802_11_RADIOTAP: u32 = 127;
    pub const PPP_WITH_DIR: u32 = 204;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const NFLOG: u32 = 239;
    pub const LINUX_SLL2: u32 = 276;
}

pub(super) const SLL_HEADER_BYTES: usize = 16;
pub(super) const SLL2_HEADER_BYTES: usize = 20;
pub(super) const NULL_HEADER_BYTES: usize = 4;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;

/// Where the (outermost) IP header of a frame starts.
pub fn ip_start(link_type: u32, frame: &[u8]) -> Result<usize, Skip> {
    let not = Skip::NotTcpUdp;
    match link_type {
        linktype::ETHERNET => ethernet_ip(frame, 0),
        linktype::LINUX_SLL => ether_payload(frame, be16(frame, 14).ok_or(not)?, SLL_HEADER_BYTES),
        linktype::LINUX_SLL2 => ether_payload(frame, be16(frame, 0).ok_or(not)?, SLL2_HEADER_BYTES),
        linktype::RAW | linktype::RAW_ALT12 | linktype::RAW_ALT14 | linktype::IPV4 | linktype::IPV6 => Ok(0),
        // BSD loopback: the address family in host order (NULL) or network order (LOOP).
        // IPv6 has a different AF_INET6 value on each BSD, so the IP version decides instead.
        linktype::NULL | linktype::LOOP => Ok(NULL_HEADER_BYTES),
        linktype::PPP | linktype::PPP_HDLC => ppp(frame, 0),
        // One direction byte (sent or received), then PPP.
        linktype::PPP_WITH_DIR => ppp(frame, 1),
        linktype::PPP_ETHER => pppoe_session(frame, 0).ok_or(not),
        linktype::NFLOG => nflog(frame),
        linktype::IEEE802_11 => wifi(frame, 0),
        linktype::IEEE802_11_RADIOTAP => {
            // Radiotap (radiotap.org): version, pad, then the little-endian header length.
            let len = frame.get(2..4).map(|b| usize::from(u16::from_le_bytes([b[0], b[1]]))).ok_or(not)?;
            wifi(frame, len)
        }
        _ => Err(Skip::UnsupportedLink),
    }
}

/// Length of the link-layer header of a known link type (Ethernet: up to the payload after
/// VLAN tags), or None for a link type whose header is not a fixed layout known here.
pub fn header_len(link_type: u32, frame: &[u8]) -> Option<usize> {
    match link_type {
        linktype::ETHERNET => Some(ethertype(frame, 0).map_or(frame.len(), |(_, at)| at)),
        linktype::LINUX_SLL => Some(SLL_HEADER_BYTES),
        linktype::LINUX_SLL2 => Some(SLL2_HEADER_BYTES),
        linktype::NULL | linktype::LOOP => Some(NULL_HEADER_BYTES),
        linktype::RAW | linktype::RAW_ALT12 | linktype::RAW_ALT14 | linktype::IPV4 | linktype::IPV6 => Some(0),
        _ => None,
    }
}

/// The IP packet of an Ethernet frame starting at `at` (a VXLAN or GRE tunnel carries whole
/// Ethernet frames too).
pub(super) fn ethernet_ip(frame: &[u8], at: usize) -> Result<usize, Skip> {
    let (et, payload) = ethertype(frame, at).ok_or(Skip::NotTcpUdp)?;
    ether_payload(frame, et, payload)
}

/// The ethertype after any VLAN tags of the Ethernet frame starting at `at`, and where its
/// payload starts.
pub fn ethertype(frame: &[u8], at: usize) -> Option<(u16, usize)> {
    let mut at = at + 12;
    loop {
        let et = be16(frame, at)?;
        match et {
            0x8100 | 0x88a8 | 0x9100 => at += 4,
            _ => return Some((et, at + 2)),
        }
    }
}

/// The IP packet behind an ethertype: directly, under MPLS labels, or in a PPPoE session.
fn ether_payload(frame: &[u8], et: u16, at: usize) -> Result<usize, Skip> {
    match et {
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Ok(at),
        // VLAN tags after an SLL header (Linux usually strips them; not always).
        0x8100 | 0x88a8 | 0x9100 => ether_payload(frame, be16(frame, at + 2).ok_or(Skip::NotTcpUdp)?, at + 4),
        0x8847 | 0x8848 => mpls(frame, at).ok_or(Skip::NotTcpUdp),
        0x8864 => pppoe_session(frame, at).ok_or(Skip::NotTcpUdp),
        _ => Err(Skip::NotTcpUdp),
    }
}

/// MPLS (RFC 3032): labels are four bytes each, the last one has the bottom-of-stack bit.
fn mpls(frame: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let label = frame.get(at..at + 4)?;
        at += 4;
        if label[2] & 0x01 != 0 {
            return Some(at);
        }
    }
}

/// A PPPoE session header (RFC 2516: version/type 0x11, code 0, session, length), then PPP
/// without address and control; DSL links carry them.
fn pppoe_session(frame: &[u8], at: usize) -> Option<usize> {
    if frame.get(at)? != &0x11 || frame.get(at + 1)? != &0 {
        return None;
    }
    ppp_protocol(frame, at + 6).ok()
}

/// PPP in HDLC-like framing (RFC 1662): address 0xff and control 0x03 when present, then the
/// protocol.
pub(super) fn ppp(frame: &[u8], at: usize) -> Result<usize, Skip> {
    let at = if frame.get(at..at + 2) == Some(&[0xff, 0x03]) { at + 2 } else { at };
    ppp_protocol(frame, at)
}

/// The PPP protocol field, compressed to one byte when its first byte is odd (RFC 1661
/// §6.5): 0x0021 IPv4, 0x0057 IPv6.
fn ppp_protocol(frame: &[u8], at: usize) -> Result<usize, Skip> {
    let first = *frame.get(at).ok_or(Skip::NotTcpUdp)?;
    let (proto, len) =
        if first & 1 == 1 { (u16::from(first), 1) } else { (be16(frame, at).ok_or(Skip::NotTcpUdp)?, 2) };
    match proto {
        0x0021 | 0x0057 => Ok(at + len),
        // Compressed data (CCP) and encrypted data (ECP, MPPE) hide the packet.
        0x00fd | 0x00fb | 0x0053 | 0x0055 => Err(Skip::Opaque(Opaque::PppCompressed)),
        _ => Err(Skip::NotTcpUdp),
    }
}

/// Linux NFLOG (libpcap's pcap/nflog.h): family, version, resource id, then type-length-value
/// attributes in host byte order, each padded to four bytes; the packet is attribute 9.
fn nflog(frame: &[u8]) -> Result<usize, Skip> {
    const NFULA_PAYLOAD: u16 = 9;
    if frame.len() < 4 || frame[1] != 0 {
        return Err(Skip::NotTcpUdp);
    }
    // The byte order is the capturing host's; a TLV length of at least 4 that fits tells it.
    let mut at = 4;
    let le = {
        let l = frame.get(at..at + 2).ok_or(Skip::NotTcpUdp)?;
        let fits = |n: u16| (4..=frame.len() - at).contains(&usize::from(n));
        fits(u16::from_le_bytes([l[0], l[1]])) || !fits(u16::from_be_bytes([l[0], l[1]]))
    };
    let rd = |at: usize| -> Option<u16> {
        let b = frame.get(at..at + 2)?;
        Some(if le { u16::from_le_bytes([b[0], b[1]]) } else { u16::from_be_bytes([b[0], b[1]]) })
    };
    while let (Some(len), Some(kind)) = (rd(at), rd(at + 2)) {
        let len = usize::from(len);
        if len < 4 {
            break;
        }
        if kind & 0x7fff == NFULA_PAYLOAD {
            return Ok(at + 4);
        }
        at += (len + 3) & !3;
    }
    Err(Skip::NotTcpUdp)
}

/// An IEEE 802.11 data frame: its header (24 bytes; 30 with four addresses; 2 more with QoS;
/// 4 more with HT control), then LLC/SNAP and an ethertype. Protected frames are encrypted.
fn wifi(frame: &[u8], at: usize) -> Result<usize, Skip> {
    let not = Skip::NotTcpUdp;
    let fc = frame.get(at..at + 2).ok_or(not)?;
    let (kind, subtype, flags) = ((fc[0] >> 2) & 0x3, fc[0] >> 4, fc[1]);
    if kind != 2 || subtype & 0x4 != 0 {
        // Management, control, and data frames without data (null, CF-ack/poll only).
        return Err(not);
    }
    if flags & 0x40 != 0 {
        return Err(Skip::Opaque(Opaque::WifiProtected));
    }
    let mut len = 24;
    if flags & 0x03 == 0x03 {
        len += 6;
    }
    if subtype & 0x8 != 0 {
        len += 2;
        if flags & 0x80 != 0 {
            len += 4;
        }
    }
    let llc = at + len;
    if frame.get(llc..llc + 6) != Some(&[0xaa, 0xaa, 0x03, 0, 0, 0]) {
        // A-MSDU aggregates and non-SNAP payloads.
        return Err(not);
    }
    let et = be16(frame, llc + 6).ok_or(not)?;
    ether_payload(frame, et, llc + 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nflog_payload_is_found_in_either_byte_order() {
        for le in [true, false] {
            let put = |v: &mut Vec<u8>, x: u16| v.extend(if le { x.to_le_bytes() } else { x.to_be_bytes() });
            let mut f = vec![2, 0, 0, 1];
            put(&mut f, 8);
            put(&mut f, 1);
            f.extend([0x08, 0x00, 3, 0]);
            put(&mut f, 7);
            put(&mut f, 10);
            f.extend([b'a', b'b', b'c', 0]);
            put(&mut f, 24);
            put(&mut f, 9);
            let at = f.len();
            f.extend([0x45; 20]);
            assert_eq!(nflog(&f), Ok(at), "little-endian: {le}");
        }
    }

    #[test]
    fn wifi_header_lengths() {
        let ip = [0x45u8; 20];
        let snap = [0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00];
        // Data, QoS data, four-address, protected.
        for (fc, hdr, want) in [([0x08, 0x01], 24, Ok(32)), ([0x88, 0x02], 26, Ok(34)), ([0x08, 0x03], 30, Ok(38))] {
            let mut f = fc.to_vec();
            f.resize(hdr, 0);
            f.extend(snap);
            f.extend(ip);
            assert_eq!(wifi(&f, 0), want, "{fc:02x?}");
        }
        let mut f = vec![0x08, 0x41];
        f.resize(60, 0);
        assert_eq!(wifi(&f, 0), Err(Skip::Opaque(Opaque::WifiProtected)));
        // A beacon.
        assert_eq!(wifi(&[0x80, 0x00, 0, 0], 0), Err(Skip::NotTcpUdp));
    }

    #[test]
    fn ppp_with_and_without_address_and_control() {
        assert_eq!(ppp(&[0xff, 0x03, 0x00, 0x21, 0x45], 0), Ok(4));
        assert_eq!(ppp(&[0x00, 0x57, 0x60], 0), Ok(2));
        assert_eq!(ppp(&[0x21, 0x45], 0), Ok(1));
        assert_eq!(ppp(&[0xff, 0x03, 0x00, 0xfd, 0], 0), Err(Skip::Opaque(Opaque::PppCompressed)));
        assert_eq!(ppp(&[0xc0, 0x21, 1], 0), Err(Skip::NotTcpUdp));
    }
}
