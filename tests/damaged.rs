//! Damaged and hostile files: what is processed, what is said, what the exit status is, and
//! that no partial output is ever left under the output name.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn strict_makes_a_cut_file_an_error_and_writes_nothing() {
    let dir = tmpdir();
    let full = std::fs::read(testdata().join("ws-direct-ok.pcap")).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &full[..full.len() - 10]).unwrap();
    let out = dir.path().join("o.pcap");
    let r = run(&["trim", "--strict", cut.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let err = stderr(&r);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("cut.pcap") && err.contains("packet 20") && err.contains("truncated"), "{err}");
    assert!(!out.exists());
    // diagnose and flows say the same.
    for cmd in ["diagnose", "flows"] {
        let r = run(&[cmd, "--strict", cut.to_str().unwrap()]);
        assert_eq!(r.status.code(), Some(1), "{cmd}");
        let r = run(&[cmd, cut.to_str().unwrap()]);
        assert_eq!(r.status.code(), Some(0), "{cmd}");
        assert!(stderr(&r).contains("warning") && stderr(&r).contains("packet 20"), "{cmd}: {}", stderr(&r));
    }
}

#[test]
fn salvage_resynchronises_after_an_impossible_record() {
    let dir = tmpdir();
    let mut bytes = std::fs::read(testdata().join("ws-direct-ok.pcap")).unwrap();
    let recs = pcap_record_offsets(&bytes);
    let n = recs.len();
    // Packet 5's captured length becomes impossible: the reader cannot know where it ends.
    let at = recs[4] + 8;
    bytes[at..at + 4].copy_from_slice(&0xfff0_0000u32.to_le_bytes());
    let bad = dir.path().join("bad.pcap");
    std::fs::write(&bad, &bytes).unwrap();
    let out = dir.path().join("o.pcap");

    let r = run(&["scrub", bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    let err = stderr(&r);
    assert!(err.contains(&format!("packet 5 at byte offset {}", recs[4])), "{err}");
    assert!(err.contains("--salvage"), "the error says what to do: {err}");
    assert!(!out.exists());

    let r = run(&["scrub", "--salvage", bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let err = stderr(&r);
    assert!(err.contains("warning") && err.contains("packet 5") && err.contains("skipped"), "{err}");
    // Every record but the damaged one, unchanged in length.
    let got = read_packets(&out);
    assert_eq!(got.len(), n - 1);
    let d = run(&["diagnose", "--salvage", "--json", bad.to_str().unwrap()]);
    assert_eq!(d.status.code(), Some(0), "{}", stderr(&d));
}

/// Offsets and types of the blocks of a little-endian pcapng.
fn pcapng_blocks(b: &[u8]) -> Vec<(usize, u32)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 12 <= b.len() {
        let kind = u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(b[at + 4..at + 8].try_into().unwrap()) as usize;
        out.push((at, kind));
        at += len;
    }
    out
}

#[test]
fn pcapng_blocks_with_bad_lengths_or_unknown_types_are_skipped_with_a_warning() {
    let dir = tmpdir();
    let input = testdata().join("wss-ok.pcapng");
    let bytes = std::fs::read(&input).unwrap();
    let blocks = pcapng_blocks(&bytes);
    let epbs: Vec<usize> = blocks.iter().filter(|b| b.1 == 6).map(|b| b.0).collect();
    let total = epbs.len();
    let out = dir.path().join("o.pcapng");

    // An impossible length (not a multiple of 4) in a packet block in the middle.
    let mut bad = bytes.clone();
    let at = epbs[total / 2];
    bad[at + 4..at + 8].copy_from_slice(&13u32.to_le_bytes());
    let f = dir.path().join("badlen.pcapng");
    std::fs::write(&f, &bad).unwrap();
    let r = run(&["scrub", f.to_str().unwrap(), "-o", out.to_str().unwrap(), "--force"]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    let err = stderr(&r);
    assert!(err.contains(&format!("byte offset {at}")) && err.contains("impossible block length"), "{err}");
    assert_eq!(read_packets(&out).len(), total - 1);

    // A block of a type pcapng does not define, between two packets.
    let mut odd = bytes[..epbs[2]].to_vec();
    odd.extend_from_slice(&0x0000_7777u32.to_le_bytes());
    odd.extend_from_slice(&16u32.to_le_bytes());
    odd.extend_from_slice(b"junk");
    odd.extend_from_slice(&16u32.to_le_bytes());
    odd.extend_from_slice(&bytes[epbs[2]..]);
    let f = dir.path().join("odd.pcapng");
    std::fs::write(&f, &odd).unwrap();
    let r = run(&["scrub", f.to_str().unwrap(), "-o", out.to_str().unwrap(), "--force"]);
    assert_eq!(r.status.code(), Some(0), "{}", stderr(&r));
    assert!(stderr(&r).contains("unknown block type 0x7777"), "{}", stderr(&r));
    assert_eq!(read_packets(&out).len(), total);
    assert!(!std::fs::read(&out).unwrap().windows(4).any(|w| w == b"junk"));
}

#[test]
fn a_record_claiming_gigabytes_is_an_error_not_an_allocation() {
    let dir = tmpdir();
    let mut bytes = std::fs::read(testdata().join("ws-direct-ok.pcap")).unwrap();
    bytes.truncate(24 + 16);
    bytes[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let f = dir.path().join("huge.pcap");
    std::fs::write(&f, &bytes).unwrap();
    let r = Command::new("bash")
        .arg("-c")
        .arg(format!("ulimit -v 1000000; {} diagnose {}", bin().display(), f.display()))
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    assert!(stderr(&r).contains("impossible captured length 4294967295"), "{}", stderr(&r));
}

#[test]
fn hard_links_and_symlinks_to_the_input_are_refused_as_output() {
    let dir = tmpdir();
    let input = dir.path().join("in.pcap");
    std::fs::copy(testdata().join("ws-direct-ok.pcap"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let hard = dir.path().join("hard.pcap");
    std::fs::hard_link(&input, &hard).unwrap();
    let r = run(&["trim", input.to_str().unwrap(), "-o", hard.to_str().unwrap(), "--force"]);
    assert_eq!(r.status.code(), Some(2), "{}", stderr(&r));
    assert!(stderr(&r).contains("is the input file"), "{}", stderr(&r));
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

#[test]
fn side_files_never_overwrite_an_input() {
    let dir = tmpdir();
    let input = dir.path().join("in.pcap");
    std::fs::copy(testdata().join("ws-direct-ok.pcap"), &input).unwrap();
    let before = std::fs::read(&input).unwrap();
    let i = input.to_str().unwrap();
    let out = dir.path().join("out.pcap");
    let o = out.to_str().unwrap();
    for args in [
        vec!["diagnose", "-q", i, "--html", i],
        vec!["scrub", i, "-o", o, "--force", "--scrub-report", i],
        vec!["trim", i, "-o", o, "--force", "--keylog-out", i],
    ] {
        let r = run(&args);
        assert_eq!(r.status.code(), Some(1), "{args:?}: {}", stderr(&r));
        assert!(stderr(&r).contains("is the input file"), "{args:?}: {}", stderr(&r));
        assert_eq!(std::fs::read(&input).unwrap(), before, "{args:?}");
    }
}

fn no_file_named(out: &Path) {
    assert!(!out.exists(), "{} must not exist", out.display());
}

#[test]
fn a_killed_run_leaves_nothing_under_the_output_name() {
    let dir = tmpdir();
    let out = dir.path().join("o.pcap");
    let bytes = std::fs::read(testdata().join("ws-bulk-mixed.pcap")).unwrap();
    let mut child = Command::new(bin())
        .args(["scrub", "-", "-o", out.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        stdin.write_all(&bytes[..bytes.len() / 2]).unwrap();
        stdin.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    no_file_named(&out);
}

#[test]
fn a_full_disk_leaves_nothing_under_the_output_name() {
    let dir = tmpdir();
    let out = dir.path().join("o.pcap");
    let input = testdata().join("ws-bulk-mixed.pcap");
    // A file size limit of 64 KiB stands in for a full disk: the write fails part-way.
    let r = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 64; exec {} scrub {} -o {}",
            bin().display(),
            input.display(),
            out.display()
        ))
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(1), "{}", stderr(&r));
    let err = stderr(&r);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("ws-bulk-mixed.pcap") && err.contains("writing"), "{err}");
    no_file_named(&out);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "the temporary file is removed too");
}

#[test]
fn a_device_or_pipe_output_is_written_in_place_never_replaced() {
    let r = run(&["trim", testdata().join("ws-direct-ok.pcap").to_str().unwrap(), "-o", "/dev/null", "-q"]);
    assert!(r.status.success(), "{}", stderr(&r));
    let m = std::fs::metadata("/dev/null").unwrap();
    use std::os::unix::fs::FileTypeExt;
    assert!(m.file_type().is_char_device(), "/dev/null is still a device");
}
