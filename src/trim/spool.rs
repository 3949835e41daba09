//! The bytes of the packets and blocks waiting in the queue, copied one after another into
//! large chunks. The queue is first in, first out, so a chunk empties as a whole and is used
//! again: queueing costs a copy and no allocation, where a buffer per packet cost a
//! reallocation whenever a recycled one was a few bytes too small (a tenth of the pass over a
//! flood of lookups, every one of which waits), and the held bytes cost no allocator overhead.

/// The bytes a chunk holds unless one record needs more.
const CHUNK_BYTES: usize = 1 << 20;
/// Emptied chunks kept for reuse; the rest are freed, so that memory falls when the queue does.
const SPARE_CHUNKS: usize = 2;

/// Where a record's bytes are in the spool.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Span {
    chunk: u32,
    start: u32,
    len: u32,
}

impl Span {
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[derive(Default)]
struct Chunk {
    /// Filled up to its capacity, never beyond it (nothing moves once written); empty and
    /// without capacity when freed.
    bytes: Vec<u8>,
    /// Records in it not yet released.
    live: u32,
}

#[derive(Default)]
pub(super) struct Spool {
    chunks: Vec<Chunk>,
    /// The chunk being filled.
    current: usize,
}

impl Spool {
    /// Copies `data` in.
    pub(super) fn put(&mut self, data: &[u8]) -> Span {
        if data.is_empty() {
            return Span::default();
        }
        let fits = self.chunks.get(self.current).is_some_and(|c| c.bytes.capacity() - c.bytes.len() >= data.len());
        if !fits {
            self.current = self.fresh(data.len());
        }
        let c = &mut self.chunks[self.current];
        let start = c.bytes.len();
        c.bytes.extend_from_slice(data);
        c.live += 1;
        Span { chunk: self.current as u32, start: start as u32, len: data.len() as u32 }
    }

    /// An empty chunk of at least `need` bytes to fill next: a spare one, else a new one.
    fn fresh(&mut self, need: usize) -> usize {
        // Left with nothing in it: a spare now, or freed.
        if self.chunks.get(self.current).is_some_and(|c| c.live == 0 && c.bytes.capacity() > 0) {
            self.retire(self.current);
        }
        let spare = (0..self.chunks.len()).find(|&i| {
            let c = &self.chunks[i];
            c.live == 0 && c.bytes.capacity() >= need && c.bytes.is_empty()
        });
        if let Some(i) = spare {
            return i;
        }
        let capacity = need.max(CHUNK_BYTES);
        let slot = (0..self.chunks.len()).find(|&i| self.chunks[i].bytes.capacity() == 0);
        let i = slot.unwrap_or_else(|| {
            self.chunks.push(Chunk::default());
            self.chunks.len() - 1
        });
        self.chunks[i].bytes = Vec::with_capacity(capacity);
        i
    }

    pub(super) fn get(&self, s: Span) -> &[u8] {
        if s.is_empty() {
            return &[];
        }
        let start = s.start as usize;
        &self.chunks[s.chunk as usize].bytes[start..start + s.len as usize]
    }

    pub(super) fn get_mut(&mut self, s: Span) -> &mut [u8] {
        if s.is_empty() {
            return &mut [];
        }
        let start = s.start as usize;
        &mut self.chunks[s.chunk as usize].bytes[start..start + s.len as usize]
    }

    /// The record at `s` was written (or dropped): its chunk is emptied once all of its
    /// records are.
    pub(super) fn release(&mut self, s: Span) {
        if s.is_empty() {
            return;
        }
        let i = s.chunk as usize;
        let c = &mut self.chunks[i];
        c.live -= 1;
        if c.live == 0 && i != self.current {
            self.retire(i);
        }
    }

    /// Chunk `i`, which holds nothing any more, is kept as a spare or freed. (Spares are the
    /// emptied chunks that kept their memory; there are a few dozen chunks, and this runs once
    /// a chunk.)
    fn retire(&mut self, i: usize) {
        let spares = self.chunks.iter().filter(|c| c.live == 0 && c.bytes.capacity() > 0 && c.bytes.is_empty()).count();
        let c = &mut self.chunks[i];
        if spares < SPARE_CHUNKS && c.bytes.capacity() == CHUNK_BYTES {
            c.bytes.clear();
        } else {
            c.bytes = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records come back as they went in, first in first out with some out of order (a block
    /// inserted before a waiting packet), and the memory held follows the records held.
    #[test]
    fn records_come_back_whole_and_memory_follows_the_queue() {
        let mut spool = Spool::default();
        let mut rnd = crate::test_rng::below(11);
        let mut held: std::collections::VecDeque<(Span, Vec<u8>)> = Default::default();
        for i in 0..200_000u32 {
            let len = match rnd(100) {
                0 => 3 * CHUNK_BYTES / 2,
                1 => 0,
                _ => 40 + rnd(1500) as usize,
            };
            let data: Vec<u8> = (0..len).map(|k| (i as usize + k) as u8).collect();
            let span = spool.put(&data);
            if rnd(50) == 0 && !held.is_empty() {
                let at = rnd(held.len() as u64) as usize;
                held.insert(at, (span, data));
            } else {
                held.push_back((span, data));
            }
            // The queue grows to a few thousand records, then drains.
            let target = if (i / 20_000) % 2 == 0 { 5_000 } else { 50 };
            while held.len() > target {
                let (span, data) = held.pop_front().unwrap();
                assert_eq!(spool.get(span), &data[..], "record {i}");
                spool.get_mut(span).fill(0);
                spool.release(span);
            }
        }
        for (span, data) in held.drain(..) {
            assert_eq!(spool.get(span), &data[..]);
            spool.release(span);
        }
        let allocated: usize = spool.chunks.iter().map(|c| c.bytes.capacity()).sum();
        assert!(allocated <= (SPARE_CHUNKS + 2) * CHUNK_BYTES, "{allocated} bytes kept with nothing held");
        assert!(spool.chunks.iter().all(|c| c.live == 0));
    }
}
