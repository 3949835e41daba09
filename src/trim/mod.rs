//! The streaming rewriter: one pass over the input, packets out in input order.
//!
//! Most packets are decided the moment they are read and, while nothing is waiting, go
//! straight from the read buffer to the writer. A packet whose flow is not decided yet waits
//! in a queue, and every packet read after it queues behind it (output order is input order).
//! The queue is bounded three ways — capture time (`UNDECIDED_WINDOW_NS`), bytes and packets —
//! and when a bound is hit its oldest waiting packet is decided by `Engine::force`, which keeps
//! evidence (an unanswered SYN, an unanswered DNS query, a half-seen frame) rather than drop it.
//! So memory does not grow with the input, and the tool reads from a pipe.

mod spool;

use std::collections::VecDeque;
use std::io::Write;
use std::time::Instant;

use rustc_hash::FxHashMap;

use crate::annotate;
use crate::capture::{
    BlockFilter, Format, Input, Item, OutFormat, Packet, ReadOptions, Reader, RecordMeta, Writer, block, secrets,
};
use crate::engine::{Engine, FlowRecord, Observed};
use crate::error::Result;
use crate::policy::{Decision, Options, Outcome, Ticket, Verdict};
use crate::progress::{PUBLISH_EVERY, Progress};
use crate::proto::tls;
use crate::report::Summary;
use crate::scrub::stream::Patches;
use crate::scrub::{PacketScrub, ScrubOptions, Scrubber};
use crate::wire;

use self::spool::{Span, Spool};

/// How long (capture time) a packet may wait for its flow to be classified. Long enough for
/// DNS → connect → request even over a slow link; a DNS answer waits this long for a kept
/// flow to name it.
pub const UNDECIDED_WINDOW_NS: u64 = 10_000_000_000;
/// Bytes the waiting queue may hold before its oldest packet is forced.
pub const MAX_QUEUED_BYTES: usize = 24 << 20;
/// Packets the waiting queue may hold before its oldest packet is forced. Matched to the
/// byte bound at packets of about 250 bytes: below that, what a waiting packet costs besides
/// its bytes (its queue entry and, for a lookup, its transaction: about 300 bytes) outweighs
/// them, and a flood of small packets (a million unanswered lookups) was held at twice the
/// memory of a bulk transfer, its queue too large to stay in the cache.
pub const MAX_QUEUED_PACKETS: usize = 100_000;
/// TLS key-log bytes held while waiting to see which sessions are kept.
pub const MAX_KEY_LOG_BYTES: usize = 16 << 20;

/// Key-log lines from the input's Decryption Secrets Blocks, by client random. A trimmed
/// capture gets the lines of the sessions it keeps (in a new block written just before the
/// session's packets) and never the keys of sessions it dropped.
#[derive(Default)]
struct KeyLog {
    lines: FxHashMap<[u8; 32], Vec<u8>>,
    bytes: usize,
}

impl KeyLog {
    fn add(&mut self, data: &[u8]) {
        for (random, line) in tls::key_log_lines(data) {
            if self.bytes + line.len() + 1 > MAX_KEY_LOG_BYTES {
                return;
            }
            self.bytes += line.len() + 1;
            let v = self.lines.entry(random).or_default();
            v.extend_from_slice(line);
            v.push(b'\n');
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct TrimConfig {
    pub policy: Options,
    pub format: Option<OutFormat>,
    /// Scrub what is written (`scrub`, or `trim --scrub`).
    pub scrub: Option<ScrubOptions>,
    /// `--annotate`: the section comment (program and command line); each kept packet then
    /// gets a comment saying why it was kept.
    pub annotate: Option<String>,
    /// `--strict` / `--salvage`.
    pub read: ReadOptions,
    /// `--keylog FILE`: TLS secrets (NSS key-log text) to decrypt sessions with, besides the
    /// input's own Decryption Secrets Blocks.
    pub keylog: Option<std::sync::Arc<Vec<u8>>>,
    /// `--keylog-out`: gather the key-log lines of the kept sessions in `Summary::key_log`.
    pub keylog_out: bool,
}

enum Slot {
    Waiting(Ticket),
    Decided(Verdict),
}

enum Held {
    Packet { rec: Record, raw: Span },
    Block { kind: u32, raw: Span, big_endian: bool },
}

/// A held packet's record fields but its number and time, which its entry has: entries of
/// 112 bytes rather than 136, and a flood's full queue cycles through 100,000 of them.
#[derive(Clone, Copy)]
struct Record {
    interface: u32,
    link_type: u32,
    orig_len: u32,
    data_offset: u32,
    caplen: u32,
}

impl Record {
    fn of(m: &RecordMeta) -> Record {
        let RecordMeta { number: _, ts_ns: _, interface, link_type, orig_len, data_offset, caplen } = *m;
        Record { interface, link_type, orig_len, data_offset, caplen }
    }

    /// The record's meta again, with the number and time its entry holds.
    fn meta(self, number: u64, ts_ns: u64) -> RecordMeta {
        let Record { interface, link_type, orig_len, data_offset, caplen } = self;
        RecordMeta { number, ts_ns, interface, link_type, orig_len, data_offset, caplen }
    }
}

struct Entry {
    number: u64,
    ts_ns: u64,
    slot: Slot,
    held: Held,
    /// Bytes it counts for in the queue's bound (its record's or block's length, held or not).
    size: u32,
}

/// Packets read but not yet written, in input order.
struct Queue {
    entries: VecDeque<Entry>,
    bytes: usize,
    /// The packets' bytes are held for writing. Not when the output is thrown away (`flows`,
    /// `diagnose`): only their places and verdicts wait, bounded as if the bytes did, so that
    /// every packet is decided exactly when `trim` decides it.
    hold_bytes: bool,
    /// The held bytes (none when `hold_bytes` is false).
    spool: Spool,
    /// Scrubbing: for each entry, what the engine's redaction wrote into its held copy so far
    /// (a packet is finished when it is written, `Scrubber::frame`). Beside the entries, not
    /// in them: the commands that do not scrub keep entries of the size they were.
    scrubs: Option<VecDeque<PacketScrub>>,
    /// Number given to the next queued block (blocks sort between the packets around them).
    last_number: u64,
}

impl Queue {
    fn new(hold_bytes: bool, scrubbing: bool) -> Queue {
        let scrubs = scrubbing.then(VecDeque::new);
        Queue { entries: VecDeque::new(), bytes: 0, hold_bytes, spool: Spool::default(), scrubs, last_number: 0 }
    }

    /// Holds a record's or block's bytes (when the queue holds bytes); where they are, and
    /// the size they count for (records are at most `MAX_RECORD_BYTES`).
    fn copy(&mut self, bytes: &[u8]) -> (Span, u32) {
        let size = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.bytes += size as usize;
        if !self.hold_bytes {
            return (Span::default(), size);
        }
        (self.spool.put(bytes), size)
    }

    /// Room for one more entry. A queue as long as a flood's is given room for its bound at
    /// once, not grown by doubling: a full queue cycles through its whole ring, so the spare
    /// part doubling leaves (131,072 places for 100,000 entries) was memory each forced packet
    /// touched, faulted in and pushed out of the cache for nothing — a tenth of the pass over
    /// a flood of unanswered lookups.
    fn make_room(&mut self) {
        let n = self.entries.len();
        if n == self.entries.capacity() && (4096..MAX_QUEUED_PACKETS).contains(&n) {
            // The bound, and the one entry over it that is forced.
            self.entries.reserve_exact(MAX_QUEUED_PACKETS + 1 - n);
            if let Some(s) = &mut self.scrubs {
                s.reserve_exact(MAX_QUEUED_PACKETS + 1 - n);
            }
        }
    }

    fn push_packet(&mut self, p: &Packet<'_>, slot: Slot, scrub: Option<PacketScrub>) {
        let (raw, size) = self.copy(p.raw);
        self.last_number = p.meta.number;
        self.make_room();
        self.entries.push_back(Entry {
            number: p.meta.number,
            ts_ns: p.meta.ts_ns,
            slot,
            held: Held::Packet { rec: Record::of(&p.meta), raw },
            size,
        });
        if let Some(s) = &mut self.scrubs {
            s.push_back(scrub.unwrap_or_default());
        }
    }

    /// A block that belongs before a packet still in the queue (at the end when that packet
    /// is gone: a forced verdict wrote it already).
    fn insert_block_before(&mut self, number: u64, kind: u32, raw: &[u8], big_endian: bool, ts_ns: u64) {
        let at = self.entries.partition_point(|e| e.number < number);
        if at >= self.entries.len() || self.entries[at].number != number {
            return self.push_block(kind, raw, big_endian, ts_ns);
        }
        let (raw, size) = self.copy(raw);
        self.make_room();
        let number = if at > 0 { self.entries[at - 1].number } else { number.saturating_sub(1) };
        self.entries.insert(
            at,
            Entry {
                number,
                ts_ns,
                slot: Slot::Decided(Verdict::Keep),
                held: Held::Block { kind, raw, big_endian },
                size,
            },
        );
        if let Some(s) = &mut self.scrubs {
            s.insert(at, PacketScrub::default());
        }
    }

    fn push_block(&mut self, kind: u32, raw: &[u8], big_endian: bool, ts_ns: u64) {
        let (raw, size) = self.copy(raw);
        self.make_room();
        self.entries.push_back(Entry {
            number: self.last_number,
            ts_ns,
            slot: Slot::Decided(Verdict::Keep),
            held: Held::Block { kind, raw, big_endian },
            size,
        });
        if let Some(s) = &mut self.scrubs {
            s.push_back(PacketScrub::default());
        }
    }

    /// Records the verdict of a waiting packet.
    fn decide(&mut self, number: u64, v: Verdict) {
        if let Some(i) = self.packet_index(number)
            && let Slot::Waiting(_) = self.entries[i].slot
        {
            self.entries[i].slot = Slot::Decided(v);
        }
    }

    /// Records verdicts of waiting packets.
    fn settle(&mut self, verdicts: impl IntoIterator<Item = (u64, Verdict)>) {
        for (n, v) in verdicts {
            self.decide(n, v);
        }
    }

    /// Where the queued packet numbered `number` is, if it is still waiting to be written.
    fn packet_index(&self, number: u64) -> Option<usize> {
        let mut i = self.entries.binary_search_by_key(&number, |e| e.number).ok()?;
        // Blocks share the number of the packet before them; find the packet itself.
        while i > 0 && self.entries[i - 1].number == number {
            i -= 1;
        }
        (i..self.entries.len())
            .take_while(|&k| self.entries[k].number == number)
            .find(|&k| matches!(self.entries[k].held, Held::Packet { .. }))
    }

    /// Writes the engine's patches into the queued packets they are for (a packet written
    /// already keeps what it was written with: overwritten where no patch came in time), but
    /// not those of packet `current` (being read, not queued yet).
    fn patch(&mut self, patches: &Patches<'_>, current: u64) {
        for patch in patches.list.iter().filter(|p| p.packet != current) {
            let Some(i) = self.packet_index(patch.packet) else { continue };
            let (Held::Packet { rec, raw }, Some(ps)) =
                (&mut self.entries[i].held, self.scrubs.as_mut().map(|s| &mut s[i]))
            else {
                continue;
            };
            let start = rec.data_offset as usize;
            let Some(frame) = self.spool.get_mut(*raw).get_mut(start..start + rec.caplen as usize) else { continue };
            ps.apply(frame, patch, patches.bytes(patch));
        }
    }

    fn recycle(&mut self, raw: Span, size: u32) {
        self.bytes -= size as usize;
        self.spool.release(raw);
    }
}

pub fn trim<W: Write>(
    input: Input,
    out: W,
    cfg: &TrimConfig,
    summary: &mut Summary,
    progress: Option<&Progress>,
) -> Result<W> {
    rewrite(input, out, cfg, summary, progress, None)
}

/// A consumer of the pass besides the output: `flows` takes each flow's record, `diagnose` the
/// engine's events. Both run this very pass (with the output thrown away), so what they say
/// is what `trim` does.
pub trait Listener {
    /// A flow the engine forgot, once every packet of it is decided.
    fn flow(&mut self, _record: &FlowRecord) -> Result<()> {
        Ok(())
    }
    /// A fact the engine found (`Options::observe`).
    fn event(&mut self, _event: Observed) {}
}

/// `trim`, also telling `listener` what the engine decides and finds.
pub fn rewrite<W: Write>(
    input: Input,
    out: W,
    cfg: &TrimConfig,
    summary: &mut Summary,
    progress: Option<&Progress>,
    listener: Option<&mut dyn Listener>,
) -> Result<W> {
    pass(input, out, cfg, summary, progress, listener, false)
}

/// `trim`'s pass for what it tells `listener` alone, writing nothing: every packet is decided
/// as `trim` decides it, but no packet's bytes are held or encoded.
pub fn observe(
    input: Input,
    cfg: &TrimConfig,
    summary: &mut Summary,
    progress: Option<&Progress>,
    listener: &mut dyn Listener,
) -> Result<()> {
    pass(input, std::io::sink(), cfg, summary, progress, Some(listener), true).map(drop)
}

fn pass<W: Write>(
    input: Input,
    out: W,
    cfg: &TrimConfig,
    summary: &mut Summary,
    progress: Option<&Progress>,
    mut listener: Option<&mut dyn Listener>,
    discard: bool,
) -> Result<W> {
    // Scrubbing and comments read the held bytes.
    let discard = discard && cfg.scrub.is_none() && cfg.annotate.is_none();
    let started = Instant::now();
    let mut reader = Reader::new(input)?;
    reader.set_options(cfg.read);
    let mut writer = Writer::new(out, reader.format(), cfg.format);
    let mut note = String::new();
    if let Some(c) = &cfg.annotate {
        writer.set_section_comment(c.clone());
    }
    let annotate = cfg.annotate.is_some();
    if let Some(h) = reader.pcap_header() {
        writer.begin_pcap(&h.clone(), None)?;
    }
    let mut policy = cfg.policy.clone();
    policy.record_flows |= listener.is_some();
    let mut engine = Engine::new(policy);
    let mut keys = KeyLog::default();
    if let Some(k) = &cfg.keylog {
        engine.add_key_log(k);
        keys.add(k);
    }
    let reader_is_pcapng = reader.format() == Format::PcapNg;
    let mut queue = Queue::new(!discard, cfg.scrub.is_some());
    let mut now_ns = 0u64;
    let mut section_big = false;
    let mut scrubber = cfg.scrub.as_ref().map(Scrubber::new);
    if let Some(s) = &cfg.scrub {
        engine.scrub(s);
    }
    let mut scrubbed: Vec<u8> = Vec::new();
    let mut resolved: Vec<(u64, Verdict)> = Vec::new();
    if let Some(s) = &cfg.scrub {
        writer.set_filter(BlockFilter {
            strip_comments: !s.keep_comments,
            strip_identity: s.pseudonymize.is_some(),
            scrubbing: true,
        });
    }
    loop {
        let item = match reader.next_item() {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(e) => return Err(e),
        };
        match item {
            Item::Block { kind, raw, big_endian: big } => {
                if kind == block::SECTION_HEADER {
                    section_big = big;
                }
                if kind == block::DECRYPTION_SECRETS {
                    // Held back: only the kept sessions' lines are written, later.
                    if let Some((secrets::TLS_KEY_LOG, data)) = secrets::parse(raw, big) {
                        keys.add(data);
                        engine.add_key_log(data);
                    }
                    continue;
                }
                if queue.entries.is_empty() {
                    writer.block(kind, raw, big)?;
                } else {
                    queue.push_block(kind, raw, big, now_ns);
                }
            }
            Item::Packet(p) => {
                summary.packets_in += 1;
                if let Some(pr) = progress
                    && summary.packets_in.is_multiple_of(PUBLISH_EVERY)
                {
                    pr.publish(summary.packets_in, engine.stats.flows_kept);
                }
                now_ns = now_ns.max(p.meta.ts_ns);
                let outcome = engine.packet(&p.meta, p.data());
                resolved.extend(engine.take_resolutions());
                if let Some(l) = listener.as_mut() {
                    for e in engine.take_events() {
                        l.event(e);
                    }
                }
                for (random, before) in engine.take_kept_tls_randoms() {
                    let Some(lines) = keys.lines.remove(&random) else {
                        continue;
                    };
                    // A scrubbed capture never carries keys.
                    if cfg.scrub.is_some() {
                        continue;
                    }
                    if cfg.keylog_out {
                        summary.key_log.extend_from_slice(&lines);
                    }
                    if writer.target() != Format::PcapNg {
                        continue;
                    }
                    let big = if reader_is_pcapng { section_big } else { false };
                    let dsb = secrets::build(secrets::TLS_KEY_LOG, &lines, big);
                    summary.tls_sessions_with_keys += 1;
                    if let Some(n) = before {
                        // Before the session's ClientHello, which is still waiting.
                        queue.insert_block_before(n, block::DECRYPTION_SECRETS, &dsb, big, now_ns);
                    } else if queue.entries.is_empty() {
                        writer.block(block::DECRYPTION_SECRETS, &dsb, big)?;
                    } else {
                        queue.push_block(block::DECRYPTION_SECRETS, &dsb, big, now_ns);
                    }
                }
                let Outcome { decision, ticket, flow_dropped, reordered, layout } = outcome;
                // The patches the call made: this packet's go into its copy, the others into
                // the queued packets they are for.
                let written_now = matches!(decision, Decision::Now(_)) && queue.entries.is_empty();
                let scrub = match scrubber.as_mut() {
                    Some(_) if !flow_dropped => {
                        let start = p.meta.data_offset as usize;
                        scrubbed.clear();
                        let payload = headers_only(decision, layout.as_ref()).filter(|_| written_now && !annotate);
                        if let Some((at, len)) = payload {
                            // Its payload is not written: no copy of it to scrub.
                            let (at, end) = (start + at, start + at + len);
                            scrubbed.extend_from_slice(&p.raw[..at]);
                            scrubbed.resize(end, 0);
                            scrubbed.extend_from_slice(&p.raw[end..]);
                        } else {
                            scrubbed.extend_from_slice(p.raw);
                        }
                        let frame = &mut scrubbed[start..start + p.meta.caplen as usize];
                        let mut ps = PacketScrub::of(frame, layout.as_ref(), reordered);
                        if payload.is_some() {
                            ps = ps.summed();
                        }
                        if let Some(patches) = engine.patches() {
                            for patch in patches.list.iter().filter(|x| x.packet == p.meta.number) {
                                ps.apply(frame, patch, patches.bytes(patch));
                            }
                        }
                        Some(ps)
                    }
                    _ => None,
                };
                if let Some(patches) = engine.patches() {
                    queue.patch(&patches, p.meta.number);
                    engine.clear_patches();
                }
                if !resolved.is_empty() {
                    queue.settle(resolved.drain(..));
                }
                if written_now && let (Some(s), Some(ps)) = (scrubber.as_mut(), &scrub) {
                    let start = p.meta.data_offset as usize;
                    let frame = &mut scrubbed[start..start + p.meta.caplen as usize];
                    s.frame(&p.meta, frame, layout.as_ref(), ps);
                }
                let p = if scrub.is_some() { Packet { meta: p.meta, raw: &scrubbed } } else { p };
                match decision {
                    Decision::Now(v) if written_now && discard => {
                        count(v, summary);
                    }
                    Decision::Now(v) if written_now => {
                        let note = annotate.then_some((&engine, &mut note));
                        write(&mut writer, &p, v, summary, note)?
                    }
                    Decision::Now(Verdict::Drop) => {}
                    Decision::Now(v) => queue.push_packet(&p, Slot::Decided(v), scrub),
                    Decision::Wait(_) => {
                        queue.push_packet(&p, Slot::Waiting(ticket.expect("a wait has a ticket")), scrub)
                    }
                }
            }
        }
        let mut forcer = Forcer { engine: &mut engine, scrubber: scrubber.as_mut(), resolved: &mut resolved };
        drain(&mut queue, &mut forcer, &mut writer, summary, annotate.then_some(&mut note), |e, q| {
            q.bytes > MAX_QUEUED_BYTES
                || q.entries.len() > MAX_QUEUED_PACKETS
                || e.ts_ns.saturating_add(UNDECIDED_WINDOW_NS) < now_ns
        })?;
        if let Some(l) = listener.as_mut() {
            for r in engine.take_retired() {
                l.flow(&r)?;
            }
        }
    }
    let mut forcer = Forcer { engine: &mut engine, scrubber: scrubber.as_mut(), resolved: &mut resolved };
    drain(&mut queue, &mut forcer, &mut writer, summary, annotate.then_some(&mut note), |_, _| true)?;
    if let Some(l) = listener.as_mut() {
        // The last run of packets, then what deciding the last waiting packets found (a hello
        // no answer came to): an event found while deciding pushes the run before it.
        engine.end_events();
        for e in engine.take_events() {
            l.event(e);
        }
        for r in engine.take_retired() {
            l.flow(&r)?;
        }
        let mut rest: Vec<FlowRecord> = engine.remaining().collect();
        rest.sort_by_key(|r| (r.first_ns, r.last_ns));
        for r in &rest {
            l.flow(r)?;
        }
    }
    summary.warnings.extend(reader.take_warnings());
    summary.over_snaplen = reader.over_snaplen;
    summary.interrupted = reader.interrupted;
    if let Some((packet, len, snap)) = reader.first_over_snaplen {
        summary.warnings.push(format!(
            "packet {packet}: captured length {len} exceeds the snaplen {snap} ({} such records; kept, as Wireshark does)",
            reader.over_snaplen
        ));
    }
    summary.warnings.extend(engine.take_notes());
    let stats = engine.stats;
    if let Some(pr) = progress {
        pr.publish(summary.packets_in, stats.flows_kept);
    }
    summary.flows_seen = stats.flows_seen;
    // `scrub` alone writes every flow.
    summary.flows_kept = if cfg.policy.keep_all { stats.flows_seen } else { stats.flows_kept };
    summary.unsupported_link = stats.unsupported_link;
    summary.flows_evicted = stats.flows_evicted;
    summary.bytes_in = reader.bytes_read();
    summary.bytes_out = writer.bytes_written;
    summary.elapsed_s = started.elapsed().as_secs_f64();
    summary.scrub = scrubber.map(|s| {
        let mut counts = s.counts;
        if let Some(c) = engine.scrub_counts() {
            counts.add(c);
        }
        counts.report()
    });
    if let Some(link) = stats.unsupported_link_type {
        summary.warnings.push(format!(
            "{} packets of a link type not supported (LINKTYPE {link}) were dropped unread",
            stats.unsupported_link
        ));
    }
    for (o, n) in wire::Opaque::ALL.iter().zip(stats.opaque) {
        if n > 0 {
            summary.warnings.push(format!("{n} packets inside {} were dropped unread", o.describe()));
        }
    }
    writer.finish()
}

/// Where the payload of a packet cut after its headers is (offset, length in its frame): a
/// whole TCP segment, not tunneled (a tunnel's checksums cover the payload too).
fn headers_only(decision: Decision, layout: Option<&wire::Layout>) -> Option<(usize, usize)> {
    let (Decision::Now(Verdict::Truncate(n)), Some(l)) = (decision, layout) else { return None };
    let whole = l.payload_len == l.wire_payload_len as usize;
    (n as usize <= l.payload_offset && whole && !l.tunneled && matches!(l.transport, wire::Transport::Tcp { .. }))
        .then_some((l.payload_offset, l.payload_len))
}

fn write<W: Write>(
    w: &mut Writer<W>,
    p: &Packet<'_>,
    v: Verdict,
    summary: &mut Summary,
    note: Option<(&Engine, &mut String)>,
) -> Result<()> {
    if !count(v, summary) {
        return Ok(());
    }
    let cut = match v {
        Verdict::Truncate(n) => Some(n),
        _ => None,
    };
    let comment = note.map(|(engine, buf)| {
        annotate::reason(buf, engine, &p.meta, p.data(), v);
        &buf[..]
    });
    w.packet(p, cut, comment)
}

/// Counts a packet written with verdict `v`; returns whether it is written at all.
fn count(v: Verdict, summary: &mut Summary) -> bool {
    match v {
        Verdict::Drop => return false,
        Verdict::Truncate(_) => summary.packets_truncated += 1,
        Verdict::Keep => {}
    }
    summary.packets_out += 1;
    true
}

/// What `drain` needs to decide a waiting packet now (the engine) and to finish the
/// scrubbing of the packets it writes.
struct Forcer<'a> {
    engine: &'a mut Engine,
    scrubber: Option<&'a mut Scrubber>,
    resolved: &'a mut Vec<(u64, Verdict)>,
}

/// Writes decided packets from the front of the queue; forces the front when `must_force`
/// says it has waited long enough.
fn drain<W: Write>(
    q: &mut Queue,
    f: &mut Forcer<'_>,
    writer: &mut Writer<W>,
    summary: &mut Summary,
    mut note: Option<&mut String>,
    must_force: impl Fn(&Entry, &Queue) -> bool,
) -> Result<()> {
    while let Some(front) = q.entries.front() {
        if let Slot::Waiting(ticket) = front.slot {
            if !must_force(front, q) {
                return Ok(());
            }
            let number = front.number;
            let v = f.engine.force(number, ticket);
            // The front is decided in place: a search of the whole queue for it, once per
            // forced packet, was most of the time of a flood of unanswered lookups.
            let front = q.entries.front_mut().expect("front exists");
            front.slot = Slot::Decided(v);
            if let Some(patches) = f.engine.patches() {
                q.patch(&patches, 0);
                f.engine.clear_patches();
            }
            f.resolved.extend(f.engine.take_resolutions());
            if !f.resolved.is_empty() {
                q.settle(f.resolved.drain(..));
            }
            continue;
        }
        let e = q.entries.pop_front().expect("front exists");
        let scrub = q.scrubs.as_mut().and_then(|s| s.pop_front());
        let Slot::Decided(v) = e.slot else { unreachable!("front is decided") };
        match e.held {
            Held::Packet { raw, .. } if !q.hold_bytes => {
                count(v, summary);
                q.recycle(raw, e.size);
            }
            Held::Packet { rec, raw } => {
                let meta = rec.meta(e.number, e.ts_ns);
                if let (Some(s), Some(ps)) = (f.scrubber.as_deref_mut(), &scrub)
                    && v != Verdict::Drop
                {
                    let start = meta.data_offset as usize;
                    let frame = &mut q.spool.get_mut(raw)[start..start + meta.caplen as usize];
                    let layout = wire::decode(meta.link_type, frame).ok().map(|d| d.layout);
                    s.frame(&meta, frame, layout.as_ref(), ps);
                }
                let note = note.as_deref_mut().map(|b| (&*f.engine, b));
                write(writer, &Packet { meta, raw: q.spool.get(raw) }, v, summary, note)?;
                q.recycle(raw, e.size);
            }
            Held::Block { raw, .. } if !q.hold_bytes => q.recycle(raw, e.size),
            Held::Block { kind, raw, big_endian } => {
                writer.block(kind, q.spool.get(raw), big_endian)?;
                q.recycle(raw, e.size);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::RecordMeta;

    /// A queue that holds no bytes (`flows`, `diagnose`) counts them as one that does, so the
    /// bounds force every packet at the same moment in every command.
    #[test]
    fn a_queue_holding_no_bytes_counts_them_the_same() {
        let mut queues = [Queue::new(true, false), Queue::new(false, false)];
        let mut rnd = crate::test_rng::below(5);
        for number in 1..2000u64 {
            let raw = vec![7u8; 60 + rnd(1500) as usize];
            let meta = RecordMeta {
                number,
                interface: 0,
                link_type: 1,
                ts_ns: number,
                orig_len: raw.len() as u32 - 16,
                data_offset: 16,
                caplen: raw.len() as u32 - 16,
            };
            let block = rnd(10) == 0;
            let pop = rnd(3) == 0;
            for q in &mut queues {
                q.push_packet(&Packet { meta, raw: &raw }, Slot::Decided(Verdict::Keep), None);
                if block {
                    q.push_block(5, &raw[..40], false, number);
                    q.insert_block_before(number, 5, &raw[..24], false, number);
                }
                if pop && let Some(e) = q.entries.pop_front() {
                    let raw = match e.held {
                        Held::Packet { raw, .. } | Held::Block { raw, .. } => raw,
                    };
                    q.recycle(raw, e.size);
                }
            }
            assert_eq!(queues[0].bytes, queues[1].bytes, "packet {number}");
            assert_eq!(queues[0].entries.len(), queues[1].entries.len());
        }
        assert!(queues[0].bytes > 0);
        assert!(queues[1].entries.iter().all(|e| match &e.held {
            Held::Packet { raw, .. } | Held::Block { raw, .. } => raw.is_empty(),
        }));
    }
}
