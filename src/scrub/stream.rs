//! One flow's bytes, redacted as the engine's reassembly hands them over (SPEC "What
//! scrubbing changes").
//!
//! Each TCP direction has a cursor that knows what the next stream byte is: part of an HTTP
//! head (see `http`), an HTTP body, a WebSocket frame header or payload, a TLS record header
//! or body, a DNS message — or nothing it can vouch for. The engine hands each direction's
//! in-order bytes over once, with the packet that carried them (`Redaction::deliver`), from
//! the same reassembly that every command reads: a second reassembly for the scrubber read
//! segments in another order than the classifiers did. What comes out is a patch per packet:
//! the redacted bytes of the part of its payload that was delivered. Whatever part of a
//! packet no patch covers (a retransmitted copy, bytes after a hole, data in a SYN, a packet
//! written before its flow was understood) is overwritten by the caller: the scrubber fails
//! closed by construction, not by remembering to.
//!
//! Bytes are held, not redacted, while the engine does not yet know what the flow carries
//! (its packets wait for that too), and while a DNS message split over segments is not whole.
//! Held bytes are bounded per flow and per thread; beyond, the flow is overwritten from there.

use super::http::{Fate, HeadRedactor, Rest, Step};
use super::pseudonym::{self, HelloByte, Pseudonymizer};
use super::{Counts, FILL, Rule, ScrubOptions, Tally};
use crate::engine::{Content, Reading};
use crate::flow::Side;
use crate::proto::units::{Header, UnitFormat};
use crate::proto::websocket::{self, Frames};
use crate::proto::{dns, tls};
use crate::wire::checksum;

/// What the next bytes of one direction are.
#[derive(Clone, Debug, Default)]
enum Mode {
    /// Nothing seen yet: what the engine says of the flow decides (`start_mode`).
    #[default]
    Start,
    /// An HTTP flow's direction before its first byte: a request or response head (or TLS
    /// records after a `CONNECT`).
    Sniff,
    /// WebSocket frames met mid-connection: the first segment that is exactly a run of frames
    /// masked as this side masks starts the walk; segments before it are overwritten.
    FramesAt {
        masked: bool,
    },
    Head(Box<HeadRedactor>),
    Body {
        left: u64,
        then_response: bool,
    },
    /// A chunked body (RFC 9112 §7.1): sizes and line ends stay, chunk data and trailer
    /// values go.
    Chunked(ChunkCursor),
    /// A request head ended; the next bytes are another request, or frames after a 101.
    AfterRequest,
    Frames(FrameCursor),
    Records(RecordCursor),
    /// DNS over TCP: the bytes left of the current message (a whole one, so they stay), and
    /// what replaces them when it was pseudonymized whole.
    Dns {
        left: usize,
        with: Vec<u8>,
    },
    Opaque,
}

#[derive(Clone, Debug, Default)]
struct FrameCursor {
    header: [u8; 14],
    header_len: usize,
    left: u64,
    pos: u64,
    mask: [u8; 4],
    close: bool,
}

impl FrameCursor {
    /// Takes `n` bytes of the current payload (no more than are left): how many stay (a close
    /// frame's status code, masked or not it unmasks to itself), and the pattern the rest are
    /// overwritten with from there (filler, masked as the frame is).
    fn payload(&mut self, n: usize, tally: &mut Tally) -> (usize, [u8; 4]) {
        let keep = if self.close { (2u64.saturating_sub(self.pos) as usize).min(n) } else { 0 };
        let pos = self.pos as usize + keep;
        let pattern: [u8; 4] = std::array::from_fn(|i| FILL ^ self.mask[(pos + i) % 4]);
        tally.add(if self.close { Rule::CloseReason } else { Rule::WebSocketPayload }, n - keep);
        self.pos += n as u64;
        self.left -= n as u64;
        (keep, pattern)
    }
}

/// A frame header's most bytes.
const MAX_FRAME_HEADER: usize = 14;

/// When the next bytes of a direction (of `n`) begin with a run that one pattern overwrites
/// (the rest of a frame's payload, of an application-data record's body), takes the run and
/// returns its length and the pattern: `step_mode` writes it, `Work::patch` makes it a
/// pattern patch.
fn fill_run(mode: &mut Mode, n: usize, tally: &mut Tally) -> Option<(usize, [u8; 4])> {
    match mode {
        Mode::Frames(f) if f.left > 0 && (!f.close || f.pos >= 2) => {
            let n = f.left.min(n as u64) as usize;
            Some((n, f.payload(n, tally).1))
        }
        Mode::Records(r)
            if r.left > 0 && !matches!(r.content_type, tls::HANDSHAKE | tls::CHANGE_CIPHER_SPEC | tls::ALERT) =>
        {
            let n = r.left.min(n as u64) as usize;
            tally.add(Rule::TlsApplicationData, n);
            r.pos += n as u64;
            r.left -= n as u64;
            Some((n, [FILL; 4]))
        }
        _ => None,
    }
}

#[derive(Clone, Debug, Default)]
struct ChunkCursor {
    then_response: bool,
    at: ChunkAt,
    size: u64,
    left: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum ChunkAt {
    #[default]
    Size,
    /// Chunk extensions after `;`, to the end of the size line.
    Extension,
    Data,
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    TrailerLineStart,
    Trailer,
}

#[derive(Clone, Debug, Default)]
struct RecordCursor {
    header: [u8; 5],
    header_len: usize,
    /// Body bytes left in the current record.
    left: u64,
    content_type: u8,
    /// After this direction's ChangeCipherSpec (TLS 1.2), handshake records are encrypted.
    encrypted: bool,
    /// Handshake messages span records: the current one's header and what is left of it.
    hs_header: [u8; 4],
    hs_header_len: usize,
    hs_left: u64,
    hs_keep: bool,
    hs_type: u8,
    /// Where the server name is in the ClientHello being read (`--pseudonymize`).
    hello: pseudonym::HelloCursor,
    /// Body bytes of the current record read so far.
    pos: u64,
    /// The current handshake record is a ClientHello in the clear even after a
    /// ChangeCipherSpec (TLS 1.3 after a HelloRetryRequest).
    clear_hello: bool,
}

impl RecordCursor {
    /// One byte of a handshake record body: message headers stay, the bodies of ClientHello
    /// and ServerHello stay, the bodies of the others (certificates, key exchanges, tickets)
    /// are filled. Returns whether the byte stays.
    fn handshake_byte(&mut self, c: u8) -> bool {
        if self.encrypted && !self.clear_hello {
            return false;
        }
        if self.hs_left > 0 {
            self.hs_left -= 1;
            return self.hs_keep;
        }
        self.hs_header[self.hs_header_len] = c;
        self.hs_header_len += 1;
        if self.hs_header_len == 4 {
            let h = self.hs_header;
            self.hs_header_len = 0;
            self.hs_left = u64::from(h[1]) << 16 | u64::from(h[2]) << 8 | u64::from(h[3]);
            self.hs_keep = matches!(h[0], 1 | 2);
            self.hs_type = h[0];
            self.hello = pseudonym::HelloCursor::default();
        }
        true
    }
}

/// Tells the other direction what a finished head means for it.
enum Event {
    None,
    Switching,
    /// A 2xx to a CONNECT: both directions carry a new connection's first bytes now.
    TunnelOpen,
    /// Nothing can be decided until this many bytes of this direction's stream are there
    /// from here (a DNS message cut short): the bytes from here wait.
    NeedMore(usize),
}

/// Held bytes per flow: a head's limit and a whole DNS message over TCP (with its length).
const MAX_HELD_FLOW_BYTES: usize = 66 * 1024;
/// Held bytes of all flows of one thread (one file is read by one thread): the bound of the
/// packets that may wait with them (`trim::MAX_QUEUED_BYTES`).
const MAX_HELD_TOTAL_BYTES: usize = 24 << 20;

thread_local! {
    static HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
const HELD_TOTAL: crate::flow::ThreadBytes = crate::flow::ThreadBytes(&HELD);

/// Delivered bytes not redacted yet: `len` bytes of `side`'s stream, at `offset` in the
/// payload of `packet`, at `at` in `FlowRedactor::held_bytes`. `lost_after`: the stream's
/// next bytes were not captured (a snaplen, a hole given up on), so nothing after these
/// bytes continues them; a chunk of no bytes says only that.
#[derive(Clone, Copy, Debug)]
struct Chunk {
    side: Side,
    packet: u64,
    offset: u32,
    at: u32,
    len: u32,
    lost_after: bool,
}

impl Chunk {
    /// The chunk as delivered again, its bytes `bytes`.
    fn delivered(self, bytes: &[u8]) -> Delivered<'_> {
        let (side, packet, offset, lost_after) = (self.side, self.packet, self.offset as usize, self.lost_after);
        Delivered { side, packet, offset, bytes, lost_after }
    }
}

/// One flow's redaction state (its slot in `Redaction`'s slab; the engine's flow holds the
/// handle).
#[derive(Debug, Default)]
pub struct FlowRedactor {
    modes: [Mode; 2],
    /// An HTTP CONNECT (the engine's `Class::Tunnel`): a 2xx opens a new connection inside.
    tunnel: bool,
    /// Chunks waiting, in the order they were delivered (directions interleaved: a head's end
    /// tells the other direction what its bytes are).
    held: Vec<Chunk>,
    held_bytes: Vec<u8>,
    /// The first held chunk's direction waits for this many bytes of its stream, from that
    /// chunk's start, before its cursor can go on (0: it waits for nothing): a DNS message
    /// split over many segments is not tried again at every one.
    need: usize,
    /// How many such bytes are held.
    have: usize,
}

impl Drop for FlowRedactor {
    fn drop(&mut self) {
        HELD_TOTAL.sub(self.held_bytes.len());
    }
}

impl FlowRedactor {
    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    fn release_held(&mut self) {
        HELD_TOTAL.sub(self.held_bytes.len());
        self.held.clear();
        self.held_bytes = Vec::new();
        self.need = 0;
    }

    /// Holds a chunk; false when it does not fit (the flow is then overwritten from here).
    fn hold(&mut self, d: Delivered<'_>) -> bool {
        let Delivered { side, packet, offset, bytes, lost_after } = d;
        if self.held_bytes.len() + bytes.len() > MAX_HELD_FLOW_BYTES
            || HELD_TOTAL.get() + bytes.len() > MAX_HELD_TOTAL_BYTES
        {
            self.release_held();
            self.modes = [Mode::Opaque, Mode::Opaque];
            return false;
        }
        let at = self.held_bytes.len() as u32;
        self.held_bytes.extend_from_slice(bytes);
        HELD_TOTAL.add(bytes.len());
        let (offset, len) = (offset as u32, bytes.len() as u32);
        self.held.push(Chunk { side, packet, offset, at, len, lost_after });
        true
    }

    /// Runs in-order bytes of one direction through its cursor, rewriting them in place;
    /// `ahead` is what follows them in the stream, as far as known, and `wait` whether more
    /// may follow that. Returns how many bytes were redacted: fewer than all when the rest
    /// must wait for more of the stream (`Event::NeedMore`), and then how many bytes from
    /// there it waits for.
    fn redact(
        &mut self,
        side: Side,
        b: &mut [u8],
        ahead: &[u8],
        tally: &mut Tally,
        mut pseudo: Option<&mut Pseudonymizer>,
        wait: bool,
    ) -> (usize, usize) {
        let mut done = 0;
        while done < b.len() {
            let mode = &mut self.modes[side.index()];
            let rest = &mut b[done..];
            // What follows the rest of this chunk: the chunk's own bytes are in `rest`.
            let (used, event) = step_mode(mode, rest, ahead, tally, pseudo.as_deref_mut(), self.tunnel, wait);
            match event {
                Event::NeedMore(n) => return (done, n),
                Event::TunnelOpen => {
                    let other = &mut self.modes[side.other().index()];
                    if matches!(other, Mode::AfterRequest | Mode::Start | Mode::Sniff) {
                        *other = Mode::Sniff;
                    }
                }
                Event::Switching => {
                    // A 101: the other direction's bytes after its request are frames now.
                    let other = &mut self.modes[side.other().index()];
                    *other = match other {
                        Mode::AfterRequest | Mode::Start | Mode::Sniff => Mode::Frames(FrameCursor::default()),
                        _ => Mode::Opaque,
                    };
                }
                Event::None => {}
            }
            done += used;
        }
        (done, 0)
    }
}

/// In-order bytes of one direction: `bytes` of `side`'s stream, carried by `packet` at
/// `offset` in its TCP payload. `lost_after`: the stream's next bytes are not in the capture.
#[derive(Clone, Copy, Debug)]
pub struct Delivered<'a> {
    pub side: Side,
    pub packet: u64,
    pub offset: usize,
    pub bytes: &'a [u8],
    pub lost_after: bool,
}

/// A packet's redacted bytes: `len` bytes at `offset` in its TCP payload. `changed`: some
/// byte was overwritten or mapped (the caller then gives the packet a fresh checksum).
#[derive(Clone, Copy, Debug)]
pub struct Patch {
    pub packet: u64,
    pub offset: u32,
    pub len: u32,
    at: u32,
    pub changed: bool,
    /// The bytes are these four repeated (a run one pattern overwrites: most bytes of a
    /// capture): not stored, and a packet cut after its headers never has them written.
    pattern: Option<[u8; 4]>,
}

/// The patches made since they were last taken, and their bytes.
pub struct Patches<'a> {
    pub list: &'a [Patch],
    bytes: &'a [u8],
}

impl Patches<'_> {
    pub fn bytes(&self, p: &Patch) -> PatchBytes<'_> {
        match p.pattern {
            Some(pattern) => PatchBytes::Repeated(pattern, p.len as usize),
            None => PatchBytes::Stored(&self.bytes[p.at as usize..(p.at + p.len) as usize]),
        }
    }
}

/// What a patch writes: its stored bytes, or a four-byte pattern repeated to a length.
#[derive(Clone, Copy, Debug)]
pub enum PatchBytes<'a> {
    Stored(&'a [u8]),
    Repeated([u8; 4], usize),
}

impl PatchBytes<'_> {
    pub fn len(&self) -> usize {
        match self {
            PatchBytes::Stored(b) => b.len(),
            PatchBytes::Repeated(_, n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes them into `dst` (of their length).
    pub fn write(&self, dst: &mut [u8]) {
        match self {
            PatchBytes::Stored(b) => dst.copy_from_slice(b),
            PatchBytes::Repeated(p, _) => repeat(dst, *p),
        }
    }

    /// Their checksum sum, placed at byte `at` of the summed data.
    pub fn sum_at(&self, at: usize) -> u16 {
        match self {
            PatchBytes::Stored(b) => checksum::sum_at(b, at),
            PatchBytes::Repeated(p, n) => {
                // Whole patterns start at the same parity as the first.
                let (whole, rest) = (n / 4, n % 4);
                let one = u64::from(checksum::sum_at(p, at));
                let tail = u64::from(checksum::sum_at(&p[..rest], at));
                checksum::add(checksum::fold(one * whole as u64), tail as u16)
            }
        }
    }
}

/// Fills `dst` with `pattern` repeated from its first byte.
fn repeat(dst: &mut [u8], pattern: [u8; 4]) {
    let mut chunks = dst.chunks_exact_mut(4);
    for c in &mut chunks {
        c.copy_from_slice(&pattern);
    }
    for (byte, p) in chunks.into_remainder().iter_mut().zip(pattern) {
        *byte = p;
    }
}

/// The run's redaction: every flow's cursors, in a slab the engine's flows hold handles to,
/// and what they share.
pub struct Redaction {
    /// Slot 0 is never used: a flow's handle 0 means it has no cursors yet.
    flows: Vec<FlowRedactor>,
    free: Vec<u32>,
    work: Work,
}

/// What every flow's cursors share: the pseudonymizer, the counts, the patches made for the
/// caller to apply.
struct Work {
    pseudo: Option<Pseudonymizer>,
    tally: Tally,
    counts: Counts,
    patches: Vec<Patch>,
    patch_bytes: Vec<u8>,
    /// Each direction's held bytes, joined while they go through (`flush`); kept for reuse.
    ahead: Vec<u8>,
    ahead_b: Vec<u8>,
}

impl Redaction {
    pub fn new(opts: &ScrubOptions) -> Redaction {
        Redaction {
            flows: vec![FlowRedactor::default()],
            free: Vec::new(),
            work: Work {
                pseudo: opts.pseudonymize.map(|k| Pseudonymizer::new(&k)),
                tally: Tally::default(),
                counts: Counts::default(),
                patches: Vec::new(),
                patch_bytes: Vec::new(),
                ahead: Vec::new(),
                ahead_b: Vec::new(),
            },
        }
    }

    pub fn patches(&self) -> Patches<'_> {
        Patches { list: &self.work.patches, bytes: &self.work.patch_bytes }
    }

    /// Forgets the patches taken.
    pub fn clear_patches(&mut self) {
        self.work.patches.clear();
        self.work.patch_bytes.clear();
    }

    /// What the streams' redaction overwrote, per rule.
    pub fn counts(&self) -> &Counts {
        &self.work.counts
    }

    /// The cursors of the flow holding `handle`, made when it has none.
    fn slot(&mut self, handle: &mut u32) -> usize {
        if *handle == 0 {
            *handle = match self.free.pop() {
                Some(i) => i,
                None => {
                    self.flows.push(FlowRedactor::default());
                    (self.flows.len() - 1) as u32
                }
            };
        }
        *handle as usize
    }

    /// A flow forgotten (or not written after all): its cursors and held bytes go.
    pub fn forget(&mut self, handle: u32) {
        if handle != 0 {
            self.flows[handle as usize] = FlowRedactor::default();
            self.free.push(handle);
        }
    }

    /// `Work::deliver` for the flow holding `handle`.
    pub fn deliver(&mut self, handle: &mut u32, reading: Option<Reading>, d: Delivered<'_>) {
        let i = self.slot(handle);
        self.work.deliver(&mut self.flows[i], reading, d);
    }

    /// In-order bytes that more of their direction's stream follows in the same call (a held
    /// segment released behind them): kept until that comes, so that the cursor can look
    /// ahead into it as into the rest of a head (`deliver` of the last lets them all go).
    pub fn hold(&mut self, handle: &mut u32, d: Delivered<'_>) {
        let i = self.slot(handle);
        self.flows[i].hold(d);
    }

    /// Lets the held bytes of the flow holding `handle` through, if it has any and its
    /// reading is known now.
    pub fn flush(&mut self, handle: u32, reading: Option<Reading>) {
        let f = &mut self.flows[handle as usize];
        if handle != 0 && f.has_held() {
            self.work.flush(f, reading);
        }
    }
}

impl Work {
    /// In-order bytes of a direction (possibly none). `reading` is what the engine made of
    /// the flow, None while it does not know yet: the bytes are then held until `flush`.
    fn deliver(&mut self, f: &mut FlowRedactor, reading: Option<Reading>, d: Delivered<'_>) {
        let Delivered { side, offset, bytes, lost_after, .. } = d;
        match reading {
            Some(r) if f.held.is_empty() => {
                // The common case: nothing waits before these bytes.
                self.start(f, r, side);
                let (done, need) = self.patch(f, d, &[], !lost_after);
                if done < bytes.len() {
                    if f.hold(Delivered { offset: offset + done, bytes: &bytes[done..], ..d }) {
                        (f.need, f.have) = (need, bytes.len() - done);
                    }
                } else if lost_after {
                    f.modes[side.index()] = Mode::Opaque;
                }
            }
            _ => {
                if !f.hold(d) {
                    return;
                }
                if f.need > 0 && f.held.first().is_some_and(|c| c.side == side) {
                    f.have += bytes.len();
                    if f.have < f.need && !lost_after {
                        return;
                    }
                }
                if reading.is_some() {
                    self.flush(f, reading);
                }
            }
        }
    }

    /// Held chunks go through the cursors, in the order they came, as far as they can: the
    /// flow's reading is known (`reading`), and no direction waits for more of its stream.
    fn flush(&mut self, f: &mut FlowRedactor, reading: Option<Reading>) {
        let Some(r) = reading else { return };
        // Each direction's held bytes joined, once: a chunk's cursor may look ahead into what
        // follows it in its direction, up to a loss (and then knows no more can come).
        let mut joined = [std::mem::take(&mut self.ahead), std::mem::take(&mut self.ahead_b)];
        joined.iter_mut().for_each(Vec::clear);
        let mut ends: Vec<(usize, usize, bool)> = Vec::with_capacity(f.held.len());
        for c in &f.held {
            let j = &mut joined[c.side.index()];
            j.extend_from_slice(&f.held_bytes[c.at as usize..(c.at + c.len) as usize]);
            ends.push((j.len(), 0, false));
        }
        let mut run = [(joined[0].len(), true), (joined[1].len(), true)];
        for (c, e) in f.held.iter().zip(ends.iter_mut()).rev() {
            if c.lost_after {
                run[c.side.index()] = (e.0, false);
            }
            (e.1, e.2) = run[c.side.index()];
        }
        let mut done = 0;
        while done < f.held.len() {
            let c = f.held[done];
            self.start(f, r, c.side);
            let (end, run_end, more) = ends[done];
            let j = &joined[c.side.index()];
            let (bytes, ahead) = (&j[end - c.len as usize..end], &j[end..run_end]);
            let (used, need) = self.patch(f, c.delivered(bytes), ahead, more);
            f.need = need;
            f.have = bytes.len() - used + ahead.len();
            if used < bytes.len() {
                // Waits for more of its stream; so does everything delivered after it.
                let c = &mut f.held[done];
                c.offset += used as u32;
                c.at += used as u32;
                c.len -= used as u32;
                break;
            }
            if c.lost_after {
                f.modes[c.side.index()] = Mode::Opaque;
            }
            done += 1;
        }
        [self.ahead, self.ahead_b] = joined;
        if done == f.held.len() {
            f.release_held();
        } else if done > 0 {
            // The chunks left, moved to the front.
            let from = f.held[done].at as usize;
            f.held.drain(..done);
            f.held_bytes.drain(..from);
            for c in &mut f.held {
                c.at -= from as u32;
            }
            HELD_TOTAL.sub(from);
        }
    }

    /// A direction's first bytes: how they are read follows from what the flow carries. (A
    /// CONNECT is known as a tunnel once its request is read, which may be after its first
    /// bytes were.)
    fn start(&mut self, f: &mut FlowRedactor, r: Reading, side: Side) {
        f.tunnel |= r.tunnel;
        if matches!(f.modes[side.index()], Mode::Start) {
            f.modes[side.index()] = start_mode(Some(r), side);
        }
    }

    /// Redacts the bytes of `d` into patches of its packet; returns how many were redacted,
    /// and how many the rest waits for (`FlowRedactor::redact`).
    fn patch(&mut self, f: &mut FlowRedactor, d: Delivered<'_>, ahead: &[u8], wait: bool) -> (usize, usize) {
        let Delivered { side, packet, offset, bytes, .. } = d;
        if bytes.is_empty() {
            return (0, 0);
        }
        if matches!(f.modes[side.index()], Mode::Opaque) {
            // Overwritten whole: no patch says more than the caller's overwriting of what no
            // patch covers (counted there).
            return (bytes.len(), 0);
        }
        // A walk of frames or records: runs that one pattern overwrites (payloads, encrypted
        // bodies: most bytes of a capture) are pattern patches; the headers between them go
        // through the cursor a header's length at a time, so that only their bytes are stored.
        let mut done = 0;
        while done < bytes.len() && matches!(f.modes[side.index()], Mode::Frames(_) | Mode::Records(_)) {
            let mode = &mut f.modes[side.index()];
            if let Some((n, pattern)) = fill_run(mode, bytes.len() - done, &mut self.tally) {
                let (offset, len) = ((offset + done) as u32, n as u32);
                self.patches.push(Patch { packet, offset, len, at: 0, changed: true, pattern: Some(pattern) });
                done += n;
                continue;
            }
            if !matches!(mode, Mode::Frames(_)) {
                break;
            }
            let piece = &bytes[done..bytes.len().min(done + MAX_FRAME_HEADER)];
            let (used, _) = self.store(f, Delivered { offset: offset + done, bytes: piece, ..d }, &[], wait);
            done += used;
        }
        let (used, need) = if done < bytes.len() {
            self.store(f, Delivered { offset: offset + done, bytes: &bytes[done..], ..d }, ahead, wait)
        } else {
            (0, 0)
        };
        // Counted once a delivery, as a packet's rules are.
        self.tally.fold_into(&mut self.counts);
        (done + used, need)
    }

    /// Redacts the bytes of `d` through the cursor into a patch of stored bytes (`patch`).
    fn store(&mut self, f: &mut FlowRedactor, d: Delivered<'_>, ahead: &[u8], wait: bool) -> (usize, usize) {
        let Delivered { side, packet, offset, bytes, .. } = d;
        let before = self.tally.total();
        let at = self.patch_bytes.len();
        self.patch_bytes.extend_from_slice(bytes);
        let (used, need) =
            f.redact(side, &mut self.patch_bytes[at..], ahead, &mut self.tally, self.pseudo.as_mut(), wait);
        self.patch_bytes.truncate(at + used);
        if used > 0 {
            let changed = self.tally.total() > before;
            self.patches.push(Patch {
                packet,
                offset: offset as u32,
                len: used as u32,
                at: at as u32,
                changed,
                pattern: None,
            });
        }
        (used, need)
    }
}

/// How a direction's first payload is read, from what the engine made of its flow: HTTP heads
/// only in an HTTP flow, records from the first byte in a TLS flow (a server's plaintext
/// alert before any ServerHello included), frames in a WebSocket met mid-connection;
/// anything else, or a flow the engine does not know, is overwritten whole.
fn start_mode(reading: Option<Reading>, side: Side) -> Mode {
    let Some(r) = reading else { return Mode::Opaque };
    // A tunnel's CONNECT and its answer are HTTP, whatever the tunnel carries; so is the
    // server's side of a TLS client answered in plaintext.
    if r.tunnel || (r.plain_answer && r.client != Some(side)) {
        return Mode::Sniff;
    }
    match r.content {
        Content::Http => Mode::Sniff,
        Content::Tls => Mode::Records(RecordCursor::default()),
        Content::Frames => Mode::FramesAt { masked: r.client == Some(side) },
        Content::Dns => Mode::Dns { left: 0, with: Vec::new() },
        _ => Mode::Opaque,
    }
}

/// Consumes a prefix of `b` in the current mode; returns how many bytes and what the other
/// direction must learn. `wait`: more of this direction's stream may still come after `b`
/// and `ahead` (nothing was lost), so a DNS message cut short may wait for it.
fn step_mode(
    mode: &mut Mode,
    b: &mut [u8],
    ahead: &[u8],
    tally: &mut Tally,
    mut pseudo: Option<&mut Pseudonymizer>,
    tunnel: bool,
    wait: bool,
) -> (usize, Event) {
    if let Some((n, pattern)) = fill_run(mode, b.len(), tally) {
        repeat(&mut b[..n], pattern);
        return (n, Event::None);
    }
    match mode {
        Mode::FramesAt { masked } => {
            if websocket::segment_is_frames(b) == Some(*masked) {
                *mode = Mode::Frames(FrameCursor::default());
                return (0, Event::None);
            }
            b.fill(FILL);
            tally.add(Rule::Unparsed, b.len());
            (b.len(), Event::None)
        }
        Mode::Start => {
            *mode = Mode::Opaque;
            (0, Event::None)
        }
        Mode::Sniff | Mode::AfterRequest => {
            *mode = if b[0] == tls::HANDSHAKE {
                Mode::Records(RecordCursor::default())
            } else {
                Mode::Head(Box::default())
            };
            (0, Event::None)
        }
        Mode::Dns { left, with } if *left > 0 => {
            let n = (*left).min(b.len());
            if !with.is_empty() {
                b[..n].copy_from_slice(&with[..n]);
                with.drain(..n);
            }
            *left -= n;
            (n, Event::None)
        }
        Mode::Dns { left, with } => {
            // A message and its length stay only once the whole of it parses as DNS (here, or
            // with what follows in the stream); anything else ends the reading.
            // The message with its length, joined from what follows when it is there; when it
            // is not, its header alone says whether it can be DNS (no copy of a long partial).
            let avail = b.len() + ahead.len();
            let at = |i: usize| if i < b.len() { b[i] } else { ahead[i - b.len()] };
            let whole = if avail >= 2 { 2 + usize::from(u16::from_be_bytes([at(0), at(1)])) } else { 2 };
            let upto = if avail >= whole { whole } else { avail.min(14) };
            let joined;
            let framed = if b.len() >= upto {
                &b[..]
            } else {
                joined = [&b[..], &ahead[..upto - b.len()]].concat();
                &joined[..]
            };
            let n = match dns::tcp_frame(framed) {
                dns::TcpFrame::Whole(n) => n,
                dns::TcpFrame::Partial if wait => return (0, Event::NeedMore(whole)),
                _ => {
                    *mode = Mode::Opaque;
                    return (0, Event::None);
                }
            };
            if 2 + n <= b.len() {
                if let Some(p) = pseudo.as_deref_mut() {
                    p.dns_message(&mut b[2..2 + n], tally);
                }
                return (2 + n, Event::None);
            }
            // Split over segments: kept as it is, or pseudonymized whole, this segment's part
            // now and the rest as its segments come.
            *left = 2 + n;
            if let Some(p) = pseudo.as_deref_mut() {
                let mut whole = framed[..2 + n].to_vec();
                p.dns_message(&mut whole[2..], tally);
                *with = whole;
            }
            (0, Event::None)
        }
        Mode::Opaque => {
            b.fill(FILL);
            tally.add(Rule::Unparsed, b.len());
            (b.len(), Event::None)
        }
        Mode::Head(h) => {
            // The few decisions that look ahead (where a userinfo or a query item ends, whether
            // a line has a colon) see past this segment into the ones queued after it. They
            // look only at bytes after the one being judged, which this loop has not rewritten.
            let mut i = 0;
            while i < b.len() {
                let c = b[i];
                let kept = match h.step(c, Rest { seg: &b[i + 1..], ahead }) {
                    Step::Byte(Fate::Keep) => true,
                    Step::Byte(Fate::QueryValue) => {
                        b[i] = FILL;
                        tally.add(Rule::QueryValue, 1);
                        false
                    }
                    Step::Byte(Fate::HeaderValue) => {
                        b[i] = FILL;
                        tally.add(Rule::HeaderValue, 1);
                        false
                    }
                    Step::End(end) => {
                        let used = i + 1;
                        if end.response {
                            if end.status == 101 {
                                *mode = Mode::Frames(FrameCursor::default());
                                return (used, Event::Switching);
                            }
                            if tunnel && (200..300).contains(&end.status) {
                                // The tunnel's first bytes: TLS records or an HTTP head.
                                *mode = Mode::Sniff;
                                return (used, Event::TunnelOpen);
                            }
                            *mode = if (100..200).contains(&end.status) || end.status == 204 || end.status == 304 {
                                Mode::Head(Box::default())
                            } else if end.chunked {
                                Mode::Chunked(ChunkCursor { then_response: true, ..ChunkCursor::default() })
                            } else {
                                match end.content_length {
                                    Some(0) => Mode::Head(Box::default()),
                                    Some(n) => Mode::Body { left: n, then_response: true },
                                    None => Mode::Opaque,
                                }
                            };
                        } else {
                            *mode = if end.chunked {
                                Mode::Chunked(ChunkCursor::default())
                            } else {
                                match end.content_length {
                                    Some(n) if n > 0 => Mode::Body { left: n, then_response: false },
                                    _ => Mode::AfterRequest,
                                }
                            };
                        }
                        return (used, Event::None);
                    }
                    Step::NotHttp => {
                        *mode = Mode::Opaque;
                        return (i, Event::None);
                    }
                };
                if let Some(p) = pseudo.as_deref_mut() {
                    // An overwritten byte is shown as what it was (it moves the value on) and
                    // stays overwritten.
                    let mut was = c;
                    p.http_byte(h, if kept { &mut b[i] } else { &mut was }, kept, tally);
                }
                i += 1;
            }
            (b.len(), Event::None)
        }
        Mode::Body { left, then_response } => {
            let n = (*left).min(b.len() as u64) as usize;
            b[..n].fill(FILL);
            tally.add(Rule::HttpBody, n);
            *left -= n as u64;
            if *left == 0 {
                *mode = if *then_response { Mode::Head(Box::default()) } else { Mode::AfterRequest };
            }
            (n, Event::None)
        }
        Mode::Chunked(c) => {
            let byte = b[0];
            match c.at {
                ChunkAt::Data => {
                    let n = c.left.min(b.len() as u64) as usize;
                    b[..n].fill(FILL);
                    tally.add(Rule::HttpBody, n);
                    c.left -= n as u64;
                    if c.left == 0 {
                        c.at = ChunkAt::DataEnd;
                    }
                    return (n, Event::None);
                }
                ChunkAt::Size => match byte {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (byte as char).to_digit(16).unwrap_or(0);
                        c.size = c.size.saturating_mul(16).saturating_add(u64::from(d));
                    }
                    b';' => c.at = ChunkAt::Extension,
                    b'\r' | b' ' | b'\t' => {}
                    b'\n' => {
                        c.left = c.size;
                        c.at = if c.size == 0 { ChunkAt::TrailerLineStart } else { ChunkAt::Data };
                        c.size = 0;
                    }
                    _ => {
                        *mode = Mode::Opaque;
                        return (0, Event::None);
                    }
                },
                ChunkAt::Extension => {
                    if byte == b'\n' {
                        c.left = c.size;
                        c.at = if c.size == 0 { ChunkAt::TrailerLineStart } else { ChunkAt::Data };
                        c.size = 0;
                    } else if byte != b'\r' {
                        b[0] = FILL;
                        tally.add(Rule::HttpBody, 1);
                    }
                }
                ChunkAt::DataEnd => {
                    if byte == b'\n' {
                        c.at = ChunkAt::Size;
                    } else if byte != b'\r' {
                        *mode = Mode::Opaque;
                        return (0, Event::None);
                    }
                }
                ChunkAt::TrailerLineStart => match byte {
                    b'\r' => {}
                    b'\n' => {
                        *mode = if c.then_response { Mode::Head(Box::default()) } else { Mode::AfterRequest };
                    }
                    _ => {
                        b[0] = FILL;
                        tally.add(Rule::HeaderValue, 1);
                        c.at = ChunkAt::Trailer;
                    }
                },
                ChunkAt::Trailer => {
                    if byte == b'\n' {
                        c.at = ChunkAt::TrailerLineStart;
                    } else if byte != b'\r' {
                        b[0] = FILL;
                        tally.add(Rule::HeaderValue, 1);
                    }
                }
            }
            (1, Event::None)
        }
        Mode::Frames(f) => {
            // (A payload run that one pattern overwrites whole went to `fill_run`.)
            if f.left > 0 {
                let n = f.left.min(b.len() as u64) as usize;
                let (keep, pattern) = f.payload(n, tally);
                repeat(&mut b[keep..n], pattern);
                return (n, Event::None);
            }
            f.header[f.header_len] = b[0];
            f.header_len += 1;
            match Frames::parse(&f.header[..f.header_len]) {
                Header::NeedMore if f.header_len < 14 => {}
                Header::Complete { header, body, .. } => {
                    *f = FrameCursor {
                        left: body,
                        mask: header.mask.unwrap_or([0; 4]),
                        close: header.opcode == websocket::OP_CLOSE,
                        ..FrameCursor::default()
                    };
                }
                _ => {
                    // Lost sync: this byte and the rest are overwritten.
                    *mode = Mode::Opaque;
                    return (0, Event::None);
                }
            }
            (1, Event::None)
        }
        Mode::Records(r) => {
            if r.left > 0 {
                let n = r.left.min(b.len() as u64) as usize;
                match r.content_type {
                    tls::HANDSHAKE => {
                        for byte in &mut b[..n] {
                            let in_hello = (!r.encrypted || r.clear_hello) && r.hs_left > 0 && r.hs_type == 1;
                            match if in_hello { r.hello.step(*byte) } else { HelloByte::Plain } {
                                HelloByte::Name => {
                                    if let Some(p) = pseudo.as_deref_mut() {
                                        p.client_hello_name_byte(&mut r.hello, byte, tally);
                                    }
                                }
                                HelloByte::Secret => {
                                    // Consumed as a handshake byte, but not kept.
                                    r.handshake_byte(*byte);
                                    *byte = FILL;
                                    tally.add(Rule::TlsHandshakeBody, 1);
                                    continue;
                                }
                                HelloByte::Plain => {}
                            }
                            if !r.handshake_byte(*byte) {
                                *byte = FILL;
                                tally.add(Rule::TlsHandshakeBody, 1);
                            }
                        }
                    }
                    // An alert is two bytes, a ChangeCipherSpec one: anything more is not
                    // what they say, and goes. (Other records' bodies went to `fill_run`.)
                    _ => {
                        let keep = match r.content_type {
                            tls::ALERT => 2,
                            tls::CHANGE_CIPHER_SPEC => 1,
                            _ => 0,
                        };
                        let from = (keep as u64).saturating_sub(r.pos).min(n as u64) as usize;
                        if from < n {
                            b[from..n].fill(FILL);
                            tally.add(Rule::TlsApplicationData, n - from);
                        }
                    }
                }
                r.pos += n as u64;
                r.left -= n as u64;
                return (n, Event::None);
            }
            r.header[r.header_len] = b[0];
            r.header_len += 1;
            match tls::Records::parse(&r.header[..r.header_len]) {
                Header::NeedMore => {}
                Header::Complete { header, body, .. } => {
                    r.header_len = 0;
                    r.left = body;
                    r.pos = 0;
                    r.content_type = header.content_type;
                    if header.content_type == tls::CHANGE_CIPHER_SPEC {
                        r.encrypted = true;
                    }
                    // After a HelloRetryRequest, a TLS 1.3 client sends its compatibility
                    // ChangeCipherSpec and then a second ClientHello in the clear: a record
                    // that is exactly one ClientHello is read as one (an encrypted TLS 1.2
                    // Finished matches that shape once in 2^24).
                    r.clear_hello = header.content_type == tls::HANDSHAKE
                        && b.get(1..5).is_some_and(|h| {
                            h[0] == 1 && (u64::from(h[1]) << 16 | u64::from(h[2]) << 8 | u64::from(h[3])) + 4 == body
                        });
                    return (1, Event::None);
                }
                Header::Invalid => {
                    *mode = Mode::Opaque;
                    return (0, Event::None);
                }
            }
            (1, Event::None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(mode: &mut Mode, bytes: &[u8]) -> Vec<u8> {
        let mut b = bytes.to_vec();
        let mut t = Tally::default();
        let mut rest = &mut b[..];
        while !rest.is_empty() {
            let (n, _) = step_mode(mode, rest, &[], &mut t, None, false, false);
            rest = &mut rest[n..];
        }
        b
    }

    /// A repeated pattern written out is what its length says, and sums as written.
    #[test]
    fn repeated_patch_bytes_write_and_sum_as_stored_ones() {
        let pattern = [0x78 ^ 0x11, 0x78 ^ 0x22, 0x78 ^ 0x33, 0x78 ^ 0x44];
        for n in 0..19 {
            let r = PatchBytes::Repeated(pattern, n);
            let mut written = vec![0; n];
            r.write(&mut written);
            assert!(written.iter().enumerate().all(|(i, &b)| b == pattern[i % 4]));
            for at in 0..4 {
                assert_eq!(r.sum_at(at), PatchBytes::Stored(&written).sum_at(at), "n {n} at {at}");
            }
        }
    }

    /// Runs that one pattern overwrites (a frame's payload, an application-data record's
    /// body) become pattern patches and the headers between them stored bytes; written out,
    /// at any segment size, they are what the byte-by-byte redaction writes.
    #[test]
    fn pattern_and_stored_patches_write_what_the_byte_walk_writes() {
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut frame = vec![0x82, 0xfe, 0x01, 0x00];
        frame.extend_from_slice(&mask);
        frame.extend((0..256u32).map(|i| (i as u8) ^ mask[i as usize % 4]));
        frame.extend_from_slice(&[0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2]);
        let mut records = vec![23, 3, 3, 0x01, 0x00];
        records.extend(0..=255u8);
        records.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]);
        for (start, stream) in
            [(Mode::Frames(FrameCursor::default()), &frame), (Mode::Records(RecordCursor::default()), &records)]
        {
            let expected = run(&mut start.clone(), stream);
            for seg in [1, 3, 7, 64, 100, 300] {
                let mut work = Redaction::new(&ScrubOptions::default()).work;
                let mut f = FlowRedactor::default();
                f.modes = [start.clone(), Mode::Opaque];
                // What no patch covers is overwritten by the caller.
                let mut out = vec![FILL; stream.len()];
                let mut patterns = 0;
                for (i, chunk) in stream.chunks(seg).enumerate() {
                    let d = Delivered { side: Side::A, packet: 1, offset: i * seg, bytes: chunk, lost_after: false };
                    let (used, _) = work.patch(&mut f, d, &[], false);
                    assert_eq!(used, chunk.len());
                }
                let patches = Patches { list: &work.patches, bytes: &work.patch_bytes };
                for p in patches.list {
                    let b = patches.bytes(p);
                    patterns += usize::from(matches!(b, PatchBytes::Repeated(..)));
                    b.write(&mut out[p.offset as usize..p.offset as usize + b.len()]);
                }
                assert_eq!(out, expected, "segments of {seg}");
                // (A segment that starts with a record header is stored whole.)
                assert!(seg > 100 || patterns > 0, "segments of {seg}: no pattern");
            }
        }
    }

    #[test]
    fn bytes_that_are_no_frames_lose_sync_at_once() {
        // Plain text after a 101 to another protocol: 'p' has RSV2 and RSV3 set, so it starts
        // no frame (read as one, "pl" was kept as its header).
        let mut m = Mode::Frames(FrameCursor::default());
        let out = run(&mut m, b"plain text with a secret");
        assert!(out.iter().all(|&c| c == FILL), "{}", String::from_utf8_lossy(&out));
    }

    #[test]
    fn bytes_that_are_no_records_lose_sync_at_their_first_wrong_byte() {
        // A handshake type byte, then text: the version byte is wrong, and the bytes after
        // the type (read as version and length, "plai") were kept before.
        let mut m = Mode::Records(RecordCursor::default());
        let out = run(&mut m, b"\x16plain text with a secret");
        assert_eq!(out[0], 0x16);
        assert!(out[1..].iter().all(|&c| c == FILL), "{}", String::from_utf8_lossy(&out));
    }

    #[test]
    fn masked_payload_unmasks_to_filler_and_close_code_stays() {
        let mut m = Mode::Frames(FrameCursor::default());
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut frame = vec![0x81, 0x85];
        frame.extend_from_slice(&mask);
        frame.extend(b"hello".iter().enumerate().map(|(i, c)| c ^ mask[i % 4]));
        frame.extend_from_slice(&[0x88, 0x85]);
        frame.extend_from_slice(&mask);
        frame.extend([0x03, 0xe8, b'b', b'y', b'e'].iter().enumerate().map(|(i, c)| c ^ mask[i % 4]));
        let out = run(&mut m, &frame);
        let unmask = |p: &[u8]| p.iter().enumerate().map(|(i, c)| c ^ mask[i % 4]).collect::<Vec<u8>>();
        assert_eq!(unmask(&out[6..11]), b"xxxxx");
        assert_eq!(&out[11..17], &frame[11..17], "close frame header and mask kept");
        assert_eq!(unmask(&out[17..22]), [0x03, 0xe8, b'x', b'x', b'x']);
    }

    #[test]
    fn chunked_body_keeps_its_framing_and_the_next_response() {
        let mut m = Mode::Sniff;
        let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        let out = run(&mut m, resp);
        let s = String::from_utf8(out).unwrap();
        // The reason phrases go too (SPEC: the code says it all).
        assert!(s.starts_with("HTTP/1.1 200 xx\r\n"), "{s}");
        assert!(s.contains("\r\n5\r\nxxxxx\r\n0\r\n\r\nHTTP/1.1 204 xxxxxxxxxx\r\n\r\n"), "{s}");
    }

    #[test]
    fn unknown_protocol_is_overwritten_whole() {
        let mut m = Mode::Sniff;
        assert_eq!(run(&mut m, b"\x00secret binary"), vec![FILL; 14]);
    }

    #[test]
    fn tls_keeps_hellos_and_headers_and_fills_certificates_and_application_data() {
        let mut m = Mode::Sniff;
        // ClientHello (type 1, 2-byte body), then a Certificate (type 11, 3-byte body)
        // split over two records, then application data.
        let mut rec = vec![22, 3, 3, 0, 6, 1, 0, 0, 2, 7, 7];
        rec.extend_from_slice(&[22, 3, 3, 0, 5, 11, 0, 0, 3, 5]);
        rec.extend_from_slice(&[22, 3, 3, 0, 2, 5, 5]);
        rec.extend_from_slice(&[23, 3, 3, 0, 3, 9, 9, 9]);
        let out = run(&mut m, &rec);
        assert_eq!(&out[..20], &rec[..20], "hello and certificate header kept");
        assert_eq!(out[20], FILL, "certificate body filled");
        assert_eq!(&out[21..26], &rec[21..26]);
        assert_eq!(&out[26..28], &[FILL; 2]);
        assert_eq!(&out[28..33], &rec[28..33]);
        assert_eq!(&out[33..], &[FILL; 3]);
    }
}
