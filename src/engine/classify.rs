//! What a flow carries, from its first bytes: an HTTP request or response head, a TLS
//! ClientHello (and whether the server answered it in plaintext), the HTTP/2 preface, or
//! WebSocket frames met mid-connection. The class decides the flow's verdict and the phase its
//! directions are read in (`phase.rs`).

use super::*;
use crate::proto::dns::{TcpFrame, tcp_frame};

impl Engine {
    /// Classifies an undecided flow from the bytes collected so far (and finds what a flow to
    /// a `--port` carries, without changing that it is kept).
    pub(super) fn try_classify(&mut self, key: FlowKey) {
        // Whatever it finds is what the redaction reads the held bytes with.
        self.note_reading_changed(key);
        let flow = self.flows.get_mut(&key).expect("flow exists");
        if flow.content == Content::Dns {
            return self.read_lookups(key);
        }
        // Kept whatever it carries (a --port flow, an open CONNECT tunnel), still read as
        // what it carries.
        let to_port = matches!(flow.class, Class::Port | Class::Tunnel);
        if to_port && flow.dirs.iter().all(|d| d.head.is_empty()) {
            // Nothing of what it carries has arrived yet (a tunnel just opened).
            return;
        }
        let order = match flow.client {
            Some(c) => [c, c.other()],
            None => [Side::A, Side::B],
        };
        let mut class = Class::Undecided;
        let mut content = Content::Unknown;
        let mut label = (Proto::Unknown, "");
        let mut names: Vec<String> = Vec::new();
        let mut undecided_any = false;
        let mut hello = None;
        for s in order {
            let head = &flow.dirs[s.index()].head;
            // The server's bytes are read only when the client's side is missing from the capture.
            if head.is_empty() || flow.client.is_some_and(|c| c != s && !flow.dirs[c.index()].head.is_empty()) {
                continue;
            }
            let server_side = flow.client.is_some_and(|c| c != s);
            if !server_side && head.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(head) {
                undecided_any = true;
                continue;
            }
            if !server_side && head.starts_with(H2_PREFACE) {
                flow.client = Some(s);
                class = Class::H2Preface;
                content = Content::H2Preface;
                label = (Proto::H2c, "HTTP/2 with prior knowledge (no upgrade possible)");
                break;
            }
            match if server_side { Some(false) } else { http::looks_like_request(head) } {
                Some(true) => match flow.dirs[s.index()].head_len() {
                    Some(n) => {
                        let req = http::parse_request(&head[..n]);
                        flow.client = Some(s);
                        content = Content::Http;
                        if let Some(r) = req.as_ref().filter(|r| r.is_websocket_attempt()) {
                            class = Class::WebSocket;
                            label = (Proto::WebSocket, "WebSocket upgrade request");
                            names.extend(r.host_name());
                        } else if let Some(r) = req.as_ref().filter(|r| r.method.eq_ignore_ascii_case("CONNECT")) {
                            class = Class::Tunnel;
                            label = (Proto::Connect, "HTTP CONNECT through a forward proxy");
                            names.push(http::strip_port(&r.path));
                        } else {
                            class = Class::Dropped;
                            label = match req {
                                Some(_) => (Proto::Http, "HTTP without an upgrade"),
                                None => (Proto::Http, "unparsable HTTP request"),
                            };
                        }
                        break;
                    }
                    None if head.len() >= http::MAX_HEAD_BYTES => {
                        class = Class::Dropped;
                        content = Content::Http;
                        label = (Proto::Http, "HTTP head over 64 KiB");
                        break;
                    }
                    None => {
                        undecided_any = true;
                        continue;
                    }
                },
                None => {
                    undecided_any = true;
                    continue;
                }
                Some(false) => {}
            }
            // Met from the server's side (the request was not captured): a 101 that switches
            // to websocket is a WebSocket; any other response, plain HTTP.
            if flow.client.is_none_or(|c| c != s) && http::looks_like_response(head) == Some(true) {
                let Some(n) = flow.dirs[s.index()].head_len() else {
                    undecided_any = true;
                    continue;
                };
                let ws = http::parse_response(&head[..n]).is_some_and(|r| {
                    r.status == 101
                        && (r.upgrade.as_deref().is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
                            || r.accept.is_some())
                });
                flow.client = Some(s.other());
                content = Content::Http;
                (class, label) = if ws {
                    (Class::WebSocket, (Proto::WebSocket, "WebSocket 101 (its request not captured)"))
                } else {
                    (Class::Dropped, (Proto::Http, "HTTP response without an upgrade"))
                };
                break;
            }
            // DNS over TCP: on port 53, and only if it parses as DNS. Either side's first
            // message says which side asks.
            if key.has_port(DNS_PORT) {
                match tcp_frame(head) {
                    TcpFrame::Whole(_) => {
                        let response = head[4] & 0x80 != 0;
                        flow.client = Some(if response { s.other() } else { s });
                        content = Content::Dns;
                        label = (Proto::Dns, dns::ANOTHER_NAME);
                        break;
                    }
                    TcpFrame::Partial => {
                        undecided_any = true;
                        continue;
                    }
                    TcpFrame::NotDns => {}
                }
            }
            if server_side {
                continue;
            }
            // Parsed once it is whole: a hello cut into many records was walked again at every
            // segment.
            if flow.dirs[s.index()].hello_pending() {
                undecided_any = true;
                continue;
            }
            match tls::parse_client_hello(head) {
                tls::Hello::Parsed(ch) => {
                    flow.client = Some(s);
                    content = Content::Tls;
                    let sni = ch.sni.clone().unwrap_or_default();
                    let h2 = ch.alpn.iter().any(|p| p == "h2");
                    let h1 = ch.alpn.iter().any(|p| p == "http/1.1");
                    let mut keep = if !self.opts.select.has_hosts() {
                        ch.alpn.is_empty() || (h1 && !h2)
                    } else {
                        self.opts.select.host_matches(&sni)
                    };
                    let proto = if h2 {
                        Proto::TlsH2
                    } else if h1 || ch.alpn.is_empty() {
                        Proto::TlsHttp1
                    } else {
                        Proto::Other
                    };
                    let mut plain = false;
                    if !keep && !self.opts.select.has_hosts() {
                        // Dropped for what it offers, unless the server answers in plaintext.
                        let answer = &flow.dirs[s.other().index()].head;
                        match http::plaintext_answer(answer) {
                            Some(Some(_)) => (keep, plain) = (true, true),
                            None if flow.ends == 0 && !flow.hello_timed_out => {
                                flow.hello_waits.get_or_insert(self.ev.at);
                                undecided_any = true;
                                content = Content::Unknown;
                                continue;
                            }
                            _ => {}
                        }
                    }
                    class = if keep { Class::Tls } else { Class::Dropped };
                    let keys = !plain && !self.opts.select.has_hosts() && self.keys.get(&ch.random).is_some();
                    // What it is judged by its hello alone: its verdict, or a keyed session's
                    // should its plaintext never be read.
                    let by_hello = match (keep, !self.opts.select.has_hosts(), proto) {
                        _ if plain => "TLS answered in plaintext HTTP",
                        (true, false, _) => "SNI matches --host",
                        (false, false, _) => "SNI not among --host",
                        (true, true, _) if ch.alpn.is_empty() => "TLS without ALPN (HTTP/1.1 possible)",
                        (true, true, _) => "TLS offering HTTP/1.1 only",
                        (false, true, Proto::TlsH2) => "TLS offering h2",
                        (false, true, _) => "TLS for another protocol",
                    };
                    label = (proto, by_hello);
                    if keys {
                        label.1 = "TLS with keys: judged by what it carries";
                        flow.keyed = Some(Keyed::new(&ch.random, (class, proto, by_hello), self.ev.at.frame));
                        class = Class::Tls;
                        keep = true;
                    }
                    if (keep || to_port) && !sni.is_empty() {
                        names.push(sni);
                    }
                    // A keyed session's keys follow its verdict (`inner`).
                    if (keep || to_port)
                        && !keys
                        && let Ok(r) = <[u8; 32]>::try_from(ch.random.as_slice())
                    {
                        self.kept_tls_randoms.push((r, None));
                    }
                    hello = Some((s, ch));
                    break;
                }
                tls::Hello::NeedMore => {
                    undecided_any = true;
                    continue;
                }
                tls::Hello::NotTls => {}
            }
        }
        if class == Class::Undecided && flow.client.is_none() {
            // Met mid-connection: a WebSocket shows masked frames one way, unmasked the other.
            let (a, b) = (&flow.dirs[0], &flow.dirs[1]);
            let client = if a.masked_runs >= 2 || (a.masked_runs >= 1 && b.unmasked_runs >= 1) {
                Some(Side::A)
            } else if b.masked_runs >= 2 || (b.masked_runs >= 1 && a.unmasked_runs >= 1) {
                Some(Side::B)
            } else {
                None
            };
            if let Some(c) = client {
                flow.client = Some(c);
                class = Class::WebSocket;
                content = Content::Frames;
                label = (Proto::WebSocket, "WebSocket frames mid-connection");
                let now = self.ev.at;
                for (i, d) in flow.dirs.iter_mut().enumerate() {
                    d.phase = Phase::Frames;
                    d.handshake_end = Some(d.stream.delivered());
                    // The segments that showed the frames are frames too (a close frame in
                    // them is the story): read them, each citing its own packet.
                    let head = std::mem::take(&mut d.head);
                    let marks = std::mem::take(&mut d.segments);
                    for (k, &(from, at)) in marks.iter().enumerate() {
                        let to = marks.get(k + 1).map_or(head.len(), |m| m.0 as usize).min(head.len());
                        let Some(seg) = head.get(from as usize..to) else { break };
                        self.ev.at = at;
                        let side = if i == 0 { Side::A } else { Side::B };
                        let _ = feed_units(d, seg, self.opts.keep_frames, &mut self.ev, (flow.conv, key, side));
                    }
                }
                self.ev.at = now;
            }
        }
        // (A lookup over TCP stays undecided until its messages decide it.)
        if class == Class::Undecided && !undecided_any && content != Content::Dns {
            let limit_hit = flow.payload_segments >= MID_STREAM_CLASSIFY_SEGMENTS
                || flow.client.is_some()
                || flow.dirs.iter().any(|d| d.head.len() >= http::MAX_HEAD_BYTES);
            if limit_hit {
                class = Class::Dropped;
                content = Content::Other;
                label = (Proto::Other, "not HTTP, TLS or WebSocket");
            }
        }
        if content == Content::Unknown {
            return;
        }
        flow.content = content;
        if to_port {
            // Kept whatever it carries; still read as what it carries.
            class = flow.class;
            if class == Class::Port {
                flow.proto = label.0;
            }
        } else {
            flow.class = class;
            (flow.proto, flow.why) = label;
        }
        if content == Content::Dns {
            // Decided as a lookup is, by what its messages say (`read_lookups`).
            if to_port {
                self.report_class(key);
            }
            return self.read_lookups(key);
        }
        let conv = flow.conv;
        if let Some((s, ch)) = hello {
            let now = self.ev.at;
            self.ev.at = flow.hello_waits.take().unwrap_or(now);
            self.ev.push(conv, key, s, Event::ClientHello(Box::new(ch)));
            self.ev.at = now;
        }
        let flow = self.flows.get_mut(&key).expect("flow exists");
        match content {
            Content::Tls if class.kept() => {
                let keyed = flow.keyed.is_some();
                for s in [Side::A, Side::B] {
                    let d = &mut flow.dirs[s.index()];
                    if keyed {
                        d.records.capture_units();
                        d.tls = Some(Box::default());
                    }
                    let head = std::mem::take(&mut d.head);
                    d.handshake_end = Some(d.head_start);
                    if flow.client != Some(s)
                        && let Some(Some(status)) = http::plaintext_answer(&head)
                    {
                        // Answered in plaintext before the hello was decided (it offered h2).
                        self.ev.push(conv, key, s, Event::PlainAnswer { status });
                        flow.plain_answer = true;
                        let n = u32::try_from(head.len()).unwrap_or(u32::MAX);
                        flow.dirs[s.index()].phase = Phase::PlainAnswer(PLAIN_ANSWER_BYTES.saturating_sub(n));
                        continue;
                    }
                    d.phase = Phase::Records;
                    let _ = feed_units(d, &head, self.opts.keep_frames, &mut self.ev, (conv, key, s));
                }
            }
            Content::H2Preface | Content::Other => {
                for d in &mut flow.dirs {
                    d.handshake_end.get_or_insert(d.stream.delivered());
                    d.phase = Phase::Bulk;
                    d.head = Vec::new();
                }
            }
            _ => {}
        }
        if class == Class::Dropped {
            for d in &mut flow.dirs {
                d.head = Vec::new();
            }
        }
        self.kept_names.extend(names.iter().map(|n| name_key(n)));
        if to_port {
            self.report_class(key);
            self.advance_heads(key);
            return;
        }
        if self.flows.get(&key).is_some_and(|f| f.keyed.as_ref().is_some_and(|k| k.pending)) {
            // Its packets wait for what the plaintext is (`inner`); say what it is so far.
            self.report_class(key);
            // The heads just fed may hold the ServerHello already.
            for s in [Side::A, Side::B] {
                let d = &self.flows.get(&key).expect("flow exists").dirs[s.index()];
                if d.tls.as_ref().is_some_and(|t| t.dec.is_some() || t.server_hello.is_some()) {
                    self.after_records(key, s, 0);
                }
            }
            return;
        }
        self.on_classified(key);
        if matches!(class, Class::WebSocket | Class::Tunnel) {
            self.advance_heads(key);
        }
    }

    /// Reports what the flow was found to be (`Event::Classified`).
    pub(super) fn report_class(&mut self, key: FlowKey) {
        let f = self.flows.get(&key).expect("flow exists");
        let (class, content, client, why) = (f.class, f.content, f.client, f.why);
        self.ev.push(f.conv, key, client.unwrap_or(Side::A), Event::Classified { class, content, client, why });
    }

    /// Resolves the packets that waited for this flow's classification, and DNS lookups
    /// that named its host or address.
    pub(super) fn on_classified(&mut self, key: FlowKey) {
        self.report_class(key);
        self.note_reading_changed(key);
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let kept = flow.class.kept();
        if kept {
            flow.count_kept(&mut self.stats);
        }
        let v = if kept { Verdict::Keep } else { Verdict::Drop };
        for w in flow.waiting.drain(..) {
            self.resolved.push((w.packet, v));
        }
        // A kept lookup names no server of its own: its resolver is not a kept address.
        if !kept || flow.class == Class::Lookup {
            return;
        }
        if let Some(c) = flow.client {
            self.kept_addrs.insert(key.addr(c.other()));
        } else {
            self.kept_addrs.insert(key.a);
            self.kept_addrs.insert(key.b);
        }
        self.resolve_dns_matches();
    }
}
