//! A byte-at-a-time redactor for HTTP/1.x heads. Every byte's fate depends only on the bytes
//! before it, so a head split over any number of segments is redacted the same way, without
//! waiting for the rest: request method and path, query parameter names, header names and the
//! values of the diagnosis headers (SPEC's allow-list) stay; query values and every other
//! header value become filler.

/// Headers whose values carry the diagnosis (SPEC "What scrubbing changes").
pub const ALLOWED_HEADERS: &[&str] = &[
    "host",
    "upgrade",
    "connection",
    "sec-websocket-version",
    "sec-websocket-key",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "origin",
    "content-length",
    "transfer-encoding",
    "location",
    "server",
    "via",
    "x-forwarded-proto",
    "retry-after",
];

const MAX_NAME_BYTES: usize = 40;
/// Longest head redacted as a head; beyond this the rest of the stream is opaque.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// First token: a method, or `HTTP/1.x` of a status line.
    FirstToken,
    Target,
    QueryName,
    QueryValue,
    Version,
    Status,
    LineStart,
    Name,
    ValueLead,
    Value,
}

/// What became of one byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Keep,
    QueryValue,
    HeaderValue,
}

/// What the end of a head tells the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadEnd {
    pub response: bool,
    pub status: u16,
    pub content_length: Option<u64>,
    pub chunked: bool,
}

pub enum Step {
    /// The byte belongs to the head; `Fate` says what to do with it.
    Byte(Fate),
    /// The byte was the head's last (kept).
    End(HeadEnd),
    /// Not HTTP after all: overwrite this byte and everything after it.
    NotHttp,
}

#[derive(Clone, Debug)]
pub struct HeadRedactor {
    at: At,
    token: [u8; 16],
    token_len: usize,
    name: [u8; MAX_NAME_BYTES],
    name_len: usize,
    keep_value: bool,
    value_kind: ValueKind,
    status_digits: u8,
    bytes: usize,
    end: HeadEnd,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueKind {
    Other,
    ContentLength,
    TransferEncoding,
}

impl Default for HeadRedactor {
    fn default() -> Self {
        HeadRedactor {
            at: At::FirstToken,
            token: [0; 16],
            token_len: 0,
            name: [0; MAX_NAME_BYTES],
            name_len: 0,
            keep_value: false,
            value_kind: ValueKind::Other,
            status_digits: 0,
            bytes: 0,
            end: HeadEnd::default(),
        }
    }
}

impl HeadRedactor {
    pub fn step(&mut self, c: u8) -> Step {
        self.bytes += 1;
        if self.bytes > MAX_HEAD_BYTES {
            return Step::NotHttp;
        }
        match self.at {
            At::FirstToken => {
                if c == b' ' {
                    let tok = &self.token[..self.token_len];
                    if tok.starts_with(b"HTTP/1.") {
                        self.end.response = true;
                        self.at = At::Status;
                    } else if !tok.is_empty() && tok.iter().all(|b| b.is_ascii_uppercase() || *b == b'-') {
                        self.at = At::Target;
                    } else {
                        return Step::NotHttp;
                    }
                } else if self.token_len < self.token.len() && (c.is_ascii_alphanumeric() || b"/.-_".contains(&c)) {
                    self.token[self.token_len] = c;
                    self.token_len += 1;
                } else {
                    return Step::NotHttp;
                }
                Step::Byte(Fate::Keep)
            }
            // A request line may end without a version (HTTP/0.9 style, `GET /`).
            At::Target => {
                match c {
                    b' ' => self.at = At::Version,
                    b'?' => self.at = At::QueryName,
                    b'\n' => self.at = At::LineStart,
                    _ => {}
                }
                Step::Byte(Fate::Keep)
            }
            At::QueryName => {
                match c {
                    b'=' => self.at = At::QueryValue,
                    b' ' => self.at = At::Version,
                    b'\n' => self.at = At::LineStart,
                    _ => {}
                }
                Step::Byte(Fate::Keep)
            }
            At::QueryValue => match c {
                b'&' | b';' => {
                    self.at = At::QueryName;
                    Step::Byte(Fate::Keep)
                }
                b' ' => {
                    self.at = At::Version;
                    Step::Byte(Fate::Keep)
                }
                b'\r' => Step::Byte(Fate::Keep),
                b'\n' => {
                    self.at = At::LineStart;
                    Step::Byte(Fate::Keep)
                }
                _ => Step::Byte(Fate::QueryValue),
            },
            At::Version | At::Status => {
                if self.at == At::Status && c.is_ascii_digit() && self.status_digits < 3 {
                    self.end.status = self.end.status * 10 + u16::from(c - b'0');
                    self.status_digits += 1;
                } else if self.at == At::Status && self.status_digits < 3 && c != b' ' {
                    return Step::NotHttp;
                }
                if c == b'\n' {
                    self.at = At::LineStart;
                }
                Step::Byte(Fate::Keep)
            }
            At::LineStart => match c {
                b'\r' => Step::Byte(Fate::Keep),
                b'\n' => Step::End(self.end),
                // obs-fold: a continuation of the previous value.
                b' ' | b'\t' => {
                    self.at = At::Value;
                    Step::Byte(if self.keep_value { Fate::Keep } else { Fate::HeaderValue })
                }
                _ => {
                    self.name_len = 0;
                    self.push_name(c);
                    self.at = At::Name;
                    Step::Byte(Fate::Keep)
                }
            },
            At::Name => {
                if c == b':' {
                    let name = &self.name[..self.name_len];
                    self.keep_value = ALLOWED_HEADERS.iter().any(|h| h.as_bytes() == name);
                    self.value_kind = match name {
                        b"content-length" => ValueKind::ContentLength,
                        b"transfer-encoding" => ValueKind::TransferEncoding,
                        _ => ValueKind::Other,
                    };
                    if self.value_kind == ValueKind::ContentLength {
                        self.end.content_length = Some(0);
                    }
                    self.at = At::ValueLead;
                } else if c == b'\n' {
                    // A line with no colon: not a header; keep going as if it ended.
                    self.at = At::LineStart;
                } else {
                    self.push_name(c);
                }
                Step::Byte(Fate::Keep)
            }
            At::ValueLead if c == b' ' || c == b'\t' => Step::Byte(Fate::Keep),
            At::ValueLead | At::Value => {
                self.at = At::Value;
                if c == b'\r' {
                    return Step::Byte(Fate::Keep);
                }
                if c == b'\n' {
                    self.at = At::LineStart;
                    return Step::Byte(Fate::Keep);
                }
                match self.value_kind {
                    ValueKind::ContentLength if c.is_ascii_digit() => {
                        let v = self.end.content_length.unwrap_or(0);
                        self.end.content_length = Some(v.saturating_mul(10).saturating_add(u64::from(c - b'0')));
                    }
                    ValueKind::TransferEncoding if c == b'd' => self.end.chunked = true,
                    _ => {}
                }
                Step::Byte(if self.keep_value { Fate::Keep } else { Fate::HeaderValue })
            }
        }
    }

    /// True while the request target is being read (an absolute-form target names a host).
    pub fn in_request_target(&self) -> bool {
        self.at == At::Target
    }

    /// The lower-case name of the header whose value (kept) is being read, if any. The
    /// colon and the blanks before a value are not part of it.
    pub fn current_value_name(&self) -> Option<&[u8]> {
        (self.at == At::Value && self.keep_value).then(|| &self.name[..self.name_len])
    }

    fn push_name(&mut self, c: u8) {
        if self.name_len < MAX_NAME_BYTES {
            self.name[self.name_len] = c.to_ascii_lowercase();
            self.name_len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(head: &[u8]) -> (Vec<u8>, Option<HeadEnd>) {
        let mut r = HeadRedactor::default();
        let mut out = Vec::new();
        for &c in head {
            match r.step(c) {
                Step::Byte(Fate::Keep) => out.push(c),
                Step::Byte(_) => out.push(b'x'),
                Step::End(e) => {
                    out.push(c);
                    return (out, Some(e));
                }
                Step::NotHttp => return (out, None),
            }
        }
        (out, None)
    }

    #[test]
    fn secrets_go_and_the_diagnosis_stays() {
        let req = b"GET /chat?token=abc&x=1 HTTP/1.1\r\nHost: ws.example\r\nCookie: session=s3cret\r\n\
Authorization: Bearer t0ken\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        let (out, end) = redact(req);
        let s = String::from_utf8(out).unwrap();
        assert!(!end.unwrap().response);
        assert!(s.starts_with("GET /chat?token=xxx&x=x HTTP/1.1\r\nHost: ws.example\r\n"), "{s}");
        assert!(s.contains("Cookie: xxxxxxxxxxxxxx\r\n") && s.contains("Authorization: xxxxxxxxxxxx\r\n"), "{s}");
        assert!(s.contains("Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"));
        assert_eq!(s.len(), req.len());
    }

    #[test]
    fn response_status_and_length_are_read() {
        let (_, end) =
            redact(b"HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Length: 42\r\nSet-Cookie: a=b\r\n\r\n");
        let end = end.unwrap();
        assert_eq!((end.response, end.status, end.content_length), (true, 302, Some(42)));
    }

    #[test]
    fn binary_is_not_http() {
        assert!(redact(b"\x16\x03\x01\x02").1.is_none());
        let mut r = HeadRedactor::default();
        assert!(matches!(r.step(0x81), Step::NotHttp));
    }
}
