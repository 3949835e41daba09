//! Keeps a trimmed capture readable where bytes are missing. A reader of the output
//! (Wireshark, diagnose of the trimmed file) finds WebSocket frames only where it can tell
//! where they start: after bytes the capture lost, at a run of whole segments that is exactly
//! a run of frames (`resync_frames`, which the engine itself follows on lost bytes); after
//! bulk trim cut, only if the cut took no header it needs (`follow_reader`, which keeps whole
//! the segments carrying the headers of frames that end where something is kept).

use super::phase::{Consumed, feed_units};
use super::*;
use crate::proto::units::Run;

/// How many bytes of segments after a loss of sync may wait to be read as a run of frames:
/// a control frame (at most 131 bytes) and some to spare.
const PROBE_BYTES: usize = 256;

/// How far into the stream bulk segments carrying frame headers may wait to be kept whole,
/// from the first one's start (`Engine::follow_reader`): while one waits, every later packet
/// of the capture waits behind it.
const CHAIN_SPAN: u64 = 256 * 1024;
/// And at most this many packets (a trickle of tiny segments would hold thousands).
const CHAIN_PACKETS: usize = 256;

impl Engine {
    /// After a loss of sync, frames start again at a segment from which whole segments walk
    /// as a run of frames (masked as this side masks, RFC 6455 §5.1) that ends exactly where
    /// one of them ends. Wireshark reads a trimmed capture so too: it takes the first whole
    /// segment after a cut one for a frame's start. Mostly that is one segment; a control
    /// frame whose header and body came in separate segments needs several, which wait
    /// (`Consumed::Open`) until the run ends or breaks, at most `PROBE_BYTES` of them, so that
    /// trim keeps what the frames were read from. A segment that no run can start from is bulk.
    pub(super) fn resync_frames(
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
    pub(super) fn follow_reader(
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
        // (A new list: a long chain's room is not kept for every flow that once had one.)
        let (chain, other): (Vec<_>, Vec<_>) =
            dir.open.drain(..).partition(|w| w.cut & (CARRIER_MARK | BEHIND_MARK) != 0);
        dir.open = other;
        for w in chain {
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
}

/// Removes a packet's entry from the packets waiting for a unit (not one held for
/// reordering); returns where it was to be cut. None: a bound decided it already.
fn take_unit_waiter(dir: &mut Dir, packet: u64) -> Option<u32> {
    let p = dir.open.iter().position(|w| w.packet == packet && w.cut & MARKS == 0)?;
    Some(dir.open.remove(p).cut)
}
