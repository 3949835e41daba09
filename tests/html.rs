//! `diagnose --html`: the page is looked at as a person would — rendered by headless
//! Chromium (Debian package; `.ci/run` installs it), screenshotted — and must load with no
//! console error and nothing fetched from anywhere, show each attempt's lifelines and
//! statuses, and carry no secret.

mod common;

use std::process::Command;

use common::*;

const CAPTURES: &[&str] = &[
    "ws-browser-chromium.pcap",
    "ws-idle-timeout.pcap",
    "wss-connect-407.pcap",
    "dns-failure.pcap",
    "wss-keys-13.pcapng",
];

fn chromium() -> &'static str {
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return name;
        }
    }
    panic!("headless Chromium is required for the page test; `bash .ci/run` installs it (Debian package chromium)");
}

#[test]
fn the_page_renders_offline_with_every_attempt_and_no_secret() {
    let dir = tmpdir();
    let page = dir.path().join("report.html");
    let mut args = vec!["diagnose", "-q", "--html", page.to_str().unwrap()];
    let inputs: Vec<String> = CAPTURES.iter().map(|c| testdata().join(c).to_string_lossy().into_owned()).collect();
    args.extend(inputs.iter().map(String::as_str));
    let r = run(&args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: no script, no stylesheet or image to fetch, no URL but the SVG namespace.
    for bad in ["<script", "<link", "<img", " src=", "url(", "@import"] {
        assert!(!html.contains(bad), "the page holds {bad}");
    }
    let urls = html.matches("http://").count() + html.matches("https://").count();
    assert_eq!(urls, html.matches("http://www.w3.org/2000/svg").count(), "only the SVG namespace is a URL");
    for secret in ["SECRETquery", "SECRETcookie", "SECRETtoken", "SECRETmessage", "SECRETclose"] {
        assert!(!html.contains(secret), "{secret} in the page");
    }

    let shot = dir.path().join("report.png");
    let out = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1300,2400"])
        .args(["--disable-background-networking", "--no-first-run", "--enable-logging=stderr", "--v=0"])
        .args(["--host-resolver-rules=MAP * ~NOTFOUND"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    let log = String::from_utf8_lossy(&out.stderr);
    let dom = String::from_utf8_lossy(&out.stdout);
    for line in log.lines() {
        assert!(!line.contains("CONSOLE") && !line.contains("ERR_") && !line.contains("Failed to load"), "{line}");
    }
    assert!(std::fs::metadata(&shot).is_ok_and(|m| m.len() > 20_000), "no screenshot");
    // What a reader sees: every attempt's lifelines and statuses, and the failing steps.
    for text in [
        "client 127.0.0.1:40448",
        "proxy 127.0.0.1:18081",
        "backend 127.0.0.1:18765",
        "101 Switching Protocols",
        "426 Upgrade Required",
        "407 Proxy Authentication Required",
        "proxy-stripped-upgrade",
        "dns-failure",
        "~ 3.0 s idle ~",
        "close 1001",
    ] {
        assert!(dom.contains(text), "the rendered page lacks {text:?}");
    }
    assert!(dom.contains("<svg"), "ladders are drawn");
}
