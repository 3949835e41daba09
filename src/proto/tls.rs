//! TLS records (RFC 8446 §5.1) and the ClientHello facts that decide whether a `wss://`
//! connection is kept: SNI and offered ALPN. The hello is parsed by tls-parser once its
//! handshake message is whole, which may take several records.

use tls_parser::{TlsExtension, TlsMessage, TlsMessageHandshake};

use super::units::{Header, Run, UnitFormat, run};

pub const CHANGE_CIPHER_SPEC: u8 = 20;
pub const ALERT: u8 = 21;
pub const HANDSHAKE: u8 = 22;
pub const APPLICATION_DATA: u8 = 23;
const RECORD_HEADER_BYTES: usize = 5;
/// A record body may be 2^14 bytes plus expansion (RFC 8446 §5.2 allows 2^14 + 256).
const MAX_RECORD_BODY: u16 = (1 << 14) + 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub content_type: u8,
    pub version: u16,
    pub len: u16,
}

pub struct Records;

impl UnitFormat for Records {
    type Header = RecordHeader;
    const MAX_HEADER_BYTES: usize = RECORD_HEADER_BYTES;
    /// A header is found invalid at its first byte that makes it so (content type, major
    /// version, length's high byte), not at its end: the scrubber keeps each header byte as
    /// it reads it.
    fn parse(b: &[u8]) -> Header<RecordHeader> {
        let invalid = b.first().is_some_and(|t| !(20..=24).contains(t))
            || b.get(1).is_some_and(|&major| major != 3)
            || b.get(3).is_some_and(|&high| u16::from(high) << 8 > MAX_RECORD_BODY);
        if invalid {
            return Header::Invalid;
        }
        if b.len() < RECORD_HEADER_BYTES {
            return Header::NeedMore;
        }
        let h = RecordHeader {
            content_type: b[0],
            version: u16::from_be_bytes([b[1], b[2]]),
            len: u16::from_be_bytes([b[3], b[4]]),
        };
        if h.len > MAX_RECORD_BODY {
            return Header::Invalid;
        }
        Header::Complete { header: h, len: RECORD_HEADER_BYTES, body: u64::from(h.len) }
    }
}

/// Whether a whole segment is a run of TLS record headers and bodies ending exactly at its
/// end: where records can be read again after bytes were lost, as Wireshark reads them.
pub fn segment_is_records(b: &[u8]) -> bool {
    !b.is_empty() && run::<Records>(b, |_| true) == Run::Exact
}

/// Does this stream start like a TLS handshake? `None` while too short to tell.
pub fn looks_like_tls(b: &[u8]) -> Option<bool> {
    match b {
        [] => None,
        [HANDSHAKE] => None,
        [HANDSHAKE, 3] | [HANDSHAKE, 3, _] => None,
        [HANDSHAKE, 3, minor, ..] => Some(*minor <= 4),
        _ => Some(false),
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientHello {
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    pub random: Vec<u8>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerHello {
    pub alpn: Option<String>,
    pub random: Vec<u8>,
    pub cipher: u16,
    /// The version agreed: `supported_versions` when present (TLS 1.3), else the legacy field.
    pub version: u16,
}

pub enum Hello<T> {
    NeedMore,
    NotTls,
    Parsed(T),
}

/// How far a walk of the records at the start of a stream has got (`HelloScan`, `walk_hello`).
#[derive(Clone, Copy, Debug, Default)]
pub struct HelloScan {
    /// Offset of the next record header (a head is at most 64 KiB).
    at: u32,
    /// Body bytes of the records walked, and the first four of them (the message header).
    body: u32,
    head: [u8; 4],
}

impl HelloScan {
    /// Bytes of the stream walked so far.
    pub fn walked(&self) -> usize {
        self.at as usize
    }
}

/// Where the walk of a first handshake message stands.
enum Walk {
    NeedMore,
    NotTls,
    /// The message is whole: its length (header included).
    Whole(usize),
}

/// Walks the handshake records at the start of `b` from where `scan` stopped, handing each
/// record's body to `body`, until the first handshake message is whole. The one walk behind
/// both `hello_pending` (which resumes it) and `first_handshake_message` (which gathers it).
fn walk_hello(b: &[u8], scan: &mut HelloScan, mut body: impl FnMut(&[u8])) -> Walk {
    loop {
        if scan.body >= 4 {
            let h = scan.head;
            let need = 4 + (u32::from(h[1]) << 16 | u32::from(h[2]) << 8 | u32::from(h[3]));
            if scan.body >= need {
                return Walk::Whole(need as usize);
            }
        }
        let Some(rest) = b.get(scan.at as usize..) else { return Walk::NotTls };
        let Header::Complete { header, len, body: n } = Records::parse(&rest[..rest.len().min(5)]) else {
            return if rest.len() < 5 && looks_like_tls(b) != Some(false) { Walk::NeedMore } else { Walk::NotTls };
        };
        if header.content_type != HANDSHAKE {
            return Walk::NotTls;
        }
        let end = len + n as usize;
        if rest.len() < end {
            return Walk::NeedMore;
        }
        let bytes = &rest[len..end];
        body(bytes);
        let have = scan.body.min(4) as usize;
        for (k, &c) in bytes.iter().take(4 - have).enumerate() {
            scan.head[have + k] = c;
        }
        // (A head is at most 64 KiB; past 2^32 the walk would stop and leave it to the parse.)
        scan.body = scan.body.saturating_add(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
        scan.at = scan.at.saturating_add(u32::try_from(end).unwrap_or(u32::MAX));
    }
}

/// Gathers the first handshake message from the records at the start of `b`.
fn first_handshake_message(b: &[u8]) -> Hello<Vec<u8>> {
    let mut msg = Vec::new();
    match walk_hello(b, &mut HelloScan::default(), |bytes| msg.extend_from_slice(bytes)) {
        Walk::NeedMore => Hello::NeedMore,
        Walk::NotTls => Hello::NotTls,
        Walk::Whole(need) => {
            msg.truncate(need);
            Hello::Parsed(msg)
        }
    }
}

/// Whether the first handshake message at the start of `b` is still incomplete: where
/// `first_handshake_message` (so `parse_client_hello`) says `NeedMore`. Resumes `scan`, left
/// by a call on a shorter prefix of the same bytes: a hello split into many records that
/// arrive one per segment is walked once, not once per segment (each parse walked and copied
/// every record again).
pub fn hello_pending(b: &[u8], scan: &mut HelloScan) -> bool {
    matches!(walk_hello(b, scan, |_| {}), Walk::NeedMore)
}

/// Parses the ClientHello at the start of a client's stream.
pub fn parse_client_hello(b: &[u8]) -> Hello<ClientHello> {
    let msg = match first_handshake_message(b) {
        Hello::Parsed(m) => m,
        Hello::NeedMore => return Hello::NeedMore,
        Hello::NotTls => return Hello::NotTls,
    };
    let Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ClientHello(ch)))) =
        tls_parser::parse_tls_message_handshake(&msg)
    else {
        return Hello::NotTls;
    };
    let mut out = ClientHello { random: ch.random.to_vec(), ..Default::default() };
    if let Some(ext) = ch.ext
        && let Ok((_, exts)) = tls_parser::parse_tls_client_hello_extensions(ext)
    {
        for e in exts {
            match e {
                TlsExtension::SNI(names) => {
                    out.sni = names.first().map(|(_, n)| String::from_utf8_lossy(n).to_ascii_lowercase())
                }
                TlsExtension::ALPN(protos) => {
                    out.alpn = protos.iter().map(|p| String::from_utf8_lossy(p).into_owned()).collect()
                }
                _ => {}
            }
        }
    }
    Hello::Parsed(out)
}

/// Parses the ServerHello at the start of a server's stream (the ALPN it selected).
pub fn parse_server_hello(b: &[u8]) -> Hello<ServerHello> {
    let msg = match first_handshake_message(b) {
        Hello::Parsed(m) => m,
        Hello::NeedMore => return Hello::NeedMore,
        Hello::NotTls => return Hello::NotTls,
    };
    let Ok((_, TlsMessage::Handshake(TlsMessageHandshake::ServerHello(sh)))) =
        tls_parser::parse_tls_message_handshake(&msg)
    else {
        return Hello::NotTls;
    };
    let mut out =
        ServerHello { random: sh.random.to_vec(), cipher: sh.cipher.0, version: sh.version.0, ..Default::default() };
    if let Some(ext) = sh.ext
        && let Ok((_, exts)) = tls_parser::parse_tls_server_hello_extensions(ext)
    {
        for e in exts {
            match e {
                TlsExtension::ALPN(p) => out.alpn = p.first().map(|p| String::from_utf8_lossy(p).into_owned()),
                TlsExtension::SupportedVersions(v) => {
                    if let Some(v) = v.first() {
                        out.version = v.0;
                    }
                }
                _ => {}
            }
        }
    }
    Hello::Parsed(out)
}

/// Splits an NSS key log (SSLKEYLOGFILE format) into its lines, each with the 32-byte client
/// random it belongs to. Comments and malformed lines are skipped.
pub fn key_log_lines(text: &[u8]) -> impl Iterator<Item = ([u8; 32], &[u8])> {
    text.split(|&c| c == b'\n').filter_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let mut fields = line.split(|&c| c == b' ');
        let label = fields.next()?;
        if label.is_empty() || label[0] == b'#' {
            return None;
        }
        let hex = fields.next()?;
        if hex.len() != 64 {
            return None;
        }
        let mut random = [0u8; 32];
        for (i, pair) in hex.chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).ok()?;
            random[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some((random, line))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The resumed check says "not yet" exactly where the parse says `NeedMore`, over
    /// records of every size (one byte of body each, too), cut anywhere, grown by any steps.
    #[test]
    fn a_resumed_hello_check_agrees_with_the_parse() {
        let mut rnd = crate::test_rng::below(0x2545_f491_4f6c_dd1du64);
        for _ in 0..3000 {
            let len = rnd(40) as usize;
            let mut msg = vec![1, 0, (len >> 8) as u8, len as u8];
            msg.extend((0..len).map(|_| rnd(256) as u8));
            let mut stream = Vec::new();
            let mut at = 0;
            while at < msg.len() {
                let n = (1 + rnd(8) as usize).min(msg.len() - at);
                let kind = if rnd(30) == 0 { 0x17 } else { HANDSHAKE };
                stream.extend([kind, 3, 1, 0, n as u8]);
                stream.extend(&msg[at..at + n]);
                at += n;
            }
            stream.extend((0..rnd(6)).map(|_| rnd(256) as u8));
            let mut scan = HelloScan::default();
            let mut cut = 0;
            while cut < stream.len() {
                cut = (cut + 1 + rnd(7) as usize).min(stream.len());
                let pending = hello_pending(&stream[..cut], &mut scan);
                let need_more = matches!(first_handshake_message(&stream[..cut]), Hello::NeedMore);
                assert_eq!(pending, need_more, "{:x?} cut at {cut}", stream);
                if !pending {
                    break;
                }
            }
        }
    }

    /// A minimal TLS 1.2 ClientHello with SNI "ws.test" and ALPN http/1.1.
    pub(crate) fn client_hello(sni: &str, alpn: &[&str]) -> Vec<u8> {
        let mut ext = Vec::new();
        let name = sni.as_bytes();
        let mut sni_ext = Vec::new();
        sni_ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        sni_ext.push(0);
        sni_ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
        sni_ext.extend_from_slice(name);
        ext.extend_from_slice(&0u16.to_be_bytes());
        ext.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
        ext.extend_from_slice(&sni_ext);
        let mut list = Vec::new();
        for p in alpn {
            list.push(p.len() as u8);
            list.extend_from_slice(p.as_bytes());
        }
        ext.extend_from_slice(&16u16.to_be_bytes());
        ext.extend_from_slice(&((list.len() + 2) as u16).to_be_bytes());
        ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
        ext.extend_from_slice(&list);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![22, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn key_log_lines_carry_their_client_random() {
        let log = b"# comment\nCLIENT_RANDOM 0102030405060708091011121314151617181920212223242526272829303132 abcd\nbad line\n";
        let lines: Vec<_> = key_log_lines(log).collect();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].0[..3], [1, 2, 3]);
        assert!(lines[0].1.starts_with(b"CLIENT_RANDOM"));
    }

    #[test]
    fn sni_and_alpn_are_read() {
        let rec = client_hello("WS.test", &["http/1.1"]);
        let Hello::Parsed(ch) = parse_client_hello(&rec) else { panic!() };
        assert_eq!(ch.sni.as_deref(), Some("ws.test"));
        assert_eq!(ch.alpn, vec!["http/1.1"]);
    }

    #[test]
    fn partial_hello_needs_more_and_garbage_is_not_tls() {
        let rec = client_hello("a", &["h2"]);
        for cut in 0..rec.len() {
            assert!(matches!(parse_client_hello(&rec[..cut]), Hello::NeedMore), "cut {cut}");
        }
        assert!(matches!(parse_client_hello(b"GET / HTTP/1.1\r\n"), Hello::NotTls));
    }

    #[test]
    fn hello_fragmented_over_two_records_is_joined() {
        let rec = client_hello("split.example", &["http/1.1"]);
        let hs = &rec[5..];
        let (a, b) = hs.split_at(10);
        let mut two = vec![22, 3, 1, 0, a.len() as u8];
        two.extend_from_slice(a);
        two.extend_from_slice(&[22, 3, 1, (b.len() >> 8) as u8, b.len() as u8]);
        two.extend_from_slice(b);
        let Hello::Parsed(ch) = parse_client_hello(&two) else { panic!() };
        assert_eq!(ch.sni.as_deref(), Some("split.example"));
    }
}
