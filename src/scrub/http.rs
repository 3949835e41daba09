//! A byte-at-a-time redactor for HTTP/1.x heads. Every byte's fate depends only on the bytes
//! before it, so a head split over any number of segments is redacted the same way, without
//! waiting for the rest: request method and path, query parameter names, header names and the
//! values of the diagnosis headers (SPEC's allow-list) stay; query values and every other
//! header value become filler.

use super::pseudonym::HttpValue;
use crate::proto::http::{self, MAX_HEAD_BYTES};

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

/// Common header names, kept when a segment boundary hides whether their colon follows.
const KNOWN_HEADERS: &[&str] = &[
    "cookie",
    "set-cookie",
    "authorization",
    "proxy-authorization",
    "user-agent",
    "accept",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "pragma",
    "date",
    "content-type",
    "x-forwarded-for",
    "x-real-ip",
    "www-authenticate",
];

const MAX_NAME_BYTES: usize = 40;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// First token: a method, or `HTTP/1.x` of a status line.
    FirstToken,
    /// The request target, read as a URL value is (`url`).
    Target,
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
    /// The next this many bytes are overwritten whatever state they advance (userinfo, a
    /// query item without `=`, a credential-shaped subprotocol, a name with no colon ahead).
    fill: usize,
    /// Bytes are overwritten until one of these (kept) comes: the rest of an entry or an
    /// authority that runs past the segment, whose end is not in sight.
    fill_until: Option<&'static [u8]>,
    /// The header name being read has a colon ahead (Some(true)) or a line end first
    /// (Some(false): overwritten); None while neither is in sight (a name split across
    /// segments), when a name is kept only as far as it spells the start of a known one.
    name_ok: Option<bool>,
    /// The last value byte was a CR: anything but LF after it ends what is kept of the value.
    cr: bool,
    /// Where the request target or a kept URL value (Location) is: its path parameter and
    /// query values and its fragment go.
    url: Url,
    /// In a Host value: past the port's colon, and inside an IP literal's brackets.
    host_port: bool,
    host_bracket: bool,
    /// The next value byte starts a word (the value's first, or one after a space, tab or
    /// comma): a word is judged for a `user:pass@` as it starts.
    word_start: bool,
    /// The word being read began without its end in sight.
    word_open: bool,
    /// Where `--pseudonymize` is in the header value being mapped. Here, in the direction's
    /// own reader, so that a head split over segments resumes where it stopped, whatever
    /// other flows' heads were read in between.
    pub(super) pseudo: HttpValue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueKind {
    Other,
    ContentLength,
    TransferEncoding,
    /// Origin, Location: URLs that may carry `user:pass@`.
    Url,
    /// Host: `host[:port]`, perhaps after a `user:pass@`.
    Host,
    /// Sec-WebSocket-Protocol: a list whose entries may be credentials.
    Protocols,
    /// Sec-WebSocket-Version: digits, or a list of them.
    Number,
    /// Upgrade, Connection, Sec-WebSocket-Key, -Accept, -Extensions: tokens, lists of them,
    /// their parameters.
    Tokens,
    /// Server, Via, X-Forwarded-Proto, Retry-After: free text, which may hold a URL or an
    /// authority.
    Text,
}

/// Whether `c` may stand in a token-valued header (RFC 9110 §5.6.2 tchar, the list and
/// parameter separators, base64's `+/=`): a `:` or `@` there is no token, and may start a
/// `user:pass@`.
fn token_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~,;=/\" \t".contains(&c)
}

/// Where `user:pass@` ends in the word of a kept value that starts with `c` and goes on in
/// `line` (a word ends at a space, tab or comma): `1.1 user:pass@proxy` in a Via, a URL in
/// X-Forwarded-Proto. The outer None: the word's end is not in sight.
fn word_userinfo(c: u8, line: &[u8]) -> Option<Option<usize>> {
    let end = line.iter().position(|c| b" \t,\r\n".contains(c))?;
    if c != b'@' && !line[..end].contains(&b'@') {
        // The common case, without joining the word.
        return Some(None);
    }
    let word = [&[c], &line[..end]].concat();
    Some(userinfo_len(&word))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Url {
    Path,
    /// A path parameter (`/chat;jsessionid=…`, Java servlets' session ids): its name is
    /// kept, its value goes as a query value does.
    ParamName,
    ParamValue,
    QueryName,
    QueryValue,
    /// A fragment (`#access_token=…`), which browsers never send in a request target but a
    /// careless client may: overwritten.
    Fragment,
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
            fill: 0,
            fill_until: None,
            name_ok: None,
            cr: false,
            url: Url::Path,
            host_port: false,
            host_bracket: false,
            word_start: false,
            word_open: false,
            pseudo: HttpValue::default(),
        }
    }
}

/// A slash where a URL's authority may start: browsers read a backslash as one there
/// (`/\host`, `https:\\host`).
pub(super) fn url_slash(c: u8) -> bool {
    c == b'/' || c == b'\\'
}

/// Where `user:pass@` ends in a URL or authority at the start of `rest` (counted from there),
/// so that it is overwritten: `scheme://user:pass@host`, `//user:pass@host` (a URL that keeps
/// the current scheme, which a Location may be; with backslashes too, `url_slash`), or
/// `user:pass@host` in a Host value. None when there is none, or when the authority is not all
/// in sight (then the caller fails closed where it matters).
fn userinfo_len(rest: &[u8]) -> Option<usize> {
    let line_end = rest.iter().position(|&c| c == b'\r' || c == b'\n' || c == b' ').unwrap_or(rest.len());
    let line = &rest[..line_end];
    let start = match line.windows(3).position(|w| w == b"://") {
        Some(p) => p + 3,
        None if line.len() >= 2 && line[..2].iter().all(|&c| url_slash(c)) => 2,
        None => 0,
    };
    let auth_end =
        line[start..].iter().position(|&c| c == b'/' || c == b'?' || c == b'#').map_or(line.len(), |p| start + p);
    let at = line[start..auth_end].iter().rposition(|&c| c == b'@')?;
    Some(start + at + 1)
}

/// Whether the authority of a URL (or a Host value) at the start of `rest` ends in sight:
/// the line's end is, or a `://` and a `/`, `?`, `#` or space after it are (a `https:/` cut by
/// the segment is not).
fn authority_in_sight(rest: &[u8]) -> bool {
    if rest.iter().any(|&c| c == b'\r' || c == b'\n') {
        return true;
    }
    rest.windows(3).position(|w| w == b"://").is_some_and(|p| rest[p + 3..].iter().any(|c| b"/?# ".contains(c)))
}

/// Whether a `Sec-WebSocket-Protocol` entry at the start of `rest` looks like a credential
/// (Kubernetes' `base64url.bearer.authorization.k8s.io.<token>`, or any run of 20 or more
/// token characters), and its length. An entry not all in sight is treated as one.
fn credential_entry(rest: &[u8]) -> (bool, usize) {
    let end = rest.iter().position(|&c| c == b',' || c == b'\r' || c == b'\n');
    let entry = &rest[..end.unwrap_or(rest.len())];
    let lower: Vec<u8> = entry.iter().map(u8::to_ascii_lowercase).collect();
    let mut run = 0usize;
    let mut longest = 0usize;
    for &c in entry {
        run = if c.is_ascii_alphanumeric() || b"+/=_-".contains(&c) { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let bearer = lower.windows(6).any(|w| w == b"bearer") || lower.windows(5).any(|w| w == b"token");
    (end.is_none() || bearer || longest >= 20, entry.len())
}

/// What ends a query item (after `?`, `&` or `;` in the query).
const QUERY_ITEM_ENDS: &[u8] = b"&; #\r\n";
/// What ends a path parameter (after a `;` in the path).
const PATH_PARAM_ENDS: &[u8] = b"/;?# \r\n";

/// Whether the item at the start of `rest` (a query item or a path parameter) has a `=`
/// before one of `ends`: one without is a value (`?TOKEN`, `;TOKEN`). An item not all in
/// sight is treated as a value.
fn item_has_name(rest: &[u8], ends: &[u8]) -> bool {
    rest.iter().find(|c| **c == b'=' || ends.contains(c)) == Some(&b'=')
}

/// What follows a head's byte: the rest of its segment, then what the caller holds of the
/// segments after it. The few decisions that look ahead (a colon on the line, a `=` in a
/// query item, where a userinfo ends) each stop at the line's end, so they are given the line
/// (`line`): joined across segments only when the segment ends first, and only at the bytes
/// that decide (a delimiter, a name's first byte), so that a head sent a byte per segment
/// costs a join per decision, not a copy per byte.
#[derive(Clone, Copy)]
pub struct Rest<'a> {
    pub seg: &'a [u8],
    pub ahead: &'a [u8],
}

impl<'a> Rest<'a> {
    /// What follows in this segment alone (nothing beyond is known).
    pub fn of(seg: &'a [u8]) -> Rest<'a> {
        Rest { seg, ahead: &[] }
    }

    fn first(&self) -> Option<u8> {
        self.seg.first().or(self.ahead.first()).copied()
    }

    /// The rest of the line, through its `\n`, as far as it is known (at most a head's
    /// limit).
    fn line(&self) -> std::borrow::Cow<'a, [u8]> {
        if self.ahead.is_empty() || self.seg.contains(&b'\n') {
            return std::borrow::Cow::Borrowed(self.seg);
        }
        let cap = self.ahead.len().min(MAX_HEAD_BYTES);
        let end = self.ahead[..cap].iter().position(|&c| c == b'\n').map_or(cap, |p| p + 1);
        std::borrow::Cow::Owned([self.seg, &self.ahead[..end]].concat())
    }
}

impl HeadRedactor {
    /// The fate of byte `c`; `rest` is what follows it. What the decisions that look ahead
    /// cannot see the end of is overwritten.
    pub fn step(&mut self, c: u8, rest: Rest<'_>) -> Step {
        self.bytes += 1;
        if self.bytes > MAX_HEAD_BYTES {
            return Step::NotHttp;
        }
        // `fill` counts bytes after the one that set it.
        let mut filling = self.fill > 0;
        if filling {
            self.fill -= 1;
        }
        if let Some(delims) = self.fill_until {
            if delims.contains(&c) || c == b'\r' || c == b'\n' {
                self.fill_until = None;
            } else {
                filling = true;
            }
        }
        match self.step_state(c, rest) {
            Step::Byte(Fate::Keep) if filling && c != b'\r' && c != b'\n' => Step::Byte(Fate::HeaderValue),
            other => other,
        }
    }

    fn step_state(&mut self, c: u8, rest: Rest<'_>) -> Step {
        match self.at {
            At::FirstToken => {
                if c == b' ' {
                    let tok = &self.token[..self.token_len];
                    if tok.starts_with(b"HTTP/1.") {
                        self.end.response = true;
                        self.at = At::Status;
                    } else if http::METHODS.contains(&tok) {
                        self.at = At::Target;
                        // `GET http://user:pass@host/`: the userinfo goes; an absolute target
                        // whose authority runs past the segment goes to its end.
                        let line = rest.line();
                        if let Some(n) = userinfo_len(&line) {
                            self.fill = n;
                        } else if rest.first().is_none_or(|b| b != b'/') && !authority_in_sight(&line) {
                            self.fill_until = Some(b" ");
                        }
                    } else {
                        return Step::NotHttp;
                    }
                } else if self.token_len < self.token.len() && (c.is_ascii_alphanumeric() || b"/.-_".contains(&c)) {
                    self.token[self.token_len] = c;
                    self.token_len += 1;
                    // A prefix of no method (nor of a status line) is not HTTP at once.
                    let tok = &self.token[..self.token_len];
                    if !http::first_token_possible(tok) {
                        return Step::NotHttp;
                    }
                } else {
                    return Step::NotHttp;
                }
                Step::Byte(Fate::Keep)
            }
            // A request line may end without a version (HTTP/0.9 style, `GET /`).
            At::Target => self.target_byte(c, rest),
            At::Version => {
                if c == b'\n' {
                    self.at = At::LineStart;
                }
                Step::Byte(Fate::Keep)
            }
            At::Status => {
                if self.status_digits < 3 {
                    if c.is_ascii_digit() {
                        self.end.status = self.end.status * 10 + u16::from(c - b'0');
                        self.status_digits += 1;
                    } else if c != b' ' {
                        return Step::NotHttp;
                    }
                    return Step::Byte(Fate::Keep);
                }
                // The reason phrase goes: the code says it all, and servers put text there.
                match c {
                    b'\n' => {
                        self.at = At::LineStart;
                        Step::Byte(Fate::Keep)
                    }
                    b'\r' | b' ' if self.status_digits == 3 => {
                        self.status_digits = 4;
                        Step::Byte(Fate::Keep)
                    }
                    b'\r' => Step::Byte(Fate::Keep),
                    _ => Step::Byte(Fate::HeaderValue),
                }
            }
            At::LineStart => match c {
                b'\r' => Step::Byte(Fate::Keep),
                b'\n' => Step::End(self.end),
                // obs-fold: a continuation of the previous value, never kept.
                b' ' | b'\t' => {
                    self.at = At::Value;
                    self.value_goes()
                }
                _ => {
                    self.name_len = 0;
                    self.push_name(c);
                    self.at = At::Name;
                    self.name_ok = None;
                    Step::Byte(self.name_fate(rest))
                }
            },
            At::Name => {
                if c == b':' {
                    let name = &self.name[..self.name_len];
                    self.keep_value =
                        self.name_ok != Some(false) && ALLOWED_HEADERS.iter().any(|h| h.as_bytes() == name);
                    self.value_kind = match name {
                        b"content-length" => ValueKind::ContentLength,
                        b"transfer-encoding" => ValueKind::TransferEncoding,
                        b"origin" | b"location" => ValueKind::Url,
                        b"host" => ValueKind::Host,
                        b"sec-websocket-protocol" => ValueKind::Protocols,
                        b"sec-websocket-version" => ValueKind::Number,
                        b"upgrade"
                        | b"connection"
                        | b"sec-websocket-key"
                        | b"sec-websocket-accept"
                        | b"sec-websocket-extensions" => ValueKind::Tokens,
                        b"server" | b"via" | b"x-forwarded-proto" | b"retry-after" => ValueKind::Text,
                        _ => ValueKind::Other,
                    };
                    self.word_start = true;
                    if self.value_kind == ValueKind::ContentLength {
                        self.end.content_length = Some(0);
                    }
                    (self.host_port, self.host_bracket) = (false, false);
                    self.url = Url::Path;
                    self.cr = false;
                    self.at = At::ValueLead;
                    return Step::Byte(Fate::Keep);
                }
                if c == b'\n' {
                    // A line with no colon: not a header; it was overwritten.
                    self.at = At::LineStart;
                    return Step::Byte(Fate::Keep);
                }
                self.push_name(c);
                if c == b'\r' {
                    return Step::Byte(Fate::Keep);
                }
                Step::Byte(self.name_fate(rest))
            }
            At::ValueLead if c == b' ' || c == b'\t' => Step::Byte(Fate::Keep),
            At::ValueLead | At::Value => {
                let first = self.at == At::ValueLead;
                self.at = At::Value;
                if c == b'\n' {
                    self.at = At::LineStart;
                    return Step::Byte(Fate::Keep);
                }
                if std::mem::take(&mut self.cr) {
                    // A bare CR inside a value: nothing after it on the line is kept.
                    self.keep_value = false;
                }
                if c == b'\r' {
                    self.cr = true;
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
                if !self.keep_value {
                    return Step::Byte(Fate::HeaderValue);
                }
                let whole_rest = || std::iter::once(c).chain(rest.line().iter().copied()).collect::<Vec<u8>>();
                match self.value_kind {
                    ValueKind::Url | ValueKind::Host => {
                        if first {
                            let whole = whole_rest();
                            if let Some(n) = userinfo_len(&whole) {
                                self.fill = n - 1;
                                return Step::Byte(Fate::HeaderValue);
                            }
                            // A path ("/login?next=…") has no authority to hide; a `/` whose
                            // next byte is not in sight may start `//user:pass@host`.
                            let path = whole.starts_with(b"/") && whole.get(1).is_some_and(|&b| !url_slash(b));
                            if !path && !authority_in_sight(&whole) {
                                // Whether a `user:pass@` follows is not known (the value runs
                                // past the segment): fail closed, the value goes.
                                self.fill_until = Some(b"");
                                return Step::Byte(Fate::HeaderValue);
                            }
                        }
                        if self.value_kind == ValueKind::Host {
                            return self.host_byte(c);
                        }
                        self.url_byte(c, rest)
                    }
                    // Each entry is judged as it starts: at the value's first byte, and after
                    // each comma.
                    ValueKind::Protocols if c == b',' => {
                        let line = rest.line();
                        let lead = line.iter().take_while(|&&x| x == b' ' || x == b'\t').count();
                        if let (true, _) = credential_entry(&line[lead..]) {
                            self.fill_until = Some(b",");
                        }
                        Step::Byte(Fate::Keep)
                    }
                    ValueKind::Protocols if first => match credential_entry(&whole_rest()) {
                        (true, _) => {
                            self.fill_until = Some(b",");
                            Step::Byte(Fate::HeaderValue)
                        }
                        _ => Step::Byte(Fate::Keep),
                    },
                    ValueKind::Protocols => Step::Byte(Fate::Keep),
                    // A length or a version is digits (a list of them: a 426 names the versions
                    // it speaks, `13, 8`): anything else is not what the header says, and it
                    // and the rest of the value go.
                    ValueKind::ContentLength | ValueKind::Number if !c.is_ascii_digit() && !b" \t,".contains(&c) => {
                        self.value_goes()
                    }
                    ValueKind::ContentLength | ValueKind::Number => Step::Byte(Fate::Keep),
                    _ => {
                        let word_start = std::mem::replace(&mut self.word_start, b" \t,".contains(&c));
                        if self.word_start {
                            self.word_open = false;
                        } else if word_start {
                            match word_userinfo(c, &rest.line()) {
                                Some(Some(n)) => {
                                    self.fill = n - 1;
                                    return Step::Byte(Fate::HeaderValue);
                                }
                                open => self.word_open = open.is_none(),
                            }
                        }
                        if self.word_open && (c == b':' || c == b'@') && self.value_kind == ValueKind::Text {
                            // A word whose end was not in sight (split over segments) may hold
                            // `user:pass@` past its `:` or `@`: from there, it goes.
                            self.fill_until = Some(b" \t,");
                            return Step::Byte(Fate::HeaderValue);
                        }
                        if self.value_kind != ValueKind::Text && !token_byte(c) {
                            // No token: it and the rest of the value go.
                            return self.value_goes();
                        }
                        Step::Byte(Fate::Keep)
                    }
                }
            }
        }
    }

    /// A header name byte is kept when its colon is in sight on the line; with neither the
    /// colon nor the line's end in sight, only while the name spells the start of a known
    /// header (what the diagnosis reads); a line that ends without a colon is overwritten.
    fn name_fate(&mut self, rest: Rest<'_>) -> Fate {
        if self.name_ok.is_none() {
            let line = rest.line();
            self.name_ok = line.iter().position(|&x| x == b':' || x == b'\n').map(|p| line[p] == b':');
        }
        let name = &self.name[..self.name_len];
        let keep = match self.name_ok {
            Some(ok) => ok,
            None => ALLOWED_HEADERS.iter().chain(KNOWN_HEADERS).any(|h| h.as_bytes().starts_with(name)),
        };
        if keep { Fate::Keep } else { Fate::HeaderValue }
    }

    /// A byte of the request target: a space ends it and a line end the line; the rest is
    /// read as a URL value is (`url_byte`).
    fn target_byte(&mut self, c: u8, rest: Rest<'_>) -> Step {
        match c {
            b' ' => self.at = At::Version,
            b'\n' => self.at = At::LineStart,
            b'\r' => {}
            _ => return self.url_byte(c, rest),
        }
        Step::Byte(Fate::Keep)
    }

    /// A byte of a URL (a request target, a kept Location): `;`, `?`, `#` and `/` move between
    /// the path, a path parameter, the query and the fragment; path, query and path parameter
    /// names kept, their values (and items without `=`) and the fragment overwritten.
    fn url_byte(&mut self, c: u8, rest: Rest<'_>) -> Step {
        let fill = Step::Byte(Fate::QueryValue);
        self.url =
            match (self.url, c) {
                (Url::Fragment, _) => return fill,
                (_, b'#') => Url::Fragment,
                (Url::Path | Url::ParamName | Url::ParamValue, b'?')
                | (Url::QueryValue | Url::QueryName, b'&' | b';') => {
                    if item_has_name(&rest.line(), QUERY_ITEM_ENDS) {
                        Url::QueryName
                    } else {
                        Url::QueryValue
                    }
                }
                (Url::QueryName, b'=') => Url::QueryValue,
                (Url::QueryValue, _) => return fill,
                (Url::Path | Url::ParamName | Url::ParamValue, b';') => {
                    if item_has_name(&rest.line(), PATH_PARAM_ENDS) { Url::ParamName } else { Url::ParamValue }
                }
                (Url::ParamName | Url::ParamValue, b'/') => Url::Path,
                (Url::ParamName, b'=') => Url::ParamValue,
                (Url::ParamValue, _) => return fill,
                (url, _) => url,
            };
        Step::Byte(Fate::Keep)
    }

    /// A byte of a Host value: a host name or IP literal, then digits after a colon. Anything
    /// else (a path, a query, text, a port that is no number) is not a host, and it and the
    /// rest of the value go.
    fn host_byte(&mut self, c: u8) -> Step {
        if self.fill > 0 {
            // A `user:pass@` being overwritten: the host starts after it.
            return Step::Byte(Fate::Keep);
        }
        let ok = match c {
            b'@' => {
                // The userinfo's last byte (overwritten).
                (self.host_port, self.host_bracket) = (false, false);
                true
            }
            _ if self.host_port => c.is_ascii_digit(),
            b'[' => !std::mem::replace(&mut self.host_bracket, true),
            b']' => std::mem::replace(&mut self.host_bracket, false),
            b':' if !self.host_bracket => {
                self.host_port = true;
                true
            }
            b':' => true,
            _ => c.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&c),
        };
        if ok { Step::Byte(Fate::Keep) } else { self.value_goes() }
    }

    /// This value byte and the rest of the value are overwritten.
    fn value_goes(&mut self) -> Step {
        self.keep_value = false;
        Step::Byte(Fate::HeaderValue)
    }

    /// The request's method is CONNECT: its target is `host:port`.
    pub fn method_is_connect(&self) -> bool {
        &self.token[..self.token_len] == b"CONNECT"
    }

    /// True while the request target's path is being read (an absolute-form target names a
    /// host).
    pub fn in_request_target(&self) -> bool {
        self.at == At::Target && self.url == Url::Path
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
        for (i, &c) in head.iter().enumerate() {
            match r.step(c, Rest::of(&head[i + 1..])) {
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

    /// `redact` of a head delivered in the given pieces, each seeing nothing past itself.
    fn redact_pieces(pieces: &[&[u8]]) -> String {
        let mut r = HeadRedactor::default();
        let mut out = Vec::new();
        for piece in pieces {
            for (i, &c) in piece.iter().enumerate() {
                match r.step(c, Rest::of(&piece[i + 1..])) {
                    Step::Byte(Fate::Keep) | Step::End(_) => out.push(c),
                    Step::Byte(_) => out.push(b'x'),
                    Step::NotHttp => panic!("read as HTTP"),
                }
            }
        }
        String::from_utf8(out).unwrap()
    }

    /// Kept values that are no URLs by name lose a `user:pass@` in any word, seen whole or
    /// split where its end is not in sight; token and number values lose what no token or
    /// number holds.
    #[test]
    fn userinfo_and_junk_in_other_kept_values_go() {
        let head: &[u8] = b"GET / HTTP/1.1\r\nVia: 1.1 edge, 1.1 alice:s3cret@proxy:8080\r\n\
X-Forwarded-Proto: https://bob:s3cret@x\r\nConnection: Upgrade:s3cret\r\nSec-WebSocket-Version: 13 s3cret\r\n\r\n";
        let whole = redact_pieces(&[head]);
        assert!(!whole.contains("s3cret") && !whole.contains("alice") && !whole.contains("bob"), "{whole}");
        assert!(whole.contains("Via: 1.1 edge, 1.1 xxxxxxxxxxxxxproxy:8080\r\n"), "{whole}");
        assert!(whole.contains("Connection: Upgradexxxxxxx\r\nSec-WebSocket-Version: 13 xxxxxx\r\n"), "{whole}");
        for cut in 1..head.len() {
            let split = redact_pieces(&[&head[..cut], &head[cut..]]);
            assert!(!split.contains("s3cret"), "cut at {cut}: {split}");
        }
        // A Host is a host and a port: the rest goes, a userinfo before it too.
        for (host, kept) in [
            ("ws.example.com:8080", "ws.example.com:8080"),
            ("[2001:db8::1]:443", "[2001:db8::1]:443"),
            ("bob:s3cret@ws.example.com:8080", "xxxxxxxxxxxws.example.com:8080"),
            ("ws.example.com:s3cret", "ws.example.com:xxxxxx"),
            ("ws.example.com/s3cret?x=s3cret", "ws.example.comxxxxxxxxxxxxxxxx"),
            ("ws.example.com s3cret", "ws.example.comxxxxxxx"),
        ] {
            let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            let out = redact_pieces(&[head.as_bytes()]);
            assert!(out.contains(&format!("\r\nHost: {kept}\r\n")), "{host}: {out}");
        }
        // A server's list of the versions it speaks stays.
        let refusal: &[u8] = b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13, 8, 7\r\n\r\n";
        assert!(redact_pieces(&[refusal]).contains("Sec-WebSocket-Version: 13, 8, 7\r\n"));
        // A word split where it holds no `:` or `@` is kept as it is.
        let via: &[u8] = b"GET / HTTP/1.1\r\nVia: 1.1 split-name.example.com\r\n\r\n";
        let cut = via.windows(4).position(|w| w == b"name").unwrap();
        assert_eq!(redact_pieces(&[&via[..cut], &via[cut..]]), String::from_utf8_lossy(via));
    }

    #[test]
    fn response_status_and_length_are_read() {
        let (_, end) =
            redact(b"HTTP/1.1 302 Found\r\nLocation: /login\r\nContent-Length: 42\r\nSet-Cookie: a=b\r\n\r\n");
        let end = end.unwrap();
        assert_eq!((end.response, end.status, end.content_length), (true, 302, Some(42)));
    }

    #[test]
    fn path_parameter_values_go_and_the_path_stays() {
        let req = b"GET /app;jsessionid=ABC123/chat;v;x=1?q=2 HTTP/1.1\r\nHost: ws.example\r\n\r\n";
        let s = String::from_utf8(redact(req).0).unwrap();
        assert!(s.starts_with("GET /app;jsessionid=xxxxxx/chat;x;x=x?q=x HTTP/1.1\r\nHost: ws.example\r\n"), "{s}");
        let resp = b"HTTP/1.1 302 Found\r\nLocation: https://a.example/p;jsessionid=ABC123/q;k=v?x=1\r\n\r\n";
        let s = String::from_utf8(redact(resp).0).unwrap();
        assert!(s.contains("Location: https://a.example/p;jsessionid=xxxxxx/q;k=x?x=x\r\n"), "{s}");
    }

    #[test]
    fn a_request_target_fragment_goes() {
        for (target, want) in [
            ("/chat#access_token=ABC", "/chat#xxxxxxxxxxxxxxxx"),
            ("/chat?a=1#t=ABC&b=2", "/chat?a=x#xxxxxxxxx"),
            ("/chat?a#b", "/chat?x#x"),
            ("/p;s=1#k=v", "/p;s=x#xxx"),
            ("/chat#a#b", "/chat#xxx"),
        ] {
            let req = format!("GET {target} HTTP/1.1\r\nHost: ws.example\r\n\r\n");
            let s = String::from_utf8(redact(req.as_bytes()).0).unwrap();
            assert!(s.starts_with(&format!("GET {want} HTTP/1.1\r\nHost: ws.example\r\n")), "{s}");
            // A Location is read the same way.
            let resp = format!("HTTP/1.1 302 Found\r\nLocation: https://a.example{target}\r\n\r\n");
            let s = String::from_utf8(redact(resp.as_bytes()).0).unwrap();
            assert!(s.contains(&format!("\r\nLocation: https://a.example{want}\r\n")), "{s}");
        }
    }

    #[test]
    fn binary_is_not_http() {
        assert!(redact(b"\x16\x03\x01\x02").1.is_none());
        let mut r = HeadRedactor::default();
        assert!(matches!(r.step(0x81, Rest::of(&[])), Step::NotHttp));
    }
}
