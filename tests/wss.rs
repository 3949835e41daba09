//! wss:// with keys: every HTTP and WebSocket fact tshark decrypts with the capture's key log,
//! `diagnose` reports, and `trim` keeps. The captures (testdata/README.md) were made on loopback
//! by Python clients with SSLKEYLOGFILE through nginx TLS terminators: TLS 1.3 with each AEAD
//! suite (a 101 closed 1001, a 403, a 302), TLS 1.2 with each (a 101, a reset behind the
//! terminator, a 101 closed 1001), the older two-session capture, openssl s_client through a
//! HelloRetryRequest with a KeyUpdate each way before the close frames, and a
//! client-side-only capture whose keys come in a separate file.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

const KEYED: &[&str] = &["wss-keylog.pcapng", "wss-keys-13.pcapng", "wss-keys-12.pcapng", "wss-keys-hrr-update.pcapng"];
const TLS_PORTS: &[&str] = &["18443", "18444", "18445", "18446", "18447"];

fn diagnose(args: &[&str]) -> (Value, String) {
    let out = run(&[&["diagnose", "--json"], args].concat());
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    (serde_json::from_slice(&out.stdout).expect("JSON"), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// What tshark decrypts on each TLS connection (by client port): request path, response
/// status, close codes, and the frames that carry the request and the response.
#[derive(Debug, Default, PartialEq)]
struct Decrypted {
    path: Option<String>,
    status: Option<u16>,
    closes: Vec<u16>,
    request_frame: Option<u64>,
    response_frame: Option<u64>,
}

fn tshark_decrypted(file: &Path, keylog: Option<&Path>) -> BTreeMap<String, Decrypted> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file).args(decode_as());
    if let Some(k) = keylog {
        cmd.arg("-o").arg(format!("tls.keylog_file:{}", k.display()));
    }
    cmd.args(["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a"]);
    for f in [
        "frame.number",
        "tcp.srcport",
        "tcp.dstport",
        "http.request.uri",
        "http.response.code",
        "websocket.payload.close.status_code",
        "http.sec_websocket_key",
    ] {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark");
    assert!(out.status.success());
    let mut by: BTreeMap<String, Decrypted> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let c: Vec<&str> = line.split('\t').collect();
        let (sp, dp) = (c[1], c[2]);
        let client = if TLS_PORTS.contains(&dp) {
            sp
        } else if TLS_PORTS.contains(&sp) {
            dp
        } else {
            continue;
        };
        let d = by.entry(client.to_string()).or_default();
        let frame: u64 = c[0].parse().unwrap();
        // Upgrade requests only (a plain GET inside TLS is no attempt).
        if !c[3].is_empty() && !c[6].is_empty() && d.path.is_none() {
            d.path = Some(c[3].split('?').next().unwrap().to_string());
            d.request_frame = Some(frame);
        }
        if !c[4].is_empty() && d.status.is_none() && d.path.is_some() {
            d.status = c[4].parse().ok();
            d.response_frame = Some(frame);
        }
        for code in c[5].split(',').filter(|s| !s.is_empty()) {
            d.closes.push(code.parse().unwrap());
        }
    }
    by
}

/// The attempts of a diagnosis on the TLS ports, by client port.
fn tls_attempts(d: &Value) -> BTreeMap<String, Value> {
    d["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| TLS_PORTS.iter().any(|p| a["server"].as_str().unwrap().ends_with(&format!(":{p}"))))
        .map(|a| (a["client"].as_str().unwrap().rsplit(':').next().unwrap().to_string(), a.clone()))
        .collect()
}

/// Every request, status and close code tshark decrypts is in the diagnosis, with the
/// request's and the response's packets among its evidence frames.
fn assert_diagnosis_matches(file: &Path, d: &Value, tshark: &BTreeMap<String, Decrypted>) {
    let attempts = tls_attempts(d);
    let mut seen = 0;
    for (port, t) in tshark {
        let Some(path) = &t.path else { continue };
        seen += 1;
        let a = attempts.get(port).unwrap_or_else(|| panic!("{}: no attempt from port {port}: {d}", file.display()));
        assert_eq!(a["path"].as_str().unwrap().split('?').next().unwrap(), path, "{}: {port}", file.display());
        assert_eq!(a["status"].as_u64().map(|s| s as u16), t.status, "{}: {port}", file.display());
        assert_eq!(a["close_code"].as_u64().map(|s| s as u16), t.closes.first().copied(), "{}: {port}", file.display());
        let frames: Vec<u64> = a["frames"].as_array().unwrap().iter().map(|f| f.as_u64().unwrap()).collect();
        for f in [t.request_frame, t.response_frame].into_iter().flatten() {
            assert!(frames.contains(&f), "{}: {port}: frame {f} (tshark) not among {frames:?}", file.display());
        }
    }
    assert!(seen > 0, "{}: tshark decrypted nothing", file.display());
}

#[test]
fn every_fact_tshark_decrypts_diagnose_reports() {
    require_tshark();
    for name in KEYED {
        let file = testdata().join(name);
        let tshark = tshark_decrypted(&file, None);
        let (d, err) = diagnose(&[file.to_str().unwrap()]);
        assert_diagnosis_matches(&file, &d, &tshark);
        assert!(!err.contains("read without keys"), "{name}: {err}");
        assert!(!err.contains("not visible without their keys"), "{name}: {err}");
    }
    // The suites were what they claim (tshark: the ServerHello's cipher suite per port).
    let suites = |name: &str| -> Vec<String> {
        let args = [decode_as(), &["-Y", "tls.handshake.type == 2", "-T", "fields", "-e", "tls.handshake.ciphersuite"]];
        tshark(&testdata().join(name), &args.concat()).lines().map(str::to_string).collect()
    };
    assert_eq!(suites("wss-keys-13.pcapng"), ["0x1302", "0x1301", "0x1303"]);
    assert_eq!(suites("wss-keys-12.pcapng"), ["0xc02f", "0xc030", "0xcca8"]);
}

#[test]
fn the_wss_attempts_read_like_ws_ones() {
    let (d, _) = diagnose(&[testdata().join("wss-keys-13.pcapng").to_str().unwrap()]);
    let codes: Vec<(&str, &str)> = d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["code"].as_str().unwrap(), f["severity"].as_str().unwrap()))
        .collect();
    // The 403 and the login redirect, judged as on plain ws://; the 1001 close is clean.
    assert!(codes.contains(&("upgrade-rejected", "error")), "{codes:?}");
    assert!(codes.contains(&("auth-redirect", "error")), "{codes:?}");
    let a = tls_attempts(&d);
    let chat = a.values().find(|a| a["status"] == 101).unwrap();
    assert_eq!((chat["close_code"].as_u64(), chat["pings"].as_u64()), (Some(1001), Some(1)));
    assert_eq!(chat["sni"], "ws.test");
    let login = a.values().find(|a| a["status"] == 302).unwrap();
    assert_eq!(login["location"], "/login?next=*");
    // Legs pair through the terminator by key, as in cleartext.
    assert!(a.values().all(|a| a["leg"] == "client-proxy"), "{d}");
}

#[test]
fn a_client_side_capture_reads_with_a_key_log_file_and_trims_with_its_keys() {
    require_tshark();
    let file = testdata().join("wss-keys-client-only.pcap");
    let keys = testdata().join("wss-keys-client-only.keys");
    let (without, err) = diagnose(&[file.to_str().unwrap()]);
    assert!(err.contains("1 TLS session(s) may carry a WebSocket upgrade") && err.contains("SSLKEYLOGFILE"), "{err}");
    assert_eq!(without["attempts"][0]["status"], Value::Null);
    let (with, err) = diagnose(&["--keylog", keys.to_str().unwrap(), file.to_str().unwrap()]);
    assert!(err.is_empty(), "{err}");
    assert_diagnosis_matches(&file, &with, &tshark_decrypted(&file, Some(&keys)));
    assert_eq!(with["attempts"][0]["close_code"], 1001);

    // trim with the keys: a pcap output and its key-log lines in a file; tshark reads the
    // trimmed capture with them as it read the input.
    let dir = tmpdir();
    let (out, out_keys) = (dir.path().join("t.pcap"), dir.path().join("t.keys"));
    let r = run(&[
        "trim",
        "--keylog",
        keys.to_str().unwrap(),
        "--keylog-out",
        out_keys.to_str().unwrap(),
        file.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let written = std::fs::read_to_string(&out_keys).unwrap();
    let given = std::fs::read_to_string(&keys).unwrap();
    assert!(written.lines().count() >= 4 && written.lines().all(|l| given.lines().any(|g| g == l)), "{written}");
    assert_eq!(tshark_decrypted(&out, Some(&out_keys)), tshark_decrypted(&file, Some(&keys)));
}

#[test]
fn wrong_partial_or_missing_keys_are_named_and_the_session_is_read_without_them() {
    let dir = tmpdir();
    let file = testdata().join("wss-keys-client-only.pcap");
    let keys = std::fs::read_to_string(testdata().join("wss-keys-client-only.keys")).unwrap();
    let (plain, _) = diagnose(&[file.to_str().unwrap()]);
    // Every secret altered in its last digit: the records fail authentication.
    let wrong: String = keys
        .lines()
        .map(|l| {
            let mut l = l.to_string();
            if !l.starts_with('#') {
                let last = l.pop().unwrap();
                l.push(if last == '0' { '1' } else { '0' });
            }
            l + "\n"
        })
        .collect();
    // Only the client's secrets: the server's records cannot be read.
    let partial: String = keys.lines().filter(|l| l.starts_with("CLIENT_")).map(|l| l.to_string() + "\n").collect();
    // Only the application secrets: the handshake records are skipped, the rest is read.
    let app_only: String =
        keys.lines().filter(|l| l.contains("TRAFFIC_SECRET_0")).map(|l| l.to_string() + "\n").collect();
    for (name, text, note) in [
        ("wrong", &wrong, Some("do not decrypt it")),
        ("partial", &partial, Some("lacks the traffic secrets")),
        ("garbage", &"CLIENT_RANDOM zz\n\u{0}\u{1}not a key log\n".to_string(), None),
    ] {
        let k = dir.path().join(name);
        std::fs::write(&k, text).unwrap();
        let (d, err) = diagnose(&["--keylog", k.to_str().unwrap(), file.to_str().unwrap()]);
        assert_eq!(d["attempts"], plain["attempts"], "{name}: read as without keys");
        if let Some(note) = note {
            assert!(err.contains("read without keys") && err.contains(note) && err.contains(":18446"), "{name}: {err}");
        }
    }
    let k = dir.path().join("app-only");
    std::fs::write(&k, app_only).unwrap();
    let (d, err) = diagnose(&["--keylog", k.to_str().unwrap(), file.to_str().unwrap()]);
    assert_eq!(d["attempts"][0]["status"], 101, "{err}");
    // A key log that cannot be read is a one-line error.
    let r = run(&["diagnose", "--keylog", "/nonexistent/keys", file.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&r.stderr).contains("/nonexistent/keys: cannot read the key log"));
}

/// Scrubbing never writes keys: no Decryption Secrets Block and no secret, whatever the
/// options, from the input's blocks or from --keylog.
#[test]
fn scrub_never_writes_keys() {
    let dir = tmpdir();
    let secrets_of = |text: &str| -> Vec<String> {
        text.lines()
            .filter_map(|l| l.split(' ').nth(2))
            .filter(|t| t.len() >= 64 && t.chars().all(|c| c.is_ascii_hexdigit()))
            .map(str::to_string)
            .collect()
    };
    let client_only = testdata().join("wss-keys-client-only.pcap");
    let keys = testdata().join("wss-keys-client-only.keys");
    let mut secrets = secrets_of(&std::fs::read_to_string(&keys).unwrap());
    let dsb_text = |p: &Path| -> String {
        let b = std::fs::read(p).unwrap();
        String::from_utf8_lossy(&b).into_owned()
    };
    for name in KEYED {
        secrets.extend(secrets_of(&dsb_text(&testdata().join(name))));
    }
    assert!(secrets.len() > 20);
    for (input, extra) in [
        (testdata().join("wss-keys-13.pcapng"), vec!["--keep-comments"]),
        (testdata().join("wss-keylog.pcapng"), vec![]),
        (client_only.clone(), vec!["--keylog", keys.to_str().unwrap()]),
    ] {
        for verb in [&["scrub"][..], &["trim", "--scrub"][..]] {
            let out = dir.path().join("s.pcapng");
            let mut args: Vec<&str> = verb.to_vec();
            args.extend(&extra);
            args.extend(["--format", "pcapng", "--force", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
            let r = run(&args);
            assert!(r.status.success(), "{args:?}: {}", String::from_utf8_lossy(&r.stderr));
            let text = dsb_text(&out).to_ascii_lowercase();
            for s in &secrets {
                assert!(!text.contains(&s.to_ascii_lowercase()), "{args:?}: a key survived");
            }
            assert!(!text.contains("client_random") && !text.contains("traffic_secret"), "{args:?}");
        }
    }
}

/// A session whose plaintext is HTTPS without an upgrade is dropped, with its keys; a
/// WebSocket session is kept with its keys.
#[test]
fn keyed_sessions_are_kept_or_dropped_for_what_they_carry() {
    let file = testdata().join("wss-keylog.pcapng");
    let out = run(&["flows", "--json", file.to_str().unwrap()]);
    let flows: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let on_443: Vec<(&str, &str)> = flows
        .iter()
        .filter(|f| f["server"].as_str().unwrap().ends_with(":18443"))
        .map(|f| (f["verdict"].as_str().unwrap(), f["why"].as_str().unwrap()))
        .collect();
    assert_eq!(
        on_443,
        [("kept", "a WebSocket upgrade inside TLS (decrypted)"), ("dropped", "HTTPS without an upgrade (decrypted)")]
    );
    let dir = tmpdir();
    let t = dir.path().join("t.pcapng");
    assert!(run(&["trim", file.to_str().unwrap(), "-o", t.to_str().unwrap()]).status.success());
    let text = String::from_utf8_lossy(&std::fs::read(&t).unwrap()).into_owned();
    assert_eq!(text.matches("CLIENT_RANDOM").count(), 1, "only the kept session's key");
}

/// Records cut by a trim (bulk messages cut after their TCP header) lose the record
/// boundaries; the next whole record is found again by the keys, so a trimmed wss capture
/// reads as its input did: the same statuses, pings, pongs and close codes.
#[test]
fn a_trimmed_keyed_capture_reads_like_its_input_past_cut_records() {
    let dir = tmpdir();
    let summary = |d: &Value| -> Vec<(Value, Value, Value, Value)> {
        d["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["status"].clone(), a["pings"].clone(), a["pongs"].clone(), a["close_code"].clone()))
            .collect()
    };
    // The captures with data messages to cut (the HelloRetryRequest one has none).
    for name in &KEYED[..3] {
        let input = testdata().join(name);
        let out = dir.path().join("t.pcapng");
        let r = run(&["trim", "--keep-frames", "0", "--force", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert!(r.status.success());
        let cut = read_packets(&out).iter().filter(|p| p.data.len() < p.orig_len as usize).count();
        assert!(cut > 0, "{name}: nothing was cut");
        let (x, _) = diagnose(&[input.to_str().unwrap()]);
        let (t, _) = diagnose(&[out.to_str().unwrap()]);
        assert_eq!(summary(&t), summary(&x), "{name}");
        assert_eq!(t["findings"].as_array().unwrap().len(), x["findings"].as_array().unwrap().len(), "{name}");
    }
}
