//! A direction's in-order bytes through its phase: HTTP heads collected and parsed, then
//! WebSocket frames or TLS records walked unit by unit, each segment judged important or
//! bulk. Reassembly hands bytes here in stream order; classification (`classify.rs`) decides
//! which phase a flow starts in.

use super::*;
use crate::proto::websocket::Run;

/// How many bytes of segments after a loss of sync may wait to be read as a run of frames:
/// a control frame (at most 131 bytes) and some to spare.
const PROBE_BYTES: usize = 256;

/// How far into the stream bulk segments carrying frame headers may wait to be kept whole,
/// from the first one's start (`Engine::follow_reader`): while one waits, every later packet
/// of the capture waits behind it.
const CHAIN_SPAN: u64 = 256 * 1024;
/// And at most this many packets (a trickle of tiny segments would hold thousands).
const CHAIN_PACKETS: usize = 1024;

impl Engine {
    /// Runs new in-order bytes of one direction through its phase. `start` is the stream
    /// offset of `bytes[0]`; `base` is where the packet's TCP payload starts (a bulk packet's cut).
    pub(super) fn consume(
        &mut self,
        key: FlowKey,
        side: Side,
        start: u64,
        bytes: &[u8],
        packet: u64,
        base: u32,
    ) -> Consumed {
        let keep_frames = self.opts.keep_frames;
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let class = flow.class;
        let client = flow.client;
        let conv = flow.conv;
        let dir = &mut flow.dirs[side.index()];
        match dir.phase {
            Phase::Collect | Phase::AwaitPeer => {
                if dir.head.is_empty() {
                    dir.head_start = start;
                }
                if class == Class::Undecided
                    && client.is_none()
                    && dir.segments.len() < MID_STREAM_CLASSIFY_SEGMENTS as usize
                {
                    // Where each segment starts in the head: frames met mid-connection are read
                    // from it segment by segment, citing the packet that carried them.
                    dir.segments.push((dir.head.len() as u32, self.ev.at));
                }
                if dir.head.len() < http::MAX_HEAD_BYTES {
                    let room = http::MAX_HEAD_BYTES - dir.head.len();
                    dir.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
                if class == Class::Undecided && client.is_none() {
                    match websocket::segment_is_frames(bytes) {
                        Some(true) => dir.masked_runs = dir.masked_runs.saturating_add(1),
                        Some(false) => dir.unmasked_runs = dir.unmasked_runs.saturating_add(1),
                        None => {}
                    }
                }
                if class.kept() {
                    self.advance_heads(key);
                }
                Consumed::Important
            }
            Phase::Bulk => Consumed::Bulk,
            Phase::FramesLost if !self.reading_inner => self.resync_frames(key, side, start, bytes, packet, base),
            Phase::FramesLost => {
                // Decrypted plaintext: one record's at a time, as it comes.
                if websocket::segment_is_frames(bytes) != Some(client == Some(side)) {
                    return Consumed::Bulk;
                }
                dir.frames.resync();
                dir.pending_close = None;
                dir.phase = Phase::Frames;
                let fed = feed_units(dir, bytes, keep_frames, &mut self.ev, (conv, key, side));
                self.after_feed(key, side, fed, start, bytes.len() as u64, packet, base)
            }
            Phase::PlainAnswer(left) => {
                let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                dir.phase = if n >= left { Phase::Bulk } else { Phase::PlainAnswer(left - n) };
                Consumed::Important
            }
            Phase::Records
                if client.is_some_and(|c| c != side)
                    && dir.records.at_boundary()
                    && !dir.records.failed()
                    && start == dir.handshake_end.unwrap_or(0)
                    && matches!(http::plaintext_answer(bytes), Some(Some(_))) =>
            {
                // The server's first bytes are plaintext, not a TLS record.
                let status = http::plaintext_answer(bytes).flatten().unwrap_or(0);
                self.ev.push(conv, key, side, Event::PlainAnswer { status });
                flow.plain_answer = true;
                let dir = &mut flow.dirs[side.index()];
                let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                dir.phase = Phase::PlainAnswer(PLAIN_ANSWER_BYTES.saturating_sub(n));
                Consumed::Important
            }
            Phase::RecordsLost => {
                let Some(dec) = dir.tls.as_mut().and_then(|t| t.dec.as_mut()) else {
                    dir.phase = Phase::Bulk;
                    return Consumed::Bulk;
                };
                if !dec.resync(bytes) {
                    return Consumed::Bulk;
                }
                dir.records.resync();
                dir.records.capture_units();
                dir.phase = Phase::Records;
                let mut fed = feed_units(dir, bytes, keep_frames, &mut self.ev, (conv, key, side));
                fed.important |= self.after_records(key, side, base);
                self.after_feed(key, side, fed, start, bytes.len() as u64, packet, base)
            }
            Phase::Frames | Phase::Records => {
                // What a reader of a trimmed output knows follows frames in the clear.
                let follow = dir.phase == Phase::Frames && !self.reading_inner;
                let (left, boundary) = (dir.frames.body_left(), dir.frames.at_boundary());
                let mut fed = feed_units(dir, bytes, keep_frames, &mut self.ev, (conv, key, side));
                // Most segments change nothing that reader knows: body bytes between headers,
                // cut or kept (spared a second flow lookup).
                let quiet = !follow || (dir.chain == 0 && !fed.header && (!boundary || !dir.out_lost));
                if dir.tls.as_ref().is_some_and(|t| t.dec.is_some() || t.server_hello.is_some()) {
                    fed.important |= self.after_records(key, side, base);
                }
                let len = bytes.len() as u64;
                let consumed = self.after_feed(key, side, fed, start, len, packet, base);
                if quiet {
                    return consumed;
                }
                self.follow_reader(key, side, (left, boundary, len), fed, consumed, (packet, base))
            }
        }
    }

    /// After a loss of sync, frames start again at a segment from which whole segments walk
    /// as a run of frames (masked as this side masks, RFC 6455 §5.1) that ends exactly where
    /// one of them ends. Wireshark reads a trimmed capture so too: it takes the first whole
    /// segment after a cut one for a frame's start. Mostly that is one segment; a control
    /// frame whose header and body came in separate segments needs several, which wait
    /// (`Consumed::Open`) until the run ends or breaks, at most `PROBE_BYTES` of them, so that
    /// trim keeps what the frames were read from. A segment that no run can start from is bulk.
    fn resync_frames(
        &mut self,
        key: FlowKey,
        side: Side,
        start: u64,
        bytes: &[u8],
        packet: u64,
        base: u32,
    ) -> Consumed {
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let (masked, conv) = (flow.client == Some(side), flow.conv);
        // The frames a waiting chain carried the headers of will not be read to their end.
        self.end_chain(key, side, false);
        let dir = &self.flows.get(&key).expect("flow exists").dirs[side.index()];
        // The candidate segments are in `head` (unused once frames are read), each one's
        // start there and packet in `segments`; they are contiguous in the stream (a segment
        // the capture has none of breaks them).
        if bytes.is_empty() || dir.head.is_empty() || dir.head_start + dir.head.len() as u64 != start {
            self.give_up_candidates(key, side, usize::MAX);
            // Alone, a segment is read in place: most are bulk or whole runs.
            match websocket::frames_run(bytes, &mut Some(masked)) {
                Run::Partial if bytes.len() <= PROBE_BYTES => {}
                Run::Exact if !bytes.is_empty() => {}
                _ => return Consumed::Bulk,
            }
        }
        let dir = &mut self.flows.get_mut(&key).expect("flow exists").dirs[side.index()];
        if dir.head.is_empty() {
            dir.head_start = start;
        }
        dir.segments.push((dir.head.len() as u32, At { frame: packet, ts_ns: self.ev.at.ts_ns }));
        dir.head.extend_from_slice(bytes);
        // Candidate starts go from the front until one walks as frames (or none is left).
        let mut drop = 0;
        let run = loop {
            let Some(&(from, _)) = dir.segments.get(drop) else { break Run::Invalid };
            let rest = &dir.head[from as usize..];
            match websocket::frames_run(rest, &mut Some(masked)) {
                Run::Exact => break Run::Exact,
                Run::Partial if rest.len() <= PROBE_BYTES => break Run::Partial,
                _ => drop += 1,
            }
        };
        self.give_up_candidates(key, side, drop);
        let dir = &mut self.flows.get_mut(&key).expect("flow exists").dirs[side.index()];
        match run {
            Run::Partial => {
                dir.open.push(Waiting { packet, cut: base });
                return Consumed::Open;
            }
            Run::Invalid => return Consumed::Bulk,
            Run::Exact => {}
        }
        // A run ends here: the walk starts at its first segment, and each segment is judged
        // as if it had come in sync (the earlier ones waited for this).
        let head = std::mem::take(&mut dir.head);
        let segments = std::mem::take(&mut dir.segments);
        let head_start = dir.head_start;
        dir.frames.resync();
        dir.pending_close = None;
        dir.phase = Phase::Frames;
        let (keep_frames, now) = (self.opts.keep_frames, self.ev.at);
        let mut consumed = Consumed::Bulk;
        for (i, &(from, at)) in segments.iter().enumerate() {
            let to = segments.get(i + 1).map_or(head.len(), |s| s.0 as usize);
            let last = i + 1 == segments.len();
            let dir = &mut self.flows.get_mut(&key).expect("flow exists").dirs[side.index()];
            // An earlier candidate's waiting entry goes (one a bound forced has its verdict).
            let waited = if last { Some(base) } else { take_unit_waiter(dir, at.frame) };
            self.ev.at = at;
            let fed = feed_units(dir, &head[from as usize..to], keep_frames, &mut self.ev, (conv, key, side));
            let len = (to - from as usize) as u64;
            let c = self.after_feed(key, side, fed, head_start + u64::from(from), len, at.frame, waited.unwrap_or(0));
            let flow = self.flows.get_mut(&key).expect("flow exists");
            match (last, waited, c) {
                (true, ..) => consumed = c,
                (false, Some(_), Consumed::Important) => self.resolved.push((at.frame, Verdict::Keep)),
                (false, Some(cut), Consumed::Bulk) => {
                    let v = bulk_verdict(&self.opts, &mut flow.bulk_used, cut);
                    self.resolved.push((at.frame, v));
                }
                // Waits in `open` for the header it ends in.
                (false, Some(_), Consumed::Open) => {}
                // A bound decided it already.
                (false, None, _) => {
                    take_unit_waiter(&mut flow.dirs[side.index()], at.frame);
                }
            }
        }
        self.ev.at = now;
        // The buffer is kept for the next loss of sync.
        let dir = &mut self.flows.get_mut(&key).expect("flow exists").dirs[side.index()];
        dir.out_lost = !matches!(consumed, Consumed::Important);
        dir.head = head;
        dir.head.clear();
        consumed
    }

    /// Keeps the frames after a cut readable. A bulk segment cut after its TCP header takes
    /// with it the headers of the frames starting in it, and a reader of the output can no
    /// longer find where the next frames start: when a ping or close shares a segment with
    /// the end of a large message (written right after it, as Nagle's algorithm and
    /// segmentation offload send them), Wireshark shows that kept segment as "Unknown
    /// Opcode" and diagnose of the trimmed capture misses the ping or the close.
    ///
    /// So, while a reader would still be in step, a bulk segment carrying a header waits
    /// until its frame ends: if the segment where it ends is kept whole, so is it; if that
    /// segment carries the next frame's header, it waits too, and the chain is decided
    /// together; otherwise the chain is cut, and the reader is lost until a kept segment
    /// starts at a frame. A chain spans at most `CHAIN_SPAN` of the stream: a bulk stream
    /// with no control frames costs one wait.
    ///
    /// `before` is the walker's bytes left in its unit and whether it was between units
    /// before this segment, and the segment's length.
    fn follow_reader(
        &mut self,
        key: FlowKey,
        side: Side,
        before: (u64, bool, u64),
        fed: Fed,
        consumed: Consumed,
        (packet, base): (u64, u32),
    ) -> Consumed {
        let (left, boundary, len) = before;
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let dir = &mut flow.dirs[side.index()];
        // An open header is kept whole once it completes.
        let whole = !matches!(consumed, Consumed::Bulk);
        let carries = !whole && fed.header && dir.frames.body_left() > 0;
        if dir.chain > 0 {
            dir.chain = dir.chain.saturating_add(u32::try_from(len).unwrap_or(u32::MAX));
            let within = u64::from(dir.chain) <= CHAIN_SPAN && dir.open.len() < CHAIN_PACKETS;
            if left <= len {
                // The last carried frame ended here.
                if carries && within {
                    dir.open.push(Waiting { packet, cut: base | CARRIER_MARK });
                    return Consumed::Open;
                }
                self.end_chain(key, side, whole);
            } else if within {
                // Bulk inside a carried frame: cut, but written after the chain, in order.
                dir.open.push(Waiting { packet, cut: base | BEHIND_MARK });
                return Consumed::Open;
            } else {
                self.end_chain(key, side, false);
            }
        } else if carries && !dir.out_lost && len <= CHAIN_SPAN {
            dir.chain = len as u32;
            dir.open.push(Waiting { packet, cut: base | CARRIER_MARK });
            return Consumed::Open;
        }
        let dir = &mut self.flows.get_mut(&key).expect("flow exists").dirs[side.index()];
        if whole {
            // A reader finds frames again at a whole segment that starts at one (`resync_frames`).
            dir.out_lost &= !boundary;
        } else if fed.header {
            dir.out_lost = true;
        }
        consumed
    }

    /// Decides the waiting chain of segments carrying frame headers: kept whole, or cut like
    /// any bulk (and a reader of the output is lost).
    fn end_chain(&mut self, key: FlowKey, side: Side, keep: bool) {
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let dir = &mut flow.dirs[side.index()];
        if dir.chain == 0 {
            return;
        }
        dir.chain = 0;
        dir.out_lost |= !keep;
        let mut k = 0;
        while k < dir.open.len() {
            let w = dir.open[k];
            if w.cut & (CARRIER_MARK | BEHIND_MARK) == 0 {
                k += 1;
                continue;
            }
            dir.open.remove(k);
            let v = if keep && w.cut & CARRIER_MARK != 0 {
                Verdict::Keep
            } else {
                bulk_verdict(&self.opts, &mut flow.bulk_used, w.cut & !MARKS)
            };
            self.resolved.push((w.packet, v));
        }
    }

    /// Lets the first `n` candidate segments of a resynchronisation go as bulk (all of them
    /// with `usize::MAX`); the last one, the segment being read, has no waiting entry yet.
    fn give_up_candidates(&mut self, key: FlowKey, side: Side, n: usize) {
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let dir = &mut flow.dirs[side.index()];
        let n = n.min(dir.segments.len());
        if n == 0 {
            return;
        }
        for k in 0..n {
            let packet = dir.segments[k].1.frame;
            if let Some(cut) = take_unit_waiter(dir, packet) {
                let v = bulk_verdict(&self.opts, &mut flow.bulk_used, cut);
                self.resolved.push((packet, v));
            }
        }
        dir.segments.drain(..n);
        let from = dir.segments.first().map_or(dir.head.len(), |s| s.0 as usize);
        dir.head.drain(..from);
        dir.head_start += from as u64;
        for s in &mut dir.segments {
            s.0 -= from as u32;
        }
    }

    /// Records what a walker found: resolves packets that waited on a header it completed,
    /// and says whether this segment is important, bulk, or itself ends in an open header.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn after_feed(
        &mut self,
        key: FlowKey,
        side: Side,
        fed: Fed,
        start: u64,
        len: u64,
        packet: u64,
        base: u32,
    ) -> Consumed {
        let flow = self.flows.get_mut(&key).expect("flow exists");
        // A unit header split across segments is kept whole, in every packet that carries
        // part of it, even when its unit is bulk: cut after their TCP headers, those bytes
        // would be missing from the output, and a reader of it (diagnose of a trimmed capture)
        // could not tell where the unit ends, losing every later frame, the close included.
        let straddled = fed.completed_open.is_some();
        if straddled {
            flow.dirs[side.index()].keep_unit_waiters(&mut self.resolved);
        }
        let dir = &mut flow.dirs[side.index()];
        if fed.failed {
            dir.phase = Phase::Bulk;
        }
        if fed.important || straddled {
            dir.remember_important(start, start + len);
            Consumed::Important
        } else if fed.open_header {
            // If the unit turns out bulk, the packet is cut after its TCP header like any bulk.
            dir.open.push(Waiting { packet, cut: base });
            Consumed::Open
        } else {
            Consumed::Bulk
        }
    }

    /// Parses HTTP heads collected so far and moves the directions of a kept flow on.
    pub(super) fn advance_heads(&mut self, key: FlowKey) {
        let keep_frames = self.opts.keep_frames;
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let Some(client) = flow.client else { return };
        let (ci, si) = (client.index(), client.other().index());
        if !matches!(flow.class, Class::WebSocket | Class::Port | Class::Tunnel) {
            return;
        }
        if !matches!(flow.content, Content::Http | Content::Unknown) {
            return;
        }
        let conv = flow.conv;
        // Client: the request head.
        if flow.dirs[ci].phase == Phase::Collect && flow.dirs[ci].handshake_end.is_none() {
            let head = &flow.dirs[ci].head;
            if let Some(n) = flow.dirs[ci].head_len() {
                let request = http::parse_request(&head[..n]);
                let body = request.as_ref().map_or(0, |r| r.content_length);
                let dir = &mut flow.dirs[ci];
                dir.handshake_end = Some(dir.head_start.saturating_add(n as u64).saturating_add(body));
                dir.phase = Phase::AwaitPeer;
                if let Some(r) = request {
                    self.ev.push(conv, key, client, Event::Request(Box::new(r)));
                }
            } else if head.len() >= http::MAX_HEAD_BYTES {
                flow.dirs[ci].phase = Phase::Bulk;
            }
        }
        // Server: response heads until a final one (skipping 1xx other than 101).
        loop {
            let dir = &flow.dirs[si];
            if dir.phase != Phase::Collect || dir.head.is_empty() {
                break;
            }
            let Some(n) = dir.head_len() else {
                if dir.head.len() >= http::MAX_HEAD_BYTES || http::looks_like_response(&dir.head) == Some(false) {
                    flow.dirs[si].phase = Phase::Bulk;
                    flow.dirs[ci].phase = Phase::Bulk;
                }
                break;
            };
            let response = http::parse_response(&dir.head[..n]);
            let status = response.as_ref().map_or(0, |r| r.status);
            let content_length = response.as_ref().and_then(|r| r.content_length);
            let end = dir.head_start + n as u64;
            if (100..200).contains(&status) && status != 101 {
                let dir = &mut flow.dirs[si];
                dir.head.drain(..n);
                dir.head_start = end;
                continue;
            }
            if let Some(r) = response {
                self.ev.push(conv, key, client.other(), Event::Response(Box::new(r)));
            }
            flow.dirs[si].handshake_end = Some(end);
            if flow.class == Class::Tunnel && !flow.tunnel_open && (200..300).contains(&status) {
                flow.tunnel_open = true;
                // The tunnel is open: what follows each head is a new connection's first
                // bytes (TLS, or plain HTTP for ws://), read and classified afresh.
                flow.content = Content::Unknown;
                for (i, skip_to) in [(si, end), (ci, flow.dirs[ci].handshake_end.unwrap_or(0))] {
                    let dir = &mut flow.dirs[i];
                    let from = (skip_to.saturating_sub(dir.head_start) as usize).min(dir.head.len());
                    dir.head.drain(..from);
                    dir.head_start = skip_to.max(dir.head_start);
                    dir.handshake_end = None;
                    dir.phase = Phase::Collect;
                }
                let flow_has_inner = flow.dirs.iter().any(|d| !d.head.is_empty());
                if flow_has_inner {
                    self.try_classify(key);
                }
                return;
            }
            let next = if status == 101 { Phase::Frames } else { Phase::Bulk };
            // The body of a refusal (a proxy's 407 page, a 403, a 502) is kept whole up to
            // PLAIN_ANSWER_BYTES: Wireshark shows the response only when it can reassemble it.
            let body_left = if status == 101 || status == 204 || status == 304 {
                0
            } else {
                let want =
                    content_length.map_or(u64::from(PLAIN_ANSWER_BYTES), |n| n.min(u64::from(PLAIN_ANSWER_BYTES)));
                let here =
                    (flow.dirs[si].head.len() as u64).saturating_sub(end.saturating_sub(flow.dirs[si].head_start));
                want.saturating_sub(here) as u32
            };
            for (i, skip_to) in [(si, end), (ci, flow.dirs[ci].handshake_end.unwrap_or(0))] {
                let dir = &mut flow.dirs[i];
                if dir.phase == Phase::Bulk {
                    continue;
                }
                dir.phase = if i == si && body_left > 0 { Phase::PlainAnswer(body_left) } else { next };
                if dir.handshake_end.is_none() {
                    dir.handshake_end = Some(skip_to);
                }
                if next == Phase::Frames {
                    // Replay bytes that followed the head into the frame walker.
                    let from = (skip_to.saturating_sub(dir.head_start) as usize).min(dir.head.len());
                    let rest = std::mem::take(&mut dir.head);
                    let side = if i == ci { client } else { client.other() };
                    let _ = feed_units(dir, &rest[from..], keep_frames, &mut self.ev, (conv, key, side));
                } else {
                    dir.head = Vec::new();
                }
            }
            break;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Consumed {
    /// Some bytes are important: the packet is kept whole. A packet is whole or cut after its
    /// TCP header, never inside a frame or record (see `Bulk`).
    Important,
    /// Not important. A bulk packet is cut right after its TCP header, never inside a frame
    /// or record: Wireshark takes the first bytes of a cut segment for a header, invents frames
    /// (reserved opcodes, "Pong [FRAGMENT]") and loses the frames after them.
    Bulk,
    Open,
}

/// Which flow and side bytes belong to, for the events they yield.
pub(super) type Source = (u64, FlowKey, Side);

/// Removes a packet's entry from the packets waiting for a unit (not one held for
/// reordering); returns where it was to be cut. None: a bound decided it already.
fn take_unit_waiter(dir: &mut Dir, packet: u64) -> Option<u32> {
    let p = dir.open.iter().position(|w| w.packet == packet && w.cut & MARKS == 0)?;
    Some(dir.open.remove(p).cut)
}

/// Feeds bytes to the direction's frame or record walker, judging importance and reporting
/// what the units are.
pub(super) fn feed_units(dir: &mut Dir, bytes: &[u8], keep_frames: u32, ev: &mut Events, src: Source) -> Fed {
    let (conv, key, side) = src;
    let data_units = &mut dir.data_units;
    match dir.phase {
        Phase::Frames => {
            // The rest of a close status code that a segment boundary cut off: the walker
            // takes these bytes as the frame's body; they are only read here.
            if let Some((mut code, mut have, mask)) = dir.pending_close.take() {
                for &b in bytes.iter().take(2 - have) {
                    code[have] = b ^ mask[have];
                    have += 1;
                }
                if have == 2 {
                    ev.push(conv, key, side, Event::CloseCode(u16::from_be_bytes(code)));
                } else {
                    dir.pending_close = Some((code, have, mask));
                }
            }
            let pending = &mut dir.pending_close;
            let fed = dir.frames.feed(bytes, |h, body| {
                let close_code = websocket::close_code(h, body);
                if h.opcode == websocket::OP_CLOSE && close_code.is_none() && h.payload_len >= 2 {
                    let mask = h.mask.unwrap_or([0; 4]);
                    let mut first = [0u8; 2];
                    for (k, &b) in body.iter().take(2).enumerate() {
                        first[k] = b ^ mask[k];
                    }
                    *pending = Some((first, body.len().min(2), mask));
                }
                ev.push(conv, key, side, Event::Frame { opcode: h.opcode, payload_len: h.payload_len, close_code });
                frame_importance(h, data_units, keep_frames)
            });
            if fed.failed {
                dir.phase = Phase::FramesLost;
            }
            fed
        }
        Phase::Records => {
            let encrypted = &mut dir.encrypted;
            let want_hello = dir.tls.is_some();
            let keyed = dir.tls.as_ref().is_some_and(|t| t.dec.is_some());
            let mut found_hello = None;
            let tls_state = &mut dir.tls;
            let on_unit = |h: &tls::RecordHeader, body: Option<&[u8]>| {
                let Some(t) = tls_state.as_mut() else { return };
                if let Some(d) = t.dec.as_mut() {
                    d.record(h, body);
                } else if t.held.len() < MAX_HELD_RECORDS {
                    t.held.push((*h, body.map(<[u8]>::to_vec)));
                }
            };
            let fed = dir.records.feed_units(
                bytes,
                |h, body| {
                    match h.content_type {
                        tls::CHANGE_CIPHER_SPEC => {
                            *encrypted = true;
                            ev.push(conv, key, side, Event::ChangeCipherSpec);
                        }
                        // A protected alert of a keyed session is reported once decrypted.
                        tls::ALERT if keyed && *encrypted => {}
                        tls::ALERT => {
                            let clear = !*encrypted && body.len() >= 2;
                            let (level, description) = (clear.then(|| body[0]), clear.then(|| body[1]));
                            ev.push(conv, key, side, Event::Alert { level, description });
                        }
                        tls::APPLICATION_DATA => ev.push(conv, key, side, Event::ApplicationData),
                        // A keyed session's ServerHello may follow a ChangeCipherSpec: TLS 1.3 sends
                        // one after a HelloRetryRequest for compatibility.
                        tls::HANDSHAKE
                            if (ev.on || want_hello)
                                && (!*encrypted || (want_hello && !keyed))
                                && body.len() == usize::from(h.len) =>
                        {
                            let mut rec = vec![
                                tls::HANDSHAKE,
                                (h.version >> 8) as u8,
                                h.version as u8,
                                (h.len >> 8) as u8,
                                h.len as u8,
                            ];
                            rec.extend_from_slice(body);
                            if let tls::Hello::Parsed(sh) = tls::parse_server_hello(&rec) {
                                ev.push(conv, key, side, Event::ServerAlpn(sh.alpn.clone().unwrap_or_default()));
                                if want_hello {
                                    found_hello = Some(sh);
                                }
                            }
                        }
                        _ => {}
                    }
                    record_importance(h, data_units, keep_frames)
                },
                on_unit,
            );
            if let (Some(sh), Some(t)) = (found_hello, dir.tls.as_mut()) {
                t.server_hello = Some(sh);
            }
            fed
        }
        _ => Fed::default(),
    }
}

/// The capture lost bytes of this direction (a hole given up on): frames resynchronise at the
/// next segment that is a run of whole frames; anything else is read no further.
pub(super) fn lose_sync(dir: &mut Dir) {
    let dec = dir.tls.as_mut().and_then(|t| t.dec.as_mut());
    let keyed = dec.is_some();
    if let Some(d) = dec {
        d.lost = None;
    }
    dir.out_lost = true;
    dir.phase = match dir.phase {
        Phase::Collect => Phase::Collect,
        Phase::Frames | Phase::FramesLost => Phase::FramesLost,
        Phase::Records | Phase::RecordsLost if keyed => Phase::RecordsLost,
        _ => Phase::Bulk,
    };
}

/// Stream bytes that were on the wire but not captured: frame and record walks pass over
/// them when they are body bytes; a lost header loses sync.
pub(super) fn skip_uncaptured(dir: &mut Dir, n: u64) {
    match dir.phase {
        Phase::Frames => {
            if !dir.frames.skip(n) {
                dir.phase = Phase::FramesLost;
                dir.out_lost = true;
            }
        }
        Phase::Records => {
            if !dir.records.skip(n) {
                let dec = dir.tls.as_mut().and_then(|t| t.dec.as_mut());
                dir.phase = if dec.is_some() { Phase::RecordsLost } else { Phase::Bulk };
                if let Some(d) = dec {
                    d.add_lost(n);
                }
            }
        }
        Phase::RecordsLost => {
            if let Some(d) = dir.tls.as_mut().and_then(|t| t.dec.as_mut()) {
                d.add_lost(n);
            }
        }
        Phase::FramesLost | Phase::Bulk | Phase::PlainAnswer(_) => {}
        Phase::Collect | Phase::AwaitPeer => dir.phase = Phase::Bulk,
    }
}
