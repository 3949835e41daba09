//! `--pseudonymize`: consistent, keyed, same-length replacement of addresses and names.
//!
//! - IPv4/IPv6 addresses: Crypto-PAn (Xu, Fan, Ammar, Moon 2002), prefix-preserving: two
//!   addresses sharing k leading bits map to addresses sharing exactly k leading bits, so
//!   subnets stay recognisable. AES-128 from the `aes` crate is the pseudo-random function.
//! - MAC addresses: the I/G (multicast) and U/L bits are kept, so are the vendor OUI of
//!   globally administered addresses and the broadcast address; the rest is keyed.
//! - Host names (DNS questions and answers, Host, Origin and Location authorities, TLS SNI):
//!   each character is replaced by one derived from a keyed hash of its label up to and
//!   including it. That needs only the bytes before it, so a name split over segments maps
//!   the same way as a whole one, and DNS, HTTP and TLS agree on every name.
//!
//! The same key gives the same mapping across runs and files; without `--key` a random key
//! is drawn per run.

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use rustc_hash::FxHashMap;
use sha1::{Digest, Sha1};

use super::http::{HeadRedactor, url_slash};
use super::{FILL, Rule, Tally};
use crate::flow::PROTO_TCP;
use crate::wire::{Addr, linktype};

pub struct Pseudonymizer {
    cipher: Aes128,
    pad: [u8; 16],
    key: [u8; 32],
    cache: FxHashMap<Addr, Addr>,
}

/// Where the pseudonymizer is in an HTTP header value being mapped (kept by the direction's
/// `HeadRedactor`): what the value is, and the label being mapped.
#[derive(Clone, Debug, Default)]
pub struct HttpValue {
    mode: ValueMode,
    cursor: NameCursor,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ValueMode {
    #[default]
    None,
    /// The whole value is a host name (Host).
    Host,
    /// A URL (Origin, Location, an absolute-form request target), before its first byte: a
    /// scheme, or `//` and an authority that keeps the current scheme, or a path.
    UrlStart,
    /// In the scheme; then `://`, then the authority, a host name.
    UrlScheme,
    UrlSlashes(u8),
    /// Every name-like character of the value (Via).
    Via,
    /// An IPv6 literal (`[2001:db8::1]`): every hex digit mapped, to the closing bracket.
    Bracket,
    /// Past the host part.
    Done,
}

/// Label-prefix state of the name being mapped.
#[derive(Clone, Default)]
pub struct NameCursor {
    label: Vec<u8>,
}

impl NameCursor {
    fn reset(&mut self) {
        self.label.clear();
    }
}

impl Pseudonymizer {
    pub fn new(key: &[u8; 32]) -> Pseudonymizer {
        let cipher = Aes128::new(&<[u8; 16]>::try_from(&key[..16]).expect("16 bytes").into());
        let mut pad = aes::Block::from(<[u8; 16]>::try_from(&key[16..]).expect("16 bytes"));
        cipher.encrypt_block(&mut pad);
        Pseudonymizer { cipher, pad: pad.into(), key: *key, cache: FxHashMap::default() }
    }

    // ------------------------------------------------------------ addresses

    /// Crypto-PAn over the first `bits` bits of `addr` (32 or 128).
    fn cryptopan(&self, addr: &[u8], bits: usize) -> Vec<u8> {
        let mut out = addr.to_vec();
        for i in 0..bits {
            // Input: the first i bits of the original, then the pad's bits.
            let mut input = self.pad;
            for b in 0..i {
                let bit = (addr[b / 8] >> (7 - b % 8)) & 1;
                let mask = 1 << (7 - b % 8);
                input[b / 8] = (input[b / 8] & !mask) | (bit << (7 - b % 8));
            }
            let mut block = aes::Block::from(input);
            self.cipher.encrypt_block(&mut block);
            let flip = block[0] >> 7;
            out[i / 8] ^= flip << (7 - i % 8);
        }
        out
    }

    pub fn addr(&mut self, a: Addr) -> Addr {
        if let Some(m) = self.cache.get(&a) {
            return *m;
        }
        let m = if a.v6 {
            Addr::v6(self.cryptopan(&a.bytes, 128).try_into().expect("16 bytes"))
        } else {
            Addr::v4(self.cryptopan(&a.bytes[..4], 32).try_into().expect("4 bytes"))
        };
        self.cache.insert(a, m);
        m
    }

    pub fn mac(&self, m: [u8; 6]) -> [u8; 6] {
        if m == [0xff; 6] || m == [0; 6] {
            return m;
        }
        let mut block = [0u8; 16];
        block[..6].copy_from_slice(&m);
        block[6] = 0x4d; // domain separation from Crypto-PAn inputs
        let mut b = aes::Block::from(block);
        self.cipher.encrypt_block(&mut b);
        let mut out = [0u8; 6];
        out.copy_from_slice(&b[..6]);
        let flags = m[0] & 0x03;
        if flags & 0x02 == 0 {
            // Globally administered: the OUI names the vendor, which helps a diagnosis.
            out[..3].copy_from_slice(&m[..3]);
        } else {
            out[0] = (out[0] & !0x03) | flags;
        }
        out
    }

    // ------------------------------------------------------------ names

    /// The pseudonym of one name character, given the label so far (which it extends).
    fn name_char(&self, cur: &mut NameCursor, c: u8) -> u8 {
        if !c.is_ascii_alphanumeric() {
            // Separators (dots, hyphens, colons) stay; a dot starts a new label.
            if c == b'.' {
                cur.reset();
            }
            return c;
        }
        cur.label.push(c.to_ascii_lowercase());
        let mut h = Sha1::new();
        h.update(self.key);
        h.update(&cur.label);
        let d = h.finalize();
        if c.is_ascii_digit() { b'0' + d[0] % 10 } else { b'a' + d[0] % 26 }
    }

    /// Maps a dotted name in place.
    pub fn name(&self, name: &mut [u8]) {
        let mut cur = NameCursor::default();
        for c in name.iter_mut() {
            *c = self.name_char(&mut cur, *c);
        }
    }

    // ------------------------------------------------------------ packets

    fn map_addr_at(&mut self, frame: &mut [u8], at: usize, v6: bool) -> Option<(u16, u16)> {
        let n = if v6 { 16 } else { 4 };
        let bytes = frame.get(at..at + n)?;
        let a = if v6 { Addr::v6(bytes.try_into().ok()?) } else { Addr::v4(bytes.try_into().ok()?) };
        let old = crate::wire::checksum::sum(bytes);
        let m = self.addr(a);
        frame[at..at + n].copy_from_slice(&m.bytes[..n]);
        Some((old, crate::wire::checksum::sum(&frame[at..at + n])))
    }

    fn map_mac_at(&self, frame: &mut [u8], at: usize) {
        if let Some(b) = frame.get(at..at + 6) {
            let m = self.mac(b.try_into().expect("6 bytes"));
            frame[at..at + 6].copy_from_slice(&m);
        }
    }

    /// Link-layer addresses of any frame.
    fn link(&self, link_type: u32, frame: &mut [u8]) {
        match link_type {
            linktype::ETHERNET => {
                self.map_mac_at(frame, 0);
                self.map_mac_at(frame, 6);
            }
            linktype::LINUX_SLL if frame.get(4..6) == Some(&[0, 6]) => self.map_mac_at(frame, 6),
            linktype::LINUX_SLL2 if frame.get(11) == Some(&6) => self.map_mac_at(frame, 12),
            linktype::IEEE802_11 => self.wifi(frame, 0),
            linktype::IEEE802_11_RADIOTAP => {
                if let Some(b) = frame.get(2..4) {
                    self.wifi(frame, usize::from(u16::from_le_bytes([b[0], b[1]])));
                }
            }
            _ => {}
        }
    }

    /// The addresses of an 802.11 header: three in management and data frames (four between
    /// access points), one or two in control frames.
    fn wifi(&self, frame: &mut [u8], at: usize) {
        let Some(fc) = frame.get(at..at + 2) else {
            return;
        };
        let (kind, subtype, flags) = ((fc[0] >> 2) & 0x3, fc[0] >> 4, fc[1]);
        let count = match kind {
            0 => 3,
            2 if flags & 0x03 == 0x03 => 4,
            2 => 3,
            1 if matches!(subtype, 0x8..=0xb | 0xe | 0xf) => 2,
            _ => 1,
        };
        // The fourth address follows the sequence control field.
        for off in [4, 10, 16, 24].into_iter().take(count) {
            self.map_mac_at(frame, at + off);
        }
    }

    /// The outer layers of a tunnelled packet: each outer IP header's addresses (IPv4 header
    /// checksum updated) and the MAC addresses of a carried Ethernet frame. Outer UDP and GRE
    /// checksums are recomputed by the caller once everything inside is rewritten.
    pub fn tunnels(&mut self, frame: &mut [u8], tunnels: &crate::wire::Tunnels, tally: &mut Tally) {
        for layer in tunnels.iter() {
            self.ip_addresses(frame, layer.ip, tally);
            if let Some(e) = layer.ether {
                self.map_mac_at(frame, e);
                self.map_mac_at(frame, e + 6);
            }
        }
    }

    /// Frames that are not TCP/UDP over IP: link addresses, ARP, and the IP header of other
    /// IP protocols (whose payload — an ICMP error quotes the original headers — is filled).
    pub fn link_addresses(&mut self, link_type: u32, frame: &mut [u8], tally: &mut Tally) {
        self.link(link_type, frame);
        let Some((ip, v6)) = crate::wire::ip_offset(link_type, frame) else {
            // ARP for IPv4 over Ethernet, VLAN-tagged or not: sender and target hardware and
            // protocol addresses.
            if link_type == linktype::ETHERNET
                && let Some((0x0806, at)) = crate::wire::ethertype(frame, 0)
                && frame.len() >= at + 28
            {
                self.map_mac_at(frame, at + 8);
                self.map_addr_at(frame, at + 14, false);
                self.map_mac_at(frame, at + 18);
                self.map_addr_at(frame, at + 24, false);
                tally.add(Rule::PseudonymizedAddress, 8);
            }
            return;
        };
        // The payload (an ICMP error quotes the original headers) was filled by the caller.
        self.ip_addresses(frame, ip, tally);
        if v6 {
            // ICMPv6's checksum covers the addresses just mapped.
            let end = ip + 40 + usize::from(u16::from_be_bytes([frame[ip + 4], frame[ip + 5]]));
            if frame[ip + 6] == 58 && end <= frame.len() && end >= ip + 48 {
                let v = crate::wire::checksum::icmp(frame, ip, ip + 40, end, true);
                frame[ip + 42..ip + 44].copy_from_slice(&v.to_be_bytes());
            }
        } else {
            // An ICMP redirect names a gateway in its header (RFC 792).
            let l4 = ip + usize::from(frame[ip] & 0x0f) * 4;
            if frame[ip + 9] == 1 && frame.get(l4) == Some(&5) && frame.len() >= l4 + 8 {
                self.map_addr_at(frame, l4 + 4, false);
                let v = crate::wire::checksum::icmp(frame, ip, l4, frame.len(), false);
                frame[l4 + 2..l4 + 4].copy_from_slice(&v.to_be_bytes());
            }
            if let Some(mut h) = crate::wire::view::Ipv4::new_checked(&mut frame[ip..]) {
                h.fill_checksum();
            }
        }
    }

    /// An IP header's source and destination (IPv4: options and header checksum too); returns
    /// whether it is IPv6 and, per address, the sums before and after (for the transport
    /// checksum's pseudo-header).
    fn ip_addresses(&mut self, frame: &mut [u8], ip: usize, tally: &mut Tally) -> (bool, SumChange, SumChange) {
        use crate::wire::checksum::sum;
        use crate::wire::view::{Ipv4, Ipv6};
        let Some(header) = frame.get_mut(ip..) else { return (false, None, None) };
        if let Some(mut h) = Ipv4::new_checked(&mut *header) {
            let (src, dst) = (h.src(), h.dst());
            let map =
                |p: &mut Self, a: [u8; 4]| -> [u8; 4] { p.addr(Addr::v4(a)).bytes[..4].try_into().expect("4 bytes") };
            let (s2, d2) = (map(self, src), map(self, dst));
            h.set_src(s2);
            h.set_dst(d2);
            // Options (record route, timestamps, source routes) carry addresses: replaced by
            // no-operation options, the header's length unchanged.
            let options = h.options_mut();
            options.fill(1);
            tally.add(Rule::PseudonymizedAddress, 8 + options.len());
            h.fill_checksum();
            return (false, Some((sum(&src), sum(&s2))), Some((sum(&dst), sum(&d2))));
        }
        let Some(mut h) = Ipv6::new_checked(&mut *header) else { return (false, None, None) };
        let (src, dst) = (h.src(), h.dst());
        let (s2, d2) = (self.addr(Addr::v6(src)).bytes, self.addr(Addr::v6(dst)).bytes);
        h.set_src(s2);
        h.set_dst(d2);
        tally.add(Rule::PseudonymizedAddress, 32);
        if let Some((first, n, _)) = crate::wire::checksum::ipv6_routing_addresses(frame, ip) {
            // A routing header's addresses are the route: mapped like the header's own.
            for k in 0..n {
                self.map_addr_at(frame, first + k * 16, true);
            }
            tally.add(Rule::PseudonymizedAddress, n * 16);
        }
        (true, Some((sum(&src), sum(&s2))), Some((sum(&dst), sum(&d2))))
    }

    /// The IP header's addresses and the link addresses of a TCP/UDP frame, with the IPv4
    /// header checksum and the transport checksum (pseudo-header) updated.
    pub fn ip_and_link(
        &mut self,
        link_type: u32,
        frame: &mut [u8],
        ip: usize,
        l4: usize,
        proto: u8,
        tally: &mut Tally,
    ) {
        self.link(link_type, frame);
        let (_, a, b) = self.ip_addresses(frame, ip, tally);
        // The transport checksum covers the addresses (pseudo-header); a zero UDP one is none.
        if let Some(mut t) = crate::wire::view::Transport::new_checked(&mut frame[l4..], proto)
            && !(proto != PROTO_TCP && t.checksum() == 0)
        {
            let mut hc = t.checksum();
            for (old, new) in [a, b].into_iter().flatten() {
                hc = crate::wire::checksum::update(hc, old, new);
            }
            t.set_checksum(hc);
        }
    }

    /// A DNS message in place: names, A/AAAA answers; other record data that could carry
    /// names or addresses is filled.
    pub fn dns_message(&mut self, msg: &mut [u8], tally: &mut Tally) {
        if msg.len() < 12 {
            return;
        }
        let count = |i: usize| usize::from(u16::from_be_bytes([msg[i], msg[i + 1]]));
        let (qd, rrs) = (count(4), count(6) + count(8) + count(10));
        let mut at = 12;
        // A malformed record ends the walk: what follows it goes (it may hold names and
        // addresses this walk cannot find).
        let fail = |msg: &mut [u8], at: usize, tally: &mut Tally| {
            let at = at.min(msg.len());
            tally.add(Rule::Unparsed, msg.len() - at);
            msg[at..].fill(0);
        };
        for _ in 0..qd {
            let Some(end) = self.dns_name(msg, at, tally) else {
                return fail(msg, at, tally);
            };
            at = end + 4;
        }
        for _ in 0..rrs {
            let Some(end) = self.dns_name(msg, at, tally) else {
                return fail(msg, at, tally);
            };
            if end + 10 > msg.len() {
                return fail(msg, at, tally);
            }
            let rtype = u16::from_be_bytes([msg[end], msg[end + 1]]);
            let rdlen = usize::from(u16::from_be_bytes([msg[end + 8], msg[end + 9]]));
            let rd = end + 10;
            if rd + rdlen > msg.len() {
                return fail(msg, at, tally);
            }
            match (rtype, rdlen) {
                (1, 4) => {
                    let m = self.addr(Addr::v4(msg[rd..rd + 4].try_into().expect("4 bytes")));
                    msg[rd..rd + 4].copy_from_slice(&m.bytes[..4]);
                    tally.add(Rule::PseudonymizedAddress, 4);
                }
                (28, 16) => {
                    let m = self.addr(Addr::v6(msg[rd..rd + 16].try_into().expect("16 bytes")));
                    msg[rd..rd + 16].copy_from_slice(&m.bytes);
                    tally.add(Rule::PseudonymizedAddress, 16);
                }
                // CNAME, NS, PTR, DNAME: a name.
                (5 | 2 | 12 | 39, _) => {
                    let _ = self.dns_name(msg, rd, tally);
                }
                // MX: a preference, then a name; SRV: priority, weight and port, then a name;
                // SOA: the primary server's and the mailbox's names, then five numbers. (Filled,
                // they made the rest of the message malformed to every reader.)
                (15, _) => self.rdata_names(msg, rd..rd + rdlen, 2, 1, 0, tally),
                (33, _) => self.rdata_names(msg, rd..rd + rdlen, 6, 1, 0, tally),
                (6, _) => self.rdata_names(msg, rd..rd + rdlen, 0, 2, 20, tally),
                // OPT (EDNS): option codes and lengths stay; their data (a client subnet, a
                // cookie) goes.
                (41, _) => {
                    let mut o = rd;
                    while o + 4 <= rd + rdlen {
                        let len = usize::from(u16::from_be_bytes([msg[o + 2], msg[o + 3]]));
                        let data = (o + 4)..(o + 4 + len).min(rd + rdlen);
                        tally.add(Rule::PseudonymizedAddress, data.len());
                        msg[data].fill(0);
                        o += 4 + len;
                    }
                }
                _ => {
                    msg[rd..rd + rdlen].fill(FILL);
                    tally.add(Rule::Unparsed, rdlen);
                }
            }
            at = rd + rdlen;
        }
    }

    /// Record data of `fixed` bytes that stay, then `names` names that are mapped, then
    /// `trailer` bytes (numbers) that stay; anything else in it (a name running past it,
    /// bytes left over) is filled.
    fn rdata_names(
        &self,
        msg: &mut [u8],
        rdata: std::ops::Range<usize>,
        fixed: usize,
        names: usize,
        trailer: usize,
        tally: &mut Tally,
    ) {
        let mut at = (rdata.start + fixed).min(rdata.end);
        let mut whole = rdata.start + fixed <= rdata.end;
        for _ in 0..names {
            // (A name is walked only from inside the data: from its end, the walk would map
            // the next record's owner name, which is mapped when its turn comes.)
            match (whole && at < rdata.end).then(|| self.dns_name(msg, at, tally)).flatten() {
                Some(end) if end <= rdata.end => at = end,
                _ => whole = false,
            }
        }
        if !whole || rdata.end - at != trailer {
            tally.add(Rule::Unparsed, rdata.end - at);
            msg[at..rdata.end].fill(FILL);
        }
    }

    /// Maps the labels of a (possibly compressed) name at `at`; returns where it ends.
    fn dns_name(&self, msg: &mut [u8], mut at: usize, tally: &mut Tally) -> Option<usize> {
        loop {
            let len = usize::from(*msg.get(at)?);
            if len == 0 {
                return Some(at + 1);
            }
            if len & 0xc0 == 0xc0 {
                // A pointer to a name mapped where it first appeared.
                return Some(at + 2);
            }
            let label = msg.get_mut(at + 1..at + 1 + len)?;
            let mut cur = NameCursor::default();
            for c in label.iter_mut() {
                *c = self.name_char(&mut cur, *c);
            }
            tally.add(Rule::PseudonymizedName, len);
            at += 1 + len;
        }
    }

    /// Called for every head byte: maps host names in Host, Origin, Location, Via. `kept`:
    /// the byte stays (else the head reader overwrote it, and `byte` is what it was): an
    /// overwritten byte still moves a URL from its scheme to its authority, but is no part of
    /// a name (userinfo before a host starts the host afresh), and is not mapped.
    pub fn http_byte(&self, h: &mut HeadRedactor, byte: &mut u8, kept: bool, tally: &mut Tally) {
        let start = {
            let name = if h.in_request_target() { Some(&b"target"[..]) } else { h.current_value_name() };
            name.map(|name| match name {
                b"host" => ValueMode::Host,
                // "1.1 proxy.example.net:8080": names (and the protocol version) mapped.
                b"via" => ValueMode::Via,
                // CONNECT's target is an authority (`host:port`), not a URL.
                b"target" if h.method_is_connect() => ValueMode::Host,
                b"origin" | b"location" | b"target" => ValueMode::UrlStart,
                _ => ValueMode::Done,
            })
        };
        let v = &mut h.pseudo;
        let Some(start) = start else {
            *v = HttpValue::default();
            return;
        };
        if v.mode == ValueMode::None {
            v.mode = start;
        }
        let c = *byte;
        if c == b' ' || c == b'\t' || c == b'\r' {
            return;
        }
        if !kept {
            match v.mode {
                ValueMode::Host | ValueMode::Bracket | ValueMode::Via => {
                    v.cursor.reset();
                    return;
                }
                ValueMode::UrlStart | ValueMode::UrlScheme | ValueMode::UrlSlashes(_) => {}
                ValueMode::None | ValueMode::Done => return,
            }
        }
        match v.mode {
            ValueMode::Host => {
                if c == b'[' {
                    v.mode = ValueMode::Bracket;
                    return;
                }
                if c == b':' || c == b'/' || c == b'?' {
                    v.mode = ValueMode::Done;
                    return;
                }
                *byte = self.name_char(&mut v.cursor, c);
                tally.add(Rule::PseudonymizedName, 1);
            }
            ValueMode::Bracket => {
                if c == b']' {
                    v.mode = ValueMode::Done;
                    return;
                }
                *byte = self.name_char(&mut v.cursor, c);
                tally.add(Rule::PseudonymizedAddress, 1);
            }
            ValueMode::Via => {
                if c == b',' || c == b':' {
                    v.cursor.reset();
                } else {
                    *byte = self.name_char(&mut v.cursor, c);
                    tally.add(Rule::PseudonymizedName, 1);
                }
            }
            ValueMode::UrlStart => {
                v.mode = if url_slash(c) {
                    // `//host/…` (backslashes too); a path (`/login`) ends it at its next byte.
                    ValueMode::UrlSlashes(1)
                } else if c.is_ascii_alphanumeric() {
                    ValueMode::UrlScheme
                } else {
                    ValueMode::Done
                };
            }
            ValueMode::UrlScheme => {
                if c == b':' {
                    v.mode = ValueMode::UrlSlashes(0);
                } else if !(c.is_ascii_alphanumeric() || b"+-.".contains(&c)) {
                    // A relative reference ("/login"): no host in it.
                    v.mode = ValueMode::Done;
                }
            }
            ValueMode::UrlSlashes(n) => {
                v.mode = match (c, n) {
                    (c, 0) if url_slash(c) => ValueMode::UrlSlashes(1),
                    (c, _) if url_slash(c) => ValueMode::Host,
                    _ => ValueMode::Done,
                };
            }
            ValueMode::None | ValueMode::Done => {}
        }
    }

    /// One byte of a ClientHello body that `HelloCursor::step` found in a server name: mapped.
    pub fn client_hello_name_byte(&self, cur: &mut HelloCursor, byte: &mut u8, tally: &mut Tally) {
        *byte = self.name_char(&mut cur.name, *byte);
        tally.add(Rule::PseudonymizedName, 1);
    }
}

/// Applies address changes (old sum, new sum) to the checksum at `at`.
/// The sums of rewritten bytes before and after (None: nothing was rewritten).
type SumChange = Option<(u16, u16)>;

/// Walks a ClientHello body (RFC 8446 §4.1.2) one byte at a time, across record and
/// segment boundaries, to find the server_name entries (RFC 6066 §3) and the extensions that
/// carry resumable secrets: session tickets (RFC 5077), pre-shared-key identities (RFC 8446
/// §4.2.11) and the HelloRetryRequest cookie (§4.2.2).
#[derive(Clone, Debug)]
pub struct HelloCursor {
    buf: [u8; 4],
    buf_len: usize,
    field: Field,
    /// Bytes left in the current field or extension.
    left: usize,
    /// Where a skipped field leads.
    after_skip: Field,
    name_left: usize,
    name: NameCursor,
    /// The byte just stepped was inside a secret-bearing extension.
    secret: bool,
}

impl Default for HelloCursor {
    fn default() -> Self {
        // legacy_version (2) and random (32) come first.
        HelloCursor {
            buf: [0; 4],
            buf_len: 0,
            field: Field::Fixed,
            left: 34,
            after_skip: Field::Done,
            name_left: 0,
            name: NameCursor::default(),
            secret: false,
        }
    }
}

impl std::fmt::Debug for NameCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameCursor")
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Field {
    Fixed,
    SessionIdLen,
    Skip,
    CipherLen,
    CompLen,
    ExtTotal,
    ExtHeader,
    ExtSkip,
    /// An extension whose data is a resumption secret.
    ExtSecret,
    SniListLen,
    SniEntryHeader,
    SniName,
    Done,
}

/// What a ClientHello byte is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelloByte {
    Plain,
    /// A character of a server name.
    Name,
    /// Inside a session ticket, a PSK identity or a cookie: overwritten.
    Secret,
}

impl HelloCursor {
    fn take(&mut self, c: u8, n: usize) -> Option<[u8; 4]> {
        self.buf[self.buf_len] = c;
        self.buf_len += 1;
        if self.buf_len == n {
            self.buf_len = 0;
            Some(self.buf)
        } else {
            None
        }
    }

    /// Advances by one byte of the ClientHello body and says what it is.
    pub fn step(&mut self, c: u8) -> HelloByte {
        match self.advance(c) {
            true => HelloByte::Name,
            false if self.secret => HelloByte::Secret,
            false => HelloByte::Plain,
        }
    }

    fn advance(&mut self, c: u8) -> bool {
        self.secret = false;
        match self.field {
            Field::Fixed => {
                self.left -= 1;
                if self.left == 0 {
                    self.field = Field::SessionIdLen;
                }
            }
            Field::SessionIdLen => {
                self.left = usize::from(c);
                self.after_skip = Field::CipherLen;
                self.field = if self.left == 0 { Field::CipherLen } else { Field::Skip };
            }
            Field::Skip | Field::ExtSkip | Field::ExtSecret => {
                self.secret = self.field == Field::ExtSecret;
                self.left -= 1;
                if self.left == 0 {
                    self.field = self.after_skip;
                }
            }
            Field::CipherLen => {
                if let Some(b) = self.take(c, 2) {
                    self.left = usize::from(u16::from_be_bytes([b[0], b[1]]));
                    self.after_skip = Field::CompLen;
                    self.field = if self.left == 0 { Field::CompLen } else { Field::Skip };
                }
            }
            Field::CompLen => {
                self.left = usize::from(c);
                self.after_skip = Field::ExtTotal;
                self.field = if self.left == 0 { Field::ExtTotal } else { Field::Skip };
            }
            Field::ExtTotal => {
                if self.take(c, 2).is_some() {
                    self.field = Field::ExtHeader;
                }
            }
            Field::ExtHeader => {
                if let Some(b) = self.take(c, 4) {
                    let kind = u16::from_be_bytes([b[0], b[1]]);
                    self.left = usize::from(u16::from_be_bytes([b[2], b[3]]));
                    self.after_skip = Field::ExtHeader;
                    self.field = match (kind, self.left) {
                        (_, 0) => Field::ExtHeader,
                        (0, _) => Field::SniListLen,
                        (35 | 41 | 44, _) => Field::ExtSecret,
                        _ => Field::ExtSkip,
                    };
                }
            }
            Field::SniListLen => {
                if self.take(c, 2).is_some() {
                    self.left = self.left.saturating_sub(2);
                    self.field = if self.left == 0 { Field::ExtHeader } else { Field::SniEntryHeader };
                }
            }
            Field::SniEntryHeader => {
                if let Some(b) = self.take(c, 3) {
                    self.left = self.left.saturating_sub(3);
                    self.name_left = usize::from(u16::from_be_bytes([b[1], b[2]]));
                    self.name.reset();
                    self.field = if self.name_left == 0 { Field::SniEntryHeader } else { Field::SniName };
                }
            }
            Field::SniName => {
                self.left = self.left.saturating_sub(1);
                self.name_left -= 1;
                if self.name_left == 0 {
                    self.field = if self.left == 0 { Field::ExtHeader } else { Field::SniEntryHeader };
                }
                return true;
            }
            Field::Done => {}
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> Pseudonymizer {
        Pseudonymizer::new(&[7; 32])
    }

    fn common_prefix(a: &[u8], b: &[u8]) -> u32 {
        let mut n = 0;
        for (x, y) in a.iter().zip(b) {
            let d = (x ^ y).leading_zeros();
            n += d;
            if d < 8 {
                break;
            }
        }
        n
    }

    proptest::proptest! {
        /// Two addresses sharing exactly k leading bits map to addresses sharing exactly k.
        #[test]
        fn cryptopan_preserves_exactly_the_shared_prefix_v4(a: u32, k in 0u32..32, noise: u32, key: [u8; 32]) {
            let b = a ^ (1u32 << (31 - k)) ^ (noise & ((1u32 << (31 - k)) - 1));
            let mut p = Pseudonymizer::new(&key);
            let (ma, mb) = (p.addr(Addr::v4(a.to_be_bytes())), p.addr(Addr::v4(b.to_be_bytes())));
            proptest::prop_assert_eq!(common_prefix(&ma.bytes[..4], &mb.bytes[..4]), k);
            // Determinism: a second mapper with the same key agrees.
            proptest::prop_assert_eq!(Pseudonymizer::new(&key).addr(Addr::v4(a.to_be_bytes())), ma);
        }

        #[test]
        fn cryptopan_preserves_exactly_the_shared_prefix_v6(a: u128, k in 0u32..128, noise: u128) {
            let flip = 1u128 << (127 - k);
            let b = a ^ flip ^ (noise & (flip - 1));
            let mut p = Pseudonymizer::new(&[3; 32]);
            let (ma, mb) = (p.addr(Addr::v6(a.to_be_bytes())), p.addr(Addr::v6(b.to_be_bytes())));
            proptest::prop_assert_eq!(common_prefix(&ma.bytes, &mb.bytes), k);
        }
    }

    #[test]
    fn same_key_same_mapping_other_key_other_mapping() {
        let a = Addr::v4([10, 1, 2, 3]);
        assert_eq!(p().addr(a), p().addr(a));
        assert_ne!(Pseudonymizer::new(&[8; 32]).addr(a), p().addr(a));
        let mut n1 = *b"ws.example.com";
        let mut n2 = *b"WS.example.com";
        p().name(&mut n1);
        p().name(&mut n2);
        assert_eq!(n1, n2);
        assert_ne!(&n1, b"ws.example.com");
        assert_eq!(n1[2], b'.');
    }

    #[test]
    fn mac_keeps_vendor_and_group_bits() {
        let p = p();
        let m = p.mac([0x00, 0x1b, 0x21, 0x12, 0x34, 0x56]);
        assert_eq!(&m[..3], &[0x00, 0x1b, 0x21]);
        assert_ne!(&m[3..], &[0x12, 0x34, 0x56]);
        let local = p.mac([0x02, 0, 0, 0, 0, 1]);
        assert_eq!(local[0] & 3, 2);
        assert_eq!(p.mac([0xff; 6]), [0xff; 6]);
    }

    #[test]
    fn sni_is_found_across_any_split() {
        let rec = crate::proto::tls::tests::client_hello("ws.test", &["http/1.1"]);
        let p = p();
        let _ = p;
        for split in [1, 7, 60, 100, rec.len() - 3] {
            let p = Pseudonymizer::new(&[7; 32]);
            // The ClientHello body: after the record header (5) and handshake header (4).
            let mut body = rec[9..].to_vec();
            let mut cur = HelloCursor::default();
            let mut t = Tally::default();
            let (a, b) = body.split_at_mut(split.min(rec.len() - 9));
            for byte in a.iter_mut().chain(b.iter_mut()) {
                if cur.step(*byte) == HelloByte::Name {
                    p.client_hello_name_byte(&mut cur, byte, &mut t);
                }
            }
            let mut expect = *b"ws.test";
            Pseudonymizer::new(&[7; 32]).name(&mut expect);
            let found = body.windows(7).any(|w| w == expect);
            assert!(found, "split at {split}");
            assert!(!body.windows(7).any(|w| w == b"ws.test"));
        }
    }
}
