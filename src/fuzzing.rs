//! Entry points shared by the fuzz targets (`fuzz/`) and the regression tests that replay
//! the inputs they found (`tests/fuzz_regressions.rs`), so that a crash found by one is
//! checked by the other through the same code. Each must return for any input, without a
//! panic and in time proportional to the input.

use std::io::Cursor;

use crate::capture::{Input, Item, ReadOptions, Reader};
use crate::diagnose::{DiagnoseOptions, diagnose};
use crate::flows::{FlowsOptions, flows};
use crate::policy::Options;
use crate::proto::units::Walker;
use crate::proto::websocket::{self, Frames};
use crate::proto::{dns, http, tls};
use crate::report::Summary;
use crate::scrub::ScrubOptions;
use crate::trim::{TrimConfig, trim};

fn input(data: &[u8]) -> Option<Input> {
    Input::from_reader(Box::new(Cursor::new(data.to_vec())), Some(data.len() as u64)).ok()
}

/// The capture reader over a whole file.
pub fn reader(data: &[u8]) {
    let Some(i) = input(data) else { return };
    let Ok(mut r) = Reader::new(i) else { return };
    while let Ok(Some(item)) = r.next_item() {
        if let Item::Packet(p) = item {
            let _ = p.data();
        }
    }
}

/// The link/IP/TCP/UDP decoder, for each link type it knows.
pub fn decode(data: &[u8]) {
    let Some((&sel, frame)) = data.split_first() else { return };
    const LINKS: [u32; 15] = [1, 0, 101, 113, 276, 12, 228, 229, 9, 50, 51, 105, 127, 204, 239];
    let link = LINKS[usize::from(sel) % LINKS.len()];
    if let Ok(d) = crate::wire::decode(link, frame) {
        assert!(d.payload_offset + d.payload.len() <= frame.len());
        assert!(d.ip_offset < d.transport_offset && d.transport_offset < d.payload_offset.max(d.transport_offset + 1));
        for l in crate::wire::tunnels(link, frame).iter() {
            assert!(l.ip < d.ip_offset);
        }
        let _ = d.tcp_flags();
    }
    let _ = crate::wire::ip_offset(link, frame);
    let _ = crate::wire::link_header_len(link, frame);
}

/// Splits `b` into pieces whose sizes come from `sizes` (cycled).
fn split<'a>(mut b: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut i = 0;
    while !b.is_empty() {
        let n = sizes.get(i % sizes.len().max(1)).map_or(b.len(), |&s| usize::from(s % 97) + 1).min(b.len());
        out.push(&b[..n]);
        b = &b[n..];
        i += 1;
    }
    out
}

/// The WebSocket frame walker over arbitrary segment splits, and the helpers that look at
/// whole segments.
pub fn websocket(data: &[u8]) {
    let Some((&n, rest)) = data.split_first() else { return };
    let (sizes, body) = rest.split_at(usize::from(n % 8).min(rest.len()));
    let mut w: Walker<Frames> = Walker::default();
    for seg in split(body, sizes) {
        let _ = websocket::segment_is_frames(seg);
        let fed = w.feed(seg, |h, b| {
            let _ = websocket::close_code(h, b);
            Some(h.payload_len.min(8))
        });
        if fed.failed {
            w.resync();
        }
    }
    let _ = w.skip(u64::from(n) * 1000);
}

/// The TLS record walker and hello parsers, the key-log parser, and the DNS parser and
/// pseudonymizer.
pub fn tls_dns(data: &[u8]) {
    let _ = tls::parse_client_hello(data);
    let _ = tls::parse_server_hello(data);
    let _ = tls::looks_like_tls(data);
    let _ = tls::key_log_lines(data).count();
    let _ = dns::parse(data);
    // Pseudonymizing a DNS message maps and fills in place, never past its end.
    let mut msg = data.to_vec();
    crate::scrub::pseudonym::Pseudonymizer::new(&[7; 32]).dns_message(&mut msg, &mut crate::scrub::Tally::default());
    assert_eq!(msg.len(), data.len());
    let mut w: Walker<tls::Records> = Walker::default();
    for seg in split(data, &data[..data.len().min(4)]) {
        let _ = w.feed(seg, |_, _| Some(1));
    }
}

/// A pcap of one TCP conversation carrying `client` and `server` bytes in segments cut per
/// `sizes`, optionally with neighbouring segments swapped (reordering).
pub fn conversation_pcap(client: &[u8], server: &[u8], sizes: &[u8], reorder: bool) -> Vec<u8> {
    conversation_pcap_to(80, client, server, sizes, reorder)
}

/// `conversation_pcap` to the server's port `sp`.
pub fn conversation_pcap_to(sp: u16, client: &[u8], server: &[u8], sizes: &[u8], reorder: bool) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    let (c, s) = ([10, 0, 0, 1], [10, 0, 0, 2]);
    let cp = 50_000u16;
    let mut t = 1_700_000_000_000_000u64;
    let mut packets: Vec<Vec<u8>> = Vec::new();
    let mut seg = |from_client: bool, seq: u32, ack: u32, flags: u8, payload: &[u8]| {
        let (src, dst, spt, dpt) = if from_client { (c, s, cp, sp) } else { (s, c, sp, cp) };
        let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .tcp(spt, dpt, seq, 65_535);
        // The client's SYN carries no ACK flag; every later segment does.
        let mut b = if flags & 2 != 0 && ack == 0 { b } else { b.ack(ack) };
        if flags & 2 != 0 {
            b = b.syn();
        }
        if flags & 1 != 0 {
            b = b.fin();
        }
        let mut v = Vec::with_capacity(payload.len() + 64);
        if b.write(&mut v, payload).is_ok() {
            packets.push(v);
        }
    };
    let (ci, si) = (1000u32, 5000u32);
    seg(true, ci, 0, 2, &[]);
    seg(false, si, ci + 1, 2, &[]);
    seg(true, ci + 1, si + 1, 0, &[]);
    let mut cseq = ci + 1;
    let mut data: Vec<(bool, u32, Vec<u8>)> = Vec::new();
    for p in split(client, sizes) {
        data.push((true, cseq, p.to_vec()));
        cseq = cseq.wrapping_add(p.len() as u32);
    }
    let mut sseq = si + 1;
    for p in split(server, sizes) {
        data.push((false, sseq, p.to_vec()));
        sseq = sseq.wrapping_add(p.len() as u32);
    }
    if reorder {
        for pair in data.chunks_mut(2) {
            pair.reverse();
        }
    }
    for (from_client, seq, p) in &data {
        let ack = if *from_client { si + 1 } else { cseq };
        seg(*from_client, *seq, ack, 0, p);
    }
    seg(false, sseq, cseq, 1, &[]);
    seg(true, cseq, sseq + 1, 1, &[]);
    for p in packets {
        t += 1000;
        out.extend_from_slice(&((t / 1_000_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(((t / 1000) % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&p);
    }
    out
}

/// HTTP heads (and whatever follows them: frames, records) over arbitrary segment splits,
/// through the whole pipeline.
pub fn http_split(data: &[u8]) {
    if data.len() < 4 {
        return;
    }
    let (head, rest) = data.split_at(4);
    let client_len = usize::from(u16::from_le_bytes([head[0], head[1]])).min(rest.len());
    let (client, server) = rest.split_at(client_len);
    let _ = http::head_len(client).map(|n| http::parse_request(&client[..n]));
    let _ = http::head_len(server).map(|n| http::parse_response(&server[..n]));
    let _ = http::looks_like_request(client);
    let _ = http::looks_like_response(server);
    let pcap = conversation_pcap(client, server, &head[2..3], head[3] & 1 != 0);
    pipeline(&pcap);
}

/// The whole pipeline on one capture: trim, trim --scrub --pseudonymize, scrub (whose
/// output must keep every packet and its length), diagnose and flows.
pub fn pipeline(data: &[u8]) {
    let key = Some([7u8; 32]);
    let configs = [
        TrimConfig {
            policy: Options::default(),
            format: None,
            scrub: None,
            annotate: Some("fuzz".into()),
            read: ReadOptions { strict: false, salvage: true },
            keylog: None,
            keylog_out: false,
        },
        TrimConfig {
            policy: Options::default(),
            format: None,
            scrub: Some(ScrubOptions { keep_comments: false, pseudonymize: key }),
            annotate: None,
            read: ReadOptions::default(),
            keylog: None,
            keylog_out: false,
        },
        TrimConfig {
            policy: Options { keep_all: true, ..Options::default() },
            format: None,
            scrub: Some(ScrubOptions { keep_comments: true, pseudonymize: None }),
            annotate: None,
            read: ReadOptions::default(),
            keylog: None,
            keylog_out: false,
        },
    ];
    for (i, cfg) in configs.iter().enumerate() {
        let Some(inp) = input(data) else { return };
        let mut summary = Summary::default();
        let Ok(out) = trim(inp, Vec::new(), cfg, &mut summary, None) else { continue };
        if i == 2 {
            let lens = |bytes: &[u8]| {
                let mut v = Vec::new();
                if let Some(i) = input(bytes)
                    && let Ok(mut r) = Reader::new(i)
                {
                    while let Ok(Some(item)) = r.next_item() {
                        if let Item::Packet(p) = item {
                            v.push((p.meta.caplen, p.meta.orig_len));
                        }
                    }
                }
                v
            };
            let (a, b) = (lens(data), lens(&out));
            assert_eq!(a, b, "scrub keeps every packet and its length");
        }
    }
    if let Some(inp) = input(data) {
        let _ = diagnose(
            inp,
            "fuzz",
            &DiagnoseOptions { read: ReadOptions { strict: false, salvage: true }, ..Default::default() },
            &mut Vec::new(),
        );
    }
    if let Some(inp) = input(data) {
        let opts = FlowsOptions {
            policy: Options::default(),
            json: true,
            with_file: false,
            read: ReadOptions::default(),
            keylog: None,
        };
        let _ = flows(inp, "fuzz", &opts, &mut std::io::sink(), None);
    }
}

/// The TLS decryption path: the key-log parser on arbitrary text, then records of arbitrary
/// content opened (and searched for after a loss) with keys of every suite and version.
pub fn tls_decrypt(data: &[u8]) {
    use crate::decrypt::{Direction, KeyLog, Secrets};
    let mut log = KeyLog::default();
    log.add(data);
    let _ = log.get(&[0; 32]);
    let Some((&sel, rest)) = data.split_first() else { return };
    const SUITES: [u16; 6] = [0x1301, 0x1302, 0x1303, 0xc02f, 0xc030, 0xcca8];
    let suite = SUITES[usize::from(sel) % SUITES.len()];
    let version = if sel & 0x80 != 0 { 0x0304 } else { 0x0303 };
    let len = if suite == 0x1302 || suite == 0xc030 { 48 } else { 32 };
    let secrets = Secrets {
        master: Some(vec![sel; 48]),
        client_handshake: (sel & 0x40 != 0).then(|| vec![1; len]),
        server_handshake: Some(vec![2; len]),
        client_traffic: Some(vec![3; len]),
        server_traffic: (sel & 0x20 == 0).then(|| vec![4; len]),
    };
    let Ok(mut dirs) = Direction::pair(Some(&secrets), &[5; 32], &[6; 32], suite, version) else { return };
    let mut out = Vec::new();
    for (i, rec) in split(rest, &rest[..rest.len().min(8)]).into_iter().enumerate() {
        let d = &mut dirs[i % 2];
        let (kind, body) = rec.split_first().map_or((23, &[][..]), |(k, b)| (*k, b));
        let _ = d.open(kind, 0x0303, body, &mut out);
        if i % 3 == 0 {
            let _ = d.find_seq(kind, 0x0303, body, Some(body.len() as u64 * 64), &mut out);
        }
        d.skip_record();
    }
}

/// A property, not just "no panic": a WebSocket handshake and conversation built from the
/// input's choices — header order and case, folded lines, bare CRs, query forms, path
/// parameters, userinfo (in URLs, Via, X-Forwarded-Proto), credential subprotocols, a
/// redirect with query and fragment, frames masked or not and fragmented, close reasons,
/// segment sizes, reordering — with a secret planted everywhere scrubbing removes it. Neither `scrub` nor `trim --scrub` may let it
/// through, in the raw output or in a direction's reassembled bytes.
pub fn scrub_secrets(data: &[u8]) {
    const SECRET: &[u8] = b"Zq7PLANTEDsecret";
    let mut at = 0usize;
    let mut pick = |n: usize| -> usize {
        let b = data.get(at).copied().unwrap_or(0);
        at += 1;
        usize::from(b) % n.max(1)
    };
    let s = String::from_utf8_lossy(SECRET).into_owned();
    let target = match pick(6) {
        0 => format!("/chat?token={s}&x=1"),
        1 => format!("/chat?{s}"),
        2 => format!("http://bob:{s}@ws.example/chat"),
        3 => format!("/app;jsessionid={s}/chat"),
        4 => format!("/chat;{s}?x=1#{s}"),
        _ => "/chat".to_string(),
    };
    let mut headers: Vec<String> = vec![
        "Host: ws.example".into(),
        "Upgrade: websocket".into(),
        "Connection: Upgrade".into(),
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==".into(),
        "Sec-WebSocket-Version: 13".into(),
        format!("Cookie: session={s}"),
        format!("Authorization: Bearer {s}"),
        format!("X-Api-Key: {s}"),
        format!("Origin: https://u:{s}@app.example"),
        format!("Sec-WebSocket-Protocol: chat, base64url.bearer.authorization.k8s.io.{s}"),
        format!("Via: 1.1 edge, 1.1 u:{s}@mid"),
        format!("X-Forwarded-Proto: https://u:{s}@app.example"),
    ];
    for i in (1..headers.len()).rev() {
        headers.swap(i, pick(i + 1));
    }
    let mut req = format!("GET {target} HTTP/1.1\r\n");
    for h in &headers {
        let h = if pick(3) == 0 { h.to_ascii_lowercase().replacen(&s.to_ascii_lowercase(), &s, 1) } else { h.clone() };
        req.push_str(&h);
        match pick(8) {
            0 => req.push_str(&format!("\r\n {s}")),
            1 => req.push_str(&format!("\r{s}")),
            _ => {}
        }
        req.push_str("\r\n");
    }
    if pick(4) == 0 {
        req.push_str(&format!("{s}\r\n"));
    }
    req.push_str("\r\n");
    let mut client = req.into_bytes();
    let mut server;
    if pick(4) == 0 {
        server = format!(
            "HTTP/1.1 302 {s}\r\nLocation: https://id.example/cb;jsessionid={s}?code={s}#access_token={s}\r\nSet-Cookie: a={s}\r\n\
             Content-Length: {}\r\n\r\n{s}",
            s.len()
        )
        .into_bytes();
    } else {
        server = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: k8s.bearer.{s}\r\n\r\n"
        )
        .into_bytes();
        for _ in 0..pick(4) + 1 {
            let mask = [pick(256) as u8, pick(256) as u8, pick(256) as u8, pick(256) as u8];
            let mut payload = b"msg ".to_vec();
            payload.extend_from_slice(SECRET);
            let (fin, op) = if pick(3) == 0 { (0x00, 0x01) } else { (0x80, 0x01) };
            client.extend([fin | op, 0x80 | payload.len() as u8]);
            client.extend(mask);
            client.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            if fin == 0 {
                client.extend([0x80, 0x80 | SECRET.len() as u8]);
                client.extend(mask);
                client.extend(SECRET.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
            }
            server.extend([0x82, payload.len() as u8]);
            server.extend(&payload);
        }
        let mut close = vec![0x03, 0xe8];
        close.extend_from_slice(SECRET);
        server.extend([0x88, close.len() as u8]);
        server.extend(&close);
    }
    let sizes: Vec<u8> = (0..8).map(|_| pick(256) as u8).collect();
    let reorder = pick(2) == 1;
    // On port 53 after a lookup over TCP: the engine reads DNS there, and what follows the
    // last whole message is not DNS.
    let port = if pick(3) == 2 {
        let q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02ws\x07example\x00\x00\x01\x00\x01";
        let mut r = q.to_vec();
        r[2..4].copy_from_slice(&[0x81, 0x83]);
        for (side, m) in [(&mut client, q.to_vec()), (&mut server, r)] {
            let mut framed = (m.len() as u16).to_be_bytes().to_vec();
            framed.extend(m);
            side.splice(0..0, framed);
        }
        53
    } else {
        80
    };
    let pcap = conversation_pcap_to(port, &client, &server, &sizes, reorder);
    let configs = [
        (Options { keep_all: true, ..Options::default() }, false),
        (Options::default(), false),
        (Options { keep_all: true, ..Options::default() }, true),
    ];
    for (policy, pseudo) in configs {
        let cfg = TrimConfig {
            policy,
            scrub: Some(ScrubOptions { keep_comments: false, pseudonymize: pseudo.then_some([3; 32]) }),
            ..TrimConfig::default()
        };
        let Some(inp) = input(&pcap) else { return };
        let out = trim(inp, Vec::new(), &cfg, &mut Summary::default(), None).expect("a built capture reads");
        assert!(!out.windows(SECRET.len()).any(|w| w == SECRET), "a planted secret survived in the output");
        let Some(inp) = input(&out) else { return };
        let Ok(mut r) = Reader::new(inp) else { return };
        let mut streams: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        while let Ok(Some(Item::Packet(p))) = r.next_item() {
            if let Ok(d) = crate::wire::decode(p.meta.link_type, p.data()) {
                streams[usize::from(d.sport == port)].extend_from_slice(d.payload);
            }
        }
        for st in &streams {
            assert!(!st.windows(SECRET.len()).any(|w| w == SECRET), "a planted secret survived across segments");
        }
    }
}
