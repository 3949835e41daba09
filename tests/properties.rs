//! Property tests over generated traffic: random WebSocket, rejected, plain HTTP, opaque and
//! DNS flows (over UDP and TCP), cut into random segments, interleaved at random, with neighbouring segments
//! sometimes swapped. Whatever the mix and order:
//!
//! - trim's output is a subsequence of the input, in input order, each packet whole or a
//!   prefix (same timestamp, same original length);
//! - scrub keeps every packet and every length, and so does trim --scrub relative to trim;
//! - diagnose(trim(x)) == diagnose(x), frame numbers and data-frame counts aside, and
//!   diagnose(scrub(x)) and diagnose(trim --scrub(x)) have the same findings;
//! - `flows` calls a flow kept exactly when trim writes packets of it.

mod common;

use std::io::Cursor;

use proptest::prelude::*;
use serde_json::Value;

use pcap_surgery::capture::{Input, Item, Reader};
use pcap_surgery::diagnose::{DiagnoseOptions, diagnose};
use pcap_surgery::flows::{FlowsOptions, flows};
use pcap_surgery::policy::Options;
use pcap_surgery::report::Summary;
use pcap_surgery::scrub::ScrubOptions;
use pcap_surgery::trim::{TrimConfig, trim};

#[derive(Clone, Debug)]
enum Kind {
    WebSocket {
        frames: Vec<(bool, u8, usize)>,
        close_by_client: bool,
        idle_s: u32,
    },
    Rejected(u16),
    Http(usize),
    Opaque(usize),
    Dns(bool),
    /// A lookup over TCP port 53 (failing or answered), its messages cut like any stream.
    DnsTcp(bool),
}

#[derive(Clone, Debug)]
struct FlowSpec {
    kind: Kind,
    /// Segment sizes, cycled, for both directions.
    sizes: Vec<usize>,
    swap: bool,
    /// A WebSocket's frames written back to back by one side go out as one stream (as
    /// Nagle's algorithm and segmentation offload send them): a ping or close then shares
    /// segments with the message before it.
    coalesce: bool,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => (
            prop::collection::vec((any::<bool>(), prop::sample::select(vec![1u8, 2, 9, 10]), 0usize..3000), 0..8),
            any::<bool>(),
            prop::sample::select(vec![0u32, 0, 5, 60]),
        )
            .prop_map(|(frames, close_by_client, idle_s)| Kind::WebSocket { frames, close_by_client, idle_s }),
        1 => prop::sample::select(vec![400u16, 403, 404, 426, 502]).prop_map(Kind::Rejected),
        1 => (0usize..5000).prop_map(Kind::Http),
        1 => (1usize..3000).prop_map(Kind::Opaque),
        1 => any::<bool>().prop_map(Kind::Dns),
        1 => any::<bool>().prop_map(Kind::DnsTcp),
    ]
}

fn flow() -> impl Strategy<Value = FlowSpec> {
    (kind(), prop::collection::vec(1usize..1448, 1..4), prop::bool::weighted(0.3), prop::bool::weighted(0.3))
        .prop_map(|(kind, sizes, swap, coalesce)| FlowSpec { kind, sizes, swap, coalesce })
}

/// One packet before timestamps: who sends, TCP or UDP fields, payload, and extra delay.
struct Pkt {
    flow: usize,
    from_client: bool,
    seq: u32,
    ack: u32,
    flags: u8,
    udp: bool,
    payload: Vec<u8>,
    delay_ms: u64,
}

const SYN: u8 = 2;
const FIN: u8 = 1;
const ACK: u8 = 0x10;
const PSH: u8 = 8;

fn ws_frame(client: bool, opcode: u8, len: usize) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    let mask = if client { 0x80 } else { 0 };
    let len = if opcode >= 8 { len.min(125) } else { len };
    if len < 126 {
        f.push(mask | len as u8);
    } else {
        f.push(mask | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    }
    if client {
        f.extend_from_slice(&[1, 2, 3, 4]);
    }
    f.extend((0..len).map(|i| (i % 251) as u8));
    f
}

fn dns_message(id: u16, response: bool, nxdomain: bool) -> Vec<u8> {
    let mut m = id.to_be_bytes().to_vec();
    let flags: u16 = if response { 0x8180 | if nxdomain { 3 } else { 0 } } else { 0x0100 };
    m.extend_from_slice(&flags.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, u8::from(response && !nxdomain), 0, 0, 0, 0]);
    for label in ["ws", "example", "test"] {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.extend_from_slice(&[0, 0, 1, 0, 1]);
    if response && !nxdomain {
        m.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 2]);
    }
    m
}

/// The packets of one flow, in their natural order (before interleaving).
fn packets_of(i: usize, spec: &FlowSpec) -> Vec<Pkt> {
    let mut out = Vec::new();
    if let Kind::Dns(nx) = spec.kind {
        let id = 0x1000 + i as u16;
        out.push(Pkt {
            flow: i,
            from_client: true,
            seq: 0,
            ack: 0,
            flags: 0,
            udp: true,
            payload: dns_message(id, false, nx),
            delay_ms: 0,
        });
        out.push(Pkt {
            flow: i,
            from_client: false,
            seq: 0,
            ack: 0,
            flags: 0,
            udp: true,
            payload: dns_message(id, true, nx),
            delay_ms: 1,
        });
        return out;
    }
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let request = |upgrade: bool| {
        let mut r = format!("GET /chat/{i} HTTP/1.1\r\nHost: ws.example.test\r\n");
        if upgrade {
            r += &format!(
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            );
        }
        r += "\r\n";
        r.into_bytes()
    };
    // (from_client, bytes, delay before) units of the conversation.
    let mut units: Vec<(bool, Vec<u8>, u64)> = Vec::new();
    let mut client_closes = true;
    match &spec.kind {
        Kind::WebSocket { frames, close_by_client, idle_s } => {
            units.push((true, request(true), 0));
            units.push((
                false,
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n".to_vec(),
                1,
            ));
            for &(client, op, len) in frames {
                units.push((client, ws_frame(client, op, len), 10));
            }
            let mut close = ws_frame(*close_by_client, 8, 2);
            let at = if *close_by_client { 6 } else { 2 };
            close[at] = 0x03;
            close[at + 1] = 0xe8;
            units.push((*close_by_client, close, u64::from(*idle_s) * 1000));
            client_closes = *close_by_client;
        }
        Kind::Rejected(status) => {
            units.push((true, request(true), 0));
            units.push((false, format!("HTTP/1.1 {status} Nope\r\nContent-Length: 0\r\n\r\n").into_bytes(), 1));
            client_closes = false;
        }
        Kind::Http(body) => {
            units.push((true, request(false), 0));
            let mut r = format!("HTTP/1.1 200 OK\r\nContent-Length: {body}\r\n\r\n").into_bytes();
            r.extend((0..*body).map(|i| b'a' + (i % 26) as u8));
            units.push((false, r, 1));
        }
        Kind::Opaque(n) => {
            units.push((true, (0..*n).map(|i| (i * 7 % 256) as u8 | 0x80).collect(), 0));
            units.push((false, (0..*n).map(|i| (i * 13 % 256) as u8 | 0x80).collect(), 1));
        }
        Kind::DnsTcp(nx) => {
            let id = 0x2000 + i as u16;
            for (client, m, delay) in [(true, dns_message(id, false, *nx), 0), (false, dns_message(id, true, *nx), 1)] {
                let mut framed = (m.len() as u16).to_be_bytes().to_vec();
                framed.extend(m);
                units.push((client, framed, delay));
            }
        }
        Kind::Dns(_) => unreachable!(),
    }
    if spec.coalesce && matches!(spec.kind, Kind::WebSocket { .. }) {
        // After the handshake: each run of one side's frames becomes one unit.
        let mut merged: Vec<(bool, Vec<u8>, u64)> = units.drain(..2).collect();
        for (client, bytes, delay) in units {
            let n = merged.len();
            match merged.last_mut() {
                Some(last) if n > 2 && last.0 == client => last.1.extend(bytes),
                _ => merged.push((client, bytes, delay)),
            }
        }
        units = merged;
    }
    let (mut cseq, mut sseq) = (1000u32 + i as u32 * 100_000, 9_000_000u32 + i as u32 * 100_000);
    out.push(Pkt {
        flow: i,
        from_client: true,
        seq: cseq,
        ack: 0,
        flags: SYN,
        udp: false,
        payload: vec![],
        delay_ms: 0,
    });
    out.push(Pkt {
        flow: i,
        from_client: false,
        seq: sseq,
        ack: cseq + 1,
        flags: SYN | ACK,
        udp: false,
        payload: vec![],
        delay_ms: 1,
    });
    cseq += 1;
    sseq += 1;
    out.push(Pkt {
        flow: i,
        from_client: true,
        seq: cseq,
        ack: sseq,
        flags: ACK,
        udp: false,
        payload: vec![],
        delay_ms: 1,
    });
    let mut k = 0;
    for (client, bytes, delay) in units {
        let mut rest = &bytes[..];
        let mut first = true;
        while !rest.is_empty() {
            let n = spec.sizes[k % spec.sizes.len()].min(rest.len());
            k += 1;
            let (seq, ack) = if client { (cseq, sseq) } else { (sseq, cseq) };
            out.push(Pkt {
                flow: i,
                from_client: client,
                seq,
                ack,
                flags: ACK | PSH,
                udp: false,
                payload: rest[..n].to_vec(),
                delay_ms: if first { delay } else { 0 },
            });
            first = false;
            if client {
                cseq += n as u32
            } else {
                sseq += n as u32
            }
            rest = &rest[n..];
        }
    }
    let (a, b) = (client_closes, !client_closes);
    for from_client in [a, b] {
        let (seq, ack) = if from_client { (cseq, sseq) } else { (sseq, cseq) };
        out.push(Pkt { flow: i, from_client, seq, ack, flags: FIN | ACK, udp: false, payload: vec![], delay_ms: 1 });
        if from_client { cseq += 1 } else { sseq += 1 }
    }
    if spec.swap {
        // Swap neighbouring data segments of one direction: a reordering on the wire.
        let data: Vec<usize> = (0..out.len()).filter(|&j| !out[j].payload.is_empty()).collect();
        for w in data.chunks(2) {
            if let [x, y] = *w
                && out[x].from_client == out[y].from_client
                && out[y].delay_ms < 1000
            {
                // Reordering happens within milliseconds, never across an idle period (a hole
                // open for longer than trim waits is a lost packet, handled as such).
                let (dx, dy) = (out[x].delay_ms, out[y].delay_ms);
                out.swap(x, y);
                (out[x].delay_ms, out[y].delay_ms) = (dx, dy);
            }
        }
    }
    out
}

fn build_pcap(flows: &[FlowSpec], interleave: &[usize]) -> Vec<u8> {
    let mut queues: Vec<std::collections::VecDeque<Pkt>> =
        flows.iter().enumerate().map(|(i, f)| packets_of(i, f).into()).collect();
    let mut order = Vec::new();
    let mut pick = interleave.iter().cycle();
    while queues.iter().any(|q| !q.is_empty()) {
        let live: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
        let i = live[pick.next().copied().unwrap_or(0) % live.len()];
        order.push(queues[i].pop_front().unwrap());
    }
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&[2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    // Each flow keeps its own clock (a delay in one flow does not stall the others), started
    // when the interleaving first picks it; packets then go out in time order.
    let base = 1_700_000_000_000_000u64;
    let mut clocks: Vec<Option<u64>> = vec![None; flows.len()];
    let mut timed: Vec<(u64, Pkt)> = Vec::new();
    for (n, p) in order.into_iter().enumerate() {
        let clock = clocks[p.flow].get_or_insert(base + n as u64 * 100);
        *clock += 100 + p.delay_ms * 1000;
        timed.push((*clock, p));
    }
    timed.sort_by_key(|(t, _)| *t);
    for (t_us, p) in timed {
        let i = p.flow as u8;
        let (client, server) = ([10, 1, 0, 10 + i], [10, 2, 0, 1]);
        let (src, dst) = if p.from_client { (client, server) } else { (server, client) };
        let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]).ipv4(src, dst, 64);
        let mut frame = Vec::new();
        if p.udp {
            let (sp, dp) = if p.from_client { (40_000 + u16::from(i), 53) } else { (53, 40_000 + u16::from(i)) };
            builder.udp(sp, dp).write(&mut frame, &p.payload).unwrap();
        } else {
            let port = if matches!(flows[p.flow].kind, Kind::DnsTcp(_)) { 53 } else { 80 };
            let (sp, dp) = if p.from_client { (50_000 + u16::from(i), port) } else { (port, 50_000 + u16::from(i)) };
            let mut b = builder.tcp(sp, dp, p.seq, 65_535);
            if p.flags & ACK != 0 {
                b = b.ack(p.ack);
            }
            if p.flags & SYN != 0 {
                b = b.syn();
            }
            if p.flags & FIN != 0 {
                b = b.fin();
            }
            if p.flags & PSH != 0 {
                b = b.psh();
            }
            b.write(&mut frame, &p.payload).unwrap();
        }
        out.extend_from_slice(&((t_us / 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&((t_us % 1_000_000) as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        out.extend_from_slice(&frame);
    }
    out
}

fn input(b: &[u8]) -> Input {
    Input::from_reader(Box::new(Cursor::new(b.to_vec())), None).unwrap()
}

/// (timestamp, original length, captured bytes) of each packet.
fn records(b: &[u8]) -> Vec<(u64, u32, Vec<u8>)> {
    let mut r = Reader::new(input(b)).unwrap();
    let mut out = Vec::new();
    while let Some(item) = r.next_item().unwrap() {
        if let Item::Packet(p) = item {
            out.push((p.meta.ts_ns, p.meta.orig_len, p.data().to_vec()));
        }
    }
    out
}

fn run_trim(b: &[u8], keep_all: bool, scrub: bool) -> Vec<u8> {
    let cfg = TrimConfig {
        policy: Options { keep_all, ..Options::default() },
        format: None,
        scrub: scrub.then_some(ScrubOptions { keep_comments: false, pseudonymize: None }),
        annotate: None,
        read: Default::default(),
        keylog: None,
        keylog_out: false,
    };
    trim(input(b), Vec::new(), &cfg, &mut Summary::default(), None).unwrap()
}

fn diagnosis(b: &[u8]) -> Value {
    let r = diagnose(input(b), "x", &DiagnoseOptions::default(), &mut Vec::new()).unwrap();
    common::comparable(serde_json::to_value(&r).unwrap())
}

/// Flows of a capture as "a:port-b:port" (lower endpoint first), from its packets.
fn written_flows(b: &[u8]) -> std::collections::BTreeSet<String> {
    let mut r = Reader::new(input(b)).unwrap();
    let mut set = std::collections::BTreeSet::new();
    while let Some(item) = r.next_item().unwrap() {
        if let Item::Packet(p) = item
            && let Ok(d) = pcap_surgery::wire::decode(p.meta.link_type, p.data())
        {
            let (x, y) = (format!("{}:{}", d.src, d.sport), format!("{}:{}", d.dst, d.dport));
            set.insert(if x <= y { format!("{x}-{y}") } else { format!("{y}-{x}") });
        }
    }
    set
}

/// The flows `flows` calls kept, named as `written_flows` names them.
fn listed_kept(b: &[u8]) -> std::collections::BTreeSet<String> {
    let opts = FlowsOptions {
        policy: Options::default(),
        json: true,
        with_file: false,
        read: Default::default(),
        keylog: None,
    };
    let mut out = Vec::new();
    flows(input(b), "x", &opts, &mut out, None).unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|j| j["verdict"] == "kept")
        .map(|j| {
            let (x, y) = (j["client"].as_str().unwrap().to_string(), j["server"].as_str().unwrap().to_string());
            if x <= y { format!("{x}-{y}") } else { format!("{y}-{x}") }
        })
        .collect()
}

/// Finding codes and severities, sorted.
fn codes(d: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> =
        d["findings"].as_array().unwrap().iter().map(|f| (f["code"].to_string(), f["severity"].to_string())).collect();
    v.sort();
    v
}

/// The same cases every run unless `PROPTEST_RNG_SEED` asks for others (with
/// `PROPTEST_CASES` for more of them): a suite that fails one run in twenty on a rare case is
/// no signal. Random seeds at volume are how the cases below were found.
fn config() -> ProptestConfig {
    let mut c = ProptestConfig { cases: 256, ..ProptestConfig::default() };
    if matches!(c.rng_seed, proptest::test_runner::RngSeed::Random) {
        c.rng_seed = proptest::test_runner::RngSeed::Fixed(0x005e_ed0f_ca97);
    }
    c
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn trim_scrub_and_diagnose_invariants(
        flows in prop::collection::vec(flow(), 1..5),
        interleave in prop::collection::vec(0usize..16, 1..32),
    ) {
        let pcap = build_pcap(&flows, &interleave);
        if let Some(path) = std::env::var_os("PROPERTIES_DUMP") {
            // The last case written is the one proptest shrank a failure to.
            std::fs::write(path, &pcap).unwrap();
        }
        let input_recs = records(&pcap);

        // Output ⊆ input, in input order, whole or prefix.
        let trimmed = run_trim(&pcap, false, false);
        let out_recs = records(&trimmed);
        let mut j = 0;
        for (ts, orig, data) in &out_recs {
            while j < input_recs.len()
                && !(input_recs[j].0 == *ts && input_recs[j].1 == *orig && input_recs[j].2.starts_with(data))
            {
                j += 1;
            }
            prop_assert!(j < input_recs.len(), "output packet at {} is not an input packet in order", ts);
            j += 1;
        }

        // Scrubbing changes no length and drops no packet.
        let scrubbed = records(&run_trim(&pcap, true, true));
        prop_assert_eq!(scrubbed.len(), input_recs.len());
        for (a, b) in scrubbed.iter().zip(&input_recs) {
            prop_assert_eq!((a.0, a.1, a.2.len()), (b.0, b.1, b.2.len()));
        }
        let trim_scrubbed = records(&run_trim(&pcap, false, true));
        prop_assert_eq!(trim_scrubbed.len(), out_recs.len());
        for (a, b) in trim_scrubbed.iter().zip(&out_recs) {
            prop_assert_eq!((a.0, a.1, a.2.len()), (b.0, b.1, b.2.len()));
        }

        // Trimming keeps the diagnosis; scrubbing keeps its findings (codes and severities).
        let x = diagnosis(&pcap);
        prop_assert_eq!(&x, &diagnosis(&trimmed));
        prop_assert_eq!(codes(&x), codes(&diagnosis(&run_trim(&pcap, true, true))));
        prop_assert_eq!(codes(&x), codes(&diagnosis(&run_trim(&pcap, false, true))));

        // `flows` says kept exactly for the flows trim writes.
        prop_assert_eq!(listed_kept(&pcap), written_flows(&trimmed));
    }
}

/// Found by the property test above: a request head sent one byte per segment. The scrubber
/// judges a byte of a head looking ahead into the segments queued after it; judged one
/// segment alone, it could not see that the Host value carries no `user:pass@` and overwrote
/// it (failing closed), and diagnose of the scrubbed capture could no longer tie the failed
/// lookup to the attempt.
#[test]
fn a_head_split_into_single_bytes_keeps_its_findings_through_scrub() {
    let pcap = build_pcap(&failed_lookup_then_upgrade(vec![1], false), &[6]);
    let x = diagnosis(&pcap);
    assert_eq!(codes(&x), codes(&diagnosis(&run_trim(&pcap, true, true))));
}

/// A lookup that fails, then an upgrade whose request head goes in segments of `sizes`
/// (`swap`: neighbouring data segments swapped): the regression cases of a head read apart.
fn failed_lookup_then_upgrade(sizes: Vec<usize>, swap: bool) -> [FlowSpec; 2] {
    [
        FlowSpec { kind: Kind::Dns(true), sizes: vec![1], swap: false, coalesce: false },
        FlowSpec {
            kind: Kind::WebSocket { frames: vec![], close_by_client: false, idle_s: 0 },
            sizes,
            swap,
            coalesce: false,
        },
    ]
}

/// Found by the property test above: a lookup over TCP named by an upgrade while its answer was
/// arriving a byte a segment. The packets that had waited for the lookup's verdict were
/// written at once, the answer's first bytes among them, ahead of the rest of the answer, and
/// the scrubber, meeting them alone, overwrote the answer.
#[test]
fn a_lookup_over_tcp_decided_mid_answer_keeps_its_findings_through_scrub() {
    let flows = [
        FlowSpec {
            kind: Kind::WebSocket { frames: vec![], close_by_client: false, idle_s: 0 },
            sizes: vec![80],
            swap: false,
            coalesce: false,
        },
        FlowSpec { kind: Kind::DnsTcp(false), sizes: vec![1], swap: false, coalesce: false },
    ];
    assert_scrubbing_keeps_findings(&build_pcap(&flows, &[7]));
}

/// Found by the property test above: a lookup over TCP, kept as soon as its query was read
/// (the upgrade before it named the host), answered one byte per segment with neighbours
/// swapped. A segment released from reordering was written before the message it belongs to
/// had ended, so the scrubber met it alone and overwrote the answer (failing closed), and
/// diagnose of the scrubbed capture saw a lookup without an answer.
#[test]
fn an_answer_over_tcp_split_and_reordered_keeps_its_findings_through_scrub() {
    let flows = [
        FlowSpec { kind: Kind::DnsTcp(false), sizes: vec![1], swap: true, coalesce: false },
        FlowSpec { kind: Kind::Rejected(426), sizes: vec![2], swap: false, coalesce: false },
    ];
    assert_scrubbing_keeps_findings(&build_pcap(&flows, &[13]));
}

/// diagnose(scrub(x)) and diagnose(trim --scrub(x)) have the findings of diagnose(x).
fn assert_scrubbing_keeps_findings(pcap: &[u8]) {
    let x = diagnosis(pcap);
    assert_eq!(codes(&x), codes(&diagnosis(&run_trim(pcap, true, true))));
    assert_eq!(codes(&x), codes(&diagnosis(&run_trim(pcap, false, true))));
}

/// Found by the property test above: a server's data frames sent one byte per segment, then
/// its close. The packets carrying each frame's header were cut like the bulk around them, so
/// a reader of the trimmed capture could not tell where the frames ended and lost the close
/// frame (diagnose(trim(x)) said "closed without a close frame").
#[test]
fn frame_headers_split_across_segments_survive_trim() {
    let frames = vec![(false, 1, 0), (false, 1, 0), (false, 1, 0), (false, 1, 222), (false, 1, 222)];
    let flows = [FlowSpec {
        kind: Kind::WebSocket { frames, close_by_client: false, idle_s: 0 },
        sizes: vec![1],
        swap: false,
        coalesce: false,
    }];
    let pcap = build_pcap(&flows, &[0]);
    assert_eq!(diagnosis(&pcap), diagnosis(&run_trim(&pcap, false, false)));
}

/// Found by the property test above: after data frames beyond those kept whole, a ping sent
/// two bytes per segment. trim cut the last data frame (a two-byte segment of its own), and a
/// reader of the trimmed capture, which starts frames again only at a segment that is a whole
/// run of them, never found the ping's start: its header and body were in different
/// segments. It now waits for a run over several segments, as Wireshark reads it.
#[test]
fn a_ping_split_over_segments_after_a_cut_frame_survives_trim() {
    let mut frames = vec![(false, 1, 0); 5];
    frames.push((false, 9, 78));
    let flows = [FlowSpec {
        kind: Kind::WebSocket { frames, close_by_client: false, idle_s: 0 },
        sizes: vec![2],
        swap: false,
        coalesce: false,
    }];
    let pcap = build_pcap(&flows, &[0]);
    assert_eq!(diagnosis(&pcap), diagnosis(&run_trim(&pcap, false, false)));
}

/// Found by the property test above once frames could share segments: back-to-back frames
/// that never start a segment, then the close. The segments carrying the headers of the cut
/// frames are kept whole when the close's segment is (see trim's README section); before,
/// a reader of the trimmed capture lost the close.
#[test]
fn back_to_back_frames_keep_the_close_readable_after_trim() {
    let frames = vec![
        (false, 1, 393),
        (false, 1, 37),
        (false, 1, 0),
        (false, 1, 470),
        (false, 1, 604),
        (false, 1, 141),
        (false, 1, 572),
    ];
    let flows = [FlowSpec {
        kind: Kind::WebSocket { frames, close_by_client: false, idle_s: 0 },
        sizes: vec![438, 129, 130],
        swap: false,
        coalesce: true,
    }];
    let pcap = build_pcap(&flows, &[0]);
    assert_eq!(diagnosis(&pcap), diagnosis(&run_trim(&pcap, false, false)));
}

/// Found by the property test above: a segment carrying a cut frame's header waited for the
/// frame's end, which a segment held for reordering (and released by it) brought. Its verdict
/// came as the answer to an earlier packet's wait, before trim had queued it, and was lost:
/// trim kept it whole at the end, trim --scrub (queueing first) cut it.
#[test]
fn a_wait_ended_by_a_reordered_segment_is_decided_alike_with_and_without_scrub() {
    let frames = vec![(false, 1, 0), (false, 1, 0), (false, 1, 0), (false, 1, 0), (false, 1, 126)];
    let flows = [FlowSpec {
        kind: Kind::WebSocket { frames, close_by_client: false, idle_s: 0 },
        sizes: vec![80],
        swap: true,
        coalesce: false,
    }];
    let pcap = build_pcap(&flows, &[0]);
    let lengths = |b: &[u8]| records(b).iter().map(|r| r.2.len()).collect::<Vec<_>>();
    assert_eq!(lengths(&run_trim(&pcap, false, false)), lengths(&run_trim(&pcap, false, true)));
}

/// Found by the property test above once scrub read its streams from the engine: a request
/// head in two segments that came swapped. The first filled the hole and released the second
/// in the same call, and the first was redacted alone, before the second was looked at: the
/// Host value it split was overwritten (failing closed), and diagnose of the scrubbed capture
/// no longer tied the failed lookup to the attempt. Segments handed over together are read
/// together.
#[test]
fn a_head_in_swapped_segments_keeps_its_findings_through_scrub() {
    assert_scrubbing_keeps_findings(&build_pcap(&failed_lookup_then_upgrade(vec![29, 131], true), &[6]));
}
