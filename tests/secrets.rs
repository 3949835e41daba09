//! Planted secrets: each capture carries a unique string where an attacker or a careless
//! client would put it, and neither `scrub` nor `trim --scrub` may let it through — not in the
//! output's raw bytes, not in a direction's reassembled stream (a secret split across
//! segments). The cases are the classes of a red-team run (SPEC "What scrubbing changes").

mod common;

use std::path::Path;

use common::*;

const SECRET: &str = "PLANTEDsecret7Q4z";

/// Each direction's TCP payload bytes in capture order (the test captures are in order), as
/// read from the file by an independent reader (pcap-file), one stream after the other.
fn streams(file: &Path) -> Vec<u8> {
    let mut dirs: Vec<(u16, Vec<u8>)> = Vec::new();
    for p in read_packets(file) {
        if let Ok(s) = etherparse::SlicedPacket::from_ethernet(&p.data)
            && let Some(etherparse::TransportSlice::Tcp(t)) = s.transport
        {
            let port = t.source_port();
            match dirs.iter_mut().find(|(p, _)| *p == port) {
                Some((_, v)) => v.extend_from_slice(t.payload()),
                None => dirs.push((port, t.payload().to_vec())),
            }
        }
    }
    dirs.into_iter()
        .flat_map(|(_, mut v)| {
            v.push(0);
            v
        })
        .collect()
}

/// Scrubs the capture both ways; says where the secret (or its lower-case form, or its first
/// 12 characters) is still found.
fn leaks(name: &str, frames: &[Vec<u8>]) -> Vec<String> {
    let mut found = Vec::new();
    let dir = tmpdir();
    let input = dir.path().join(format!("{name}.pcap"));
    let bytes = pcap(frames);
    std::fs::write(&input, &bytes).unwrap();
    if let Ok(keep) = std::env::var("SECRETS_KEEP_DIR") {
        std::fs::copy(&input, Path::new(&keep).join(format!("{name}.pcap"))).unwrap();
    }
    let planted = contains(&bytes, SECRET.as_bytes()) || contains(&streams(&input), SECRET.as_bytes());
    assert!(planted, "{name}: the secret is not planted");
    for verb in [&["scrub"][..], &["trim", "--scrub"][..], &["trim", "--scrub", "--bulk", "keep"][..]] {
        let out = dir.path().join("out.pcap");
        let mut args = verb.to_vec();
        args.extend(["--force", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        let r = run(&args);
        assert!(r.status.success(), "{name}: {args:?}: {}", String::from_utf8_lossy(&r.stderr));
        let raw = std::fs::read(&out).unwrap();
        for s in [SECRET.to_string(), SECRET.to_ascii_lowercase(), SECRET[..12].to_string()] {
            if contains(&raw, s.as_bytes()) || contains(&streams(&out), s.as_bytes()) {
                found.push(format!("{name}: {verb:?} left '{s}'"));
                break;
            }
        }
    }
    found
}

fn assert_none(found: Vec<String>) {
    assert!(found.is_empty(), "{} leak(s):\n{}", found.len(), found.join("\n"));
}

/// `scrub` (with `extra` options) of `input` into `dir`; the output's path.
fn scrub_with(input: &Path, dir: &Path, extra: &[&str]) -> std::path::PathBuf {
    let out = dir.join("out.pcap");
    let mut a = vec!["scrub", "--force"];
    a.extend(extra);
    a.extend([input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(run(&a).status.success(), "{a:?}");
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Text protocols that are not HTTP: whatever their first word, their lines go whole.
#[test]
fn other_protocols_are_never_read_as_http() {
    let mut found = Vec::new();
    let cases: &[(&str, u16, String)] = &[
        ("ftp", 21, format!("USER bob\r\nPASS {SECRET}\r\n")),
        ("smtp", 25, format!("EHLO me\r\nAUTH PLAIN {SECRET}\r\n")),
        ("pop3", 110, format!("USER bob\r\nPASS {SECRET}\r\n")),
        ("redis", 6379, format!("AUTH {SECRET}\r\n")),
        ("irc", 6667, format!("PASS {SECRET}\r\nNICK bob\r\n")),
        ("nats", 4222, format!("CONNECT {{\"user\":\"bob\",\"pass\":\"{SECRET}\"}}\r\n")),
        ("rtsp", 554, format!("DESCRIBE rtsp://bob:{SECRET}@cam.example/ RTSP/1.0\r\nCSeq: 1\r\n\r\n")),
        ("rtsp-options", 554, format!("OPTIONS rtsp://bob:{SECRET}@cam.example/ RTSP/1.0\r\nCSeq: 1\r\n\r\n")),
        ("proxy-protocol", 80, format!("PROXY TCP4 192.0.2.1 {SECRET} 51000 80\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n")),
        ("short-word", 80, format!("X {SECRET}\r\n")),
        ("no-colon", 80, format!("GET / HTTP/1.1\r\nHost: a\r\n{SECRET}\r\n\r\n")),
    ];
    for (name, port, text) in cases {
        let frames = Conv::new(40000, *port).send(0, text.as_bytes(), 1400).send(1, b"+OK\r\n", 1400).close();
        found.extend(leaks(name, &frames));
    }
    assert_none(found);
}

/// What is HTTP is one answer for every command: a request line's first word must be a known
/// method. An "upgrade" led by another word (or another protocol's command) is no WebSocket
/// attempt to `flows` or `diagnose` either, so the scrubber overwriting it whole cannot make
/// diagnose(scrub(x)) differ from diagnose(x).
#[test]
fn the_engine_and_the_scrubber_agree_on_what_is_http() {
    let dir = tmpdir();
    let cases = [
        ("unknown-method", upgrade(&format!("Cookie: {SECRET}\r\n")).replacen("GET", "FETCH", 1), 80),
        ("lower-case-method", upgrade(&format!("Cookie: {SECRET}\r\n")).replacen("GET", "get", 1), 80),
        ("ftp", format!("USER bob\r\nPASS {SECRET}\r\n"), 21),
    ];
    for (name, text, port) in cases {
        let frames = Conv::new(40100, port).send(0, text.as_bytes(), 1400).send(1, SWITCHING.as_bytes(), 1400).close();
        let input = dir.path().join(format!("{name}.pcap"));
        std::fs::write(&input, pcap(&frames)).unwrap();
        let r = run(&["flows", "--json", input.to_str().unwrap()]);
        let flows: serde_json::Value =
            serde_json::from_slice(r.stdout.split(|&c| c == b'\n').next().unwrap()).expect("flows JSON");
        assert_ne!(flows["class"], "websocket", "{name}: {flows}");
        assert_ne!(flows["class"], "http", "{name}: {flows}");
        let attempts = |f: &Path| {
            let r = run(&["diagnose", "--json", f.to_str().unwrap()]);
            let d: serde_json::Value = serde_json::from_slice(&r.stdout).expect("diagnose JSON");
            d["attempts"].as_array().unwrap().len()
        };
        assert_eq!(attempts(&input), 0, "{name}: diagnose saw an attempt");
        let out = scrub_with(&input, dir.path(), &[]);
        assert_eq!(attempts(&out), 0, "{name}: diagnose of the scrubbed capture");
        assert!(!contains(&std::fs::read(&out).unwrap(), SECRET.as_bytes()), "{name}: the secret survived");
    }
}

/// Bytes outside the parsed packet: data in a SYN, an Ethernet trailer, and a WebSocket
/// upgrade on port 53 (not DNS because of its port).
#[test]
fn bytes_outside_the_parsed_packet_go() {
    let mut found = Vec::new();
    let mut c = Conv::fast_open(40001, 443, format!("GET / HTTP/1.1\r\nCookie: {SECRET}\r\n\r\n").as_bytes());
    found.extend(leaks("tcp-fast-open", &c.close()));

    let mut c = Conv::new(40002, 80);
    c.send(0, upgrade("").as_bytes(), 1400);
    let mut frames = c.close();
    // Padding after the IP datagram, as a short frame carries it on Ethernet.
    let last = frames.last_mut().unwrap();
    last.extend_from_slice(SECRET.as_bytes());
    found.extend(leaks("ethernet-trailer", &frames));

    let frames = Conv::new(40003, 53)
        .send(0, upgrade(&format!("Cookie: session={SECRET}\r\n")).as_bytes(), 1400)
        .send(1, SWITCHING.as_bytes(), 1400)
        .close();
    found.extend(leaks("websocket-on-port-53", &frames));
    assert_none(found);
}

/// Bytes the reassembly never hands over in order go: a WebSocket message whose first segment
/// (with the frame header) the capture lost, so that the rest of it waits ahead of a hole that
/// never fills; and a message sent again at the same sequence numbers with other bytes.
#[test]
fn bytes_never_read_in_order_go() {
    let mut found = Vec::new();
    let mut msg = vec![0x81, 126];
    let text = format!("{SECRET} ").repeat(200);
    msg.extend((text.len() as u16).to_be_bytes());
    msg.extend(text.as_bytes());
    let mut c = Conv::new(40_050, 80);
    c.send(0, upgrade("").as_bytes(), 1400).send(1, SWITCHING.as_bytes(), 1400);
    let first = c.frames.len();
    c.send(1, &msg, 1000);
    let mut frames = c.close();
    frames.remove(first);
    found.extend(leaks("segment-lost-before", &frames));

    // The same sequence numbers sent twice: the copy that is not read must not pass.
    let mut c = Conv::new(40_051, 80);
    c.send(0, upgrade("").as_bytes(), 1400).send(1, SWITCHING.as_bytes(), 1400);
    let seq = c.seq[1];
    c.send(1, &[0x81, 0x05, b'h', b'e', b'l', b'l', b'o'], 1400);
    c.seq[1] = seq;
    c.send(1, &[0x81, 0x05, b'h', b'e', b'l', b'l', b'o'], 1400);
    c.seq[1] = seq;
    let mut other = vec![0x81, SECRET.len() as u8];
    other.extend(SECRET.as_bytes());
    c.send(1, &other, 1400);
    found.extend(leaks("retransmitted-differently", &c.close()));
    assert_none(found);
}

/// DNS over TCP is kept only message by message, each whole and parsed: what follows a
/// lookup on port 53 without being DNS goes (a "message" whose length is right but whose
/// bytes are not DNS, and bytes after the last whole message), in whole segments and in
/// small ones.
#[test]
fn dns_over_tcp_keeps_only_dns_messages() {
    let mut found = Vec::new();
    for mss in [1400, 5, 1] {
        let mut not_dns = (40u16).to_be_bytes().to_vec();
        not_dns.extend(format!("AUTH {SECRET} and then some padding..").as_bytes());
        let mut c = Conv::new(40070 + mss as u16, 53);
        c.send(0, &dns_over_tcp("ws.example.com"), mss).send(0, &not_dns, mss);
        found.extend(leaks(&format!("dns-tcp-then-not-dns-{mss}"), &c.close()));
        let mut c = Conv::new(40080 + mss as u16, 53);
        c.send(0, &[dns_over_tcp("ws.example.com"), format!("PASS {SECRET}\r\n").into_bytes()].concat(), mss);
        found.extend(leaks(&format!("dns-tcp-then-text-{mss}"), &c.close()));
    }
    assert_none(found);
}

/// `--pseudonymize` replaces a name asked over TCP, also when the message is split across
/// segments (its length alone in the first, as some resolvers write it).
#[test]
fn dns_over_tcp_names_are_pseudonymized_whole() {
    let dir = tmpdir();
    let mut frames = Vec::new();
    let query = dns_over_tcp("hiddenlookupname.example");
    for (port, cuts) in [(40090, &[][..]), (40091, &[2][..]), (40092, &[2, 20][..])] {
        let mut c = Conv::new(port, 53);
        let mut from = 0;
        for &to in cuts.iter().chain([query.len()].iter()) {
            c.send(0, &query[from..to], 1400);
            from = to;
        }
        frames.extend(c.close());
    }
    let input = dir.path().join("dns-tcp.pcap");
    std::fs::write(&input, pcap(&frames)).unwrap();
    let out = scrub_with(&input, dir.path(), &["--pseudonymize"]);
    let bytes = std::fs::read(&out).unwrap();
    assert!(!contains(&bytes, b"hiddenlookupname"), "the name survived");
    assert!(!contains(&streams(&out), b"hiddenlookupname"), "the name survived in a stream");
    // Each query is still a query for one (pseudonymous) name of the same shape.
    require_tshark();
    let names = tshark(&out, &["-Y", "dns.flags.response == 0", "-T", "fields", "-e", "dns.qry.name"]);
    let names: Vec<&str> = names.lines().collect();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.iter().all(|n| n.len() == "hiddenlookupname.example".len() && *n == names[0]), "{names:?}");
}

/// HTTP heads that bend the rules: folded lines, bare CR, the reason phrase, a query item
/// without `=`, a head over 64 KiB, each split in small segments too (and in single bytes,
/// which the scrubber judges looking ahead into the segments queued after each).
#[test]
fn http_head_edge_cases() {
    let mut found = Vec::new();
    let cases: Vec<(&str, String, String)> = vec![
        ("folded", upgrade(&format!("Origin: https://a.example\r\n {SECRET}\r\n")), SWITCHING.into()),
        ("bare-cr", upgrade(&format!("Origin: https://a.example\r{SECRET}\r\n")), SWITCHING.into()),
        ("reason", upgrade(""), format!("HTTP/1.1 403 {SECRET}\r\nContent-Length: 0\r\n\r\n")),
        ("query-without-equals", upgrade("").replace("/chat", &format!("/chat?{SECRET}")), SWITCHING.into()),
        ("query-item-without-equals", upgrade("").replace("/chat", &format!("/chat?a=1&{SECRET}")), SWITCHING.into()),
        ("huge-head", upgrade(&format!("X-Pad: {}\r\nX-Token: {SECRET}\r\n", "a".repeat(70_000))), SWITCHING.into()),
    ];
    for (name, req, resp) in cases {
        for mss in [1400, 7, 1] {
            if mss == 1 && name == "huge-head" {
                continue;
            }
            let frames = Conv::new(40010, 80).send(0, req.as_bytes(), mss).send(1, resp.as_bytes(), mss).close();
            found.extend(leaks(&format!("{name}-{mss}"), &frames));
        }
    }
    assert_none(found);
}

/// Credentials inside the values that are kept for the diagnosis, whole and split into
/// segments of five bytes and of one.
#[test]
fn credentials_inside_allow_listed_values() {
    let mut found = Vec::new();
    let k8s = format!("base64url.bearer.authorization.k8s.io.{SECRET}");
    let cases: Vec<(&str, String, String)> = vec![
        (
            "k8s-subprotocol",
            upgrade(&format!("Sec-WebSocket-Protocol: {k8s}, v4.channel.k8s.io\r\n")),
            SWITCHING.replace("\r\n\r\n", &format!("\r\nSec-WebSocket-Protocol: {k8s}\r\n\r\n")),
        ),
        (
            "token-subprotocol",
            upgrade(&format!("Sec-WebSocket-Protocol: chat, {SECRET}abcdef0123456789\r\n")),
            SWITCHING.into(),
        ),
        ("origin-userinfo", upgrade(&format!("Origin: https://bob:{SECRET}@a.example\r\n")), SWITCHING.into()),
        (
            "host-userinfo",
            upgrade("").replace("Host: ws.example.com", &format!("Host: bob:{SECRET}@ws.example.com")),
            SWITCHING.into(),
        ),
        (
            "absolute-target-userinfo",
            upgrade("").replace("GET /chat", &format!("GET http://bob:{SECRET}@ws.example.com/chat")),
            SWITCHING.into(),
        ),
        (
            "location-query",
            upgrade(""),
            format!(
                "HTTP/1.1 302 Found\r\nLocation: https://id.example/cb?code={SECRET}&state=1\r\nContent-Length: 0\r\n\r\n"
            ),
        ),
        (
            "location-fragment",
            upgrade(""),
            format!(
                "HTTP/1.1 302 Found\r\nLocation: https://app.example/#access_token={SECRET}\r\nContent-Length: 0\r\n\r\n"
            ),
        ),
        (
            "location-userinfo",
            upgrade(""),
            format!("HTTP/1.1 302 Found\r\nLocation: https://bob:{SECRET}@app.example/\r\nContent-Length: 0\r\n\r\n"),
        ),
        (
            // A URL that keeps the current scheme (`//authority/path`).
            "location-scheme-relative-userinfo",
            upgrade(""),
            format!("HTTP/1.1 302 Found\r\nLocation: //bob:{SECRET}@app.example/\r\nContent-Length: 0\r\n\r\n"),
        ),
        (
            "location-backslash-relative-userinfo",
            upgrade(""),
            format!("HTTP/1.1 302 Found\r\nLocation: /\\bob:{SECRET}@app.example/\r\nContent-Length: 0\r\n\r\n"),
        ),
        (
            // A session id in a path parameter (Java servlets' URL rewriting).
            "target-path-parameter",
            upgrade("").replace("GET /chat", &format!("GET /app;jsessionid={SECRET}/chat")),
            SWITCHING.into(),
        ),
        (
            // Browsers never send a fragment; a careless client may.
            "target-fragment",
            upgrade("").replace("GET /chat", &format!("GET /chat#access_token={SECRET}")),
            SWITCHING.into(),
        ),
        (
            "target-path-parameter-without-name",
            upgrade("").replace("GET /chat", &format!("GET /chat;{SECRET}")),
            SWITCHING.into(),
        ),
        (
            "location-path-parameter",
            upgrade(""),
            format!(
                "HTTP/1.1 302 Found\r\nLocation: https://app.example/p;jsessionid={SECRET}?x=1\r\nContent-Length: 0\r\n\r\n"
            ),
        ),
        (
            "origin-scheme-relative-userinfo",
            upgrade(&format!("Origin: //bob:{SECRET}@a.example\r\n")),
            SWITCHING.into(),
        ),
        // Allow-listed values that are not URLs by name still hold one, or an authority: a
        // proxy named with its credentials, a forwarded scheme written as a URL.
        ("via-userinfo", upgrade(&format!("Via: 1.1 alice:{SECRET}@proxy.internal\r\n")), SWITCHING.into()),
        ("via-list-userinfo", upgrade(&format!("Via: 1.1 edge, 1.1 bob:{SECRET}@mid (x)\r\n")), SWITCHING.into()),
        (
            "forwarded-proto-url",
            upgrade(&format!("X-Forwarded-Proto: https://bob:{SECRET}@x.example\r\n")),
            SWITCHING.into(),
        ),
        (
            "server-userinfo",
            upgrade(""),
            SWITCHING.replace("\r\n\r\n", &format!("\r\nServer: nginx (ops:{SECRET}@cfg)\r\n\r\n")),
        ),
        // Token and number values holding what no token or number is.
        (
            "upgrade-userinfo",
            upgrade("").replace("Upgrade: websocket", &format!("Upgrade: websocket, bob:{SECRET}@x")),
            SWITCHING.into(),
        ),
        (
            "connection-junk",
            upgrade("").replace("Connection: Upgrade", &format!("Connection: Upgrade:{SECRET}")),
            SWITCHING.into(),
        ),
        (
            "version-junk",
            upgrade("").replace("Sec-WebSocket-Version: 13", &format!("Sec-WebSocket-Version: 13 {SECRET}")),
            SWITCHING.into(),
        ),
        (
            "host-port-junk",
            upgrade("").replace("Host: ws.example.com", &format!("Host: ws.example.com:{SECRET}")),
            SWITCHING.into(),
        ),
        (
            "host-path",
            upgrade("").replace("Host: ws.example.com", &format!("Host: ws.example.com/{SECRET}")),
            SWITCHING.into(),
        ),
        ("content-length-junk", upgrade(""), format!("HTTP/1.1 403 Forbidden\r\nContent-Length: 0{SECRET}\r\n\r\n")),
    ];
    for (name, req, resp) in cases {
        for mss in [1400, 5, 1] {
            let frames = Conv::new(40020, 80).send(0, req.as_bytes(), mss).send(1, resp.as_bytes(), mss).close();
            found.extend(leaks(&format!("{name}-{mss}"), &frames));
        }
    }
    assert_none(found);
}

/// TLS: a session ticket, a PSK identity and a cookie in the ClientHello, and text riding in
/// an alert record.
#[test]
fn tls_resumption_secrets_and_alert_padding_go() {
    let mut found = Vec::new();
    let ticket = tls_ext(35, format!("ticket:{SECRET}").as_bytes());
    let mut psk = Vec::new();
    let identity = format!("identity:{SECRET}");
    let mut ids = (identity.len() as u16).to_be_bytes().to_vec();
    ids.extend(identity.as_bytes());
    ids.extend([0, 0, 0, 1]);
    psk.extend((ids.len() as u16).to_be_bytes());
    psk.extend(ids);
    psk.extend([0, 33, 32]);
    psk.extend([9u8; 32]);
    let cookie = tls_ext(44, format!("\x00\x17cookie:{SECRET}").as_bytes());
    for (name, extra) in
        [("session-ticket", vec![ticket]), ("psk-identity", vec![tls_ext(41, &psk)]), ("cookie", vec![cookie])]
    {
        for mss in [1400, 9] {
            let frames = Conv::new(40030, 443)
                .send(0, &client_hello(&extra), mss)
                .send(1, b"\x15\x03\x03\x00\x02\x02\x28", mss)
                .close();
            found.extend(leaks(&format!("{name}-{mss}"), &frames));
        }
    }
    let mut alert = vec![21, 3, 3];
    let body = [&[2u8, 40][..], SECRET.as_bytes()].concat();
    alert.extend((body.len() as u16).to_be_bytes());
    alert.extend(body);
    let frames = Conv::new(40031, 443).send(0, &client_hello(&[]), 1400).send(1, &alert, 1400).close();
    found.extend(leaks("alert-padding", &frames));
    assert_none(found);
}

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let pad = (4 - body.len() % 4) % 4;
    let len = (12 + body.len() + pad) as u32;
    let mut v = kind.to_le_bytes().to_vec();
    v.extend(len.to_le_bytes());
    v.extend(body);
    v.extend(vec![0; pad]);
    v.extend(len.to_le_bytes());
    v
}

fn option(code: u16, data: &[u8]) -> Vec<u8> {
    let mut v = code.to_le_bytes().to_vec();
    v.extend((data.len() as u16).to_le_bytes());
    v.extend(data);
    v.extend(vec![0; (4 - data.len() % 4) % 4]);
    v
}

/// pcapng: custom blocks, systemd journal entries, unknown block types and packet options
/// other than flags (a hash of the original frame, a verdict, a packet id) go, with
/// `--keep-comments` too.
#[test]
fn pcapng_blocks_and_packet_options_that_carry_anything_go() {
    let dir = tmpdir();
    let frames = Conv::new(40040, 80).send(0, upgrade("").as_bytes(), 1400).send(1, SWITCHING.as_bytes(), 1400).close();
    let mut f =
        block(0x0a0d_0d0a, &[0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    f.extend(block(1, &[1, 0, 0, 0, 0, 0, 4, 0]));
    let secret = SECRET.as_bytes();
    f.extend(block(0x0000_0bad, &[&[0x9f, 0x8e, 0, 0][..], secret].concat()));
    f.extend(block(0x4000_0bad, &[&[0x9f, 0x8e, 0, 0][..], secret].concat()));
    f.extend(block(9, secret));
    f.extend(block(0x0bad_0001, secret));
    for (i, frame) in frames.iter().enumerate() {
        let mut body = Vec::new();
        for x in [0u32, 0, i as u32, frame.len() as u32, frame.len() as u32] {
            body.extend(x.to_le_bytes());
        }
        body.extend(frame);
        body.extend(vec![0; (4 - frame.len() % 4) % 4]);
        body.extend(option(2, &[0, 0, 0, 0]));
        body.extend(option(3, &[&[2][..], secret].concat()));
        body.extend(option(5, secret));
        body.extend(option(7, &[&[0][..], secret].concat()));
        body.extend(option(2988, &[&[0x9f, 0x8e, 0, 0][..], secret].concat()));
        body.extend(option(0, &[]));
        f.extend(block(6, &body));
    }
    let input = dir.path().join("blocks.pcapng");
    std::fs::write(&input, &f).unwrap();
    let mut found = Vec::new();
    for args in [&["scrub"][..], &["scrub", "--keep-comments"][..], &["trim", "--scrub", "--keep-comments"][..]] {
        let out = dir.path().join("out.pcapng");
        let mut a = args.to_vec();
        a.extend(["--force", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        let r = run(&a);
        assert!(r.status.success(), "{a:?}: {}", String::from_utf8_lossy(&r.stderr));
        if contains(&std::fs::read(&out).unwrap(), &secret[..12]) {
            found.push(format!("{args:?} left the secret"));
        }
        // The packets and their flags are still there, and tshark reads the file.
        assert_eq!(read_packets(&out).len(), frames.len(), "{args:?}");
        require_tshark();
        let t = std::process::Command::new("tshark").arg("-r").arg(&out).output().unwrap();
        let err = String::from_utf8_lossy(&t.stderr);
        assert!(t.status.success() && !err.contains("tshark:"), "{args:?}: {err}");
    }
    assert_none(found);
}

/// A wrong (offloaded) checksum kept "wrong the same way" would tell the 16-bit sum of what
/// was removed (a 4-digit PIN narrows to 54 candidates): every rewritten packet gets a
/// correct TCP and IPv4 checksum, with and without --pseudonymize.
#[test]
fn rewritten_packets_get_correct_checksums() {
    require_tshark();
    let dir = tmpdir();
    let mut frames = Conv::new(40050, 80)
        .send(0, upgrade(&format!("Cookie: pin={SECRET}\r\n")).as_bytes(), 1400)
        .send(1, SWITCHING.as_bytes(), 1400)
        .close();
    for f in &mut frames {
        // As a capture on the sending host shows them: TCP checksum not filled in yet.
        f[14 + 20 + 16] = 0x12;
        f[14 + 20 + 17] = 0x34;
    }
    let input = dir.path().join("offload.pcap");
    std::fs::write(&input, pcap(&frames)).unwrap();
    for extra in [&[][..], &["--pseudonymize"][..]] {
        let out = scrub_with(&input, dir.path(), extra);
        let rows = tshark(
            &out,
            &[
                ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"].as_slice(),
                &["-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.checksum.status", "-e", "ip.checksum.status"],
            ]
            .concat(),
        );
        assert_eq!(rows.lines().count(), 2, "{rows}");
        assert!(rows.lines().all(|l| l == "1\t1"), "{extra:?}: checksums after scrubbing:\n{rows}");
    }
}

/// `--annotate` writes the command line into the section comment; in a pseudonymized output
/// it must not carry the `--host` names or paths that the pseudonyms hide. A command line
/// longer than a pcapng option can hold is cut, not written with a wrapped length.
#[test]
fn annotate_keeps_command_line_values_out_of_pseudonymized_outputs() {
    require_tshark();
    let dir = tmpdir();
    let input = testdata().join("ws-direct-ok.pcap");
    let out = dir.path().join(format!("{SECRET}.pcapng"));
    let host = format!("{SECRET}.example.com");
    let r = run(&[
        "trim",
        "--annotate",
        "--scrub",
        "--pseudonymize",
        "--host",
        &host,
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(!contains(&std::fs::read(&out).unwrap(), &SECRET.as_bytes()[..12]), "the command line leaked");
    let long = "a".repeat(70_000);
    let out = dir.path().join("long.pcapng");
    let r = run(&["trim", "--annotate", "--host", &long, input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(r.status.success());
    let t = std::process::Command::new("tshark").arg("-r").arg(&out).output().unwrap();
    let err = String::from_utf8_lossy(&t.stderr);
    assert!(t.status.success() && !err.contains("tshark:"), "{err}");
}

fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], options: &[u8], payload: &[u8]) -> Vec<u8> {
    let ihl = 20 + options.len();
    let mut h = vec![0x40 | (ihl / 4) as u8, 0];
    h.extend(((ihl + payload.len()) as u16).to_be_bytes());
    h.extend([0, 0, 0x40, 0, 64, proto, 0, 0]);
    h.extend(src);
    h.extend(dst);
    h.extend(options);
    let mut s: u32 = h.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    h[10..12].copy_from_slice(&(!(s as u16)).to_be_bytes());
    h.extend(payload);
    h
}

fn ether(ethertype: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend(ethertype);
    f.extend(payload);
    f
}

/// `--pseudonymize` leaves no original address or name where they hide: tagged ARP, an ICMP
/// redirect's gateway, IPv4 record-route options, EDNS Client Subnet, DNS records after a
/// malformed one, IPv6 literals in Host, and a CONNECT target.
#[test]
fn pseudonymization_reaches_every_address_and_name() {
    let dir = tmpdir();
    let hidden: [[u8; 4]; 5] =
        [[203, 0, 113, 77], [203, 0, 113, 78], [203, 0, 113, 79], [198, 51, 100, 80], [198, 51, 100, 81]];
    let mut frames = Vec::new();
    // ARP behind an 802.1Q tag.
    let mut arp = vec![0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1];
    arp.extend(hidden[0]);
    arp.extend([0; 6]);
    arp.extend([10, 0, 0, 9]);
    frames.push(ether(&[0x81, 0, 0, 7, 0x08, 0x06], &arp));
    // An ICMP redirect naming a gateway, quoting a packet.
    let quoted = ipv4(6, [10, 0, 0, 1], [10, 0, 0, 2], &[], &[0; 8]);
    let mut icmp = vec![5, 1, 0, 0];
    icmp.extend(hidden[1]);
    icmp.extend(&quoted);
    frames.push(ether(&[8, 0], &ipv4(1, [10, 0, 0, 3], [10, 0, 0, 1], &[], &icmp)));
    // A UDP datagram whose IPv4 header records a route.
    let mut rr = vec![7, 11, 8];
    rr.extend(hidden[2]);
    rr.extend([10, 0, 0, 4, 0]);
    frames.push(ether(&[8, 0], &ipv4(17, [10, 0, 0, 1], [10, 0, 0, 5], &rr, &[0x30, 0x39, 0x30, 0x39, 0, 8, 0, 0])));
    // A DNS answer with a client subnet, then a malformed record, then an A record.
    let mut dns = vec![0x12, 0x34, 0x81, 0x80, 0, 0, 0, 2, 0, 0, 0, 1];
    dns.extend([0, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    dns.extend(hidden[3]);
    dns.extend([0xc0, 0xff, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    dns.extend(hidden[4]);
    let mut ecs = vec![0, 8, 0, 7, 0, 1, 24, 0];
    ecs.extend(&hidden[4][..3]);
    dns.extend([0, 0, 41, 16, 0, 0, 0, 0, 0, 0, ecs.len() as u8]);
    dns.extend(ecs);
    let mut udp = vec![0, 53, 0xc0, 0x01];
    udp.extend(((8 + dns.len()) as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(&dns);
    frames.push(ether(&[8, 0], &ipv4(17, [10, 0, 0, 53], [10, 0, 0, 1], &[], &udp)));
    // An upgrade to an IPv6 literal, and a CONNECT to a named host.
    let literal = upgrade("").replace("Host: ws.example.com", "Host: [2001:db8:beef::f00d]:8080");
    frames.extend(Conv::new(40060, 80).send(0, literal.as_bytes(), 1400).send(1, SWITCHING.as_bytes(), 1400).close());
    let connect = "CONNECT hiddenproxytarget.example:443 HTTP/1.1\r\nHost: hiddenproxytarget.example:443\r\n\r\n";
    frames.extend(
        Conv::new(40061, 3128)
            .send(0, connect.as_bytes(), 1400)
            .send(1, b"HTTP/1.1 200 Connection established\r\n\r\n", 1400)
            .close(),
    );
    // A redirect to a URL with userinfo: the userinfo is overwritten, the host after it mapped.
    let moved = "HTTP/1.1 302 Found\r\nLocation: https://user:pw@hiddenlocationhost.example/login\r\n\r\n";
    frames.extend(Conv::new(40062, 80).send(0, upgrade("").as_bytes(), 1400).send(1, moved.as_bytes(), 1400).close());
    // And ones that keep the current scheme.
    let moved = "HTTP/1.1 302 Found\r\nLocation: //hiddenrelativehost.example/login\r\n\r\n";
    frames.extend(Conv::new(40063, 80).send(0, upgrade("").as_bytes(), 1400).send(1, moved.as_bytes(), 1400).close());
    let moved = "HTTP/1.1 302 Found\r\nLocation: /\\hiddenbackslashhost.example/login\r\n\r\n";
    frames.extend(Conv::new(40064, 80).send(0, upgrade("").as_bytes(), 1400).send(1, moved.as_bytes(), 1400).close());
    let input = dir.path().join("addresses.pcap");
    std::fs::write(&input, pcap(&frames)).unwrap();
    let out = dir.path().join("out.pcap");
    let r = run(&["scrub", "--pseudonymize", "--force", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let bytes = std::fs::read(&out).unwrap();
    let mut found = Vec::new();
    for a in hidden {
        if contains(&bytes, &a) || contains(&bytes, &a[..3]) && a == hidden[4] {
            found.push(format!("address {a:?} survived"));
        }
    }
    for s in ["beef", "f00d", "hiddenproxytarget", "hiddenlocationhost", "hiddenrelativehost", "hiddenbackslashhost"] {
        if contains(&bytes, s.as_bytes()) {
            found.push(format!("'{s}' survived"));
        }
    }
    assert_none(found);
    // Every IPv4 header and ICMP checksum is right afterwards.
    require_tshark();
    let bad =
        tshark(&out, &["-o", "ip.check_checksum:TRUE", "-Y", "ip.checksum.status == 0 || icmp.checksum.status == 0"]);
    assert!(bad.is_empty(), "bad checksums: {bad}");
}

/// An ICMP error quotes the packet it is about: the quote goes, and the ICMP checksum is
/// computed afresh (a wrong one kept wrong would tell the sum of the quote), for ICMPv4 and
/// ICMPv6 (whose checksum covers the addresses --pseudonymize maps).
#[test]
fn icmp_quotes_go_and_icmp_checksums_are_right() {
    require_tshark();
    let dir = tmpdir();
    let quoted = ipv4(6, [10, 0, 0, 1], [10, 0, 0, 2], &[], &[&[0u8; 20][..], SECRET.as_bytes()].concat());
    let mut icmp4 = vec![3, 3, 0x12, 0x34, 0, 0, 0, 0];
    icmp4.extend(&quoted);
    let v4 = ether(&[8, 0], &ipv4(1, [10, 0, 0, 2], [10, 0, 0, 1], &[], &icmp4));
    let mut icmp6 = vec![1, 4, 0x12, 0x34, 0, 0, 0, 0];
    icmp6.extend(SECRET.as_bytes());
    let mut ip6 = vec![0x60, 0, 0, 0];
    ip6.extend((icmp6.len() as u16).to_be_bytes());
    ip6.extend([58, 64]);
    ip6.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    ip6.extend([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    ip6.extend(&icmp6);
    let v6 = ether(&[0x86, 0xdd], &ip6);
    let input = dir.path().join("icmp.pcap");
    std::fs::write(&input, pcap(&[v4, v6])).unwrap();
    for extra in [&[][..], &["--pseudonymize"][..]] {
        let out = scrub_with(&input, dir.path(), extra);
        assert!(!contains(&std::fs::read(&out).unwrap(), &SECRET.as_bytes()[..12]), "{extra:?}: the quote survived");
        let rows = tshark(&out, &["-T", "fields", "-e", "icmp.checksum.status", "-e", "icmpv6.checksum.status"]);
        assert_eq!(rows.lines().map(str::trim).collect::<Vec<_>>(), ["1", "1"], "{extra:?}: {rows}");
    }
}

/// An IPv6 segment-routing header lists the route's addresses: --pseudonymize maps them with
/// the header's own, and the TCP checksum (whose pseudo-header names the final destination)
/// is right afterwards.
#[test]
fn ipv6_routing_header_addresses_are_mapped() {
    require_tshark();
    let dir = tmpdir();
    let addr = |last: u8| [0x20, 0x01, 0x0d, 0xb8, 0xfa, 0xce, 0, 0, 0, 0, 0, 0, 0, 0, 0, last];
    let (src, hop, fin) = (addr(1), addr(0x77), addr(0x99));
    // SRH (RFC 8754): next header TCP, 2 segments, segments left 1, last entry 1; the segment
    // list holds the final destination first.
    let mut srh = vec![6, 4, 4, 1, 1, 0, 0, 0];
    srh.extend(fin);
    srh.extend(hop);
    let payload = upgrade(&format!("Cookie: {SECRET}\r\n"));
    let mut tcp = vec![0x9c, 0x40, 0, 80, 0, 0, 0x03, 0xe8, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0];
    tcp.extend(payload.as_bytes());
    // The checksum over the pseudo-header with the final destination.
    let mut pseudo: Vec<u8> = src.to_vec();
    pseudo.extend(fin);
    pseudo.extend((tcp.len() as u32).to_be_bytes());
    pseudo.extend([0, 0, 0, 6]);
    pseudo.extend(&tcp);
    let mut s: u32 = pseudo.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    tcp[16..18].copy_from_slice(&(!(s as u16)).to_be_bytes());
    let mut ip6 = vec![0x60, 0, 0, 0];
    ip6.extend(((srh.len() + tcp.len()) as u16).to_be_bytes());
    ip6.extend([43, 64]);
    ip6.extend(src);
    ip6.extend(hop);
    ip6.extend(&srh);
    ip6.extend(&tcp);
    let input = dir.path().join("srh.pcap");
    std::fs::write(&input, pcap(&[ether(&[0x86, 0xdd], &ip6)])).unwrap();
    let out = dir.path().join("out.pcap");
    assert!(
        run(&["scrub", "--pseudonymize", "--force", input.to_str().unwrap(), "-o", out.to_str().unwrap()])
            .status
            .success()
    );
    let bytes = std::fs::read(&out).unwrap();
    for a in [src, hop, fin] {
        assert!(!contains(&bytes, &a[..]), "address {a:02x?} survived");
    }
    assert!(!contains(&bytes, &SECRET.as_bytes()[..12]));
    let tcp_checksum = |f: &Path| {
        tshark(f, &["-o", "tcp.check_checksum:TRUE", "-T", "fields", "-e", "tcp.checksum.status"]).trim().to_string()
    };
    assert_eq!(tcp_checksum(&out), "1", "TCP checksum after pseudonymizing");
    // The input was right to begin with (tshark agrees on the final destination).
    assert_eq!(tcp_checksum(&input), "1", "TCP checksum of the input");
}

/// The one's-complement checksum of `data` (RFC 1071).
fn internet_sum(data: &[u8]) -> u16 {
    let mut s: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// A UDP datagram from port 53 carrying `payload`, with its checksum over `pseudo` (the
/// addresses of the pseudo-header).
fn udp_datagram(pseudo: &[u8], payload: &[u8]) -> Vec<u8> {
    let len = (8 + payload.len()) as u16;
    let mut u = vec![0, 53, 0x9c, 0x41];
    u.extend(len.to_be_bytes());
    u.extend([0, 0]);
    u.extend(payload);
    let mut p = pseudo.to_vec();
    p.extend([0, 17]);
    p.extend(len.to_be_bytes());
    p.extend(&u);
    u[6..8].copy_from_slice(&internet_sum(&p).to_be_bytes());
    u
}

/// IP fragments' payloads are overwritten (nothing reads them), but the datagram they make
/// still reassembles, with its UDP header and a correct checksum: the first fragment keeps
/// the header, and the checksum is that of the filler the datagram now holds — with
/// --pseudonymize too, whose addresses the pseudo-header sums. IPv4 and IPv6.
#[test]
fn fragmented_datagrams_lose_their_payload_and_keep_a_right_checksum() {
    require_tshark();
    let dir = tmpdir();
    // A large DNS answer, as EDNS lets a resolver send, with the secret in each fragment.
    let payload: Vec<u8> = (0..3).flat_map(|i| [vec![b'a' + i; 1400], SECRET.as_bytes().to_vec()].concat()).collect();
    let (src, dst) = ([10, 0, 0, 53], [10, 0, 0, 1]);
    let udp = udp_datagram(&[src, dst].concat(), &payload);
    let mut frames = Vec::new();
    for (i, part) in udp.chunks(1480).enumerate() {
        let more = (i + 1) * 1480 < udp.len();
        let mut ip = ipv4(17, src, dst, &[], part);
        let flags = (if more { 0x2000u16 } else { 0 }) | (i * 1480 / 8) as u16;
        ip[4..6].copy_from_slice(&7u16.to_be_bytes());
        ip[6..8].copy_from_slice(&flags.to_be_bytes());
        ip[10..12].fill(0);
        let c = internet_sum(&ip[..20]);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        frames.push(ether(&[8, 0], &ip));
    }
    let (src6, dst6) = (
        [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53],
        [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    );
    let udp6 = udp_datagram(&[src6, dst6].concat(), &payload);
    for (i, part) in udp6.chunks(1448).enumerate() {
        let more = (i + 1) * 1448 < udp6.len();
        let mut ip6 = vec![0x60, 0, 0, 0];
        ip6.extend(((8 + part.len()) as u16).to_be_bytes());
        ip6.extend([44, 64]);
        ip6.extend(src6);
        ip6.extend(dst6);
        ip6.extend([17, 0]);
        ip6.extend(((i * 1448) as u16 | u16::from(more)).to_be_bytes());
        ip6.extend(9u32.to_be_bytes());
        ip6.extend(part);
        frames.push(ether(&[0x86, 0xdd], &ip6));
    }
    let input = dir.path().join("fragments.pcap");
    std::fs::write(&input, pcap(&frames)).unwrap();
    let fields = [
        "-o",
        "udp.check_checksum:TRUE",
        "-Y",
        "udp",
        "-T",
        "fields",
        "-e",
        "udp.srcport",
        "-e",
        "udp.checksum.status",
    ];
    let before = tshark(&input, &fields);
    assert_eq!(before.lines().collect::<Vec<_>>(), ["53\t1", "53\t1"], "the input's datagrams: {before}");
    for extra in [&[][..], &["--pseudonymize"][..]] {
        let out = scrub_with(&input, dir.path(), extra);
        let raw = std::fs::read(&out).unwrap();
        assert!(!contains(&raw, &SECRET.as_bytes()[..12]), "{extra:?}: a fragment's payload survived");
        assert!(!contains(&raw, &[b'a'; 64]), "{extra:?}: a fragment's payload survived");
        let after = tshark(&out, &fields);
        assert_eq!(after, before, "{extra:?}: the reassembled datagrams after scrubbing");
    }
}

/// Names inside MX, SRV and SOA record data are mapped like any other, and the message stays
/// well formed (their data was filled, and every reader found the rest of the message
/// malformed).
#[test]
fn names_in_mx_srv_and_soa_records_are_mapped_and_the_answer_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let name = |n: &str| -> Vec<u8> {
        let mut v: Vec<u8> = n.split('.').flat_map(|l| std::iter::once(l.len() as u8).chain(l.bytes())).collect();
        v.push(0);
        v
    };
    let record = |owner: &str, rtype: u16, rdata: Vec<u8>| -> Vec<u8> {
        let mut v = name(owner);
        v.extend(rtype.to_be_bytes());
        v.extend([0, 1, 0, 0, 0, 60]);
        v.extend((rdata.len() as u16).to_be_bytes());
        v.extend(rdata);
        v
    };
    let mut dns = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0];
    dns.extend(name("hiddenzone.example"));
    dns.extend([0, 15, 0, 1]);
    dns.extend(record("hiddenzone.example", 15, [vec![0, 10], name("hiddenmailhost.example")].concat()));
    let srv = [vec![0, 1, 0, 5, 1, 187], name("hiddensrvhost.example")].concat();
    dns.extend(record("_x._tcp.hiddenzone.example", 33, srv));
    let numbers: Vec<u8> = (1..=20).collect();
    let soa = [name("hiddenprimary.example"), name("hiddenmailbox.example"), numbers].concat();
    dns.extend(record("hiddenzone.example", 6, soa));
    let mut udp = vec![0, 53, 0xc0, 0x01];
    udp.extend(((8 + dns.len()) as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend(&dns);
    let frames = vec![ether(&[8, 0], &ipv4(17, [10, 0, 0, 53], [10, 0, 0, 1], &[], &udp))];
    let input = dir.path().join("records.pcap");
    std::fs::write(&input, pcap(&frames)).unwrap();
    let out = dir.path().join("out.pcap");
    let r = run(&["scrub", "--pseudonymize", "--force", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let bytes = std::fs::read(&out).unwrap();
    for s in ["hiddenzone", "hiddenmailhost", "hiddensrvhost", "hiddenprimary", "hiddenmailbox"] {
        assert!(!contains(&bytes, s.as_bytes()), "'{s}' survived");
    }
    // The SOA's numbers, the MX preference and the SRV port stay.
    assert!(contains(&bytes, &(1..=20).collect::<Vec<u8>>()) && contains(&bytes, &[0, 1, 0, 5, 1, 187]));
    require_tshark();
    let shown = tshark(&out, &["-Y", "dns"]);
    assert!(shown.contains(" MX 10 ") && shown.contains(" SRV 1 5 443 ") && shown.contains(" SOA "), "{shown}");
    assert!(tshark(&out, &["-Y", "_ws.malformed"]).is_empty(), "malformed: {shown}");
}
