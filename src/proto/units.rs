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

/// How bytes read from a supposed unit boundary walk as units.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// A header no peer sends there (or one `accept` refuses).
    Invalid,
    /// Whole units ending exactly at the last byte.
    Exact,
    /// Whole units, then one (or its header) that goes on past the last byte.
    Partial,
}

/// Walks `b` as units from its first byte, each header also passing `accept`: where a
/// stream that lost bytes shows a boundary again (a segment that is exactly a run of units).
pub fn run<F: UnitFormat>(mut b: &[u8], mut accept: impl FnMut(&F::Header) -> bool) -> Run {
    while !b.is_empty() {
        match F::parse(&b[..b.len().min(F::MAX_HEADER_BYTES)]) {
            Header::Complete { header, len, body } => {
                if !accept(&header) {
                    return Run::Invalid;
                }
                let total = len as u64 + body;
                if total > b.len() as u64 {
                    return Run::Partial;
                }
                b = &b[total as usize..];
            }
            Header::NeedMore => return Run::Partial,
            Header::Invalid => return Run::Invalid,
        }
    }
    Run::Exact
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
    /// A header was completed here: a unit starts in this segment.
    pub header: bool,
}

pub struct Walker<F: UnitFormat> {
    partial: [u8; 16],
    partial_len: usize,
    body_left: u64,
    /// Body bytes of the current unit that are still important.
    important_left: u64,
    failed: bool,
    /// Whole units are gathered for the caller (TLS records to decrypt): the current unit's
    /// header and the body so far. None when the walker only steps over bodies.
    capture: Option<Box<Capture<F::Header>>>,
    _format: std::marker::PhantomData<F>,
}

struct Capture<H> {
    header: Option<H>,
    body: Vec<u8>,
    /// Some body bytes were not captured (snaplen): the unit cannot be read.
    lost: bool,
}

/// Units longer than this are not gathered (a TLS record is at most 2^14 + 2048 bytes).
pub const MAX_CAPTURED_UNIT: u64 = 18_432;

impl<F: UnitFormat> Default for Walker<F> {
    fn default() -> Self {
        Walker {
            partial: [0; 16],
            partial_len: 0,
            body_left: 0,
            important_left: 0,
            failed: false,
            capture: None,
            _format: std::marker::PhantomData,
        }
    }
}

impl<F: UnitFormat> Walker<F> {
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// From the next unit on, hands each whole unit to `feed_units`' `on_unit`.
    pub fn capture_units(&mut self) {
        self.capture.get_or_insert_with(|| Box::new(Capture { header: None, body: Vec::new(), lost: false }));
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
            if let Some(c) = &mut self.capture {
                c.lost = true;
            }
            return true;
        }
        self.failed = true;
        false
    }

    /// Starts over at a unit boundary (after the caller found one).
    pub fn resync(&mut self) {
        *self = Walker::default();
    }

    /// `feed` without gathering units.
    pub fn feed(&mut self, b: &[u8], on_header: impl FnMut(&F::Header, &[u8]) -> Option<u64>) -> Fed {
        self.feed_units(b, on_header, |_, _| {})
    }

    /// Body bytes left in the current unit.
    pub fn body_left(&self) -> u64 {
        self.body_left
    }

    /// True between units (no header or body in progress).
    pub fn at_boundary(&self) -> bool {
        self.body_left == 0 && self.partial_len == 0
    }

    /// Feeds in-order bytes. `on_header` sees each completed header (with the first body
    /// bytes present in this segment) and says whether its unit is important: `None` not at
    /// all, `Some(n)` its header and the first `n` body bytes. When capturing, `on_unit` gets
    /// each unit once its body is complete (None for the body when bytes of it were lost).
    pub fn feed_units(
        &mut self,
        b: &[u8],
        mut on_header: impl FnMut(&F::Header, &[u8]) -> Option<u64>,
        mut on_unit: impl FnMut(&F::Header, Option<&[u8]>),
    ) -> Fed {
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
                if let Some(c) = &mut self.capture
                    && c.header.is_some()
                {
                    c.body.extend_from_slice(&b[..take]);
                    if self.body_left == 0 {
                        Self::unit_done(c, &mut on_unit);
                    }
                }
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
                    out.header = true;
                    if important {
                        out.important = true;
                    }
                    self.partial_len = 0;
                    self.body_left = body;
                    if let Some(c) = &mut self.capture {
                        c.body.clear();
                        c.lost = false;
                        c.header = (body <= MAX_CAPTURED_UNIT).then_some(header);
                        if body == 0 && c.header.is_some() {
                            Self::unit_done(c, &mut on_unit);
                        }
                    }
                    b = &b[used..];
                }
            }
        }
        out
    }

    fn unit_done(c: &mut Capture<F::Header>, on_unit: &mut impl FnMut(&F::Header, Option<&[u8]>)) {
        if let Some(h) = c.header.take() {
            on_unit(&h, (!c.lost).then_some(&c.body[..]));
        }
        c.body.clear();
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
    fn captured_units_come_whole_across_segments() {
        let mut w = Walker::<Toy>::default();
        w.capture_units();
        let mut got = Vec::new();
        w.feed_units(&[1, 3, 7], |_, _| None, |h, b| got.push((*h, b.map(<[u8]>::to_vec))));
        assert!(got.is_empty());
        w.feed_units(&[8, 9, 2, 0, 3], |_, _| None, |h, b| got.push((*h, b.map(<[u8]>::to_vec))));
        assert_eq!(got, [(1, Some(vec![7, 8, 9])), (2, Some(vec![]))]);
        w.feed_units(&[5, 2, 1], |_, _| None, |h, b| got.push((*h, b.map(<[u8]>::to_vec))));
        assert!(w.skip(1));
        w.feed_units(&[], |_, _| None, |h, b| got.push((*h, b.map(<[u8]>::to_vec))));
        w.feed_units(&[6, 0], |_, _| None, |h, b| got.push((*h, b.map(<[u8]>::to_vec))));
        // Unit 3 (5 body bytes) lost one byte to a skip: it comes without its body.
        assert_eq!(got[2], (3, None));
    }

    #[test]
    fn invalid_header_stops_the_walk() {
        let mut w = Walker::<Toy>::default();
        assert!(w.feed(&[0xff, 0], |_, _| Some(u64::MAX)).failed);
        assert!(w.feed(&[1, 0], |_, _| Some(u64::MAX)).failed);
    }
}
