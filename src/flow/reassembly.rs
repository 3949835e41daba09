//! Per-direction TCP stream position tracking. Sequence numbers become 64-bit offsets from
//! the first byte (ISN + 1 when the SYN was seen), so wrap-around is handled once here.
//! In-order bytes go straight to the classifiers; segments that arrive ahead of a hole are
//! copied and held (bounded) until the hole fills, or until the caller gives up on it (a
//! packet lost from the capture rather than from the network never comes back).

/// Bytes held per direction waiting for a hole to fill; beyond this the hole is a gap.
pub const MAX_HELD_BYTES: usize = 256 * 1024;
/// Bytes held by all the streams of one thread (one file is read by one thread): thousands
/// of connections each with a hole would otherwise hold hundreds of megabytes.
pub const MAX_HELD_TOTAL_BYTES: usize = 64 * 1024 * 1024;

thread_local! {
    static HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}
const HELD_TOTAL: crate::flow::ThreadBytes = crate::flow::ThreadBytes(&HELD);

/// Where a segment falls relative to what was already delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum Placement {
    /// New in-order bytes start at `skip` within the segment's payload (skip > 0: the front
    /// was a retransmission).
    InOrder { skip: usize },
    /// Entirely before the delivered point: a retransmission. `offset` is its stream offset.
    Old { offset: u64 },
    /// After a hole: copied and held.
    Held,
    /// After a hole, with no room to hold it: the hole was declared a gap and skipped.
    Gap,
    /// No sequence space (a pure ACK).
    Empty,
}

pub struct HeldSegment {
    pub offset: u64,
    pub bytes: Vec<u8>,
    /// Sequence space the segment covered (may exceed the captured bytes).
    pub wire_len: u32,
    pub packet: u64,
}

#[derive(Default)]
pub struct Stream {
    base: Option<u32>,
    next: u64,
    held: Vec<HeldSegment>,
    held_bytes: usize,
    /// A hole was skipped: the bytes after it cannot be parsed as a continuation.
    pub gap: bool,
}

impl Stream {
    /// A SYN fixes the base: the first data byte is ISN + 1.
    pub fn syn(&mut self, seq: u32) {
        if self.base.is_none() {
            self.base = Some(seq.wrapping_add(1));
        }
    }

    pub fn delivered(&self) -> u64 {
        self.next
    }

    pub fn has_base(&self) -> bool {
        self.base.is_some()
    }

    /// Offset of a sequence number, unwrapped around the delivered point.
    pub fn offset_of(&mut self, seq: u32) -> i64 {
        let base = *self.base.get_or_insert(seq);
        let next32 = base.wrapping_add(self.next as u32);
        self.next as i64 + i64::from(seq.wrapping_sub(next32) as i32)
    }

    /// Places a segment of `wire_len` sequence bytes (of which `captured` bytes are in the
    /// capture) and advances the delivered point for in-order data.
    pub fn place(&mut self, seq: u32, wire_len: u32, payload: &[u8], packet: u64) -> Placement {
        if wire_len == 0 {
            if self.base.is_none() {
                self.base = Some(seq);
            }
            return Placement::Empty;
        }
        let off = self.offset_of(seq);
        let end = off + i64::from(wire_len);
        if end <= self.next as i64 {
            return Placement::Old { offset: off.max(0) as u64 };
        }
        if off <= self.next as i64 {
            let skip = (self.next as i64 - off) as usize;
            self.next = end as u64;
            if payload.len() < wire_len as usize {
                // Bytes cut by the snaplen are a hole the classifiers cannot see through.
                self.gap = true;
            }
            return Placement::InOrder { skip };
        }
        if self.held_bytes + payload.len() <= MAX_HELD_BYTES
            && self.held.len() < 1024
            && HELD_TOTAL.get() + payload.len() <= MAX_HELD_TOTAL_BYTES
        {
            self.held_bytes += payload.len();
            HELD_TOTAL.add(payload.len());
            self.held.push(HeldSegment { offset: off as u64, bytes: payload.to_vec(), wire_len, packet });
            return Placement::Held;
        }
        self.next = end as u64;
        self.gap = true;
        Placement::Gap
    }

    /// The next held segment that is now in order (or overlaps the delivered point), with the
    /// number of its leading bytes that were already delivered.
    pub fn pop_ready(&mut self) -> Option<(HeldSegment, usize)> {
        let i = self.held.iter().position(|h| h.offset <= self.next)?;
        let h = self.held.swap_remove(i);
        self.held_bytes -= h.bytes.len();
        HELD_TOTAL.sub(h.bytes.len());
        let end = h.offset + u64::from(h.wire_len);
        let skip = (self.next - h.offset) as usize;
        if end > self.next {
            self.next = end;
            if h.bytes.len() < h.wire_len as usize {
                self.gap = true;
            }
        }
        let skip = skip.min(h.bytes.len());
        Some((h, skip))
    }

    /// Gives up on the hole before the earliest held segment: it becomes a gap and the held
    /// segments are handed back in order.
    pub fn skip_hole(&mut self) -> Vec<HeldSegment> {
        self.held.sort_by_key(|h| h.offset);
        let out = std::mem::take(&mut self.held);
        HELD_TOTAL.sub(self.held_bytes);
        self.held_bytes = 0;
        if let Some(last) = out.iter().map(|h| h.offset + u64::from(h.wire_len)).max() {
            self.next = self.next.max(last);
        }
        self.gap = true;
        out
    }

    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    pub fn holds(&self, packet: u64) -> bool {
        self.held.iter().any(|h| h.packet == packet)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        HELD_TOTAL.sub(self.held_bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_segment_is_held_until_the_hole_fills() {
        let mut s = Stream::default();
        s.syn(999);
        assert_eq!(s.place(1000, 3, b"abc", 1), Placement::InOrder { skip: 0 });
        assert_eq!(s.place(1006, 3, b"ghi", 3), Placement::Held);
        assert!(s.pop_ready().is_none());
        assert_eq!(s.place(1003, 3, b"def", 2), Placement::InOrder { skip: 0 });
        let (h, skip) = s.pop_ready().unwrap();
        assert_eq!((h.bytes.as_slice(), skip, h.packet), (&b"ghi"[..], 0, 3));
        assert_eq!(s.delivered(), 9);
    }

    #[test]
    fn retransmissions_are_old_or_partly_new() {
        let mut s = Stream::default();
        s.syn(0);
        s.place(1, 10, &[0; 10], 1);
        assert_eq!(s.place(1, 10, &[0; 10], 2), Placement::Old { offset: 0 });
        assert_eq!(s.place(6, 10, &[0; 10], 3), Placement::InOrder { skip: 5 });
    }

    #[test]
    fn sequence_wraparound_is_seamless() {
        let mut s = Stream::default();
        s.syn(u32::MAX - 2);
        assert_eq!(s.place(u32::MAX - 1, 4, &[0; 4], 1), Placement::InOrder { skip: 0 });
        assert_eq!(s.place(2, 4, &[0; 4], 2), Placement::InOrder { skip: 0 });
        assert_eq!(s.delivered(), 8);
    }
}
