//! "One engine, one answer": every command, and Wireshark, tell the same story about a capture.
//! Checked over every capture in testdata/ and, when it is there, the public corpus of captures
//! made by other projects (../shared/corpus/public):
//!
//! - `flows`' verdict for each flow is what `trim` does with its packets;
//! - diagnose gives the same findings (codes and severities) on x, trim(x), scrub(x) and
//!   trim --scrub(x);
//! - tshark's dissection of a trimmed capture shows no WebSocket frame, HTTP message or TLS
//!   record that the input lacks at the same segment, and keeps every handshake and teardown
//!   fact of the flows it keeps.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn all_captures() -> Vec<PathBuf> {
    let mut v = testdata_captures();
    v.extend(encap_captures());
    v.extend(corpus_captures());
    v
}

/// Runs `check` over the captures on two threads (tshark start-up dominates).
fn each_capture(check: impl Fn(&Path) -> Vec<String> + Sync) {
    let caps = all_captures();
    let half = caps.len().div_ceil(2);
    let failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = caps
            .chunks(half.max(1))
            .map(|chunk| s.spawn(|| chunk.iter().flat_map(|c| check(c)).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("checker thread")).collect()
    });
    assert!(failures.is_empty(), "{} disagreement(s):\n{}", failures.len(), failures.join("\n"));
}

fn output_name(input: &Path, dir: &Path, tag: &str) -> PathBuf {
    let name = input.file_name().unwrap().to_string_lossy().trim_end_matches(".gz").to_string();
    dir.join(format!("{tag}-{name}"))
}

fn produce(input: &Path, dir: &Path, tag: &str, args: &[&str]) -> PathBuf {
    let out = output_name(input, dir, tag);
    let mut a: Vec<&str> = args.to_vec();
    a.extend([input.to_str().unwrap(), "-o", out.to_str().unwrap(), "-q", "--force"]);
    let r = run(&a);
    assert!(r.status.success(), "{} {}: {}", args.join(" "), input.display(), String::from_utf8_lossy(&r.stderr));
    out
}

/// Findings as (code, severity), sorted.
fn findings(capture: &Path) -> Vec<(String, String)> {
    let r = run(&["diagnose", "--json", capture.to_str().unwrap()]);
    assert!(r.status.success(), "diagnose {}: {}", capture.display(), String::from_utf8_lossy(&r.stderr));
    let d: serde_json::Value = serde_json::from_slice(&r.stdout).expect("diagnose JSON");
    let mut v: Vec<(String, String)> = d["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["code"].as_str().unwrap().to_string(), f["severity"].as_str().unwrap().to_string()))
        .collect();
    v.sort();
    v
}

/// The transport flows present in a capture, as tshark sees them: "tcp a:p-b:p".
fn tshark_flows(capture: &Path) -> BTreeSet<String> {
    let fields = [
        ["-T", "fields", "-E", "occurrence=l", "-E", "separator=\t"].as_slice(),
        &["-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "udp.srcport"],
        &["-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport", "-e", "udp.dstport"],
    ]
    .concat();
    let mut set = BTreeSet::new();
    for l in tshark(capture, &fields).lines() {
        let f: Vec<&str> = l.split('\t').collect();
        let pick = |a: &str, b: &str| if a.is_empty() { b.to_string() } else { a.to_string() };
        let (src, dst) = (pick(f[0], f[1]), pick(f[4], f[5]));
        let (sp, dp) = (pick(f[2], f[3]), pick(f[6], f[7]));
        if sp.is_empty() {
            continue;
        }
        let proto = if f[2].is_empty() { "udp" } else { "tcp" };
        set.insert(flow_name(proto, &format!("{src}:{sp}"), &format!("{dst}:{dp}")));
    }
    set
}

fn flow_name(proto: &str, a: &str, b: &str) -> String {
    let strip = |s: &str| s.replace(['[', ']'], "");
    let (a, b) = (strip(a), strip(b));
    if a <= b { format!("{proto} {a}-{b}") } else { format!("{proto} {b}-{a}") }
}

#[test]
fn flows_verdicts_are_what_trim_does() {
    require_tshark();
    let dir = tmpdir();
    each_capture(|input| {
        let trimmed = produce(input, dir.path(), "flows-trim", &["trim"]);
        let written = tshark_flows(&trimmed);
        let r = run(&["flows", "--json", input.to_str().unwrap()]);
        assert!(r.status.success(), "flows {}", input.display());
        let mut bad = Vec::new();
        for line in String::from_utf8_lossy(&r.stdout).lines() {
            let j: serde_json::Value = serde_json::from_str(line).expect("flows JSON line");
            let name = flow_name(
                j["transport"].as_str().unwrap(),
                j["client"].as_str().unwrap(),
                j["server"].as_str().unwrap(),
            );
            let kept = j["verdict"] == "kept";
            if kept != written.contains(&name) {
                bad.push(format!(
                    "{}: flows says {} for {name} ({}), trim {}",
                    input.display(),
                    j["verdict"],
                    j["why"],
                    if written.contains(&name) { "writes it" } else { "drops it" }
                ));
            }
        }
        bad
    });
}

#[test]
fn diagnose_agrees_on_a_capture_and_its_trimmed_and_scrubbed_versions() {
    let dir = tmpdir();
    each_capture(|input| {
        let x = findings(input);
        // Scrubbing drops the keys: a scrubbed capture says what the input says without them.
        let x_without_keys = findings(&without_secrets(input, dir.path()));
        let mut bad = Vec::new();
        for (tag, args) in [("t", &["trim"][..]), ("s", &["scrub"][..]), ("ts", &["trim", "--scrub"][..])] {
            let out = produce(input, dir.path(), tag, args);
            let y = findings(&out);
            let x = if tag == "t" { &x } else { &x_without_keys };
            if *x != y {
                bad.push(format!(
                    "{}: diagnose(x) = {x:?} but diagnose({}(x)) = {y:?}",
                    input.display(),
                    args.join(" ")
                ));
            }
        }
        bad
    });
}

/// Per segment (addresses, ports, raw sequence number, flags, time): what tshark dissects in it.
fn segment_facts(capture: &Path) -> BTreeMap<Vec<String>, BTreeMap<(String, String), usize>> {
    const KEY: &[&str] =
        &["frame.time_epoch", "ip.src", "ipv6.src", "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.flags"];
    const FACTS: &[&str] = &[
        "websocket.opcode",
        "websocket.payload.close.status_code",
        "http.request.method",
        "http.response.code",
        "tls.record.content_type",
        "tls.handshake.type",
        "tls.alert_message.desc",
    ];
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(capture).args(decode_as()).args(["-T", "fields", "-E", "occurrence=a", "-E", "separator=\t"]);
    for f in KEY.iter().chain(FACTS) {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    let mut m: BTreeMap<Vec<String>, BTreeMap<(String, String), usize>> = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = l.split('\t').collect();
        let key: Vec<String> = f[..KEY.len()].iter().map(|s| s.to_string()).collect();
        let e = m.entry(key).or_default();
        for (i, name) in FACTS.iter().enumerate() {
            for v in f.get(KEY.len() + i).unwrap_or(&"").split(',').filter(|v| !v.is_empty()) {
                *e.entry((name.to_string(), v.to_string())).or_insert(0) += 1;
            }
        }
    }
    m
}

#[test]
fn wireshark_sees_nothing_in_a_trimmed_capture_that_the_input_lacks() {
    require_tshark();
    let dir = tmpdir();
    each_capture(|input| {
        let out = produce(input, dir.path(), "oracle", &["trim"]);
        let (before, after) = (segment_facts(input), segment_facts(&out));
        let mut bad = Vec::new();
        for (seg, facts) in &after {
            let had = before.get(seg).cloned().unwrap_or_default();
            for (fact, n) in facts {
                if had.get(fact).copied().unwrap_or(0) < *n {
                    bad.push(format!("{}: {fact:?} at segment {seg:?} is not in the input there", input.display()));
                }
            }
        }
        // Every handshake and teardown fact of a kept flow is still there.
        let kept: BTreeSet<&[String]> = after.keys().map(|k| &k[1..5]).collect();
        let teardown = |(name, v): &(String, String)| {
            name != "websocket.opcode" && name != "tls.record.content_type"
                || (name == "websocket.opcode" && matches!(v.as_str(), "8" | "9" | "10"))
        };
        let count = |m: &BTreeMap<Vec<String>, BTreeMap<(String, String), usize>>, only_kept: bool| {
            let mut c: BTreeMap<(String, String), usize> = BTreeMap::new();
            for (seg, facts) in m {
                if only_kept && !kept.contains(&seg[1..5]) {
                    continue;
                }
                for (f, n) in facts.iter().filter(|(f, _)| teardown(f)) {
                    *c.entry(f.clone()).or_insert(0) += n;
                }
            }
            c
        };
        let (want, got) = (count(&before, true), count(&after, false));
        for (f, n) in &want {
            if got.get(f).copied().unwrap_or(0) < *n {
                bad.push(format!("{}: {f:?} lost by trim ({n} in the input's kept flows)", input.display()));
            }
        }
        bad
    });
}

#[test]
fn host_selection_means_the_same_in_every_command() {
    require_tshark();
    // ws-bulk-mixed has a TLS flow to ws.test:18443 offering h2: dropped by default, selected
    // by --host, also as a wildcard.
    let input = testdata().join("ws-bulk-mixed.pcap");
    let dir = tmpdir();
    for host in ["ws.test", "*.test", "*.ws.test"] {
        let out = produce(&input, dir.path(), "host", &["trim", "--host", host]);
        let trimmed = tshark_flows(&out).iter().any(|f| f.contains(":18443"));
        let flows = run(&["flows", "--json", "--host", host, input.to_str().unwrap()]);
        let listed = String::from_utf8_lossy(&flows.stdout)
            .lines()
            .any(|l| l.contains(":18443") && l.contains("\"verdict\":\"kept\""));
        let diag = run(&["diagnose", "--json", "--host", host, input.to_str().unwrap()]);
        let d: serde_json::Value = serde_json::from_slice(&diag.stdout).unwrap();
        let attempt =
            d["attempts"].as_array().unwrap().iter().any(|a| a["server"].as_str().unwrap().ends_with(":18443"));
        assert!(trimmed && listed && attempt, "--host {host}: trim {trimmed}, flows {listed}, diagnose {attempt}");
    }
    let none = produce(&input, dir.path(), "nohost", &["trim", "--host", "*.other.test"]);
    assert!(!tshark_flows(&none).iter().any(|f| f.contains(":18443")), "*.other.test selects nothing here");
}
