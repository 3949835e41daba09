//! End-to-end tests of `pcap-surgery scrub` and `trim --scrub`, with tshark as the oracle.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// The secrets planted by testdata/generate.sh (testdata/README.md).
const SECRETS: &[&str] = &[
    "SECRETcookie-7f3a9c",
    "SECRETtoken-4b21e8",
    "SECRETquery-91d0c2",
    "SECRETmessage-hello-5e7a",
    "SECRETclose-reason-0c4d",
    "SECRETsetcookie-2d8e41",
    "SECRET",
];

fn scrub_to(input: &Path, dir: &Path, extra: &[&str]) -> PathBuf {
    let name = input.file_name().unwrap().to_string_lossy().trim_end_matches(".gz").to_string();
    let out = dir.join(format!("scrubbed-{name}"));
    let mut args = vec!["scrub", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "-q", "--force"];
    args.extend_from_slice(extra);
    let r = run(&args);
    assert!(r.status.success(), "scrub {} failed: {}", input.display(), String::from_utf8_lossy(&r.stderr));
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Frames tshark reports with a bad IPv4, TCP or UDP checksum.
fn bad_checksums(file: &Path) -> BTreeSet<String> {
    let args = [
        ["-o", "tcp.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"].as_slice(),
        &["-Y", "tcp.checksum.status == 0 || udp.checksum.status == 0 || ip.checksum.status == 0"],
        &["-T", "fields", "-e", "frame.number"],
    ]
    .concat();
    tshark(file, &args).lines().map(str::to_string).collect()
}

/// What must survive scrubbing: every fact but the request URI (its query values go).
fn diagnosis(rows: &[Vec<String>]) -> std::collections::BTreeMap<(String, String, String), usize> {
    let all: BTreeSet<String> = rows.iter().map(|r| flow_of(r)).collect();
    let mut f = facts(rows, &all);
    f.retain(|(_, field, _), _| field != "http.request.uri");
    f
}

fn assert_scrub_is_safe_and_faithful(input: &Path, dir: &Path) {
    let out = scrub_to(input, dir, &[]);
    let bytes = std::fs::read(&out).unwrap();
    for s in SECRETS {
        assert!(!contains(&bytes, s.as_bytes()), "{}: '{s}' survived scrubbing", input.display());
    }
    let (a, b) = (read_packets(input), read_packets(&out));
    assert_eq!(a.len(), b.len(), "{}: packet count changed", input.display());
    for (k, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(
            (x.data.len(), x.orig_len, x.ts_ns),
            (y.data.len(), y.orig_len, y.ts_ns),
            "{}: packet {} changed length",
            input.display(),
            k + 1
        );
    }
    let new_bad: Vec<String> = bad_checksums(&out).difference(&bad_checksums(input)).cloned().collect();
    assert!(new_bad.is_empty(), "{}: scrubbing broke checksums of frames {new_bad:?}", input.display());
    // Facts tshark could see only by decrypting with the input's embedded keys are not owed:
    // scrubbing drops the keys. Compare with the input without its secrets.
    let plain = without_secrets(input, dir);
    let (before, after) = (diagnosis(&tshark_rows(&plain)), diagnosis(&tshark_rows(&out)));
    for (fact, n) in &before {
        let m = after.get(fact).copied().unwrap_or(0);
        assert!(m >= *n, "{}: fact {fact:?} seen {n} times before scrubbing, {m} after", input.display());
    }
}

#[test]
fn testdata_scrubs_remove_every_planted_secret_and_keep_the_diagnosis() {
    require_tshark();
    let dir = tmpdir();
    for f in testdata_captures().into_iter().chain(encap_captures()) {
        assert_scrub_is_safe_and_faithful(&f, dir.path());
    }
}

#[test]
fn public_corpus_scrubs_keep_lengths_checksums_and_facts() {
    require_tshark();
    let dir = tmpdir();
    for f in corpus_captures() {
        assert_scrub_is_safe_and_faithful(&f, dir.path());
    }
}

#[test]
fn the_planted_secrets_are_really_in_the_inputs() {
    let all: Vec<u8> = testdata_captures()
        .iter()
        .filter(|f| !f.to_string_lossy().ends_with(".gz"))
        .flat_map(|f| std::fs::read(f).unwrap())
        .collect();
    for s in &SECRETS[..6] {
        assert!(contains(&all, s.as_bytes()), "'{s}' is not planted in testdata");
    }
}

#[test]
fn trim_with_scrub_removes_secrets_too() {
    let dir = tmpdir();
    let input = testdata().join("ws-proxy-ok.pcap");
    let out = dir.path().join("t.pcap");
    let r = run(&["trim", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--scrub", "-q"]);
    assert!(r.status.success());
    assert!(!contains(&std::fs::read(&out).unwrap(), b"SECRET"));
    assert_eq!(read_packets(&out).len(), read_packets(&input).len());
}

#[test]
fn retransmitted_and_out_of_order_copies_are_redacted_in_stream_order() {
    let dir = tmpdir();
    // ws-split-request: packets 4, 6, 8 carry the request in three segments; the query value
    // straddles 4 and 6, the Cookie and Authorization are in 8.
    let src = testdata().join("ws-split-request.pcap");
    let n = read_packets(&src).len();
    let mut dup: Vec<usize> = (0..n).collect();
    dup.insert(8, 7); // packet 8 again: a retransmission
    dup.insert(5, 5); // packet 6 again
    let retrans = dir.path().join("retrans.pcap");
    reorder(&src, &retrans, &dup);
    let mut ooo: Vec<usize> = (0..n).collect();
    ooo.swap(5, 7); // packet 8 before packet 6: out of order
    let swapped = dir.path().join("ooo.pcap");
    reorder(&src, &swapped, &ooo);
    for f in [&retrans, &swapped] {
        let out = scrub_to(f, dir.path(), &[]);
        let bytes = std::fs::read(&out).unwrap();
        assert!(!contains(&bytes, b"SECRET"), "{}: a secret survived", f.display());
        // Segments are scrubbed in stream order, not capture order: the reordered request is
        // read as HTTP, so its allow-listed Sec-WebSocket-Key stays for the diagnosis.
        assert!(contains(&bytes, b"dGhlIHNhbXBsZSBub25jZQ") || f == &retrans, "reordered request read in order");
    }
}

#[test]
fn comments_and_key_logs_are_dropped_unless_asked() {
    let dir = tmpdir();
    let src = testdata().join("wss-ok.pcapng");
    let commented = dir.path().join("c.pcapng");
    let st = Command::new("editcap").args(["-a", "3:SECRETcomment-42"]).arg(&src).arg(&commented).status().unwrap();
    assert!(st.success());
    let out = scrub_to(&commented, dir.path(), &[]);
    assert!(!contains(&std::fs::read(&out).unwrap(), b"SECRETcomment-42"));
    let kept = dir.path().join("kept.pcapng");
    let r = run(&["scrub", commented.to_str().unwrap(), "-o", kept.to_str().unwrap(), "--keep-comments", "-q"]);
    assert!(r.status.success());
    assert!(contains(&std::fs::read(&kept).unwrap(), b"SECRETcomment-42"));
    let keys = scrub_to(&testdata().join("wss-keylog.pcapng"), dir.path(), &[]);
    assert!(!contains(&std::fs::read(&keys).unwrap(), b"CLIENT_RANDOM"), "scrub must drop key logs");
}

#[test]
fn scrub_report_counts_bytes_per_rule() {
    let dir = tmpdir();
    let report = dir.path().join("r.json");
    scrub_to(&testdata().join("ws-proxy-ok.pcap"), dir.path(), &["--scrub-report", report.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(std::fs::read_to_string(&report).unwrap().trim()).unwrap();
    for rule in ["http-query-value", "http-header-value", "websocket-payload", "websocket-close-reason"] {
        assert!(v["rules"][rule]["bytes"].as_u64().unwrap_or(0) > 0, "{rule} missing in {v}");
        assert!(v["rules"][rule]["packets"].as_u64().unwrap_or(0) > 0);
    }
}

/// IPv4 addresses of a capture, as tshark reads them.
fn addresses(file: &Path) -> BTreeSet<[u8; 4]> {
    tshark(file, &["-T", "fields", "-e", "ip.src", "-e", "ip.dst"])
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .map(|a| a.octets())
        .collect()
}

#[test]
fn pseudonymize_leaves_no_original_address_or_name_and_is_repeatable() {
    require_tshark();
    let dir = tmpdir();
    for name in ["ws-bulk-mixed.pcap", "wss-ok.pcapng", "dns-failure.pcap", "ws-proxy-ok-any.pcap"] {
        let input = testdata().join(name);
        let out = scrub_to(&input, dir.path(), &["--pseudonymize", "--key", "k1"]);
        let bytes = std::fs::read(&out).unwrap();
        let mapped = addresses(&out);
        for a in addresses(&input) {
            assert!(!mapped.contains(&a), "{name}: address {a:?} survived in a header");
            // Four raw bytes with two zeros in them (127.0.0.1) also turn up by chance, e.g. a
            // checksum's low byte before an urgent pointer of zero and a NOP option.
            if a.windows(2).any(|w| w == [0, 0]) {
                continue;
            }
            let mut r = a;
            r.reverse();
            assert!(!contains(&bytes, &a) && !contains(&bytes, &r), "{name}: address {a:?} survived");
        }
        for host in [&b"ws.test"[..], b"no-such-host", b"unrelated.test"] {
            assert!(!contains(&bytes, host), "{name}: name {} survived", String::from_utf8_lossy(host));
        }
        assert!(bad_checksums(&out).is_subset(&bad_checksums(&input)), "{name}: checksums broken");
        let again = dir.path().join("again");
        std::fs::create_dir_all(&again).unwrap();
        let out2 = scrub_to(&input, &again, &["--pseudonymize", "--key", "k1"]);
        assert_eq!(bytes, std::fs::read(out2).unwrap(), "{name}: same key, different output");
    }
    // Across files with one key, one address has one pseudonym.
    let a = scrub_to(&testdata().join("ws-reject-403.pcap"), dir.path(), &["--pseudonymize", "--key", "k1"]);
    let b = scrub_to(&testdata().join("ws-reject-404.pcap"), dir.path(), &["--pseudonymize", "--key", "k1"]);
    assert_eq!(addresses(&a), addresses(&b));
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    let c = scrub_to(&testdata().join("ws-reject-403.pcap"), &other, &["--pseudonymize", "--key", "k2"]);
    assert_ne!(addresses(&a), addresses(&c));
}

#[test]
fn pseudonymized_sni_host_and_dns_name_agree_across_files() {
    require_tshark();
    let dir = tmpdir();
    let key = ["--pseudonymize", "--key", "k1"];
    let tls = scrub_to(&testdata().join("wss-ok.pcapng"), dir.path(), &key);
    let sni: BTreeSet<String> = tshark_rows(&tls)
        .iter()
        .map(|r| r[col("tls.handshake.extensions_server_name")].clone())
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(sni.len(), 1);
    let name = sni.into_iter().next().unwrap();
    assert_eq!(name.len(), "ws.test".len());
    assert_ne!(name, "ws.test");
    // ws-bulk-mixed looks ws.test up and sends Host: ws.test:18765: the same pseudonym.
    let bulk = scrub_to(&testdata().join("ws-bulk-mixed.pcap"), dir.path(), &key);
    let rows = tshark_rows(&bulk);
    let dns: BTreeSet<String> = rows.iter().map(|r| r[col("dns.qry.name")].clone()).filter(|s| !s.is_empty()).collect();
    assert_eq!(dns, BTreeSet::from([name.clone()]));
    let hosts = tshark(&bulk, &["-d", "tcp.port==18765,http", "-T", "fields", "-e", "http.host"]);
    assert!(hosts.lines().any(|h| h == format!("{name}:18765")), "Host {hosts:?} vs SNI {name}");
}

/// All packet bytes of a capture, with each TCP header's checksum, urgent pointer and options
/// (timestamps) replaced by 0xAA. Those fields are arbitrary numbers that spell any four
/// bytes by chance (a checksum ending in 0x7f, a zero urgent pointer and a NOP option read
/// as 127.0.0.1); they never carry an address. Everything else is grepped as it is.
fn packet_bytes_without_tcp_numbers(file: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for rec in read_packets(file) {
        let mut data = rec.data.clone();
        let sliced = etherparse::LaxSlicedPacket::from_ethernet(&rec.data)
            .ok()
            .filter(|s| s.transport.is_some())
            .or_else(|| {
                etherparse::LaxSlicedPacket::from_ip(rec.data.get(20..).unwrap_or(&[]))
                    .ok()
                    .filter(|s| s.transport.is_some())
            })
            .or_else(|| {
                etherparse::LaxSlicedPacket::from_ip(rec.data.get(16..).unwrap_or(&[]))
                    .ok()
                    .filter(|s| s.transport.is_some())
            });
        if let Some(etherparse::TransportSlice::Tcp(tcp)) = sliced.as_ref().and_then(|s| s.transport.as_ref()) {
            let h = tcp.header_slice();
            let at = h.as_ptr() as usize - rec.data.as_ptr() as usize;
            for b in &mut data[at + 16..at + h.len()] {
                *b = 0xaa;
            }
        }
        all.extend_from_slice(&data);
    }
    all
}

/// Every IPv4 and IPv6 address (as bytes) and host name tshark finds in a capture.
fn identities(file: &Path) -> (BTreeSet<Vec<u8>>, BTreeSet<String>) {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-d", "tcp.port==18765,http", "-d", "tcp.port==18080,http", "-d", "tcp.port==18443,tls"])
        .args(["-T", "fields", "-E", "separator=,", "-E", "occurrence=a"])
        .args(["-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst", "-e", "dns.a", "-e", "dns.aaaa"])
        .args(["-e", "dns.qry.name", "-e", "tls.handshake.extensions_server_name", "-e", "http.host"])
        .output()
        .unwrap();
    let (mut addrs, mut names) = (BTreeSet::new(), BTreeSet::new());
    for tok in String::from_utf8_lossy(&out.stdout).split(|c: char| c == ',' || c.is_whitespace()) {
        if let Ok(a) = tok.parse::<std::net::IpAddr>() {
            addrs.insert(match a {
                std::net::IpAddr::V4(v) => v.octets().to_vec(),
                std::net::IpAddr::V6(v) => v.octets().to_vec(),
            });
        } else if tok.len() >= 4 && tok.contains('.') {
            let host = tok.split(':').next().unwrap_or(tok);
            if host.parse::<std::net::IpAddr>().is_err() {
                names.insert(host.to_ascii_lowercase());
            }
        }
    }
    (addrs, names)
}

#[test]
fn pseudonymize_every_capture_leaves_no_original_address_or_name() {
    require_tshark();
    let dir = tmpdir();
    for input in testdata_captures().into_iter().chain(corpus_captures()) {
        let out = scrub_to(&input, dir.path(), &["--pseudonymize", "--key", "k1"]);
        let raw = packet_bytes_without_tcp_numbers(&out);
        let lower = std::fs::read(&out).unwrap().to_ascii_lowercase();
        let (addrs, names) = identities(&without_secrets(&input, dir.path()));
        // Broadcast, unspecified and multicast addresses name nobody (and 255.255.255.255 is
        // also what a broadcast MAC address looks like).
        let identifying =
            |a: &Vec<u8>| !(a.len() == 4 && (a == &[255; 4] || a == &[0; 4] || (224..240).contains(&a[0])));
        for a in addrs.into_iter().filter(identifying) {
            let mut r = a.clone();
            r.reverse();
            assert!(!contains(&raw, &a) && !contains(&raw, &r), "{}: address {a:?} survived", input.display());
        }
        for n in names {
            assert!(!contains(&lower, n.as_bytes()), "{}: name {n} survived", input.display());
        }
        assert!(bad_checksums(&out).is_subset(&bad_checksums(&input)), "{}: checksums broken", input.display());
    }
}

/// A request head split inside a name its `--pseudonymize` maps (a Via header's, which is
/// kept across segments), with another connection's head read between its two segments, maps
/// that name as it maps it unsplit: where the pseudonymizer is in a value belongs to the
/// direction, not to the run (it was the run's, and the other head reset it mid-name). The
/// head is the connection's second request, read as its segments come (the first waits for
/// the flow to be recognised and is read whole).
#[test]
fn a_split_name_maps_the_same_whatever_is_read_between_its_segments() {
    let dir = tmpdir();
    let first = upgrade("");
    let refused = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
    let head = b"GET /app HTTP/1.1\r\nHost: h\r\nVia: 1.1 split-name.customer-example.com\r\nUser-Agent: t\r\n\r\n";
    let cut = head.windows(5).position(|w| w == b"tomer").unwrap();
    let other = b"GET / HTTP/1.1\r\nHost: another.example.net\r\n\r\n";
    let start = || {
        let mut c = Conv::new(40001, 80);
        c.send(0, first.as_bytes(), 1460).send(1, refused, 1460);
        c
    };
    // The second request in one segment; then cut, with the other connection's head between.
    let mut alone = start();
    alone.send(0, head, 1460);
    let mut split = start();
    let mut between = Conv::new(40002, 80);
    between.send(0, other, 1460);
    split.send(0, &head[..cut], 1460);
    let mut frames = std::mem::take(&mut split.frames);
    frames.extend(between.close());
    split.send(0, &head[cut..], 1460);
    frames.extend(split.close());
    let mapped_via = |frames: &[Vec<u8>], name: &str| {
        let input = dir.path().join(name);
        std::fs::write(&input, pcap(frames)).unwrap();
        let out = scrub_to(&input, dir.path(), &["--pseudonymize", "--key", "k1"]);
        // The client's payload of the connection from port 40001, in order.
        let mut stream = Vec::new();
        for r in read_packets(&out) {
            let p = etherparse::SlicedPacket::from_ethernet(&r.data).unwrap();
            if let Some(etherparse::TransportSlice::Tcp(t)) = p.transport
                && t.source_port() == 40001
            {
                stream.extend_from_slice(t.payload());
            }
        }
        let second = stream.windows(8).position(|w| w == b"GET /app").expect("the second request is kept");
        let at = second + stream[second..].windows(5).position(|w| w == b"Via: ").expect("its Via line") + 5;
        let end = at + stream[at..].iter().position(|&c| c == b'\r').unwrap();
        String::from_utf8_lossy(&stream[at..end]).into_owned()
    };
    let (one, two) = (mapped_via(&alone.close(), "alone.pcap"), mapped_via(&frames, "split.pcap"));
    assert!(!one.contains("customer-example"), "{one}");
    assert_eq!(one, two);
}
