//! Batch use and command-line conventions: many inputs in parallel, directories, output
//! names, progress only on a terminal, `flows`, `--annotate`, completions.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn files_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn a_corrupt_file_in_a_parallel_batch_does_not_stop_the_others() {
    let dir = tmpdir();
    let bad = dir.path().join("broken.pcap");
    std::fs::write(&bad, b"this is a text file, not a capture\n").unwrap();
    let mut inputs: Vec<PathBuf> = testdata_captures();
    let n = inputs.len();
    inputs.insert(n / 2, bad.clone());
    let out = dir.path().join("out");
    let mut args = vec!["trim", "-j", "2", "--out-dir", out.to_str().unwrap()];
    args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
    let r = run(&args);
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    let err = stderr(&r);
    let bad_lines: Vec<&str> = err.lines().filter(|l| l.contains("broken.pcap")).collect();
    assert_eq!(bad_lines.len(), 1, "{err}");
    assert!(bad_lines[0].contains("not a pcap or pcapng file"), "{err}");
    assert!(err.contains(&format!("({n} files, 1 failed)")), "a total line for the batch: {err}");
    let written = files_in(&out);
    assert_eq!(written.len(), n, "one output per good input: {:?}", written.keys());
    assert!(!written.keys().any(|k| k.contains("broken")));
    for input in testdata_captures() {
        let name = input.file_name().unwrap().to_string_lossy().trim_end_matches(".gz").to_string();
        let (stem, ext) = name.rsplit_once('.').unwrap();
        let got = written.get(&format!("{stem}.trimmed.{ext}")).unwrap_or_else(|| panic!("no output for {name}"));
        assert!(got.len() > 24, "{name}: output has packets");
    }
    // No temporary files are left behind.
    assert!(std::fs::read_dir(&out).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with('.')));
}

#[test]
fn parallel_and_serial_runs_write_the_same_bytes_and_lines() {
    let dir = tmpdir();
    let inputs = testdata_captures();
    let mut outs = Vec::new();
    for jobs in ["1", "2"] {
        let out = dir.path().join(format!("j{jobs}"));
        let mut args = vec!["trim", "-j", jobs, "--json", "--out-dir", out.to_str().unwrap()];
        args.extend(inputs.iter().map(|p| p.to_str().unwrap()));
        let r = run(&args);
        assert!(r.status.success(), "{}", stderr(&r));
        let files: Vec<String> = String::from_utf8_lossy(&r.stdout)
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["file"].as_str().unwrap().to_string())
            .collect();
        let want: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        assert_eq!(files, want, "JSON lines come in input order");
        outs.push(files_in(&out));
    }
    assert_eq!(outs[0], outs[1]);
}

#[test]
fn directories_need_recursive_and_keep_their_tree() {
    let dir = tmpdir();
    let tree = dir.path().join("tickets");
    std::fs::create_dir_all(tree.join("a")).unwrap();
    std::fs::create_dir_all(tree.join("b/c")).unwrap();
    let src = testdata().join("ws-direct-ok.pcap");
    std::fs::copy(&src, tree.join("a/x.pcap")).unwrap();
    std::fs::copy(&src, tree.join("b/c/x.pcap")).unwrap();
    std::fs::write(tree.join("b/notes.txt"), "not a capture").unwrap();
    let out = dir.path().join("out");

    let r = run(&["trim", "--out-dir", out.to_str().unwrap(), tree.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("is a directory (give --recursive"), "{}", stderr(&r));

    let r = run(&["trim", "-r", "--out-dir", out.to_str().unwrap(), tree.to_str().unwrap()]);
    assert!(r.status.success(), "{}", stderr(&r));
    let names: Vec<String> = files_in(&out).into_keys().collect();
    assert_eq!(names, ["a/x.trimmed.pcap", "b/c/x.trimmed.pcap"]);

    // A custom name pattern, and two inputs that would collide are refused up front.
    let out2 = dir.path().join("out2");
    let r =
        run(&["trim", "--out-dir", out2.to_str().unwrap(), "--out-name", "small-{stem}.{ext}", src.to_str().unwrap()]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert!(out2.join("small-ws-direct-ok.pcap").exists());
    let r = run(&[
        "trim",
        "--out-dir",
        out2.to_str().unwrap(),
        "--out-name",
        "same.{ext}",
        tree.join("a/x.pcap").to_str().unwrap(),
        tree.join("b/c/x.pcap").to_str().unwrap(),
    ]);
    assert_eq!(r.status.code(), Some(2));
    assert!(stderr(&r).contains("would both be written to"), "{}", stderr(&r));
}

/// Runs a command under a pseudo-terminal (util-linux `script`) and returns what it printed.
fn under_pty(cmd: &str) -> String {
    let o = Command::new("script").args(["-qec", cmd, "/dev/null"]).output().expect("script (util-linux) runs");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn progress_only_on_a_terminal() {
    let dir = tmpdir();
    let input = testdata().join("ws-bulk-mixed.pcap");
    let out = dir.path().join("o.pcap");
    let cmd = format!("{} trim {} -o {} --force", bin().display(), input.display(), out.display());
    let tty = under_pty(&cmd);
    // The bar: file name, bytes of the total, drawn with terminal control sequences.
    assert!(tty.contains("ws-bulk-mixed.pcap") && tty.contains("MiB"), "{tty:?}");
    assert!(tty.contains('\u{1b}'), "{tty:?}");
    assert!(tty.contains("trim: "), "the summary too: {tty:?}");
    let quiet = under_pty(&format!("{cmd} --quiet"));
    assert!(!quiet.contains("MiB"), "--quiet draws nothing: {quiet:?}");

    // In a pipe: the summary line only, no control sequences.
    let r = run(&["trim", input.to_str().unwrap(), "-o", out.to_str().unwrap(), "--force"]);
    let err = stderr(&r);
    assert!(!err.contains('\u{1b}') && !err.contains("MiB"), "{err:?}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
}

#[test]
fn flows_lists_each_flow_with_its_class_and_verdict() {
    let f = flows_json(&testdata().join("wss-keylog.pcapng"), &[]);
    let classes: Vec<(&str, &str)> =
        f.iter().map(|l| (l["class"].as_str().unwrap(), l["verdict"].as_str().unwrap())).collect();
    for want in [("tls-http1", "kept"), ("tls-h2", "dropped"), ("websocket", "kept"), ("http", "dropped")] {
        assert!(classes.contains(&want), "{want:?} in {classes:?}");
    }
    for l in &f {
        assert!(!l["why"].as_str().unwrap().is_empty(), "{l}");
        assert!(l["packets"].as_u64().unwrap() > 0 && l["bytes"].as_u64().unwrap() > 0);
        assert!(l["first_ns"].as_u64() <= l["last_ns"].as_u64());
        assert!(l["first"].as_str().unwrap().ends_with('Z'));
    }
    let dns = flows_json(&testdata().join("dns-failure.pcap"), &[]);
    assert_eq!(dns[0]["class"], "dns");
    assert_eq!(dns[0]["verdict"], "kept");
    assert!(dns[0]["server"].as_str().unwrap().ends_with(":53"), "{}", dns[0]);

    // The kept flows are the ones trim keeps, and the packets add up to the file's.
    for input in testdata_captures() {
        let f = flows_json(&input, &[]);
        let kept = f.iter().filter(|l| l["verdict"] == "kept").count() as u64;
        let packets: u64 = f.iter().map(|l| l["packets"].as_u64().unwrap()).sum();
        let dir = tmpdir();
        let out = dir.path().join("o.pcapng");
        let r = run(&["trim", "--json", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        let s: Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(kept, s["flows_kept"].as_u64().unwrap(), "{}", input.display());
        assert_eq!(f.len() as u64, s["flows_seen"].as_u64().unwrap(), "{}", input.display());
        assert!(packets <= s["packets_in"].as_u64().unwrap(), "{}", input.display());
    }

    // Text: one line per flow, the file named when there are several inputs.
    let r = run(&[
        "flows",
        testdata().join("ws-direct-ok.pcap").to_str().unwrap(),
        testdata().join("dns-failure.pcap").to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(text.lines().any(|l| l.contains("ws-direct-ok.pcap: tcp") && l.contains("websocket kept")), "{text}");
    assert!(text.lines().any(|l| l.contains("dns-failure.pcap: udp") && l.contains("dns kept")), "{text}");
}

#[test]
fn annotate_explains_each_kept_packet_in_pcapng_comments() {
    require_tshark();
    let dir = tmpdir();
    let cases = [
        ("ws-bulk-mixed.pcap", vec!["HTTP/1.1 101 Switching Protocols", "close frame 1000", "truncated: bulk"]),
        ("ws-reset-after-101.pcap", vec!["HTTP GET request with Upgrade", "TCP RST"]),
        ("wss-alert.pcap", vec!["TLS ClientHello", "TLS alert"]),
        ("wss-ok.pcapng", vec!["TCP SYN (flow: tls-http1"]),
        ("dns-failure.pcap", vec!["DNS response for"]),
    ];
    for (name, want) in cases {
        let out = dir.path().join(format!("{name}.annotated.pcapng"));
        let r =
            run(&["trim", "--annotate", "-q", testdata().join(name).to_str().unwrap(), "-o", out.to_str().unwrap()]);
        assert!(r.status.success(), "{}", stderr(&r));
        let comments = tshark(&out, &["-T", "fields", "-e", "frame.comment"]);
        let packets = read_packets(&out).len();
        assert_eq!(comments.lines().filter(|l| !l.trim().is_empty()).count(), packets, "{name}: every packet");
        for w in want {
            assert!(comments.contains(w), "{name}: {w:?} in\n{comments}");
        }
        // The section header names the program and the command line.
        let o = Command::new("capinfos").args(["-k", out.to_str().unwrap()]).output().unwrap();
        let info = String::from_utf8_lossy(&o.stdout);
        assert!(info.contains("pcap-surgery") && info.contains("--annotate"), "{name}: {info}");
    }
    // A pcap output cannot carry comments: said, not silently ignored.
    let r = run(&[
        "trim",
        "--annotate",
        "--format",
        "pcap",
        testdata().join("ws-direct-ok.pcap").to_str().unwrap(),
        "-o",
        "-",
    ]);
    assert_eq!(r.status.code(), Some(2));
    // The key of --pseudonymize never reaches the file.
    let out = dir.path().join("k.pcapng");
    let r = run(&[
        "trim",
        "--annotate",
        "--scrub",
        "--pseudonymize",
        "--key",
        "hunter2-secret",
        testdata().join("ws-direct-ok.pcap").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(r.status.success(), "{}", stderr(&r));
    let bytes = std::fs::read(&out).unwrap();
    assert!(!bytes.windows(7).any(|w| w == b"hunter2"));
}

#[test]
fn completions_generate_for_common_shells() {
    for (shell, marker) in
        [("bash", "complete -F"), ("zsh", "#compdef pcap-surgery"), ("fish", "complete -c pcap-surgery")]
    {
        let r = run(&["completions", shell]);
        assert!(r.status.success());
        let s = String::from_utf8_lossy(&r.stdout);
        assert!(s.contains(marker), "{shell}");
        for sub in ["trim", "scrub", "diagnose", "flows"] {
            assert!(s.contains(sub), "{shell}: {sub}");
        }
    }
}

#[test]
fn errors_are_one_line_naming_the_file() {
    let dir = tmpdir();
    let missing = dir.path().join("missing.pcap");
    for cmd in ["trim", "scrub", "diagnose", "flows"] {
        let mut args = vec![cmd, missing.to_str().unwrap()];
        if cmd == "trim" || cmd == "scrub" {
            args.extend(["-o", "-"]);
        }
        let r = run(&args);
        assert_eq!(r.status.code(), Some(1), "{cmd}");
        let err = stderr(&r);
        assert_eq!(err.lines().count(), 1, "{cmd}: {err}");
        assert!(
            err.starts_with("pcap-surgery: ") && err.contains("missing.pcap") && err.contains("No such file"),
            "{err}"
        );
    }
}
