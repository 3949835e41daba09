//! DNS messages (RFC 1035) as far as trimming and diagnosis need them: the names asked
//! about, the addresses answered, and the response code.

use simple_dns::rdata::RData;

use crate::wire::Addr;

pub const RCODE_NXDOMAIN: u8 = 3;
pub const RCODE_SERVFAIL: u8 = 2;
pub const RCODE_REFUSED: u8 = 5;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    pub id: u16,
    pub response: bool,
    pub rcode: u8,
    /// Question names and CNAME targets, lower-case, without the trailing dot.
    pub names: Vec<String>,
    pub addrs: Vec<Addr>,
}

impl Message {
    /// A failing lookup: always kept, it is often the whole story.
    pub fn is_failure(&self) -> bool {
        self.response && matches!(self.rcode, RCODE_NXDOMAIN | RCODE_SERVFAIL | RCODE_REFUSED)
    }
}

fn name(n: &simple_dns::Name<'_>) -> String {
    n.to_string().trim_end_matches('.').to_ascii_lowercase()
}

/// A name as tables compare it: a hash of its lower-case form without the trailing dot, so that
/// a flood of lookups costs eight bytes a name, not a string.
pub fn name_key(name: &str) -> u64 {
    key_of(name.as_bytes())
}

/// Eight bytes a step: a byte-at-a-time hash was a chain of one multiply per character, a
/// tenth of the time of a query flood. The length goes in first, so that the zeros padding
/// the last word tell no name from a longer one.
fn key_of(name: &[u8]) -> u64 {
    let mut h = name.len() as u64;
    for chunk in name.chunks(8) {
        let mut w = [0u8; 8];
        for (d, s) in w.iter_mut().zip(chunk) {
            *d = s.to_ascii_lowercase();
        }
        h = (h.rotate_left(5) ^ u64::from_le_bytes(w)).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    h
}

/// `key_of` of the first `len` bytes of `name`, which are in lower case and followed by zeros
/// up to a multiple of eight: the words are read as they lie.
fn key_of_lower(name: &[u8; 256], len: usize) -> u64 {
    let mut h = len as u64;
    for w in name[..len.next_multiple_of(8)].chunks_exact(8) {
        let w = u64::from_le_bytes(w.try_into().expect("eight bytes"));
        h = (h.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
    h
}

/// What the one pass needs of a plain query: its id and the `name_key` of the name it asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query {
    pub id: u16,
    pub name_key: u64,
}

/// Reads a query without building strings (a flood of queries then costs a hash each, not a
/// parse): only the plainest shape — a query with one question in uncompressed labels of
/// letters, digits, `-` and `_`, and nothing after it. Anything else is None, for `parse_all`.
/// The name asked is written into `name`, dotted and in lower case as `parse` gives it:
/// letters, digits, `-`, `_` and dots, ASCII (made a `str` only where one is needed). Where
/// both read a message, they agree: `name_key(&parse(b).names[0])` is the query's `name_key`.
pub fn query_named<'a>(b: &[u8], name: &'a mut [u8; 256]) -> Option<(Query, &'a [u8])> {
    let (id, n) = plain_query(b, name)?;
    Some((Query { id, name_key: key_of_lower(name, n) }, &name[..n]))
}

/// Each byte a plain label may hold, lower-cased; 0 for any other. One lookup a character: the
/// test of four ranges and the copy, dot and lower-case passes after it were most of the cost
/// of reading a query.
static LABEL_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            t[c] = b.to_ascii_lowercase();
        }
        c += 1;
    }
    t
};

/// The id of a plain query (see `query_named`) and its name's length, the name written dotted and in
/// lower case into `name` (zeros after it).
fn plain_query(b: &[u8], name: &mut [u8; 256]) -> Option<(u16, usize)> {
    if b.len() < 12 || b[2] & 0x80 != 0 || b[4..12] != [0, 1, 0, 0, 0, 0, 0, 0] {
        return None;
    }
    let mut at = 12;
    let mut out = 0usize;
    loop {
        let n = usize::from(*b.get(at)?);
        if n == 0 {
            break;
        }
        // At most 254 bytes of labels and their lengths (RFC 1035's 255 with the root's).
        if n > 63 || out + n + 1 > 254 {
            return None;
        }
        let label = b.get(at + 1..at + 1 + n)?;
        if out > 0 {
            name[out - 1] = b'.';
        }
        for (d, &s) in name[out..out + n].iter_mut().zip(label) {
            *d = LABEL_BYTE[usize::from(s)];
            if *d == 0 {
                return None;
            }
        }
        out += n + 1;
        at += 1 + n;
    }
    // Type and class, then the end of the message. The common types of class IN only: the
    // full parse (simple-dns) refuses many others, and the two must agree.
    if out == 0 || b.len() != at + 5 {
        return None;
    }
    let qtype = u16::from_be_bytes([b[at + 1], b[at + 2]]);
    if !matches!(qtype, 1 | 2 | 5 | 6 | 12 | 15 | 16 | 28 | 33 | 64 | 65 | 255) || b[at + 3..at + 5] != [0, 1] {
        return None;
    }
    Some((u16::from_be_bytes([b[0], b[1]]), out - 1))
}

/// A message's id, flags, names and addresses. A plain query (see `query_named`: most of a
/// flood of lookups) is read by hand, with one string; the rest through `parse_all`.
pub fn parse(b: &[u8]) -> Option<Message> {
    let mut name = [0u8; 256];
    if let Some((id, n)) = plain_query(b, &mut name) {
        // Letters, digits, `-` and `_` only: ASCII.
        let name = String::from_utf8(name[..n].to_vec()).ok()?;
        return Some(Message { id, response: false, rcode: b[3] & 0x0f, names: vec![name], addrs: Vec::new() });
    }
    parse_all(b)
}

/// `parse` of a message that is no plain query (`query_named` said None): through simple-dns.
pub fn parse_all(b: &[u8]) -> Option<Message> {
    if b.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([b[0], b[1]]);
    let response = b[2] & 0x80 != 0;
    let rcode = b[3] & 0x0f;
    let mut m = Message { id, response, rcode, ..Default::default() };
    // simple-dns rejects some real-world oddities; the header alone still carries the rcode.
    if let Ok(p) = simple_dns::Packet::parse(b) {
        m.names.extend(p.questions.iter().map(|q| name(&q.qname)));
        for rr in &p.answers {
            match &rr.rdata {
                RData::A(a) => m.addrs.push(Addr::v4(a.address.to_be_bytes())),
                RData::AAAA(a) => m.addrs.push(Addr::v6(a.address.to_be_bytes())),
                RData::CNAME(c) => m.names.push(name(&c.0)),
                _ => {}
            }
        }
    }
    Some(m)
}

/// DNS over TCP (RFC 1035 §4.2.2; RFC 7766) frames each message with a two-byte length.
/// What the bytes at the start of `b` are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpFrame {
    /// A message of this many bytes follows the two length bytes, its records ending exactly
    /// at its end (so `parse` reads it: it refuses no message of a header's length).
    Whole(usize),
    /// Too few bytes yet, and what there is could be DNS.
    Partial,
    NotDns,
}

/// Reads the frame at the start of a DNS-over-TCP stream. A partial message must already
/// look like a DNS header (one or a few questions, a standard opcode), so that another
/// protocol on port 53 is not held waiting for a length it never meant.
pub fn tcp_frame(b: &[u8]) -> TcpFrame {
    let Some(len) = b.get(..2).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]]))) else {
        return TcpFrame::Partial;
    };
    if len < 12 {
        return TcpFrame::NotDns;
    }
    match b.get(2..2 + len) {
        Some(m) if walk(m) == Some(len) => TcpFrame::Whole(len),
        Some(_) => TcpFrame::NotDns,
        None => {
            let h = &b[2..];
            let opcode = h.get(2).map_or(0, |f| (f >> 3) & 0x0f);
            let questions = h.get(4..6).map_or(0, |q| u16::from_be_bytes([q[0], q[1]]));
            if opcode > 6 || questions > 4 { TcpFrame::NotDns } else { TcpFrame::Partial }
        }
    }
}

/// Where a message's last record ends, walking its sections as the header counts them
/// (names, fixed fields, record data lengths); None if they run past its end. A frame over
/// TCP is DNS only if this is its length: bytes after the records are not DNS.
fn walk(m: &[u8]) -> Option<usize> {
    let count = |i: usize| usize::from(u16::from_be_bytes([m[i], m[i + 1]]));
    if m.len() < 12 {
        return None;
    }
    let (questions, records) = (count(4), count(6) + count(8) + count(10));
    let mut at = 12;
    for k in 0..questions + records {
        // A name: labels to the root, or up to a compression pointer.
        loop {
            let n = *m.get(at)?;
            match n {
                0 => {
                    at += 1;
                    break;
                }
                1..=63 => at += 1 + usize::from(n),
                0xc0..=0xff => {
                    m.get(at + 1)?;
                    at += 2;
                    break;
                }
                _ => return None,
            }
        }
        at += 4;
        if k >= questions {
            let rdlen = m.get(at + 4..at + 6).map(|l| usize::from(u16::from_be_bytes([l[0], l[1]])))?;
            at += 6 + rdlen;
        }
        if at > m.len() {
            return None;
        }
    }
    Some(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name`'s A record, built by simple-dns.
    fn query_for(id: u16, name: &str) -> Vec<u8> {
        let mut q = simple_dns::Packet::new_query(id);
        q.questions.push(simple_dns::Question::new(
            simple_dns::Name::new_unchecked(name),
            simple_dns::TYPE::A.into(),
            simple_dns::CLASS::IN.into(),
            false,
        ));
        q.build_bytes_vec().unwrap()
    }

    #[test]
    fn nxdomain_response_is_a_failure() {
        let mut bytes = query_for(7, "No-Such.test");
        bytes[2] |= 0x80;
        bytes[3] = (bytes[3] & 0xf0) | RCODE_NXDOMAIN;
        let m = parse(&bytes).unwrap();
        assert!(m.is_failure());
        assert_eq!(m.names, vec!["no-such.test"]);
    }

    /// The lean reader and the full parse agree wherever the lean one answers, on queries of
    /// every shape a small generator makes (names, types, extra sections, trailing bytes).
    #[test]
    fn query_agrees_with_parse() {
        let mut rnd = crate::test_rng::below(0x9e37_79b9_7f4a_7c15u64);
        let alphabet = b"aZ09-_.x\\\x01\xc0";
        let mut answered = 0;
        for _ in 0..100_000 {
            let rcode = if rnd(4) == 0 { rnd(16) as u8 } else { 0 };
            let mut m = vec![(rnd(256)) as u8, rnd(256) as u8, if rnd(8) == 0 { 0x81 } else { 0x01 }, rcode];
            let counts = [1 + u8::from(rnd(10) == 0), u8::from(rnd(10) == 0), 0, u8::from(rnd(10) == 0)];
            for c in counts {
                m.extend([0, c]);
            }
            for _ in 0..1 + rnd(4) {
                let len = rnd(12) as usize;
                m.push(len as u8);
                m.extend((0..len).map(|_| alphabet[rnd(alphabet.len() as u64) as usize]));
            }
            m.push(0);
            m.extend([0, [1, 5, 19, 28, 65, 255][rnd(6) as usize], 0, 1 + u8::from(rnd(8) == 0)]);
            if rnd(6) == 0 {
                m.push(rnd(256) as u8);
            }
            let mut text = [0u8; 256];
            let Some((q, _)) = query_named(&m, &mut text) else { continue };
            answered += 1;
            let full = parse_all(&m).expect("a query the lean reader read parses");
            assert_eq!(parse(&m).as_ref(), Some(&full), "{m:x?}");
            assert_eq!(full.id, q.id);
            assert_eq!(full.names.len(), 1, "{m:x?}");
            assert_eq!(name_key(&full.names[0]), q.name_key, "{m:x?} {:?}", full.names);
        }
        assert!(answered > 1000, "the generator made too few plain queries ({answered})");
    }

    /// Names at the length limit: the lean reader takes what the full parse takes, no more.
    #[test]
    fn query_at_the_length_limit_agrees_with_parse() {
        for total in 250..=258usize {
            // Labels of 63 and a last one to make `total` bytes of labels and lengths.
            let mut labels = Vec::new();
            let mut left = total;
            while left > 0 {
                let n = (left - 1).min(63);
                labels.push("aB3-_".repeat(13)[..n].to_string());
                left -= n + 1;
            }
            let m = query_for(7, &labels.join("."));
            let mut text = [0u8; 256];
            match query_named(&m, &mut text).map(|(q, _)| q) {
                Some(q) => {
                    let full = parse_all(&m).expect("parses");
                    assert_eq!(name_key(&full.names[0]), q.name_key, "{total}");
                    assert!(total <= 254, "{total}");
                }
                None => assert!(total > 254, "{total}"),
            }
        }
    }

    #[test]
    fn tcp_frames_are_length_prefixed_messages() {
        let m = query_for(9, "ws.test");
        let mut framed = (m.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&m);
        assert_eq!(tcp_frame(&framed), TcpFrame::Whole(m.len()));
        assert!(parse(&m).is_some(), "a whole frame is a message parse reads");
        framed.extend_from_slice(b"\x00\x0c");
        assert_eq!(tcp_frame(&framed), TcpFrame::Whole(m.len()), "what follows is the next frame");
        assert_eq!(tcp_frame(&framed[..1]), TcpFrame::Partial);
        assert_eq!(tcp_frame(&framed[..10]), TcpFrame::Partial);
        assert_eq!(tcp_frame(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), TcpFrame::NotDns);
        assert_eq!(tcp_frame(b"\x00\x05hello"), TcpFrame::NotDns);
        // A message with bytes after its last record is not DNS.
        let mut longer = ((m.len() + 4) as u16).to_be_bytes().to_vec();
        longer.extend_from_slice(&m);
        longer.extend_from_slice(b"PASS");
        assert_eq!(tcp_frame(&longer), TcpFrame::NotDns);
    }

    #[test]
    fn short_or_garbage_input_does_not_panic() {
        assert!(parse(&[1, 2, 3]).is_none());
        let _ = parse(&[0xff; 40]);
    }
}
