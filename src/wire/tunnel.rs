//! Tunnels: an IP packet whose payload is another IP packet or Ethernet frame (IP-in-IP,
//! GRE, PPTP, VXLAN, Geneve, GTP-U). The flow is the innermost TCP/UDP connection — the one a
//! WebSocket runs on — and the outer layers are remembered so that scrub can pseudonymize
//! their addresses and fix their checksums.

use super::{Opaque, Skip, be16, link};

/// Tunnels nested deeper than this are named, not decoded.
pub const MAX_DEPTH: usize = 3;

/// One outer layer of a tunnelled packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Layer {
    /// Offset of this layer's IP header.
    pub ip: usize,
    /// A checksum of this layer that covers the inner packet (UDP or GRE), if present.
    pub sum: Option<Sum>,
    /// Offset of the inner Ethernet header when the tunnel carries Ethernet frames.
    pub ether: Option<usize>,
}

/// Where a tunnel header's checksum is and what it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sum {
    /// Offset of the 16-bit checksum field.
    pub field: usize,
    /// The covered bytes: from the tunnel header to the end of the outer IP packet (which may
    /// lie beyond a snaplen-cut frame).
    pub from: usize,
    pub to: usize,
    /// UDP's sum includes the IP pseudo-header; GRE's does not.
    pub pseudo: bool,
}

/// The outer layers of a packet, outermost first; no allocation on the per-packet path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tunnels {
    len: u8,
    layers: [Layer; MAX_DEPTH],
}

impl Tunnels {
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Layer> {
        self.layers[..usize::from(self.len)].iter()
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub(super) fn push(&mut self, layer: Layer) -> Result<(), Skip> {
        let slot = self.layers.get_mut(usize::from(self.len)).ok_or(Skip::Opaque(Opaque::TooDeep))?;
        *slot = layer;
        self.len += 1;
        Ok(())
    }
}

const VXLAN_PORTS: [u16; 2] = [4789, 8472];
const GENEVE_PORT: u16 = 6081;
const GTP_U_PORT: u16 = 2152;

/// Whether a UDP datagram between these ports may be a tunnel (checked further by its
/// header); the hand-written IPv4 path leaves those to the general one.
pub fn udp_port(sport: u16, dport: u16) -> bool {
    VXLAN_PORTS.contains(&dport) || dport == GENEVE_PORT || dport == GTP_U_PORT || sport == GTP_U_PORT
}

/// Where the inner IP packet of the IP packet at `ip` starts, with the outer layer to
/// remember, or None when the packet is not a tunnel. `proto` and `payload` are the IP
/// header's protocol and the payload's offset and end; `fragmented` packets are not entered.
pub(super) fn inner(
    frame: &[u8],
    ip: usize,
    proto: u8,
    payload: usize,
    end: usize,
    fragmented: bool,
) -> Result<Option<(usize, Layer)>, Skip> {
    let layer = Layer { ip, sum: None, ether: None };
    let found = match proto {
        // ESP is encrypted whether fragmented or not.
        50 => return Err(Skip::Opaque(Opaque::Esp)),
        _ if fragmented => return Ok(None),
        4 | 41 => Some((payload, layer)),
        47 => gre(frame, payload, end, layer)?,
        17 => udp(frame, payload, end, layer)?,
        _ => None,
    };
    Ok(found)
}

/// GRE (RFC 2784/2890): flags and version, protocol, then optional checksum, key and
/// sequence number. Version 1 is PPTP's enhanced GRE (RFC 2637) carrying PPP.
fn gre(frame: &[u8], at: usize, end: usize, mut layer: Layer) -> Result<Option<(usize, Layer)>, Skip> {
    let (Some(flags), Some(proto)) = (be16(frame, at), be16(frame, at + 2)) else {
        return Ok(None);
    };
    let (csum, routing, key, seq, version) =
        (flags & 0x8000 != 0, flags & 0x4000 != 0, flags & 0x2000 != 0, flags & 0x1000 != 0, flags & 0x7);
    if routing {
        return Err(Skip::Opaque(Opaque::Gre));
    }
    let mut next = at + 4;
    if csum {
        layer.sum = Some(Sum { field: at + 4, from: at, to: end, pseudo: false });
        next += 4;
    }
    next += 4 * usize::from(key) + 4 * usize::from(seq);
    match (version, proto) {
        (0, 0x0800 | 0x86dd) => Ok(Some((next, layer))),
        (0, 0x6558) => ether(frame, next, layer),
        // ERSPAN type II has an 8-byte header (sequence number present); type I has none.
        (0, 0x88be) => ether(frame, next + if seq { 8 } else { 0 }, layer),
        // ERSPAN type III: 12 bytes, 8 more with the platform-specific sub-header.
        (0, 0x22eb) => {
            let o = frame.get(next + 11).ok_or(Skip::NotTcpUdp)? & 0x01 != 0;
            ether(frame, next + 12 + if o { 8 } else { 0 }, layer)
        }
        (1, 0x880b) => {
            // PPTP: the key is always there; an acknowledgement number when A is set.
            let ack = flags & 0x0080 != 0;
            let at = at + 8 + 4 * usize::from(seq) + 4 * usize::from(ack);
            Ok(Some((link::ppp(frame, at)?, layer)))
        }
        _ => Err(Skip::Opaque(Opaque::Gre)),
    }
}

/// UDP tunnels, recognised by port and then by a header that must be well-formed, so that an
/// ordinary datagram that happens to use the port stays an ordinary datagram.
fn udp(frame: &[u8], at: usize, end: usize, mut layer: Layer) -> Result<Option<(usize, Layer)>, Skip> {
    let (Some(sport), Some(dport), Some(sum)) = (be16(frame, at), be16(frame, at + 2), be16(frame, at + 6)) else {
        return Ok(None);
    };
    if !udp_port(sport, dport) {
        return Ok(None);
    }
    if sum != 0 {
        layer.sum = Some(Sum { field: at + 6, from: at, to: end, pseudo: true });
    }
    let h = at + 8;
    if VXLAN_PORTS.contains(&dport) {
        // RFC 7348: flags with the I bit, 24 reserved bits, the VNI, 8 reserved bits.
        return match frame.get(h) {
            Some(f) if f & 0x08 != 0 => ether(frame, h + 8, layer).or(Ok(None)),
            _ => Ok(None),
        };
    }
    if dport == GENEVE_PORT {
        // RFC 8926: version 0, options length in 4-byte words, protocol type.
        let (Some(b0), Some(proto)) = (frame.get(h), be16(frame, h + 2)) else {
            return Ok(None);
        };
        let body = h + 8 + usize::from(b0 & 0x3f) * 4;
        return match (b0 >> 6, proto) {
            (0, 0x6558) => ether(frame, body, layer).or(Ok(None)),
            (0, 0x0800 | 0x86dd) => Ok(Some((body, layer))),
            _ => Ok(None),
        };
    }
    gtp_u(frame, h).map_or(Ok(None), |inner| Ok(Some((inner, layer))))
}

/// GTP-U (3GPP TS 29.281): version 1, protocol type GTP, message type T-PDU (255); an
/// optional 4-byte block (sequence number, N-PDU number, next extension type) when any of
/// E, S, PN is set, then the extension header chain. The inner packet must look like IP.
fn gtp_u(frame: &[u8], h: usize) -> Option<usize> {
    let (b0, kind) = (*frame.get(h)?, *frame.get(h + 1)?);
    if b0 >> 5 != 1 || b0 & 0x10 == 0 || kind != 0xff {
        return None;
    }
    let mut at = h + 8;
    if b0 & 0x07 != 0 {
        let mut next = *frame.get(h + 11)?;
        at += 4;
        if b0 & 0x04 == 0 {
            next = 0;
        }
        while next != 0 {
            let len = usize::from(*frame.get(at)?) * 4;
            if len == 0 {
                return None;
            }
            next = *frame.get(at + len - 1)?;
            at += len;
        }
    }
    matches!(frame.get(at)? >> 4, 4 | 6).then_some(at)
}

fn ether(frame: &[u8], at: usize, mut layer: Layer) -> Result<Option<(usize, Layer)>, Skip> {
    layer.ether = Some(at);
    Ok(Some((link::ethernet_ip(frame, at)?, layer)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gtp_u_with_an_extension_header() {
        // E set: sequence block, next type 0x85 (PDU session container), one 4-byte extension.
        let mut f = vec![0x34, 0xff, 0, 40, 0, 0, 0, 1, 0, 0, 0, 0x85, 1, 0x10, 0x01, 0x00];
        let at = f.len();
        f.extend([0x45; 20]);
        assert_eq!(gtp_u(&f, 0), Some(at));
        assert_eq!(gtp_u(&[0x30, 0xff, 0, 20, 0, 0, 0, 1, 0x60], 0), Some(8));
        // Echo request, and version 2 (GTPv2-C).
        assert_eq!(gtp_u(&[0x30, 0x01, 0, 20, 0, 0, 0, 1, 0x45], 0), None);
        assert_eq!(gtp_u(&[0x48, 0xff, 0, 20, 0, 0, 0, 1, 0x45], 0), None);
    }

    #[test]
    fn gre_with_key_and_checksum() {
        let mut f = vec![0xa0, 0x00, 0x08, 0x00, 0xde, 0xad, 0, 0, 0, 0, 0, 7];
        f.extend([0x45; 20]);
        let (at, layer) = gre(&f, 0, f.len(), Layer::default()).unwrap().unwrap();
        assert_eq!(at, 12);
        assert_eq!(layer.sum, Some(Sum { field: 4, from: 0, to: f.len(), pseudo: false }));
        assert_eq!(gre(&[0x00, 0x00, 0x88, 0x0b], 0, 4, Layer::default()), Err(Skip::Opaque(Opaque::Gre)));
    }

    #[test]
    fn too_deep_is_named() {
        let mut t = Tunnels::default();
        for _ in 0..MAX_DEPTH {
            t.push(Layer::default()).unwrap();
        }
        assert_eq!(t.push(Layer::default()), Err(Skip::Opaque(Opaque::TooDeep)));
        assert_eq!(t.iter().count(), MAX_DEPTH);
    }
}
