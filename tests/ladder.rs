//! `diagnose --ladder`: each attempt drawn as a ladder in 80 columns, checked against expected
//! output (regenerate with `UPDATE_LADDERS=1 cargo test --test ladder` after a deliberate
//! change, and read the diff), never wider than 80 columns, never showing a secret.

mod common;

use common::*;

const GOLDEN: &[&str] = &[
    "ws-browser-chromium.pcap",
    "ws-idle-timeout.pcap",
    "ws-auth-subrequest.pcap",
    "ws-bulk-mixed.pcap",
    "wss-keys-13.pcapng",
];

fn ladder(name: &str) -> String {
    let r = run(&["diagnose", "--ladder", testdata().join(name).to_str().unwrap()]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let text = String::from_utf8(r.stdout).unwrap();
    // The diagrams follow the findings, after the first blank line.
    text.split_once("\n\n").map(|(_, l)| l.to_string()).unwrap_or_default()
}

#[test]
fn ladders_match_the_expected_diagrams() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected");
    for name in GOLDEN {
        let got = ladder(name);
        let path = dir.join(format!("ladder-{name}.txt"));
        if std::env::var_os("UPDATE_LADDERS").is_some() {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(got, want, "{name}: the ladder differs from {}", path.display());
    }
}

#[test]
fn ladders_fit_80_columns_mark_the_failure_and_show_no_secret() {
    for f in testdata_captures() {
        let text = ladder(f.file_name().unwrap().to_str().unwrap());
        for line in text.lines() {
            assert!(line.len() <= 80 + 40, "{}: too wide: {line}", f.display());
            let visible = line.split("  <- ").next().unwrap();
            assert!(visible.len() <= 80, "{}: {} columns: {line}", f.display(), visible.len());
        }
        for secret in ["SECRETquery", "SECRETcookie", "SECRETtoken", "SECRETmessage", "SECRETclose"] {
            assert!(!text.contains(secret), "{}: {secret} in the ladder", f.display());
        }
    }
    // The stripping proxy: three lifelines, the backend leg's request marked.
    let text = ladder("ws-browser-chromium.pcap");
    assert!(text.contains("client 127.0.0.1:40448") && text.contains("backend 127.0.0.1:18765"), "{text}");
    let marked = text.lines().find(|l| l.contains("<- proxy-stripped-upgrade")).expect("the failing step is marked");
    assert!(marked.contains("GET /echo?token=*") && marked.contains("#60"), "{marked}");
    // A long idle gap is folded and labelled.
    assert!(ladder("ws-idle-timeout.pcap").contains("~~ 3.0 s idle ~~"));
    // The lookup that named the server has its own lifeline.
    assert!(ladder("ws-bulk-mixed.pcap").contains("resolver"));
}
