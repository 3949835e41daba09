//! Ctrl-C, kills and closed pipes, as users of tcpdump expect them. Every test drives a real
//! process: a pipe that stays open (as `tcpdump -w - | pcap-surgery trim -` does), a signal
//! sent mid-stream, then the output checked with tshark and the folder checked for leftovers.

mod common;

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on the pid of a child this test spawned.
    let r = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(r, 0, "kill {sig}");
}

/// Everything in `dir`, hidden files included.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// Starts `pcap-surgery ARGS` reading a capture from a pipe that stays open after it.
fn live(args: &[&str], capture: &Path) -> (Child, std::process::ChildStdin) {
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&std::fs::read(capture).unwrap()).unwrap();
    stdin.flush().unwrap();
    // Let it read and decide what it was given; the pipe stays open.
    std::thread::sleep(Duration::from_millis(1000));
    (child, stdin)
}

fn finish(child: Child) -> (std::process::ExitStatus, String, Vec<u8>) {
    let out = child.wait_with_output().unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned(), out.stdout)
}

#[test]
fn interrupt_ends_a_live_capture_and_writes_it_whole() {
    require_tshark();
    let input = testdata().join("ws-bulk-mixed.pcap");
    let dir = tmpdir();
    let expected = dir.path().join("expected.pcap");
    assert!(run(&["trim", input.to_str().unwrap(), "-o", expected.to_str().unwrap(), "-q"]).status.success());
    let work = dir.path().join("live");
    std::fs::create_dir(&work).unwrap();
    let out = work.join("live.pcap");
    for (sig, code) in [(libc::SIGINT, 130), (libc::SIGTERM, 143)] {
        let _ = std::fs::remove_file(&out);
        let (child, stdin) = live(&["trim", "-", "-o", out.to_str().unwrap()], &input);
        // While it runs, the output has no name at all (not even a hidden temporary one).
        assert_eq!(entries(&work), Vec::<String>::new(), "nothing named while the capture runs");
        signal(&child, sig);
        let (status, stderr, _) = finish(child);
        drop(stdin);
        assert_eq!(status.code(), Some(code), "signal {sig}: {stderr}");
        assert!(stderr.contains("interrupted after 357 packets"), "{stderr}");
        assert_eq!(entries(&work), vec!["live.pcap".to_string()], "the output and nothing else");
        // Every packet before the cut was decided: the same output as a trim of the whole file.
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&expected).unwrap());
        assert_eq!(tshark_rows(&out).len(), tshark_rows(&expected).len());
    }
}

#[test]
fn sigkill_leaves_no_file_behind() {
    let input = testdata().join("ws-bulk-mixed.pcap");
    let dir = tmpdir();
    let out = dir.path().join("killed.pcap");
    let (child, stdin) = live(&["trim", "-", "-o", out.to_str().unwrap()], &input);
    signal(&child, libc::SIGKILL);
    let (status, _, _) = finish(child);
    drop(stdin);
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(entries(dir.path()), Vec::<String>::new(), "no output, no temporary file");
}

#[test]
fn diagnose_and_flows_on_a_live_pipe_report_what_they_read() {
    let input = testdata().join("ws-direct-ok.pcap");
    let (child, stdin) = live(&["diagnose", "-"], &input);
    signal(&child, libc::SIGINT);
    let (status, stderr, stdout) = finish(child);
    drop(stdin);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(String::from_utf8_lossy(&stdout).contains("upgrade-ok"), "the report of what was read");
    let (child, stdin) = live(&["flows", "-"], &input);
    signal(&child, libc::SIGINT);
    let (status, stderr, stdout) = finish(child);
    drop(stdin);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(String::from_utf8_lossy(&stdout).contains("websocket kept"));
}

/// A gzip file of concatenated members that decompresses to about `mb` MB of capture: the
/// largest packet of ws-bulk-mixed, its payload zeroed, over and over. Slow enough to
/// interrupt, a few megabytes on disk.
fn long_capture(dir: &Path, mb: usize) -> PathBuf {
    let src = std::fs::read(testdata().join("ws-bulk-mixed.pcap")).unwrap();
    let offsets = pcap_record_offsets(&src);
    let len = |at: usize| u32::from_le_bytes(src[at + 8..at + 12].try_into().unwrap()) as usize;
    let at = *offsets.iter().max_by_key(|&&at| len(at)).unwrap();
    let mut record = src[at..at + 16 + len(at)].to_vec();
    record[16 + 66..].fill(0);
    let mut chunk = Vec::with_capacity(8 << 20);
    while chunk.len() < 8 << 20 {
        chunk.extend_from_slice(&record);
    }
    let member = |with_header: bool| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        if with_header {
            e.write_all(&src[..24]).unwrap();
        }
        e.write_all(&chunk).unwrap();
        e.finish().unwrap()
    };
    let (first, rest) = (member(true), member(false));
    let path = dir.join("long.pcap.gz");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&first).unwrap();
    for _ in 0..mb / 8 {
        f.write_all(&rest).unwrap();
    }
    path
}

#[test]
fn interrupt_on_a_file_aborts_and_writes_nothing() {
    let dir = tmpdir();
    let input = long_capture(dir.path(), 3000);
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let out = out_dir.join("never.pcap");
    let child = Command::new(bin())
        .args(["scrub", input.to_str().unwrap(), "-o", out.to_str().unwrap()])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    signal(&child, libc::SIGINT);
    let (status, stderr, _) = finish(child);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted; nothing written"), "{stderr}");
    assert_eq!(entries(&out_dir), Vec::<String>::new(), "no output, no temporary file");
}

#[test]
fn interrupted_batch_keeps_finished_files_and_starts_no_new_one() {
    let dir = tmpdir();
    let long = long_capture(dir.path(), 3000);
    let first = dir.path().join("a-first.pcap");
    let last = dir.path().join("z-last.pcap");
    std::fs::copy(testdata().join("ws-direct-ok.pcap"), &first).unwrap();
    std::fs::copy(testdata().join("tcp-refused.pcap"), &last).unwrap();
    let out_dir = dir.path().join("out");
    let child = Command::new(bin())
        .args(["scrub", "-j", "1", "--out-dir", out_dir.to_str().unwrap()])
        .args([&first, &long, &last])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(400));
    signal(&child, libc::SIGINT);
    let (status, stderr, _) = finish(child);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert_eq!(entries(&out_dir), vec!["a-first.scrubbed.pcap".to_string()], "{stderr}");
    assert!(stderr.contains("1 not started: interrupted"), "{stderr}");
}

#[test]
fn a_closed_standard_output_ends_the_run_quietly() {
    let dir = tmpdir();
    let long = long_capture(dir.path(), 400);
    // `pcap-surgery scrub big -o - | head -c 100`
    let mut child = Command::new(bin())
        .args(["scrub", long.to_str().unwrap(), "-o", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 100];
    child.stdout.as_mut().unwrap().read_exact(&mut first).unwrap();
    drop(child.stdout.take());
    let (status, stderr, _) = finish(child);
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "ends as cat does when head exits: {stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    // diagnose and flows into a reader that is already gone.
    for cmd in ["diagnose", "flows"] {
        let mut child = Command::new(bin())
            .args([cmd, testdata().join("ws-bulk-mixed.pcap").to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let (status, stderr, _) = finish(child);
        assert!(status.signal() == Some(libc::SIGPIPE) || status.success(), "{cmd}: {status:?} {stderr}");
        assert!(stderr.is_empty(), "{cmd}: {stderr}");
    }
}

#[test]
fn a_second_signal_stops_at_once_and_writes_nothing() {
    let input = testdata().join("ws-bulk-mixed.pcap");
    let dir = tmpdir();
    let out = dir.path().join("never.pcap");
    let (child, stdin) = live(&["trim", "-", "-o", out.to_str().unwrap()], &input);
    // Two signals delivered together: the first ends the capture, the second the process,
    // before the output is named.
    signal(&child, libc::SIGSTOP);
    signal(&child, libc::SIGINT);
    signal(&child, libc::SIGTERM);
    signal(&child, libc::SIGCONT);
    let (status, stderr, _) = finish(child);
    drop(stdin);
    assert!(matches!(status.code(), Some(130 | 143)), "{status:?} {stderr}");
    assert!(!stderr.contains("interrupted after"), "no summary: it stopped at once: {stderr}");
    assert_eq!(entries(dir.path()), Vec::<String>::new(), "no output, no temporary file");
}
