//! End-to-end tests of `pcap-surgery diagnose` on the recorded scenarios.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

fn diagnose(file: &Path) -> Value {
    let r = run(&["diagnose", "--json", file.to_str().unwrap()]);
    assert!(r.status.success(), "diagnose {} failed: {}", file.display(), String::from_utf8_lossy(&r.stderr));
    serde_json::from_slice(&r.stdout).unwrap_or_else(|e| panic!("{}: bad JSON: {e}", file.display()))
}

fn codes(d: &Value) -> Vec<String> {
    d["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap().to_string()).collect()
}

fn has(d: &Value, code: &str) -> bool {
    codes(d).iter().any(|c| c == code)
}

fn attempts(d: &Value) -> &Vec<Value> {
    d["attempts"].as_array().unwrap()
}

fn leg<'a>(d: &'a Value, leg: &str) -> &'a Value {
    attempts(d).iter().find(|a| a["leg"] == leg).unwrap_or_else(|| panic!("no {leg} leg in {d}"))
}

fn worst_is_below_warning(d: &Value) -> bool {
    d["findings"].as_array().unwrap().iter().all(|f| f["severity"] == "info")
}

#[test]
fn every_scenario_gets_its_finding() {
    let cases: &[(&str, &[&str])] = &[
        ("dns-failure.pcap", &["dns-failure"]),
        ("dns-tcp.pcap", &["dns-failure", "upgrade-ok"]),
        ("tcp-refused.pcap", &["tcp-connect-refused"]),
        ("ws-auth-redirect.pcap", &["auth-redirect"]),
        ("ws-bad-accept.pcapng.gz", &["bad-accept"]),
        ("ws-proxy-502.pcap", &["upgrade-rejected", "tcp-connect-refused"]),
        ("ws-proxy-504.pcap", &["upgrade-rejected", "upgrade-unanswered"]),
        ("ws-proxy-stripped.pcap", &["proxy-stripped-upgrade", "upgrade-rejected"]),
        ("ws-proxy-stripped-rewrite.pcap", &["proxy-stripped-upgrade", "upgrade-rejected"]),
        ("ws-auth-subrequest.pcap", &["auth-redirect"]),
        ("ws-reject-403.pcap", &["upgrade-rejected"]),
        ("ws-reject-404.pcap", &["upgrade-rejected"]),
        ("ws-reject-426.pcap", &["upgrade-rejected"]),
        ("ws-reject-500.pcap", &["upgrade-rejected"]),
        ("ws-reset-after-101.pcap", &["upgrade-ok", "reset-after-upgrade"]),
        ("ws-idle-timeout.pcap", &["idle-timeout", "no-keepalive", "closed-after-upgrade"]),
        ("wss-alert.pcap", &["tls-alert"]),
        ("wss-aborted.pcap", &["tls-aborted"]),
        ("wss-to-plain-port.pcap", &["tls-to-plain-port"]),
        ("wss-connect-407.pcap", &["proxy-connect-failed"]),
        ("ws-two-links.pcapng", &["upgrade-rejected", "upgrade-ok"]),
    ];
    for (file, want) in cases {
        let d = diagnose(&testdata().join(file));
        for code in *want {
            assert!(has(&d, code), "{file}: no {code} in {:?}", codes(&d));
        }
    }
}

#[test]
fn a_finished_tls12_handshake_closed_with_close_notify_is_not_aborted() {
    require_tshark();
    let f = testdata().join("tls12-close-notify.pcap");
    // tshark: ChangeCipherSpec each way, then an encrypted alert and FINs.
    let types = tshark(&f, &["-d", "tcp.port==18443,tls", "-T", "fields", "-e", "tls.record.content_type"]);
    assert_eq!(types.matches("20").count(), 2, "one ChangeCipherSpec each way: {types}");
    assert!(types.contains("21"), "the close_notify alert: {types}");
    let d = diagnose(&f);
    for code in ["tls-aborted", "tls-reset", "tls-alert"] {
        assert!(!has(&d, code), "{code} on a finished handshake: {:?}", codes(&d));
    }
    assert!(worst_is_below_warning(&d), "{:?}", codes(&d));
}

#[test]
fn statuses_legs_and_headers_per_leg() {
    for (file, status) in [
        ("ws-reject-403.pcap", 403),
        ("ws-reject-404.pcap", 404),
        ("ws-auth-redirect.pcap", 302),
        ("ws-proxy-504.pcap", 504),
    ] {
        let d = diagnose(&testdata().join(file));
        assert_eq!(leg(&d, "client-proxy")["status"], status, "{file}");
    }
    for file in ["ws-reject-426.pcap", "ws-reject-500.pcap"] {
        let d = diagnose(&testdata().join(file));
        assert_eq!(attempts(&d)[0]["leg"], "direct");
    }
    let d = diagnose(&testdata().join("ws-auth-redirect.pcap"));
    assert_eq!(leg(&d, "client-proxy")["location"], "/login?next=*", "query values are masked");
    let d = diagnose(&testdata().join("ws-proxy-stripped.pcap"));
    let (front, back) = (leg(&d, "client-proxy"), leg(&d, "proxy-backend"));
    assert_eq!((front["upgrade"].as_str(), front["connection"].as_str()), (Some("websocket"), Some("Upgrade")));
    assert_eq!((back["upgrade"].as_str(), back["connection"].as_str()), (None, Some("close")));
    assert_eq!((front["status"].as_u64(), back["status"].as_u64()), (Some(426), Some(426)));
    let d = diagnose(&testdata().join("ws-proxy-502.pcap"));
    assert_eq!(leg(&d, "client-proxy")["status"], 502);
    assert_eq!(leg(&d, "proxy-backend")["connect"], "refused");
}

#[test]
fn healthy_captures_get_upgrade_ok_and_nothing_worse() {
    for file in [
        "ws-direct-ok.pcap",
        "ws-proxy-ok.pcap",
        "ws-proxy-ok-any.pcap",
        "ws-split-request.pcap",
        "ws-bulk-mixed.pcap",
        "wss-ok.pcapng",
    ] {
        let d = diagnose(&testdata().join(file));
        assert!(has(&d, "upgrade-ok"), "{file}: {:?}", codes(&d));
        assert!(worst_is_below_warning(&d), "{file}: {:?}", codes(&d));
    }
    let d = diagnose(&testdata().join("ws-direct-ok.pcap"));
    let a = &attempts(&d)[0];
    assert_eq!(
        (a["status"].as_u64(), a["upgraded"].as_bool(), a["accept_valid"].as_bool()),
        (Some(101), Some(true), Some(true))
    );
    assert_eq!((a["close"].as_str(), a["close_code"].as_u64()), (Some("fin"), Some(1000)));
    assert!(a["pings"].as_u64().unwrap() >= 1 && a["pongs"].as_u64().unwrap() >= 1);
    let d = diagnose(&testdata().join("ws-bulk-mixed.pcap"));
    assert_eq!(attempts(&d)[0]["dns"]["name"], "ws.test");
    assert_eq!(attempts(&d)[0]["data_bytes_client"], 64 * 16384);
}

#[test]
fn idle_timeout_names_the_interval_and_who_closed() {
    let d = diagnose(&testdata().join("ws-idle-timeout.pcap"));
    let f = d["findings"].as_array().unwrap().iter().find(|f| f["code"] == "idle-timeout").unwrap();
    assert!(f["message"].as_str().unwrap().contains("on 3 connections"), "{f}");
    for a in attempts(&d).iter().filter(|a| a["leg"] == "client-proxy") {
        let idle = a["idle_before_close_s"].as_f64().unwrap();
        assert!((idle - 3.0).abs() <= 0.3, "idle {idle}");
        assert_eq!((a["closed_by"].as_str(), a["close"].as_str()), (Some("server"), Some("fin")));
    }
    let d = diagnose(&testdata().join("ws-ping-survives.pcap"));
    assert!(!has(&d, "idle-timeout") && !has(&d, "no-keepalive"), "{:?}", codes(&d));
    let a = leg(&d, "client-proxy");
    let interval = a["ping_interval_s"].as_f64().unwrap();
    assert!((interval - 1.0).abs() < 0.1, "ping interval {interval}");
    assert_eq!(a["close_code"], 1000);
}

#[test]
fn tls_failures_name_sni_and_alert() {
    let d = diagnose(&testdata().join("wss-alert.pcap"));
    let a = &attempts(&d)[0];
    assert_eq!(a["sni"], "ws.test");
    assert_eq!(a["tls_alert"]["description"], "unknown_ca");
    assert_eq!(a["tls_alert"]["from"], "client");
    assert!(!has(&d, "upgrade-rejected"), "no HTTP verdict before the TLS path is proven");
    let d = diagnose(&testdata().join("wss-ok.pcapng"));
    assert_eq!(leg(&d, "client-proxy")["sni"], "ws.test");
    assert_eq!(leg(&d, "proxy-backend")["status"], 101);
    let d = diagnose(&testdata().join("ws-reset-after-101.pcap"));
    assert_eq!(
        (attempts(&d)[0]["closed_by"].as_str(), attempts(&d)[0]["close"].as_str()),
        (Some("server"), Some("rst"))
    );
}

#[test]
fn trimming_preserves_the_diagnosis() {
    let dir = tmpdir();
    for f in testdata_captures() {
        let out = dir.path().join("t");
        let r = run(&["trim", f.to_str().unwrap(), "-o", out.to_str().unwrap(), "--force", "-q"]);
        assert!(r.status.success());
        assert_eq!(
            comparable(diagnose(&f)),
            comparable(diagnose(&out)),
            "{}: trimming changed the diagnosis",
            f.display()
        );
    }
}

#[test]
fn evidence_frames_point_at_the_right_packets() {
    require_tshark();
    let check = |file: &str, code: &str, filter: &str| {
        let path = testdata().join(file);
        let d = diagnose(&path);
        let f = d["findings"].as_array().unwrap().iter().find(|f| f["code"] == code).unwrap().clone();
        let frames: Vec<u64> = f["frames"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect();
        let rows = tshark_rows(&path);
        let hit = frames.iter().any(|&n| {
            let r = &rows[n as usize - 1];
            match filter {
                "403" => r[col("http.response.code")] == "403",
                "alert" => !r[col("tls.alert_message.desc")].is_empty(),
                "rst" => r[col("tcp.flags.reset")] == "1",
                "nxdomain" => !r[col("dns.qry.name")].is_empty(),
                "upgrade" => !r[col("http.upgrade")].is_empty() && !r[col("http.request.method")].is_empty(),
                _ => unreachable!(),
            }
        });
        assert!(hit, "{file}: {code} frames {frames:?} do not show {filter}");
    };
    check("ws-reject-403.pcap", "upgrade-rejected", "403");
    check("wss-alert.pcap", "tls-alert", "alert");
    check("ws-reset-after-101.pcap", "reset-after-upgrade", "rst");
    check("tcp-refused.pcap", "tcp-connect-refused", "rst");
    check("dns-failure.pcap", "dns-failure", "nxdomain");
    check("ws-proxy-stripped.pcap", "proxy-stripped-upgrade", "upgrade");
}

#[test]
fn public_corpus_gets_plausible_verdicts() {
    for f in corpus_captures() {
        let d = diagnose(&f);
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("websocket_") {
            assert!(!attempts(&d).is_empty(), "{name}: no WebSocket attempt found");
            assert!(has(&d, "upgrade-ok") || has(&d, "bad-accept"), "{name}: {:?}", codes(&d));
        }
        if name == "websocket_wrong-accept-header.pcap" {
            assert!(has(&d, "bad-accept"));
        }
    }
}

#[test]
fn fail_on_sets_exit_status_3_and_several_inputs_give_json_lines() {
    let bad = testdata().join("ws-reject-403.pcap");
    let good = testdata().join("ws-direct-ok.pcap");
    assert_eq!(run(&["diagnose", bad.to_str().unwrap(), "--fail-on", "error", "-q"]).status.code(), Some(3));
    assert_eq!(run(&["diagnose", good.to_str().unwrap(), "--fail-on", "warning", "-q"]).status.code(), Some(0));
    assert_eq!(run(&["diagnose", bad.to_str().unwrap()]).status.code(), Some(0));
    let r = run(&["diagnose", "--json", bad.to_str().unwrap(), good.to_str().unwrap()]);
    let lines: Vec<Value> =
        String::from_utf8_lossy(&r.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0]["file"].as_str().unwrap().ends_with("ws-reject-403.pcap"));
}

#[test]
fn text_output_is_plain_in_a_pipe_and_fits_the_verdicts() {
    let r = run(&["diagnose", testdata().join("ws-proxy-stripped.pcap").to_str().unwrap()]);
    let s = String::from_utf8_lossy(&r.stdout);
    assert!(!s.contains('\x1b'), "no colour in a pipe");
    assert!(s.contains("proxy-stripped-upgrade") && s.contains("[client-proxy]") && s.contains("frames "), "{s}");
}

#[test]
fn capture_started_mid_connection_still_shows_the_websocket() {
    let dir = tmpdir();
    let full = testdata().join("ws-ping-survives.pcap");
    let n = read_packets(&full).len();
    let mid = dir.path().join("mid.pcap");
    reorder(&full, &mid, &(12..n).collect::<Vec<_>>());
    let d = diagnose(&mid);
    assert!(!attempts(&d).is_empty(), "{d}");
    let a = &attempts(&d)[0];
    assert_eq!(a["connect"], "mid-stream");
    assert!(a["pings"].as_u64().unwrap() > 0, "{a}");
    assert_eq!(a["close_code"], 1000);
}

#[test]
fn retransmitted_segments_are_counted() {
    let dir = tmpdir();
    let src = testdata().join("ws-direct-ok.pcap");
    let n = read_packets(&src).len();
    let mut order: Vec<usize> = (0..n).collect();
    order.insert(8, 7); // the first data frame again
    let retrans = dir.path().join("retrans.pcap");
    reorder(&src, &retrans, &order);
    let d = diagnose(&retrans);
    assert!(has(&d, "retransmissions"), "{:?}", codes(&d));
    assert_eq!(attempts(&d)[0]["retransmissions"], 1);
}

#[test]
fn text_lines_fit_80_columns() {
    for f in ["ws-proxy-stripped.pcap", "ws-idle-timeout.pcap", "wss-alert.pcap"] {
        let r = run(&["diagnose", testdata().join(f).to_str().unwrap()]);
        for line in String::from_utf8_lossy(&r.stdout).lines().skip(1) {
            // Attempt lines carry a path that may be long; findings are wrapped.
            if line.starts_with("      ") {
                assert!(line.chars().count() <= 80, "{f}: {line}");
            }
        }
    }
}

#[test]
fn http2_prior_knowledge_preface_is_named() {
    // A client speaking HTTP/2 from its first byte (h2c prior knowledge): no upgrade can happen.
    let pcap = pcap_surgery::fuzzing::conversation_pcap(
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        b"\x00\x00\x00\x04\x00\x00\x00\x00\x00",
        &[200],
        false,
    );
    let dir = tmpdir();
    let f = dir.path().join("h2c.pcap");
    std::fs::write(&f, pcap).unwrap();
    let d = diagnose(&f);
    assert!(has(&d, "h2-negotiated"), "{d}");
}

#[test]
fn diagnoses_carry_none_of_the_planted_secrets() {
    // The output is pasted into tickets: query tokens are masked, cookies, authorization
    // headers and message text are never shown.
    for f in testdata_captures() {
        for extra in [&["--json"][..], &[][..]] {
            let mut args = vec!["diagnose", f.to_str().unwrap()];
            args.extend_from_slice(extra);
            let r = run(&args);
            let out = String::from_utf8_lossy(&r.stdout);
            assert!(!out.contains("SECRET"), "{}: {out}", f.display());
        }
    }
}

/// A copy of capture record `k` (0-based) turned into a TCP keep-alive probe: one byte at the
/// sequence number just before the next one the sender would use, 1 ms later.
fn keep_alive_after(src: &Path, k: usize) -> Vec<u8> {
    let b = std::fs::read(src).unwrap();
    let at = pcap_record_offsets(&b)[k];
    let caplen = u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
    let frame = &b[at + 16..at + 16 + caplen];
    let p = etherparse::SlicedPacket::from_ethernet(frame).unwrap();
    let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!("IPv4") };
    let Some(etherparse::TransportSlice::Tcp(t)) = p.transport else { panic!("TCP") };
    let next = t.sequence_number().wrapping_add(t.payload().len() as u32);
    let mut probe = Vec::new();
    etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(ip.header().source(), ip.header().destination(), 64)
        .tcp(t.source_port(), t.destination_port(), next.wrapping_sub(1), t.window_size())
        .ack(t.acknowledgment_number())
        .write(&mut probe, &[0])
        .unwrap();
    let mut rec = b[at..at + 16].to_vec();
    let frac = u32::from_le_bytes(rec[4..8].try_into().unwrap()) + 1_000_000;
    rec[4..8].copy_from_slice(&frac.to_le_bytes());
    rec[8..12].copy_from_slice(&(probe.len() as u32).to_le_bytes());
    rec[12..16].copy_from_slice(&(probe.len() as u32).to_le_bytes());
    rec.extend_from_slice(&probe);
    rec
}

#[test]
fn tcp_keep_alives_are_not_retransmissions() {
    require_tshark();
    let dir = tmpdir();
    // ws-direct-ok (nanosecond pcap): packet 16 is the client's last frame before the close.
    let src = testdata().join("ws-direct-ok.pcap");
    let b = std::fs::read(&src).unwrap();
    let offsets = pcap_record_offsets(&b);
    let probe = keep_alive_after(&src, 15);
    let mut out = b[..offsets[16]].to_vec();
    out.extend_from_slice(&probe);
    out.extend_from_slice(&probe);
    out.extend_from_slice(&b[offsets[16]..]);
    let f = dir.path().join("keepalive.pcap");
    std::fs::write(&f, out).unwrap();
    // Wireshark calls them keep-alives...
    let keep_alives = tshark(&f, &["-Y", "tcp.analysis.keep_alive", "-T", "fields", "-e", "frame.number"]);
    assert_eq!(keep_alives.lines().count(), 2, "tshark sees two keep-alives");
    // ...and so does diagnose: no retransmissions.
    let d = diagnose(&f);
    assert!(!has(&d, "retransmissions"), "{:?}", codes(&d));
    assert_eq!(attempts(&d)[0]["retransmissions"], 0);
}

#[test]
fn a_failed_lookup_of_a_name_no_attempt_used_is_info() {
    require_tshark();
    let dir = tmpdir();
    let shifted = |secs: &str, name: &str| {
        let out = dir.path().join(name);
        let st = std::process::Command::new("editcap")
            .args(["-t", secs])
            .arg(testdata().join("dns-failure.pcap"))
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
        out
    };
    let merged = |dns: &Path, name: &str| {
        let out = dir.path().join(name);
        let st = std::process::Command::new("mergecap")
            .args(["-F", "pcap", "-w"])
            .arg(&out)
            .arg(dns)
            .arg(testdata().join("ws-direct-ok.pcap"))
            .status()
            .unwrap();
        assert!(st.success());
        out
    };
    let severity = |d: &Value| {
        d["findings"].as_array().unwrap().iter().find(|f| f["code"] == "dns-failure").unwrap()["severity"].clone()
    };
    // NXDOMAIN for no-such-host.test, then a WebSocket to 127.0.0.1 that never used that name.
    let before = merged(&shifted("-3600", "early.pcap"), "before.pcap");
    assert_eq!(severity(&diagnose(&before)), "info");
    // The same lookup with no attempt after it: it may be the whole story.
    let after = merged(&shifted("3600", "late.pcap"), "after.pcap");
    assert_eq!(severity(&diagnose(&after)), "error");
    assert_eq!(severity(&diagnose(&testdata().join("dns-failure.pcap"))), "error");
}

#[test]
fn a_capture_without_attempts_says_what_it_holds() {
    require_tshark();
    let dir = tmpdir();
    // Only the plain page loads of ws-bulk-mixed (HTTP GETs on :18090 without an upgrade).
    let plain = dir.path().join("plain.pcap");
    let st = std::process::Command::new("tshark")
        .arg("-r")
        .arg(testdata().join("ws-bulk-mixed.pcap"))
        .args(["-Y", "tcp.port == 18090", "-F", "pcap", "-w"])
        .arg(&plain)
        .status()
        .unwrap();
    assert!(st.success());
    let r = run(&["diagnose", plain.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&r.stdout).replace('\n', " ");
    assert!(text.contains("0 WebSocket attempt(s); TCP flows seen: 5 HTTP without an upgrade"), "{text}");
}

#[test]
fn a_backend_that_never_answers_the_proxy_carries_its_own_finding() {
    // ws-proxy-504: nginx forwards the upgrade (frame 9), the backend is silent, nginx gives up
    // with a FIN (frame 11) and answers the client 504 (frame 12) — frame numbers as tshark
    // shows them.
    let d = diagnose(&testdata().join("ws-proxy-504.pcap"));
    let f: Vec<&Value> =
        d["findings"].as_array().unwrap().iter().filter(|f| f["code"] == "upgrade-unanswered").collect();
    assert_eq!(f.len(), 1, "{d}");
    assert_eq!(f[0]["frames"], serde_json::json!([9, 11]));
    assert_eq!(f[0]["severity"], "error");
    assert!(has(&d, "upgrade-rejected"), "the client leg's 504 still says what the client saw");
}

/// Runs diagnose on capture bytes written to a temporary file.
fn diagnose_bytes(bytes: &[u8]) -> Value {
    let dir = tmpdir();
    let f = dir.path().join("x.pcap");
    std::fs::write(&f, bytes).unwrap();
    diagnose(&f)
}

fn h2_severity(d: &Value) -> Value {
    d["findings"].as_array().unwrap().iter().find(|f| f["code"] == "h2-negotiated").expect("h2-negotiated")["severity"]
        .clone()
}

#[test]
fn http2_is_an_error_only_where_a_websocket_was_attempted() {
    use pcap_surgery::fuzzing::conversation_pcap;
    let h2c = conversation_pcap(
        b"GET /robots.txt HTTP/1.1\r\nHost: example.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        &[200],
        false,
    );
    // A plain HTTP/2 upgrade with no WebSocket anywhere: a fact, not a failure.
    assert_eq!(h2_severity(&diagnose_bytes(&h2c)), "info");
    // The same, then a WebSocket attempt to the same server and port: HTTP/2 there explains a
    // failure. (The second connection reuses the port after the first closed; a second later.)
    let ws = conversation_pcap(
        b"GET /chat HTTP/1.1\r\nHost: example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n",
        &[200],
        false,
    );
    let mut both = h2c.clone();
    let mut at = 24;
    while at + 16 <= ws.len() {
        let len = u32::from_le_bytes(ws[at + 8..at + 12].try_into().unwrap()) as usize;
        let mut rec = ws[at..at + 16 + len].to_vec();
        let sec = u32::from_le_bytes(rec[0..4].try_into().unwrap()) + 1;
        rec[0..4].copy_from_slice(&sec.to_le_bytes());
        both.extend_from_slice(&rec);
        at += 16 + len;
    }
    let d = diagnose_bytes(&both);
    assert_eq!(attempts(&d).len(), 2, "{d}");
    assert_eq!(h2_severity(&d), "error");
}

#[test]
fn a_capture_of_one_direction_is_judged_from_what_is_there() {
    require_tshark();
    let dir = tmpdir();
    // ws-direct-ok seen through a filter that kept one direction only (client port 48766).
    for (side, filter) in [("client", "tcp.srcport == 48766"), ("server", "tcp.srcport == 18765")] {
        let out = dir.path().join(format!("{side}.pcap"));
        let st = std::process::Command::new("tshark")
            .arg("-r")
            .arg(testdata().join("ws-direct-ok.pcap"))
            .args(["-Y", filter, "-F", "pcap", "-w"])
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
        let d = diagnose(&out);
        assert_eq!(attempts(&d).len(), 1, "{side}: {d}");
        assert!(has(&d, "one-sided-capture"), "{side}: {:?}", codes(&d));
        assert!(worst_is_below_warning(&d), "{side}: no verdict from the silence: {:?}", codes(&d));
        if side == "server" {
            assert_eq!(attempts(&d)[0]["status"], 101, "the 101 alone shows the WebSocket");
        }
    }
}

#[test]
fn legs_pair_by_key_through_a_path_rewrite_and_an_auth_subrequest_is_its_own_leg() {
    // nginx `location /app/ { proxy_pass http://backend/; }` without the Upgrade headers.
    let d = diagnose(&testdata().join("ws-proxy-stripped-rewrite.pcap"));
    assert_eq!(leg(&d, "client-proxy")["path"], "/app/echo?token=*");
    assert_eq!(leg(&d, "proxy-backend")["path"], "/echo?token=*");
    assert!(has(&d, "proxy-stripped-upgrade"), "{:?}", codes(&d));
    assert!(!has(&d, "upgrade-header-missing"), "the backend leg is judged against its front leg");
    // nginx auth_request: the auth service's copy of the headers under /check, answered 401.
    let d = diagnose(&testdata().join("ws-auth-subrequest.pcap"));
    let auth = leg(&d, "auth-subrequest");
    assert_eq!(auth["path"], "/check");
    assert_eq!(auth["status"], 401);
    assert_eq!(leg(&d, "client-proxy")["status"], 401);
    assert!(!has(&d, "upgrade-header-missing"), "{:?}", codes(&d));
    let f: Vec<&Value> = d["findings"].as_array().unwrap().iter().filter(|f| f["severity"] == "error").collect();
    assert_eq!(f.len(), 1, "one error, on the client's leg: {d}");
    assert_eq!(f[0]["code"], "auth-redirect");
    assert!(f[0]["message"].as_str().unwrap().contains("auth subrequest"), "{}", f[0]["message"]);
}

/// A real browser (headless Chromium) through nginx: its own headers, the page load and a
/// favicon request first, then a WebSocket through the correct proxy and one through the
/// proxy that strips Upgrade/Connection and rewrites /app/echo to /echo.
#[test]
fn a_browser_made_capture_pairs_legs_by_key_through_a_path_rewrite() {
    let d = diagnose(&testdata().join("ws-browser-chromium.pcap"));
    let legs: Vec<(String, String, Value)> = d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["leg"].as_str().unwrap().to_string(), a["path"].as_str().unwrap().to_string(), a["status"].clone()))
        .collect();
    assert_eq!(
        legs,
        [
            ("client-proxy".to_string(), "/echo?token=*".to_string(), Value::from(101)),
            ("proxy-backend".to_string(), "/echo?token=*".to_string(), Value::from(101)),
            ("client-proxy".to_string(), "/app/echo?token=*".to_string(), Value::from(426)),
            ("proxy-backend".to_string(), "/echo?token=*".to_string(), Value::from(426)),
        ],
        "{d}"
    );
    let errors: Vec<&str> = d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(errors, ["proxy-stripped-upgrade", "upgrade-rejected"], "{d}");
    // Chromium's close 1000 on the working pair (tshark: websocket.payload.close.status_code).
    assert_eq!(d["attempts"][0]["close_code"], 1000);
}

/// The public corpus (captures other projects made), when present: every finding at warning
/// or above is one tshark backs (testdata/README.md has the table with what tshark shows);
/// everything else gets nothing at warning or above.
#[test]
fn public_captures_get_only_the_alarms_tshark_backs() {
    let expected: &[(&str, &[(&str, &str)])] = &[
        // Client FIN then RST, no close frame (tshark: no websocket.opcode == 8).
        ("suricata-verify/websocket-ping/input.pcap", &[("closed-after-upgrade", "warning")]),
        // One DNS query, never answered, nothing after it.
        ("tcpdump/LINKTYPE_IPV4.pcap", &[("dns-failure", "error")]),
        // A ClientHello (offering h2) answered by the server with a plaintext HTML error page
        // (tshark: no TLS record from port 80, text payload in frame 6).
        ("zeek/tls_https-to-http.pcap", &[("tls-to-plain-port", "error")]),
        // TLS alert 40 (handshake_failure) from the server, before any application data.
        ("zeek/tls_certificate-request-failed.pcap", &[("tls-alert", "error")]),
        // Close frame with status 1009 (message too big).
        ("zeek/websocket_message-too-big-status.pcap", &[("closed-after-upgrade", "warning")]),
        // Sec-WebSocket-Accept does not match the key.
        ("zeek/websocket_wrong-accept-header.pcap", &[("bad-accept", "error")]),
        // (zeek/websocket_wstunnel-ssh.pcap: each tunnel's client resets right after the
        // closing handshake finished — close frames both ways (tshark: websocket.opcode == 8
        // in frames 38/40 and 255/257, the RST in 42 and 258) — a clean close: info.)
    ];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/public");
    for capture in corpus_captures() {
        let rel = capture.strip_prefix(&root).unwrap().to_string_lossy().to_string();
        let d = diagnose(&capture);
        let mut got: Vec<(String, String)> = d["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["severity"] != "info")
            .map(|f| (f["code"].as_str().unwrap().to_string(), f["severity"].as_str().unwrap().to_string()))
            .collect();
        got.sort();
        got.dedup();
        let want: Vec<(String, String)> = expected
            .iter()
            .find(|(p, _)| *p == rel)
            .map(|(_, w)| w.iter().map(|(c, s)| (c.to_string(), s.to_string())).collect())
            .unwrap_or_default();
        assert_eq!(got, want, "{rel}");
    }
}

/// RFC 6455 §7.1.1: after sending and receiving a Close a client may drop the connection, and a
/// RST then ends a WebSocket that closed cleanly — no error. A reset with no close frame (the
/// server aborting with SO_LINGER 0) is one.
#[test]
fn a_reset_after_the_closing_handshake_is_no_error() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/public");
    let wstunnel = corpus.join("zeek/websocket_wstunnel-ssh.pcap");
    if wstunnel.exists() {
        let d = diagnose(&wstunnel);
        let resets: Vec<&serde_json::Value> =
            d["findings"].as_array().unwrap().iter().filter(|f| f["code"] == "reset-after-upgrade").collect();
        assert_eq!(resets.len(), 2, "{:?}", codes(&d));
        for f in resets {
            assert_eq!(f["severity"], "info", "{f}");
            assert!(f["message"].as_str().unwrap().contains("closing handshake"), "{f}");
            let frame = f["frames"][0].as_u64().unwrap();
            assert!(frame == 42 || frame == 258, "{f}");
        }
    }
    let d = diagnose(&testdata().join("ws-reset-after-101.pcap"));
    let f = d["findings"].as_array().unwrap().iter().find(|f| f["code"] == "reset-after-upgrade").unwrap();
    assert_eq!(f["severity"], "error", "{f}");
}

#[test]
fn a_connect_tunnel_is_a_leg_and_a_refused_one_says_why() {
    // tinyproxy: CONNECT 127.0.0.1:18443, 200, then TLS (SNI ws.test, ALPN http/1.1) inside.
    let d = diagnose(&testdata().join("wss-connect-ok.pcap"));
    let t = leg(&d, "tunnel");
    assert_eq!(t["status"], 200);
    assert_eq!(t["sni"], "ws.test");
    assert_eq!(t["alpn_offered"], serde_json::json!(["http/1.1"]));
    assert!(d["findings"].as_array().unwrap().iter().all(|f| f["severity"] != "error"), "{:?}", codes(&d));
    // The same through a proxy that wants credentials: 407, the CONNECT and the answer cited.
    let d = diagnose(&testdata().join("wss-connect-407.pcap"));
    assert_eq!(leg(&d, "tunnel")["status"], 407);
    let f = d["findings"].as_array().unwrap().iter().find(|f| f["code"] == "proxy-connect-failed").unwrap();
    assert_eq!(f["frames"], serde_json::json!([4, 6]));
    assert!(f["message"].as_str().unwrap().contains("credentials"), "{}", f["message"]);
}

/// A capture that ends while a ClientHello offering h2 waits for the server's first bytes: the
/// flow is decided as what the hello offered when the capture ends, and diagnose says so, as
/// flows and trim do (the events of that last decision were once lost).
#[test]
fn a_hello_the_capture_ended_on_is_decided_in_every_command() {
    let src =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/public/zeek/tls_https-to-http.pcap");
    let Ok(bytes) = std::fs::read(&src) else { return };
    // SYN, SYN-ACK, ACK, the ClientHello, the server's ACK: the answer is cut off.
    let cut = pcap_record_offsets(&bytes)[5];
    let dir = tmpdir();
    let f = dir.path().join("hello.pcap");
    std::fs::write(&f, &bytes[..cut]).unwrap();
    let text = String::from_utf8_lossy(&run(&["diagnose", f.to_str().unwrap()]).stdout).to_string();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(text.contains("TCP flows seen: 1 TLS offering h2"), "{text}");
    let flows = String::from_utf8_lossy(&run(&["flows", f.to_str().unwrap()]).stdout).to_string();
    assert!(flows.contains("dropped: TLS offering h2"), "{flows}");
}

/// A busy resolver's lookups are read as lookups, not held as connections: 25,000 of them
/// (more than diagnose keeps open at once) neither crowd out the attempt nor make diagnose
/// warn that connections went unanalysed (only that lookups past its bound were).
#[test]
fn many_lookups_over_udp_are_no_open_connections() {
    let mut frames = Vec::new();
    for i in 0..25_000u32 {
        let client = [10, 1, (i >> 8) as u8, i as u8];
        let mut q = vec![(i >> 8) as u8, i as u8, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in [format!("h{i}"), "example".to_string(), "test".to_string()] {
            q.push(label.len() as u8);
            q.extend(label.as_bytes());
        }
        q.extend([0, 0, 1, 0, 1]);
        let mut f = Vec::new();
        etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(client, [10, 0, 0, 53], 64)
            .udp(40_000, 53)
            .write(&mut f, &q)
            .unwrap();
        frames.push(f);
    }
    let mut c = Conv::new(50_000, 80);
    c.send(0, upgrade("").as_bytes(), 1448);
    c.send(1, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 1448);
    frames.extend(c.close());
    let dir = tmpdir();
    let f = dir.path().join("resolver.pcap");
    std::fs::write(&f, pcap_spaced(&frames, 10)).unwrap();
    let r = run(&["diagnose", "--json", f.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&r.stderr);
    assert!(!stderr.contains("connections were open at once"), "{stderr}");
    let d: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(d["attempts"].as_array().unwrap().len(), 1);
    assert!(has(&d, "upgrade-rejected"), "{d}");
}

/// Legs of one attempt through a proxy carry one Sec-WebSocket-Key. A client library that
/// sends a fixed key (here the RFC's sample) makes attempts of different clients to the same
/// server share it: they are separate attempts, not a proxy's legs, and each refusal counts.
#[test]
fn attempts_with_one_fixed_key_to_one_server_are_not_proxy_legs() {
    let mut frames = Vec::new();
    for port in [50_001, 50_002, 50_003] {
        let mut c = Conv::new(port, 80);
        c.send(0, upgrade("").as_bytes(), 1448);
        c.send(1, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", 1448);
        frames.extend(c.close());
    }
    let d = diagnose_bytes(&pcap_spaced(&frames, 1000));
    let attempts = d["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3);
    assert!(attempts.iter().all(|a| a["leg"] == "direct"), "{d}");
    let rejected = d["findings"].as_array().unwrap().iter().filter(|f| f["code"] == "upgrade-rejected").count();
    assert_eq!(rejected, 3, "{d}");
}
