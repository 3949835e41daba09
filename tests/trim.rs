//! End-to-end tests of `pcap-surgery trim` over real captures, with tshark as the oracle.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn trim_to(input: &Path, dir: &Path, extra: &[&str]) -> std::path::PathBuf {
    let name = input.file_name().unwrap().to_string_lossy().trim_end_matches(".gz").to_string();
    let out = dir.join(format!("trimmed-{name}"));
    let mut args = vec!["trim", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "-q"];
    args.extend_from_slice(extra);
    let r = run(&args);
    assert!(r.status.success(), "trim {} failed: {}", input.display(), String::from_utf8_lossy(&r.stderr));
    out
}

/// The oracle check shared by testdata and the public corpus.
fn assert_trim_preserves_handshakes(input: &Path) {
    let dir = tmpdir();
    let out = trim_to(input, dir.path(), &[]);
    assert_subsequence(input, &out);
    let before = tshark_rows(input);
    let after = tshark_rows(&out);
    let flows = websocket_flows(&before);
    let want = facts(&before, &flows);
    let got = facts(&after, &flows);
    for (fact, n) in &want {
        let m = got.get(fact).copied().unwrap_or(0);
        assert!(m >= *n, "{}: fact {fact:?} seen {n} times in the input, {m} in the output", input.display());
    }
    assert!(
        expert_errors(&out) <= expert_errors(input),
        "{}: trimming added malformed or error expert items",
        input.display()
    );
}

#[test]
fn testdata_trims_keep_every_websocket_handshake_fact() {
    require_tshark();
    let all = testdata_captures();
    assert!(all.len() >= 16, "testdata holds {} captures", all.len());
    for f in all {
        assert_trim_preserves_handshakes(&f);
    }
}

#[test]
fn public_corpus_trims_keep_every_websocket_handshake_fact() {
    require_tshark();
    for f in corpus_captures() {
        assert_trim_preserves_handshakes(&f);
    }
}

#[test]
fn dns_lookups_and_failures_are_kept() {
    require_tshark();
    let dir = tmpdir();
    for name in ["ws-bulk-mixed.pcap", "dns-failure.pcap"] {
        let input = testdata().join(name);
        let out = trim_to(&input, dir.path(), &[]);
        let q = |f: &Path| {
            let mut v: Vec<String> =
                tshark_rows(f).into_iter().map(|r| r[col("dns.qry.name")].clone()).filter(|s| !s.is_empty()).collect();
            v.sort();
            v
        };
        assert!(!q(&input).is_empty());
        assert_eq!(q(&input), q(&out), "{name}: DNS lookups changed");
    }
}

/// DNS over TCP (dnsmasq, as resolvers retry a truncated answer) is kept as a lookup over
/// UDP is: the failing one (its length sent in a segment of its own) and the lookup of the
/// name the WebSocket then asks for stay whole, with their handshakes and FINs; the answered
/// lookup nothing used goes. tshark reads the same lookups and answers in the output, and
/// flows, diagnose and trim say the same.
#[test]
fn dns_over_tcp_is_kept_like_dns_over_udp() {
    require_tshark();
    let dir = tmpdir();
    let input = testdata().join("dns-tcp.pcap");
    let out = trim_to(&input, dir.path(), &[]);
    let dns = |f: &Path| {
        let t = tshark(f, &["-Y", "dns", "-T", "fields", "-e", "dns.qry.name", "-e", "dns.flags.rcode", "-e", "dns.a"]);
        let mut v: Vec<String> = t.lines().map(str::to_string).collect();
        v.sort();
        v
    };
    let before = dns(&input);
    assert_eq!(before.len(), 6, "{before:?}");
    let kept: Vec<String> = before.iter().filter(|l| !l.starts_with("plain.test")).cloned().collect();
    assert_eq!(dns(&out), kept);
    assert!(kept.iter().any(|l| l.starts_with("no-such-host.test\t3")), "{kept:?}");
    // Each kept lookup whole: SYN, SYN-ACK and both FINs of the two connections to port 53.
    let handshakes = tshark(&out, &["-Y", "tcp.port == 53 && (tcp.flags.syn == 1 || tcp.flags.fin == 1)"]);
    assert_eq!(handshakes.lines().count(), 8, "{handshakes}");
    assert_subsequence(&input, &out);

    let dns_flows: Vec<(String, String)> = flows_json(&input, &[])
        .into_iter()
        .filter(|f| f["class"] == "dns")
        .map(|f| (f["verdict"].as_str().unwrap().to_string(), f["why"].as_str().unwrap().to_string()))
        .collect();
    let want = [("dropped", "lookup of another name"), ("kept", "failed lookup"), ("kept", "lookup of a kept host")];
    assert_eq!(dns_flows, want.map(|(a, b)| (a.to_string(), b.to_string())));

    let d = run(&["diagnose", "--json", input.to_str().unwrap()]);
    let d: serde_json::Value = serde_json::from_slice(&d.stdout).unwrap();
    let failure = d["findings"].as_array().unwrap().iter().find(|f| f["code"] == "dns-failure").expect("dns-failure");
    assert!(failure["message"].as_str().unwrap().contains("no-such-host.test"), "{failure}");
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "a lookup over TCP is no WebSocket attempt: {d}");
    assert_eq!(attempts[0]["dns"]["name"], "ws.test");
}

/// The edges of DNS over TCP, on hand-built connections a millisecond a packet: a lookup
/// never answered is kept (diagnose: it got no answer); a connection carrying 80 KB of
/// answers (a zone transfer), more than a head may hold, is judged by its lookups (answered,
/// used by nothing: dropped); another protocol on port 53 is not DNS.
#[test]
fn dns_over_tcp_edges() {
    let dir = tmpdir();
    let q = dns_over_tcp("ws.example.com");
    let mut frames = Conv::new(40100, 53).send(0, &q, 1400).close();
    let mut transfer = Conv::new(40101, 53);
    for _ in 0..2 {
        let mut r = q[2..].to_vec();
        r[2..4].copy_from_slice(&[0x84, 0x00]);
        r[6..8].copy_from_slice(&2500u16.to_be_bytes());
        for i in 0..2500u32 {
            r.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            r.extend(i.to_be_bytes());
        }
        let mut framed = (r.len() as u16).to_be_bytes().to_vec();
        framed.extend(r);
        transfer.send(0, &q, 1400).send(1, &framed, 1400);
    }
    frames.extend(transfer.close());
    frames.extend(Conv::new(40102, 53).send(0, b"\x00\x00\x00\x10hello, not dns", 1400).close());
    let input = dir.path().join("dns-tcp-edges.pcap");
    std::fs::write(&input, pcap_spaced(&frames, 1000)).unwrap();

    let got: Vec<(String, String, String)> = flows_json(&input, &[])
        .into_iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap().to_string();
            (s("class"), s("verdict"), s("why"))
        })
        .collect();
    let want = [
        ("dns", "kept", "unanswered lookup"),
        ("dns", "dropped", "lookup of another name"),
        ("other", "dropped", "not HTTP, TLS or WebSocket"),
    ];
    assert_eq!(got, want.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())));

    let out = trim_to(&input, dir.path(), &[]);
    let kept = read_packets(&out);
    assert_eq!(kept.len(), 6, "the unanswered lookup whole: handshake, query, FINs");
    let d = run(&["diagnose", "--json", input.to_str().unwrap()]);
    let d: serde_json::Value = serde_json::from_slice(&d.stdout).unwrap();
    let f = d["findings"].as_array().unwrap().iter().find(|f| f["code"] == "dns-failure").expect("dns-failure");
    assert!(f["message"].as_str().unwrap().contains("got no answer"), "{f}");
    assert_eq!(d["attempts"].as_array().unwrap().len(), 0, "{d}");
}

/// A DNS-over-TCP message that never ends is not waited for: once its first packets have
/// waited as long as any packet may (ten seconds here, a packet a second), the lookup is decided
/// (unanswered: kept) and the rest of the connection is bulk, cut after its TCP headers, so
/// that connections like it cannot each hold 64 KiB; a first message that never ends makes
/// the connection another protocol's.
#[test]
fn a_dns_message_over_tcp_that_never_ends_is_given_up() {
    let dir = tmpdir();
    let mut partial = 60_000u16.to_be_bytes().to_vec();
    partial.extend(&dns_over_tcp("ws.example.com")[2..14]);
    partial.extend(vec![0u8; 28_000]);
    let frames = Conv::new(40110, 53).send(0, &dns_over_tcp("ws.example.com"), 1400).send(0, &partial, 1400).close();
    let input = dir.path().join("dns-tcp-never-ends.pcap");
    std::fs::write(&input, pcap(&frames)).unwrap();
    let out = trim_to(&input, dir.path(), &[]);
    let (before, after) = (read_packets(&input), read_packets(&out));
    assert_eq!(before.len(), after.len(), "the unanswered lookup's connection is kept");
    let cut = before.iter().zip(&after).filter(|(b, a)| a.data.len() < b.data.len()).count();
    assert!(cut >= 5, "the message's later segments are cut as bulk ({cut} cut)");
    assert!(after[3].data.len() == before[3].data.len(), "the query stays whole");

    // The same message as the connection's first: then it is no lookup at all, and the
    // connection goes as another protocol on port 53 does.
    let frames = Conv::new(40111, 53).send(0, &partial, 1400).close();
    std::fs::write(&input, pcap(&frames)).unwrap();
    let out = trim_to(&input, dir.path(), &["--force"]);
    assert!(read_packets(&out).is_empty(), "a first message that never ends is given up too");
    let flows = String::from_utf8(run(&["flows", input.to_str().unwrap()]).stdout).unwrap();
    assert!(flows.contains("dropped: not HTTP, TLS or WebSocket"), "{flows}");
}

#[test]
fn unrelated_flows_are_dropped() {
    require_tshark();
    let dir = tmpdir();
    let out = trim_to(&testdata().join("ws-bulk-mixed.pcap"), dir.path(), &[]);
    let rows = tshark_rows(&out);
    for r in &rows {
        let flow = flow_of(r);
        assert!(!flow.contains(":18090"), "plain HTTP page load kept: {flow}");
        assert!(!flow.contains(":18443"), "h2 TLS flow kept: {flow}");
        assert!(!flow.contains(":18514"), "unrelated UDP kept: {flow}");
        assert!(r[col("http.response.code")] != "426", "non-upgrade GET / kept");
    }
}

#[test]
fn bulk_websocket_capture_shrinks_by_95_percent() {
    let dir = tmpdir();
    let input = testdata().join("ws-bulk-mixed.pcap");
    let out = trim_to(&input, dir.path(), &[]);
    let (a, b) = (std::fs::metadata(&input).unwrap().len(), std::fs::metadata(&out).unwrap().len());
    assert!(b * 20 <= a, "trimmed {b} of {a} bytes: less than 95% smaller");
}

#[test]
fn bulk_modes_drop_cut_or_keep() {
    let dir = tmpdir();
    let input = testdata().join("ws-bulk-mixed.pcap");
    let size = |extra: &[&str], tag: &str| {
        let d = dir.path().join(tag);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::metadata(trim_to(&input, &d, extra)).unwrap().len()
    };
    let (drop, headers, keep) = (size(&["--bulk", "drop"], "d"), size(&[], "h"), size(&["--bulk", "keep"], "k"));
    assert!(drop < headers && headers < keep, "drop {drop} < headers {headers} < keep {keep}");
    let tiny_budget = size(&["--bulk-budget", "200"], "b");
    assert!(tiny_budget < headers);
}

#[test]
fn pipe_in_and_out_gives_the_same_bytes_as_files() {
    let dir = tmpdir();
    for name in ["ws-bulk-mixed.pcap", "wss-ok.pcapng", "ws-bad-accept.pcapng.gz"] {
        let input = testdata().join(name);
        let file_out = trim_to(&input, dir.path(), &[]);
        let piped = Command::new(bin())
            .args(["trim", "-", "-o", "-", "-q"])
            .stdin(std::fs::File::open(&input).unwrap())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(piped.status.success());
        assert_eq!(piped.stdout, std::fs::read(&file_out).unwrap(), "{name}: piped output differs");
    }
}

#[test]
fn output_keeps_the_input_format_and_resolution() {
    let dir = tmpdir();
    let ns = testdata().join("ws-direct-ok.pcap");
    let out = trim_to(&ns, dir.path(), &[]);
    assert_eq!(std::fs::read(&out).unwrap()[..24], std::fs::read(&ns).unwrap()[..24], "pcap header changed");
    let ng = trim_to(&testdata().join("wss-ok.pcapng"), dir.path(), &[]);
    assert_eq!(&std::fs::read(&ng).unwrap()[..4], &[0x0a, 0x0d, 0x0d, 0x0a]);
}

#[test]
fn format_conversion_both_ways_keeps_packets() {
    let dir = tmpdir();
    let a = testdata().join("ws-proxy-ok-any.pcap");
    let ng = dir.path().join("a.pcapng");
    assert!(
        run(&["trim", a.to_str().unwrap(), "-o", ng.to_str().unwrap(), "--format", "pcapng", "-q"]).status.success()
    );
    let back = dir.path().join("b.pcap");
    assert!(
        run(&["trim", ng.to_str().unwrap(), "-o", back.to_str().unwrap(), "--format", "pcap", "-q"]).status.success()
    );
    let (x, y, z) = (read_packets(&a), read_packets(&ng), read_packets(&back));
    assert_eq!(x.len(), y.len());
    assert_eq!(x, z, "pcap -> pcapng -> pcap changed packets");
}

#[test]
fn existing_output_needs_force_and_input_cannot_be_output() {
    let dir = tmpdir();
    let input = testdata().join("tcp-refused.pcap");
    let out = dir.path().join("o.pcap");
    std::fs::write(&out, b"precious").unwrap();
    let r = run(&["trim", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(2));
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    assert!(run(&["trim", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--force", "-q"]).status.success());
    let copy = dir.path().join("in.pcap");
    std::fs::copy(&input, &copy).unwrap();
    let link = dir.path().join("link.pcap");
    std::os::unix::fs::symlink(&copy, &link).unwrap();
    let r = run(&["trim", copy.to_str().unwrap(), "-o", link.to_str().unwrap(), "--force"]);
    assert_eq!(r.status.code(), Some(2), "writing over the input through a link must be refused");
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&input).unwrap());
}

#[test]
fn not_a_capture_is_a_one_line_error_and_leaves_no_output() {
    let dir = tmpdir();
    let bad = dir.path().join("notes.txt");
    std::fs::write(&bad, b"hello, this is not a capture\n").unwrap();
    let out = dir.path().join("o.pcap");
    let r = run(&["trim", bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("notes.txt") && err.contains("not a pcap or pcapng file"), "{err}");
    assert!(std::fs::read_dir(dir.path()).unwrap().count() == 1, "partial output left behind");
}

#[test]
fn truncated_last_record_warns_with_packet_number_and_keeps_the_rest() {
    let dir = tmpdir();
    let full = std::fs::read(testdata().join("ws-direct-ok.pcap")).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &full[..full.len() - 10]).unwrap();
    let out = dir.path().join("o.pcap");
    let r = run(&["trim", cut.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(0));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("cut.pcap") && err.contains("packet 20") && err.contains("truncated"), "{err}");
    assert_eq!(read_packets(&out).len(), 19);
}

#[test]
fn impossible_record_length_is_an_error_naming_packet_and_offset() {
    let dir = tmpdir();
    let mut bytes = std::fs::read(testdata().join("ws-direct-ok.pcap")).unwrap();
    // Second record's captured length (little-endian file): 24 + 16 + len(first) + 8.
    let first = u32::from_le_bytes(bytes[32..36].try_into().unwrap()) as usize;
    let at = 24 + 16 + first + 8;
    bytes[at..at + 4].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    let bad = dir.path().join("bad.pcap");
    std::fs::write(&bad, &bytes).unwrap();
    let out = dir.path().join("o.pcap");
    let r = run(&["trim", bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("bad.pcap") && err.contains("packet 2") && err.contains("offset"), "{err}");
    assert!(!out.exists());
}

#[test]
fn unknown_link_type_is_dropped_with_a_count() {
    let dir = tmpdir();
    let mut bytes = std::fs::read(testdata().join("tcp-refused.pcap")).unwrap();
    bytes[20..24].copy_from_slice(&147u32.to_le_bytes()); // LINKTYPE_USER0
    let odd = dir.path().join("odd.pcap");
    std::fs::write(&odd, &bytes).unwrap();
    let out = dir.path().join("o.pcap");
    let r = run(&["trim", odd.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(0));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("2 packets of a link type not supported (LINKTYPE 147)"), "{err}");
}

#[test]
fn several_inputs_go_to_an_out_dir_and_a_bad_one_does_not_stop_the_others() {
    let dir = tmpdir();
    let bad = dir.path().join("bad.pcap");
    std::fs::write(&bad, b"garbage").unwrap();
    let outdir = dir.path().join("out");
    let a = testdata().join("ws-reject-403.pcap");
    let b = testdata().join("wss-ok.pcapng");
    let r = run(&[
        "trim",
        a.to_str().unwrap(),
        bad.to_str().unwrap(),
        b.to_str().unwrap(),
        "--out-dir",
        outdir.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(r.status.code(), Some(1));
    assert!(outdir.join("ws-reject-403.trimmed.pcap").exists());
    assert!(outdir.join("wss-ok.trimmed.pcapng").exists());
    assert!(!outdir.join("bad.trimmed.pcap").exists());
}

/// Decryption Secrets Block lines (as text) in a pcapng file.
fn dsb_lines(file: &Path) -> Vec<String> {
    let b = std::fs::read(file).unwrap();
    let mut i = 0;
    let mut lines = Vec::new();
    while i + 8 <= b.len() {
        let kind = u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let len = u32::from_le_bytes(b[i + 4..i + 8].try_into().unwrap()) as usize;
        if kind == 0x0a {
            let n = u32::from_le_bytes(b[i + 12..i + 16].try_into().unwrap()) as usize;
            lines.extend(String::from_utf8_lossy(&b[i + 16..i + 16 + n]).lines().map(str::to_string));
        }
        i += len.max(12);
    }
    lines.retain(|l| !l.starts_with('#') && !l.is_empty());
    lines
}

#[test]
fn key_log_is_kept_only_for_kept_tls_sessions_and_still_decrypts() {
    require_tshark();
    let dir = tmpdir();
    let input = testdata().join("wss-keylog.pcapng");
    assert_eq!(dsb_lines(&input).len(), 2, "the sample holds two sessions' keys");
    let out = trim_to(&input, dir.path(), &[]);
    let kept = dsb_lines(&out);
    assert_eq!(kept.len(), 1, "only the WebSocket session's key survives: {kept:?}");
    assert!(dsb_lines(&input).contains(&kept[0]));
    // tshark decrypts the kept session with the embedded key: the 101 inside TLS is visible
    // (the other 101 is the plain backend leg).
    let codes: Vec<String> =
        tshark_rows(&out).into_iter().map(|r| r[col("http.response.code")].clone()).filter(|c| !c.is_empty()).collect();
    assert_eq!(codes, vec!["101", "101"], "{codes:?}");
}

/// Rewrites an Ethernet pcap into another link type by replacing each 14-byte Ethernet
/// header (and optionally writing the file big-endian).
fn relink(input: &Path, out: &Path, link_type: u32, header: impl Fn(&[u8]) -> Vec<u8>, big: bool) {
    let b = std::fs::read(input).unwrap();
    let rd = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let put = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&if big { x.to_be_bytes() } else { x.to_le_bytes() });
    let mut v = Vec::new();
    put(&mut v, rd(0));
    let minor_major = if big { [0, 2, 0, 4] } else { [2, 0, 4, 0] };
    v.extend_from_slice(&minor_major);
    put(&mut v, 0);
    put(&mut v, 0);
    put(&mut v, rd(16));
    put(&mut v, link_type);
    let mut i = 24;
    while i + 16 <= b.len() {
        let incl = rd(i + 8) as usize;
        let frame = &b[i + 16..i + 16 + incl];
        let mut data = header(&frame[..14]);
        data.extend_from_slice(&frame[14..]);
        put(&mut v, rd(i));
        put(&mut v, rd(i + 4));
        put(&mut v, data.len() as u32);
        put(&mut v, rd(i + 12) - 14 + (data.len() as u32 + 14 - incl as u32));
        v.extend_from_slice(&data);
        i += 16 + incl;
    }
    std::fs::write(out, v).unwrap();
}

#[test]
fn raw_ip_bsd_loopback_and_big_endian_captures_are_trimmed_alike() {
    require_tshark();
    let dir = tmpdir();
    let src = testdata().join("ws-reject-403.pcap");
    /// (output name, link type, new link header from the old frame, big-endian file)
    type Case = (&'static str, u32, Box<dyn Fn(&[u8]) -> Vec<u8>>, bool);
    let cases: Vec<Case> = vec![
        ("raw.pcap", 101, Box::new(|_| Vec::new()), false),
        ("null.pcap", 0, Box::new(|_| 2u32.to_le_bytes().to_vec()), false),
        ("loop.pcap", 108, Box::new(|_| 2u32.to_be_bytes().to_vec()), false),
        ("big-endian.pcap", 1, Box::new(|e| e.to_vec()), true),
    ];
    for (name, lt, hdr, big) in cases {
        let input = dir.path().join(name);
        relink(&src, &input, lt, hdr, big);
        let out = trim_to(&input, dir.path(), &[]);
        assert_eq!(
            read_packets(&out).len(),
            read_packets(&input).len(),
            "{name}: every packet of the 403 attempt is kept"
        );
        assert_eq!(std::fs::read(&out).unwrap()[..24], std::fs::read(&input).unwrap()[..24], "{name}: header changed");
        assert_trim_preserves_handshakes(&input);
    }
}

#[test]
fn pcapng_with_two_link_types_keeps_both_interfaces() {
    let dir = tmpdir();
    let out = trim_to(&testdata().join("ws-two-links.pcapng"), dir.path(), &[]);
    let b = std::fs::read(&out).unwrap();
    let mut i = 0;
    let mut links = Vec::new();
    while i + 8 <= b.len() {
        let kind = u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        if kind == 1 {
            links.push(u16::from_le_bytes(b[i + 8..i + 10].try_into().unwrap()));
        }
        i += u32::from_le_bytes(b[i + 4..i + 8].try_into().unwrap()) as usize;
    }
    assert_eq!(links, vec![1, 276]);
    assert_eq!(read_packets(&out).len(), 60);
    let r =
        run(&["trim", out.to_str().unwrap(), "-o", dir.path().join("x.pcap").to_str().unwrap(), "--format", "pcap"]);
    assert_eq!(r.status.code(), Some(2), "two link types cannot go into one pcap");
    assert!(String::from_utf8_lossy(&r.stderr).contains("--format pcapng"));
}

#[test]
fn websocket_met_mid_connection_is_recognised_by_its_frames() {
    require_tshark();
    let dir = tmpdir();
    // ws-ping-survives without its first 12 packets (connect and upgrade on both legs):
    // what a capture started after the upgrade looks like.
    let full = testdata().join("ws-ping-survives.pcap");
    let mid = dir.path().join("mid.pcap");
    let st = std::process::Command::new("editcap").args(["-r"]).arg(&full).arg(&mid).arg("13-1000").status().unwrap();
    assert!(st.success());
    let out = trim_to(&mid, dir.path(), &[]);
    // Without the upgrade tshark needs to be told these ports carry WebSocket.
    let pings = |f: &Path| {
        let args = ["-d", "tcp.port==18084,websocket", "-d", "tcp.port==18765,websocket", "-T", "fields"];
        tshark(f, &[args.as_slice(), &["-e", "websocket.opcode"]].concat())
            .lines()
            .filter(|l| l.split(',').any(|o| o == "9" || o == "10"))
            .count()
    };
    assert!(pings(&mid) > 0);
    assert_eq!(pings(&out), pings(&mid), "ping/pong frames of a flow met mid-connection are kept");
}

#[test]
fn record_longer_than_its_snaplen_is_kept_with_a_warning() {
    let dir = tmpdir();
    let mut bytes = std::fs::read(testdata().join("ws-reject-426.pcap")).unwrap();
    bytes[16..20].copy_from_slice(&100u32.to_le_bytes()); // snaplen 100; most records exceed it
    let odd = dir.path().join("snap.pcap");
    std::fs::write(&odd, &bytes).unwrap();
    let out = dir.path().join("o.pcap");
    let r = run(&["trim", odd.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(0));
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("snap.pcap") && err.contains("packet 4") && err.contains("exceeds the snaplen 100"), "{err}");
    assert_eq!(read_packets(&out).len(), 10);
}

/// After bytes of a frame header were not captured (here a snaplen cut them), frames are read
/// again from a segment where whole segments make a run of frames, as Wireshark reads them;
/// a ping whose header and body came in separate segments is such a run of two. Both of its
/// packets are kept whole, so the trimmed capture tells the same story.
#[test]
fn frames_are_found_again_after_lost_bytes_also_a_ping_split_over_two_segments() {
    let mut c = Conv::new(50_000, 80);
    c.send(0, upgrade("").as_bytes(), 1448);
    c.send(1, SWITCHING.as_bytes(), 1448);
    // Two binary frames, the second's header inside the segment the snaplen cuts; payload
    // bytes no header starts with (opcode 0xf).
    let mut stream = Vec::new();
    for len in [1500u16, 1000] {
        stream.extend([0x82, 126]);
        stream.extend(len.to_be_bytes());
        stream.extend(std::iter::repeat_n(0x7f, usize::from(len)));
    }
    c.send(1, &stream, 1000);
    let cut = c.frames.len() - 2;
    c.send(1, &[0x89, 5], 1448).send(1, b"hello", 1448);
    c.send(1, &[0x88, 2, 0x03, 0xe8], 1448);
    c.send(0, &[0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2], 1448);
    let frames = c.close();
    let n = frames.len();
    let mut x = Vec::new();
    for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 262_144, 1] {
        x.extend(v.to_le_bytes());
    }
    for (i, f) in frames.iter().enumerate() {
        let keep = if i == cut { 54 + 100 } else { f.len() };
        for v in [1_700_000_000 + i as u32, 0, keep as u32, f.len() as u32] {
            x.extend(v.to_le_bytes());
        }
        x.extend(&f[..keep]);
    }
    let dir = tmpdir();
    let input = dir.path().join("snapped.pcap");
    std::fs::write(&input, &x).unwrap();
    let out = trim_to(&input, dir.path(), &[]);
    let diagnosis = |f: &Path| {
        let r = run(&["diagnose", "--json", f.to_str().unwrap()]);
        comparable(serde_json::from_slice(&r.stdout).unwrap())
    };
    let d = diagnosis(&input);
    let a = &d["attempts"][0];
    assert_eq!((a["pings"].as_u64(), a["close_code"].as_u64()), (Some(1), Some(1000)), "{a}");
    assert_eq!(diagnosis(&out), d, "the trimmed capture tells the same story");
    // The ping's two packets (and the close) whole; the frame tail after the loss cut.
    let kept = read_packets(&out);
    let whole = |i: usize| kept.iter().any(|p| p.data == frames[i]);
    assert!((cut + 2..cut + 5).all(whole), "ping header, ping body and close are kept whole");
    assert!(!whole(cut + 1), "the tail of the frame whose header was lost is bulk");
    assert_eq!(kept.len(), n);
}

/// A ping or close written right after a large message often shares the message's last
/// segment (Nagle's algorithm, segmentation offload). That segment is kept whole for the
/// control frame, but the message's header was in a segment cut like bulk: the segments that
/// carry the headers of frames ending in a kept segment are kept whole too, so that Wireshark
/// and diagnose still find where the control frame starts. Two shapes: each message followed
/// by a ping in its last segment, and one stream whose frames never start at a segment.
#[test]
fn a_control_frame_sharing_a_segment_with_a_cut_message_stays_readable() {
    require_tshark();
    let dir = tmpdir();
    let binary = |len: usize, seed: usize| {
        let mut f = vec![0x82, 126];
        f.extend((len as u16).to_be_bytes());
        f.extend((0..len).map(|i| ((i * 7 + seed) % 251) as u8));
        f
    };
    let mut pinged = Vec::new();
    for k in 0..6 {
        pinged.extend(binary(20_000, k));
        pinged.extend(b"\x89\x04ping");
    }
    let mut stream = Vec::new();
    for (k, len) in [100, 170, 90, 222, 14_100, 9777, 12_000, 19_999, 8191, 15_555].into_iter().enumerate() {
        stream.extend(binary(len, k));
    }
    stream.extend(b"\x89\x00");
    for (name, bytes, pings) in [("pinged", pinged, 6), ("stream", stream, 1)] {
        let mut c = Conv::new(50_000, 80);
        c.send(0, upgrade("").as_bytes(), 1448).send(1, SWITCHING.as_bytes(), 1448);
        let mut all = bytes;
        all.extend([0x88, 2, 0x03, 0xe8]);
        c.send(1, &all, 1448);
        c.send(0, &[0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2], 1448);
        let input = dir.path().join(format!("{name}.pcap"));
        std::fs::write(&input, pcap(&c.close())).unwrap();
        let out = trim_to(&input, dir.path(), &[]);
        let opcodes = |f: &Path| {
            let t = tshark(f, &["-T", "fields", "-e", "websocket.opcode"]);
            t.split(['\n', ',']).filter(|o| !o.is_empty()).map(str::to_string).collect::<Vec<_>>()
        };
        let (before, after) = (opcodes(&input), opcodes(&out));
        assert_eq!(before.iter().filter(|o| *o == "9").count(), pings, "{name}: {before:?}");
        for op in ["9", "8"] {
            let n = |v: &Vec<String>| v.iter().filter(|o| *o == op).count();
            assert_eq!(n(&after), n(&before), "{name}: opcode {op} in the trimmed capture: {after:?}");
        }
        assert!(after.iter().all(|o| ["1", "2", "8", "9", "10"].contains(&o.as_str())), "{name}: {after:?}");
        assert!(expert_errors(&out) <= expert_errors(&input), "{name}: trimming added expert errors");
        let diagnosis = |f: &Path| {
            let r = run(&["diagnose", "--json", f.to_str().unwrap()]);
            comparable(serde_json::from_slice(&r.stdout).unwrap())
        };
        let d = diagnosis(&input);
        assert_eq!(d["attempts"][0]["pings"], pings, "{name}");
        assert_eq!(d["attempts"][0]["close_code"], 1000, "{name}");
        assert_eq!(diagnosis(&out), d, "{name}: the trimmed capture tells the same story");
        let (a, b) = (std::fs::metadata(&input).unwrap().len(), std::fs::metadata(&out).unwrap().len());
        assert!(b * 4 < a, "{name}: the messages are still cut ({b} of {a} bytes kept)");
    }
}

/// A TLS session read without keys: after trim cut the first bulk record's header, its records
/// cannot be placed, until a whole segment that is exactly a run of records (an encrypted
/// alert sent on its own at the end, as Wireshark shows it) starts them again: diagnose of the
/// trimmed capture sees the alert as diagnose of the original does.
#[test]
fn an_alert_after_a_long_tls_transfer_is_read_in_the_trimmed_capture() {
    let record = |kind: u8, len: usize, fill: u8| {
        let mut r = vec![kind, 3, 3];
        r.extend((len as u16).to_be_bytes());
        r.extend(std::iter::repeat_n(fill, len));
        r
    };
    let mut server_hello = vec![22, 3, 3, 0, 44, 2, 0, 0, 40, 3, 3];
    server_hello.extend([9u8; 32]);
    server_hello.extend([0, 0x13, 0x01, 0, 0, 0]);
    server_hello.extend(record(20, 1, 1));
    let mut stream = Vec::new();
    for k in 0..30 {
        stream.extend(record(23, 16_000 + k, 0x41));
    }
    let mut c = Conv::new(40_000, 443);
    c.send(0, &client_hello(&[]), 1448).send(1, &server_hello, 1448);
    c.send(0, &record(23, 300, 0x42), 1448).send(1, &stream, 1448);
    c.send(1, &record(21, 19, 0x43), 1448);
    let dir = tmpdir();
    let input = dir.path().join("tls-alert-late.pcap");
    std::fs::write(&input, pcap(&c.close())).unwrap();
    let out = trim_to(&input, dir.path(), &[]);
    let alert = |f: &Path| {
        let r = run(&["diagnose", "--json", f.to_str().unwrap()]);
        let d: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        d["attempts"][0]["tls_alert"].clone()
    };
    assert_eq!(alert(&input)["from"], "server", "{}", alert(&input));
    assert_eq!(alert(&out), alert(&input));
    let (a, b) = (std::fs::metadata(&input).unwrap().len(), std::fs::metadata(&out).unwrap().len());
    assert!(b * 2 < a, "the records are still cut ({b} of {a} bytes kept)");
}
