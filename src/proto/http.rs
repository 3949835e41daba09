//! HTTP/1.x message heads, as far as a WebSocket upgrade (RFC 6455 §4) needs them.

/// A head larger than this is not a WebSocket handshake; browsers send 1–8 KiB.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 128;

/// Request methods (RFC 9110 §9, PATCH, WebDAV's). Only these start an HTTP request: a first
/// token outside the list is another protocol however HTTP-like its shape (FTP's `PASS`,
/// Redis's `AUTH`, a PROXY-protocol line), for the engine's classifier and the scrubber alike.
pub const METHODS: &[&[u8]] = &[
    b"GET",
    b"HEAD",
    b"POST",
    b"PUT",
    b"DELETE",
    b"CONNECT",
    b"OPTIONS",
    b"TRACE",
    b"PATCH",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
];

const LONGEST_METHOD: usize = 9;

/// Whether a first token read so far can still become a method or a status line's
/// `HTTP/1.x`: a prefix of neither is not HTTP, at once.
pub fn first_token_possible(tok: &[u8]) -> bool {
    METHODS.iter().any(|m| m.starts_with(tok)) || b"HTTP/1.".starts_with(tok) || tok.starts_with(b"HTTP/1.")
}

/// Is this the start of an HTTP request line (a known method, then a space)? `None` while
/// too short to tell.
pub fn looks_like_request(b: &[u8]) -> Option<bool> {
    for (i, &c) in b.iter().enumerate().take(LONGEST_METHOD + 1) {
        if c == b' ' {
            return Some(METHODS.contains(&&b[..i]));
        }
        if !METHODS.iter().any(|m| m.starts_with(&b[..=i])) {
            return Some(false);
        }
    }
    if b.len() > LONGEST_METHOD { Some(false) } else { None }
}

/// Is this the start of an HTTP/1.x status line? `None` while too short to tell.
pub fn looks_like_response(b: &[u8]) -> Option<bool> {
    const P: &[u8] = b"HTTP/1.";
    let n = b.len().min(P.len());
    if b[..n] != P[..n] {
        return Some(false);
    }
    if n < P.len() { None } else { Some(true) }
}

/// Whether a server's first bytes, sent in answer to a TLS ClientHello, are plaintext instead
/// of a TLS record: an HTTP status line (its status returned), or text without one (an
/// HTTP/0.9-style error page from a server that could not parse the hello as a request; status
/// 0). None while too few bytes have come to tell.
pub fn plaintext_answer(b: &[u8]) -> Option<Option<u16>> {
    match looks_like_response(b) {
        Some(true) => {
            let status = b.get(9..12).and_then(|d| std::str::from_utf8(d).ok()?.parse().ok()).unwrap_or(0);
            return Some(Some(status));
        }
        None if !b.is_empty() => return None,
        _ => {}
    }
    // A TLS record starts with a content type 20..=24 and version 3.x: never printable text.
    let text = |c: &u8| c.is_ascii_graphic() || c.is_ascii_whitespace();
    match b.first()? {
        0x14..=0x18 => Some(None),
        _ if b.len() < 8 => None,
        _ => Some(b[..8].iter().all(text).then_some(0)),
    }
}

/// Length of the head (through the blank line), once it is all there.
pub fn head_len(b: &[u8]) -> Option<usize> {
    head_len_from(b, 0)
}

/// `head_len`, resumed: the first `scanned` bytes were searched before and held no end (a
/// head that grows a byte per segment is then searched once, not once per byte). An end is
/// at most four bytes long, so the search restarts three bytes back.
pub fn head_len_from(b: &[u8], scanned: usize) -> Option<usize> {
    let limit = b.len().min(MAX_HEAD_BYTES);
    let b = &b[..limit];
    let mut i = scanned.saturating_sub(3).min(limit);
    while let Some(p) = memchr_nl(&b[i..]) {
        let at = i + p;
        if b.get(at + 1) == Some(&b'\n') {
            return Some(at + 2);
        }
        if at >= 1 && b[at - 1] == b'\r' && b.get(at + 1) == Some(&b'\r') && b.get(at + 2) == Some(&b'\n') {
            return Some(at + 3);
        }
        i = at + 1;
    }
    None
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

fn header_value(h: &httparse::Header<'_>) -> String {
    String::from_utf8_lossy(h.value).trim().to_string()
}

/// The request facts that matter for an upgrade.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub upgrade: Option<String>,
    pub connection: Option<String>,
    pub ws_key: Option<String>,
    pub ws_version: Option<String>,
    pub origin: Option<String>,
    pub forwarded: bool,
    pub via: Option<String>,
    /// Any `Sec-WebSocket-*` header: a proxy that strips Upgrade/Connection usually
    /// forwards these, and that leg is a WebSocket attempt too.
    pub has_ws_headers: bool,
    pub content_length: u64,
    pub head_len: usize,
}

impl RequestHead {
    pub fn is_websocket_attempt(&self) -> bool {
        self.upgrade.is_some() || self.has_ws_headers
    }

    /// Host without the port, lower-cased: what DNS and SNI name.
    pub fn host_name(&self) -> Option<String> {
        self.host.as_deref().map(strip_port)
    }
}

pub fn strip_port(host: &str) -> String {
    let h = host.trim();
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        h.rsplit_once(':').filter(|(_, p)| p.bytes().all(|c| c.is_ascii_digit())).map_or(h, |(n, _)| n)
    };
    name.to_ascii_lowercase()
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub upgrade: Option<String>,
    pub connection: Option<String>,
    pub accept: Option<String>,
    pub location: Option<String>,
    pub server: Option<String>,
    pub content_length: Option<u64>,
    pub head_len: usize,
}

/// Parses a complete request head. `None` if it is not HTTP/1.x.
/// A path or URL with each query value replaced by `*`, for what people paste into tickets:
/// query strings carry tokens (`?token=…`, OAuth `code=` and `state=`), which a diagnosis
/// never needs. Names stay, so `?token=*` still says a token was sent.
pub fn mask_query_values(target: &str) -> String {
    let Some((base, query)) = target.split_once('?') else { return target.to_string() };
    let (query, fragment) = match query.split_once('#') {
        Some((q, f)) => (q, Some(f)),
        None => (query, None),
    };
    let masked: Vec<String> = query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !v.is_empty() => format!("{k}=*"),
            _ => kv.to_string(),
        })
        .collect();
    let mut out = format!("{base}?{}", masked.join("&"));
    if fragment.is_some() {
        out.push_str("#*");
    }
    out
}

pub fn parse_request(b: &[u8]) -> Option<RequestHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let n = match req.parse(b) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let mut r = RequestHead {
        method: req.method.unwrap_or_default().to_string(),
        path: req.path.unwrap_or_default().to_string(),
        head_len: n,
        ..Default::default()
    };
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "host" => r.host = Some(header_value(h)),
            "upgrade" => r.upgrade = Some(header_value(h)),
            "connection" => r.connection = Some(header_value(h)),
            "sec-websocket-key" => r.ws_key = Some(header_value(h)),
            "sec-websocket-version" => r.ws_version = Some(header_value(h)),
            "origin" => r.origin = Some(header_value(h)),
            "content-length" => r.content_length = header_value(h).parse().unwrap_or(0),
            "via" => r.via = Some(header_value(h)),
            "forwarded" | "x-forwarded-for" | "x-forwarded-proto" | "x-forwarded-host" | "x-real-ip" => {
                r.forwarded = true
            }
            _ => {}
        }
        if name.starts_with("sec-websocket-") {
            r.has_ws_headers = true;
        }
    }
    Some(r)
}

/// Parses a complete response head. `None` if it is not HTTP/1.x.
pub fn parse_response(b: &[u8]) -> Option<ResponseHead> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(b) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    let mut r = ResponseHead {
        status: resp.code.unwrap_or(0),
        reason: resp.reason.unwrap_or_default().to_string(),
        head_len: n,
        ..Default::default()
    };
    for h in resp.headers.iter() {
        match h.name.to_ascii_lowercase().as_str() {
            "upgrade" => r.upgrade = Some(header_value(h)),
            "connection" => r.connection = Some(header_value(h)),
            "sec-websocket-accept" => r.accept = Some(header_value(h)),
            "location" => r.location = Some(header_value(h)),
            "server" => r.server = Some(header_value(h)),
            "content-length" => r.content_length = header_value(h).parse().ok(),
            _ => {}
        }
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Searching a head as it grows finds its end where searching it whole does, whatever
    /// the pieces it grows by.
    #[test]
    fn a_resumed_search_finds_the_head_end_of_a_whole_one() {
        let mut rnd = crate::test_rng::below(0x9e37_79b9_7f4a_7c15u64);
        for _ in 0..2000 {
            let b: Vec<u8> = (0..rnd(40)).map(|_| b"\r\na:"[rnd(4) as usize]).collect();
            let mut scanned = 0;
            let mut len = 0;
            while len < b.len() {
                len = (len + 1 + rnd(4) as usize).min(b.len());
                let found = head_len_from(&b[..len], scanned);
                assert_eq!(found, head_len(&b[..len]), "{:?} at {len}", String::from_utf8_lossy(&b));
                if found.is_some() {
                    break;
                }
                scanned = len;
            }
        }
    }

    #[test]
    fn query_values_are_masked_names_kept() {
        assert_eq!(mask_query_values("/echo?token=abc&v=2&flag"), "/echo?token=*&v=*&flag");
        assert_eq!(mask_query_values("/plain"), "/plain");
        assert_eq!(mask_query_values("https://idp/cb?code=x#frag"), "https://idp/cb?code=*#*");
    }

    const REQ: &[u8] = b"GET /chat?token=x HTTP/1.1\r\nHost: ws.example:8080\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn upgrade_request_is_a_websocket_attempt() {
        let n = head_len(REQ).unwrap();
        assert_eq!(n, REQ.len());
        let r = parse_request(&REQ[..n]).unwrap();
        assert!(r.is_websocket_attempt());
        assert_eq!(r.host_name().as_deref(), Some("ws.example"));
        assert_eq!(r.path, "/chat?token=x");
    }

    #[test]
    fn stripped_upgrade_with_key_is_still_an_attempt() {
        let req = b"GET /chat HTTP/1.1\r\nHost: b\r\nSec-WebSocket-Key: abc\r\n\r\n";
        assert!(parse_request(req).unwrap().is_websocket_attempt());
        let plain = b"GET / HTTP/1.1\r\nHost: b\r\n\r\n";
        assert!(!parse_request(plain).unwrap().is_websocket_attempt());
    }

    #[test]
    fn head_is_found_only_when_complete() {
        for cut in 0..REQ.len() {
            assert_eq!(head_len(&REQ[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn request_start_detection() {
        assert_eq!(looks_like_request(b"GET / HTTP/1.1"), Some(true));
        assert_eq!(looks_like_request(b"GE"), None);
        assert_eq!(looks_like_request(b"\x16\x03\x01"), Some(false));
        // Other protocols' commands are not requests, however HTTP-like their shape.
        assert_eq!(looks_like_request(b"PASS hunter2\r\n"), Some(false));
        assert_eq!(looks_like_request(b"AUTH s3cret\r\n"), Some(false));
        assert_eq!(looks_like_request(b"get / HTTP/1.1"), Some(false));
        assert_eq!(looks_like_request(b"PROPFIND"), None);
        assert_eq!(looks_like_request(b"PROPFIND "), Some(true));
        assert_eq!(looks_like_response(b"HTTP/1.1 101"), Some(true));
        assert_eq!(looks_like_response(b"HTT"), None);
    }

    #[test]
    fn host_port_and_ipv6_are_stripped() {
        assert_eq!(strip_port("Example.COM:443"), "example.com");
        assert_eq!(strip_port("[::1]:8080"), "::1");
        assert_eq!(strip_port("host"), "host");
    }
}
