//! End-to-end tests of `pcap-surgery trim` over real captures, with tshark as the oracle.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn trim_to(input: &Path, dir: &Path, extra: &[&str]) -> std::path::PathBuf {
    let name = input
        .file_name()
        .unwrap()
        .to_string_lossy()
        .trim_end_matches(".gz")
        .to_string();
    let out = dir.join(format!("trimmed-{name}"));
    let mut args = vec![
        "trim",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "-q",
    ];
    args.extend_from_slice(extra);
    let r = run(&args);
    assert!(
        r.status.success(),
        "trim {} failed: {}",
        input.display(),
        String::from_utf8_lossy(&r.stderr)
    );
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
        assert!(
            m >= *n,
            "{}: fact {fact:?} seen {n} times in the input, {m} in the output",
            input.display()
        );
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
            let mut v: Vec<String> = tshark_rows(f)
                .into_iter()
                .map(|r| r[col("dns.qry.name")].clone())
                .filter(|s| !s.is_empty())
                .collect();
            v.sort();
            v
        };
        assert!(!q(&input).is_empty());
        assert_eq!(q(&input), q(&out), "{name}: DNS lookups changed");
    }
}

#[test]
fn unrelated_flows_are_dropped() {
    require_tshark();
    let dir = tmpdir();
    let out = trim_to(&testdata().join("ws-bulk-mixed.pcap"), dir.path(), &[]);
    let rows = tshark_rows(&out);
    for r in &rows {
        let flow = flow_of(r);
        assert!(
            !flow.contains(":18090"),
            "plain HTTP page load kept: {flow}"
        );
        assert!(!flow.contains(":18443"), "h2 TLS flow kept: {flow}");
        assert!(!flow.contains(":18514"), "unrelated UDP kept: {flow}");
        assert!(
            r[col("http.response.code")] != "426",
            "non-upgrade GET / kept"
        );
    }
}

#[test]
fn bulk_websocket_capture_shrinks_by_95_percent() {
    let dir = tmpdir();
    let input = testdata().join("ws-bulk-mixed.pcap");
    let out = trim_to(&input, dir.path(), &[]);
    let (a, b) = (
        std::fs::metadata(&input).unwrap().len(),
        std::fs::metadata(&out).unwrap().len(),
    );
    assert!(
        b * 20 <= a,
        "trimmed {b} of {a} bytes: less than 95% smaller"
    );
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
    let (drop, headers, keep) = (
        size(&["--bulk", "drop"], "d"),
        size(&[], "h"),
        size(&["--bulk", "keep"], "k"),
    );
    assert!(
        drop < headers && headers < keep,
        "drop {drop} < headers {headers} < keep {keep}"
    );
    let tiny_budget = size(&["--bulk-budget", "200"], "b");
    assert!(tiny_budget < headers);
}

#[test]
fn pipe_in_and_out_gives_the_same_bytes_as_files() {
    let dir = tmpdir();
    for name in [
        "ws-bulk-mixed.pcap",
        "wss-ok.pcapng",
        "ws-bad-accept.pcapng.gz",
    ] {
        let input = testdata().join(name);
        let file_out = trim_to(&input, dir.path(), &[]);
        let piped = Command::new(bin())
            .args(["trim", "-", "-o", "-", "-q"])
            .stdin(std::fs::File::open(&input).unwrap())
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        assert!(piped.status.success());
        assert_eq!(
            piped.stdout,
            std::fs::read(&file_out).unwrap(),
            "{name}: piped output differs"
        );
    }
}

#[test]
fn output_keeps_the_input_format_and_resolution() {
    let dir = tmpdir();
    let ns = testdata().join("ws-direct-ok.pcap");
    let out = trim_to(&ns, dir.path(), &[]);
    assert_eq!(
        std::fs::read(&out).unwrap()[..24],
        std::fs::read(&ns).unwrap()[..24],
        "pcap header changed"
    );
    let ng = trim_to(&testdata().join("wss-ok.pcapng"), dir.path(), &[]);
    assert_eq!(&std::fs::read(&ng).unwrap()[..4], &[0x0a, 0x0d, 0x0d, 0x0a]);
}

#[test]
fn format_conversion_both_ways_keeps_packets() {
    let dir = tmpdir();
    let a = testdata().join("ws-proxy-ok-any.pcap");
    let ng = dir.path().join("a.pcapng");
    assert!(
        run(&[
            "trim",
            a.to_str().unwrap(),
            "-o",
            ng.to_str().unwrap(),
            "--format",
            "pcapng",
            "-q"
        ])
        .status
        .success()
    );
    let back = dir.path().join("b.pcap");
    assert!(
        run(&[
            "trim",
            ng.to_str().unwrap(),
            "-o",
            back.to_str().unwrap(),
            "--format",
            "pcap",
            "-q"
        ])
        .status
        .success()
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
    assert!(
        run(&[
            "trim",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--force",
            "-q"
        ])
        .status
        .success()
    );
    let copy = dir.path().join("in.pcap");
    std::fs::copy(&input, &copy).unwrap();
    let link = dir.path().join("link.pcap");
    std::os::unix::fs::symlink(&copy, &link).unwrap();
    let r = run(&[
        "trim",
        copy.to_str().unwrap(),
        "-o",
        link.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(
        r.status.code(),
        Some(2),
        "writing over the input through a link must be refused"
    );
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(&input).unwrap()
    );
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
    assert!(
        err.contains("notes.txt") && err.contains("not a pcap or pcapng file"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() == 1,
        "partial output left behind"
    );
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
    assert!(
        err.contains("cut.pcap") && err.contains("packet 20") && err.contains("truncated"),
        "{err}"
    );
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
    assert!(
        err.contains("bad.pcap") && err.contains("packet 2") && err.contains("offset"),
        "{err}"
    );
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
    assert!(
        err.contains("2 packets with an unsupported link type"),
        "{err}"
    );
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
