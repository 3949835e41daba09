//! A walker over a stream of length-prefixed units — WebSocket frames, TLS records — fed in
//! sequence order, one TCP segment at a time. It keeps only the bytes of a header that a
//! segment boundary cut in two, never the bodies, so a gigabyte of frames costs a few bytes.
//! For each segment it tells whether any byte belonged to a unit the caller finds important,
//! and whether the segment ended inside a header (then the verdict waits for the next one).

/// The result of looking at the start of a unit.
pub enum Header<H> {
    /// Not enough bytes yet; at most this many are needed in all.
    NeedMore,
    /// A complete header: `len` header bytes followed by `body` bytes.
    Complete { header: H, len: usize, body: u64 },
    /// Not this protocol (or the stream lost sync): stop walking.
    Invalid,
}

pub trait UnitFormat {
    type Header: Copy;
    /// Longest possible header.
    const MAX_HEADER_BYTES: usize;
    fn parse(b: &[u8]) -> Header<Self::Header>;
}

/// What one segment's bytes held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// Some byte belonged to an important unit.
    pub important: bool,
    /// The segment ended inside a unit header: whether it matters is known only later.
    pub open_header: bool,
    /// A header that an earlier segment left open was completed: was its unit important?
    pub completed_open: Option<bool>,
    /// The stream stopped parsing (invalid header).
    pub failed: bool,
}

pub struct Walker<F: UnitFormat> {
    partial: [u8; 16],
    partial_len: usize,
    body_left: u64,
    /// Body bytes of the current unit that are still important.
    important_left: u64,
    failed: bool,
    _format: std::marker::PhantomData<F>,
}

impl<F: UnitFormat> Default for Walker<F> {
    fn default() -> Self {
        Walker {
            partial: [0; 16],
            partial_len: 0,
            body_left: 0,
            important_left: 0,
            failed: false,
            _format: std::marker::PhantomData,
        }
    }
}

impl<F: UnitFormat> Walker<F> {
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Passes over `n` bytes that were not captured (cut by the snaplen or by a trim). They
    /// must lie inside the current unit's body; otherwise a header was lost and the walk stops.
    pub fn skip(&mut self, n: u64) -> bool {
        if self.failed {
            return false;
        }
        if self.partial_len == 0 && n <= self.body_left {
            self.body_left -= n;
            self.important_left = self.important_left.saturating_sub(n);
            return true;
        }
        self.failed = true;
        false
    }

    /// Starts over at a unit boundary (after the caller found one).
    pub fn resync(&mut self) {
        *self = Walker::default();
    }

    /// True between units (no header or body in progress).
    pub fn at_boundary(&self) -> bool {
        self.body_left == 0 && self.partial_len == 0
    }

    /// Feeds in-order bytes. `on_header` sees each completed header (with the first body
    /// bytes present in this segment) and says whether its unit is important: `None` not at
    /// all, `Some(n)` its header and the first `n` body bytes.
    pub fn feed(&mut self, b: &[u8], mut on_header: impl FnMut(&F::Header, &[u8]) -> Option<u64>) -> Fed {
        let mut b = b;
        let mut out = Fed::default();
        if self.failed {
            out.failed = true;
            return out;
        }
        let resumed_open = self.partial_len > 0;
        while !b.is_empty() {
            if self.body_left > 0 {
                let take = (self.body_left.min(b.len() as u64)) as usize;
                self.body_left -= take as u64;
                if self.important_left > 0 {
                    out.important = true;
                }
                self.important_left = self.important_left.saturating_sub(take as u64);
                b = &b[take..];
                continue;
            }
            // At a header: parse from the carried-over bytes plus this segment.
            let had = self.partial_len;
            let want = (F::MAX_HEADER_BYTES - had).min(b.len());
            let mut tmp = [0u8; 16];
            tmp[..had].copy_from_slice(&self.partial[..had]);
            tmp[had..had + want].copy_from_slice(&b[..want]);
            match F::parse(&tmp[..had + want]) {
                Header::NeedMore => {
                    self.partial[had..had + want].copy_from_slice(&b[..want]);
                    self.partial_len = had + want;
                    out.open_header = true;
                    return out;
                }
                Header::Invalid => {
                    self.failed = true;
                    self.partial_len = 0;
                    out.failed = true;
                    return out;
                }
                Header::Complete { header, len, body } => {
                    let used = len - had;
                    let body_here = &b[used..(used as u64 + body.min((b.len() - used) as u64)) as usize];
                    let verdict = on_header(&header, body_here);
                    let important = verdict.is_some();
                    if had > 0 && resumed_open && out.completed_open.is_none() {
                        out.completed_open = Some(important);
                    }
                    self.important_left = verdict.unwrap_or(0);
                    if important {
                        out.important = true;
                    }
                    self.partial_len = 0;
                    self.body_left = body;
                    b = &b[used..];
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy format: one length byte, then that many body bytes; bodies starting with b'!'
    /// are important.
    struct Toy;
    impl UnitFormat for Toy {
        type Header = u8;
        const MAX_HEADER_BYTES: usize = 2;
        fn parse(b: &[u8]) -> Header<u8> {
            match b {
                [] | [_] => Header::NeedMore,
                [0xff, ..] => Header::Invalid,
                [tag, len, ..] => Header::Complete { header: *tag, len: 2, body: u64::from(*len) },
            }
        }
    }

    #[test]
    fn header_split_across_segments_resolves_on_the_next() {
        let mut w = Walker::<Toy>::default();
        let f = w.feed(&[0, 3, 1, 2, 3, 9], |t, _| (*t == 9).then_some(u64::MAX));
        assert!(!f.important && f.open_header);
        let f = w.feed(&[1, 7], |t, _| (*t == 9).then_some(u64::MAX));
        assert_eq!(f.completed_open, Some(true));
        assert!(f.important);
    }

    #[test]
    fn bodies_spanning_segments_carry_importance() {
        let mut w = Walker::<Toy>::default();
        assert!(w.feed(&[9, 10, 0, 0], |t, _| (*t == 9).then_some(u64::MAX)).important);
        assert!(w.feed(&[0; 8], |t, _| (*t == 9).then_some(u64::MAX)).important);
        assert!(!w.feed(&[1, 1, 0], |t, _| (*t == 9).then_some(u64::MAX)).important);
        assert!(w.at_boundary());
    }

    #[test]
    fn uncaptured_body_bytes_are_skipped_but_lost_headers_stop_the_walk() {
        let mut w = Walker::<Toy>::default();
        w.feed(&[1, 10, 0, 0], |_, _| None);
        assert!(w.skip(8));
        assert!(w.at_boundary());
        assert!(!w.skip(1), "a skipped header loses sync");
        assert!(w.failed());
        w.resync();
        assert!(!w.failed());
    }

    #[test]
    fn invalid_header_stops_the_walk() {
        let mut w = Walker::<Toy>::default();
        assert!(w.feed(&[0xff, 0], |_, _| Some(u64::MAX)).failed);
        assert!(w.feed(&[1, 0], |_, _| Some(u64::MAX)).failed);
    }
}
