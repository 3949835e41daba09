//! Test helpers: run the built binary, read captures independently of the code under test
//! (pcap-file's own readers), and ask tshark what it dissects. tshark is the oracle: a tool
//! that trims or scrubs must leave Wireshark seeing the same handshake.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pcap-surgery"))
}

pub fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).output().expect("run pcap-surgery")
}

pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Every capture in testdata/.
pub fn testdata_captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(testdata())
        .expect("testdata/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.ends_with(".pcap") || n.ends_with(".pcapng") || n.ends_with(".gz")
        })
        .collect();
    v.sort();
    v
}

/// The re-encapsulated captures in testdata/encap/ (tunnels and link layers loopback cannot
/// record; see testdata/gen/encapsulate.py).
pub fn encap_captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(testdata().join("encap"))
        .expect("testdata/encap/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    v
}

/// The public corpus in ../shared/corpus/public, when that folder exists (it does in CI): every
/// capture at any depth (suricata-verify keeps each under its test's folder).
pub fn corpus_captures() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if e.file_name().to_string_lossy().contains(".pcap") {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/public"), &mut v);
    v.sort();
    v
}

/// Panics, never skips, when tshark is missing: `.ci/run` installs it.
pub fn require_tshark() {
    let ok = Command::new("tshark").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    assert!(
        ok.is_ok_and(|s| s.success()),
        "tshark is required for the oracle tests; `bash .ci/run` installs it (Debian package tshark)"
    );
}

/// The loopback ports the testdata scenarios use, so tshark dissects them as HTTP / TLS.
const DECODE_AS: &[&str] = &[
    "-d",
    "tcp.port==18765,http",
    "-d",
    "tcp.port==18766,http",
    "-d",
    "tcp.port==18767,http",
    "-d",
    "tcp.port==18080,http",
    "-d",
    "tcp.port==18081,http",
    "-d",
    "tcp.port==18082,http",
    "-d",
    "tcp.port==18083,http",
    "-d",
    "tcp.port==18084,http",
    "-d",
    "tcp.port==18090,http",
    "-d",
    "tcp.port==18443,tls",
    "-d",
    "tcp.port==18444,tls",
    "-d",
    "tcp.port==18445,tls",
    "-d",
    "tcp.port==18446,tls",
    "-d",
    "tcp.port==18447,tls",
];

/// The `-d` options that make tshark dissect the testdata ports as HTTP / TLS.
pub fn decode_as() -> &'static [&'static str] {
    DECODE_AS
}

pub const FIELDS: &[&str] = &[
    "frame.number",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "ip.dst",
    "ipv6.dst",
    "tcp.dstport",
    "tcp.flags.syn",
    "tcp.flags.fin",
    "tcp.flags.reset",
    "tcp.len",
    "http.request.method",
    "http.request.uri",
    "http.upgrade",
    "http.connection",
    "http.sec_websocket_key",
    "http.sec_websocket_version",
    "http.response.code",
    "http.sec_websocket_accept",
    "tls.handshake.extensions_server_name",
    "tls.alert_message.desc",
    "websocket.opcode",
    "websocket.payload.close.status_code",
    "dns.qry.name",
    "tls.handshake.extensions_alpn_str",
    "tls.handshake.type",
    "udp.srcport",
    "udp.dstport",
];

/// One row per packet, one column per `FIELDS` entry.
pub fn tshark_rows(file: &Path) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file).args(DECODE_AS).args(["-T", "fields", "-E", "separator=\t", "-E", "occurrence=a"]);
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    assert!(out.status.success(), "tshark failed on {}: {}", file.display(), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('\t').map(str::to_string).collect()).collect()
}

pub fn col(name: &str) -> usize {
    FIELDS.iter().position(|f| *f == name).expect("known field")
}

/// A flow's identity independent of direction and of tshark's stream numbering.
/// Through a tunnel tshark lists every IP header's address, outermost first; the flow is the
/// innermost one.
pub fn flow_of(row: &[String]) -> String {
    let last = |f: &str| row[col(f)].rsplit(',').next().unwrap_or("").to_string();
    let src = if row[col("ip.src")].is_empty() { last("ipv6.src") } else { last("ip.src") };
    let dst = if row[col("ip.dst")].is_empty() { last("ipv6.dst") } else { last("ip.dst") };
    let (sp, dp) = if row[col("tcp.srcport")].is_empty() {
        (&row[col("udp.srcport")], &row[col("udp.dstport")])
    } else {
        (&row[col("tcp.srcport")], &row[col("tcp.dstport")])
    };
    let a = format!("{src}:{sp}");
    let b = format!("{dst}:{dp}");
    if a <= b { format!("{a}-{b}") } else { format!("{b}-{a}") }
}

/// Flows a WebSocket trimmer must keep, judged by tshark on the input: those with an upgrade
/// request or Sec-WebSocket-* header, TLS hellos that do not offer h2, failed connects.
pub fn websocket_flows(rows: &[Vec<String>]) -> BTreeSet<String> {
    let mut by_flow: BTreeMap<String, Vec<&Vec<String>>> = BTreeMap::new();
    for r in rows {
        by_flow.entry(flow_of(r)).or_default().push(r);
    }
    let mut keep = BTreeSet::new();
    for (flow, rs) in by_flow {
        let ws = rs.iter().any(|r| {
            !r[col("http.request.method")].is_empty()
                && (!r[col("http.upgrade")].is_empty() || !r[col("http.sec_websocket_key")].is_empty())
        });
        let tls = rs.iter().any(|r| {
            r[col("tls.handshake.type")].split(',').any(|t| t == "1")
                && !r[col("tls.handshake.extensions_alpn_str")].split(',').any(|p| p == "h2")
        });
        let refused = rs.iter().any(|r| r[col("tcp.flags.reset")] == "1")
            && rs.iter().all(|r| r[col("tcp.len")] == "0" || r[col("tcp.len")].is_empty())
            && rs.len() <= 4;
        if ws || tls || refused {
            keep.insert(flow);
        }
    }
    keep
}

/// The handshake facts of the given flows: (flow, field, value) with multiplicity.
pub fn facts(rows: &[Vec<String>], flows: &BTreeSet<String>) -> BTreeMap<(String, String, String), usize> {
    const FACT_FIELDS: &[&str] = &[
        "http.request.method",
        "http.request.uri",
        "http.upgrade",
        "http.connection",
        "http.sec_websocket_key",
        "http.sec_websocket_version",
        "http.response.code",
        "http.sec_websocket_accept",
        "tls.handshake.extensions_server_name",
        "tls.alert_message.desc",
        "websocket.payload.close.status_code",
    ];
    let mut m = BTreeMap::new();
    for r in rows {
        let flow = flow_of(r);
        if !flows.contains(&flow) {
            continue;
        }
        for f in FACT_FIELDS {
            let v = &r[col(f)];
            if !v.is_empty() {
                *m.entry((flow.clone(), f.to_string(), v.clone())).or_insert(0) += 1;
            }
        }
        for f in ["tcp.flags.fin", "tcp.flags.reset"] {
            if r[col(f)] == "1" {
                *m.entry((flow.clone(), f.to_string(), "1".into())).or_insert(0) += 1;
            }
        }
        // Control frames (close, ping, pong): opcode >= 8.
        for op in r[col("websocket.opcode")].split(',').filter(|o| o.parse::<u8>().is_ok_and(|o| o >= 8)) {
            *m.entry((flow.clone(), "websocket.opcode".into(), op.to_string())).or_insert(0) += 1;
        }
    }
    m
}

/// Frame numbers tshark flags as malformed or with error-level expert info.
pub fn expert_errors(file: &Path) -> usize {
    let mut args = DECODE_AS.to_vec();
    args.extend(["-Y", "_ws.malformed || _ws.expert.severity >= 8388608", "-T", "fields", "-e", "frame.number"]);
    tshark(file, &args).lines().count()
}

/// What tshark prints reading `file` with `args` (preferences, a display filter, fields).
pub fn tshark(file: &Path, args: &[&str]) -> String {
    let out = Command::new("tshark").arg("-r").arg(file).args(args).output().expect("run tshark");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A packet as read by pcap-file (not by the code under test).
#[derive(Debug, Clone, PartialEq)]
pub struct Rec {
    pub ts_ns: u128,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

pub fn read_packets(file: &Path) -> Vec<Rec> {
    let mut bytes = std::fs::read(file).expect("read capture");
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut d = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut d).expect("gunzip");
        bytes = d;
    }
    let mut v = Vec::new();
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut r = pcap_file::pcapng::PcapNgReader::new(&bytes[..]).expect("pcapng");
        while let Some(b) = r.next_block() {
            match b.expect("block") {
                pcap_file::pcapng::Block::EnhancedPacket(p) => {
                    v.push(Rec { ts_ns: p.timestamp.as_nanos(), orig_len: p.original_len, data: p.data.to_vec() })
                }
                pcap_file::pcapng::Block::SimplePacket(p) => {
                    v.push(Rec { ts_ns: 0, orig_len: p.original_len, data: p.data.to_vec() })
                }
                _ => {}
            }
        }
    } else {
        // Raw records: pcap-file's checked reader refuses records longer than the snaplen,
        // which real captures contain and Wireshark accepts.
        let mut r = pcap_file::pcap::PcapReader::new(&bytes[..]).expect("pcap");
        let unit: u128 = if r.header().ts_resolution == pcap_file::TsResolution::NanoSecond { 1 } else { 1000 };
        while let Some(p) = r.next_raw_packet() {
            let p = p.expect("packet");
            let ts_ns = u128::from(p.ts_sec) * 1_000_000_000 + u128::from(p.ts_frac) * unit;
            v.push(Rec { ts_ns, orig_len: p.orig_len, data: p.data.to_vec() });
        }
    }
    v
}

/// Byte offsets of the records of a little-endian pcap.
pub fn pcap_record_offsets(b: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        out.push(at);
        at += 16 + u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize;
    }
    out
}

/// Rewrites a little-endian pcap's records in a new order (indexes into the original, 0-based).
pub fn reorder(input: &Path, out: &Path, order: &[usize]) {
    let b = std::fs::read(input).unwrap();
    let offsets = pcap_record_offsets(&b);
    let recs: Vec<&[u8]> = offsets
        .iter()
        .map(|&at| &b[at..at + 16 + u32::from_le_bytes(b[at + 8..at + 12].try_into().unwrap()) as usize])
        .collect();
    let mut v = b[..24].to_vec();
    for &k in order {
        v.extend_from_slice(recs[k]);
    }
    std::fs::write(out, v).unwrap();
}

/// Every output packet is an input packet, byte-identical or a prefix with the original
/// length kept, with the input's timestamp, in input order.
pub fn assert_subsequence(input: &Path, output: &Path) {
    let ins = read_packets(input);
    let outs = read_packets(output);
    let mut i = 0;
    for (k, o) in outs.iter().enumerate() {
        loop {
            assert!(i < ins.len(), "{}: output packet {} is not an input packet in order", output.display(), k + 1);
            let p = &ins[i];
            i += 1;
            if p.ts_ns == o.ts_ns && p.orig_len == o.orig_len && p.data.starts_with(&o.data) {
                break;
            }
        }
    }
}

pub fn tmpdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// The diagnosis without what a trimmed capture cannot have: frame numbers, and data frame
/// counts (cut bulk packets do not carry the headers of the frames inside them).
pub fn comparable(mut d: serde_json::Value) -> serde_json::Value {
    d.as_object_mut().unwrap().remove("file");
    for a in d["attempts"].as_array_mut().unwrap() {
        let a = a.as_object_mut().unwrap();
        for k in ["frames", "data_frames_client", "data_frames_server", "data_bytes_client", "data_bytes_server"] {
            a.remove(k);
        }
    }
    for f in d["findings"].as_array_mut().unwrap() {
        f.as_object_mut().unwrap().remove("frames");
    }
    d
}

/// The input with its pcapng Decryption Secrets Blocks removed (little-endian sections, as
/// the test captures are), or the input itself when it has none: what a scrubbed capture is
/// compared with, since scrubbing drops the keys.
pub fn without_secrets(input: &Path, dir: &Path) -> PathBuf {
    let b = std::fs::read(input).unwrap();
    if !b.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        return input.to_path_buf();
    }
    let (mut i, mut out, mut dropped) = (0, Vec::new(), false);
    while i + 8 <= b.len() {
        let kind = u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let len = u32::from_le_bytes(b[i + 4..i + 8].try_into().unwrap()) as usize;
        if kind == 0x0a {
            dropped = true;
        } else {
            out.extend_from_slice(&b[i..i + len]);
        }
        i += len.max(12);
    }
    if !dropped {
        return input.to_path_buf();
    }
    let p = dir.join(format!("{}.no-secrets.pcapng", input.file_stem().unwrap().to_string_lossy()));
    std::fs::write(&p, out).unwrap();
    p
}

/// `flows --json` of `file` (with `extra` options): one object per flow.
pub fn flows_json(file: &Path, extra: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec!["flows", "--json", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let r = run(&args);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    String::from_utf8_lossy(&r.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A TCP conversation from the client's port to the server's, as packets on Ethernet: hand-built
/// edge cases (planted secrets, protocols no test server speaks).
pub struct Conv {
    pub client: ([u8; 4], u16),
    pub server: ([u8; 4], u16),
    pub seq: [u32; 2],
    pub frames: Vec<Vec<u8>>,
}

impl Conv {
    pub fn new(cport: u16, sport: u16) -> Conv {
        let mut c =
            Conv { client: ([10, 0, 0, 1], cport), server: ([10, 0, 0, 2], sport), seq: [1000, 5000], frames: vec![] };
        c.segment(0, &[], true, false);
        c.seq[0] += 1;
        c.segment(1, &[], true, false);
        c.seq[1] += 1;
        c.segment(0, &[], false, false);
        c
    }

    /// A conversation whose SYN carries data (TCP Fast Open).
    pub fn fast_open(cport: u16, sport: u16, data: &[u8]) -> Conv {
        let mut c =
            Conv { client: ([10, 0, 0, 1], cport), server: ([10, 0, 0, 2], sport), seq: [1000, 5000], frames: vec![] };
        c.segment(0, data, true, false);
        c.seq[0] += 1 + data.len() as u32;
        c.segment(1, &[], true, false);
        c.seq[1] += 1;
        c
    }

    pub fn segment(&mut self, from: usize, payload: &[u8], syn: bool, fin: bool) {
        let (src, dst) = if from == 0 { (self.client, self.server) } else { (self.server, self.client) };
        let mut b =
            etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1 + from as u8], [2, 0, 0, 0, 0, 2 - from as u8])
                .ipv4(src.0, dst.0, 64)
                .tcp(src.1, dst.1, self.seq[from], 65535);
        // Every segment but the client's SYN acknowledges the other side.
        if !(syn && from == 0) {
            b = b.ack(self.seq[1 - from]);
        }
        if syn {
            b = b.syn();
        }
        if fin {
            b = b.fin();
        }
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        self.frames.push(v);
    }

    /// Data from one side, in segments of at most `mss` bytes.
    pub fn send(&mut self, from: usize, data: &[u8], mss: usize) -> &mut Conv {
        for chunk in data.chunks(mss) {
            self.segment(from, chunk, false, false);
            self.seq[from] += chunk.len() as u32;
        }
        self
    }

    pub fn close(&mut self) -> Vec<Vec<u8>> {
        self.segment(0, &[], false, true);
        self.seq[0] += 1;
        self.segment(1, &[], false, true);
        std::mem::take(&mut self.frames)
    }
}

/// A pcap of Ethernet frames, one a second.
pub fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    pcap_spaced(frames, 1_000_000)
}

/// A pcap of Ethernet frames, `micros` apart.
pub fn pcap_spaced(frames: &[Vec<u8>], micros: u64) -> Vec<u8> {
    let mut v = Vec::new();
    for x in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 262_144, 1] {
        v.extend(x.to_le_bytes());
    }
    for (i, f) in frames.iter().enumerate() {
        let t = 1_700_000_000_000_000 + i as u64 * micros;
        for x in [(t / 1_000_000) as u32, (t % 1_000_000) as u32, f.len() as u32, f.len() as u32] {
            v.extend(x.to_le_bytes());
        }
        v.extend(f);
    }
    v
}

/// A DNS query over TCP, framed by its two-byte length, asking for `name`.
pub fn dns_over_tcp(name: &str) -> Vec<u8> {
    let mut m = vec![0x4a, 0x11, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend(label.as_bytes());
    }
    m.extend([0, 0, 1, 0, 1]);
    let mut framed = (m.len() as u16).to_be_bytes().to_vec();
    framed.extend(m);
    framed
}

/// A TLS extension: its type, length and data.
pub fn tls_ext(kind: u16, data: &[u8]) -> Vec<u8> {
    let mut v = kind.to_be_bytes().to_vec();
    v.extend((data.len() as u16).to_be_bytes());
    v.extend(data);
    v
}

/// A ClientHello record offering http/1.1 for ws.example.com with the given extra extensions.
pub fn client_hello(extra: &[Vec<u8>]) -> Vec<u8> {
    let name = b"ws.example.com";
    let mut sni = ((name.len() + 3) as u16).to_be_bytes().to_vec();
    sni.push(0);
    sni.extend((name.len() as u16).to_be_bytes());
    sni.extend(name);
    let mut exts = tls_ext(0, &sni);
    exts.extend(tls_ext(16, b"\x00\x09\x08http/1.1"));
    for e in extra {
        exts.extend(e);
    }
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.extend([0, 0, 2, 0x13, 0x01, 1, 0]);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![1, 0];
    hs.extend((body.len() as u16).to_be_bytes());
    hs.extend(body);
    let mut rec = vec![22, 3, 1];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

/// A WebSocket upgrade request for ws.example.com/chat (the RFC's sample key), with `extra`
/// header lines.
pub fn upgrade(extra: &str) -> String {
    format!(
        "GET /chat HTTP/1.1\r\nHost: ws.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
}

/// The server's 101 answer to `upgrade`.
pub const SWITCHING: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
