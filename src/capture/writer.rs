//! Writes kept records. A record that is kept whole in the same format is copied from the
//! input byte for byte (same byte order, same timestamp, same options); only truncated or
//! converted records are re-encoded.

use std::io::Write;

use super::reader::PcapHeader;
use super::{Format, Packet, block};
use crate::error::{Error, Result};

/// The output format asked for on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum OutFormat {
    Pcap,
    Pcapng,
}

/// What scrubbing removes from pcapng metadata.
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockFilter {
    /// Comments (and custom options, which may carry anything) on every block.
    pub strip_comments: bool,
    /// Interface names, descriptions, addresses, hardware, OS and filter; name resolution blocks.
    pub strip_identity: bool,
    /// A scrubbed output: keys, custom blocks and options, systemd journal entries and every
    /// block type not known to carry only capture structure go, and packets keep only their
    /// flags option (a hash of the original frame is a guessing oracle; a verdict or queue
    /// says nothing the scrub should pass), comments aside (`strip_comments` decides those).
    pub scrubbing: bool,
}

impl BlockFilter {
    fn active(&self) -> bool {
        self.strip_comments || self.strip_identity || self.scrubbing
    }

    /// Whether an option of a block of this kind goes.
    fn drops(&self, kind: u32, code: u16) -> bool {
        let comment = code == 1;
        let custom = matches!(code, 2988 | 2989 | 19372 | 19373);
        let identity = kind == block::INTERFACE_DESCRIPTION && matches!(code, 2..=8 | 11 | 12 | 15)
            || kind == block::SECTION_HEADER && matches!(code, 2..=4);
        let packet_extra = kind == block::ENHANCED_PACKET && !matches!(code, 0..=2);
        (self.strip_comments && (comment || custom))
            || (self.strip_identity && identity)
            || (self.scrubbing && (custom || packet_extra))
    }

    /// Whether a whole block of this kind goes.
    fn drops_block(&self, kind: u32) -> bool {
        match kind {
            block::NAME_RESOLUTION => self.strip_identity,
            block::DECRYPTION_SECRETS => self.strip_comments || self.scrubbing,
            block::SECTION_HEADER
            | block::INTERFACE_DESCRIPTION
            | block::OBSOLETE_PACKET
            | block::SIMPLE_PACKET
            | block::INTERFACE_STATISTICS
            | block::ENHANCED_PACKET => false,
            // Custom blocks (0x00000BAD, 0x40000BAD), systemd journal export (9), and block
            // types this tool does not know: their content is unread, so it is not written.
            _ => self.scrubbing,
        }
    }
}

/// Where the options start in a block of this kind (None: unknown layout, or no options).
fn options_offset(kind: u32) -> Option<usize> {
    match kind {
        block::SECTION_HEADER => Some(24),
        block::INTERFACE_DESCRIPTION => Some(16),
        block::INTERFACE_STATISTICS => Some(20),
        _ => None,
    }
}

pub struct Writer<W: Write> {
    out: W,
    filter: BlockFilter,
    source: Format,
    target: Format,
    /// pcap output: byte order and resolution of the record headers written.
    pcap_big: bool,
    pcap_nanos: bool,
    /// pcapng output converted from pcap: timestamps are written in this many units a second.
    ng_units_per_sec: u64,
    /// pcapng passthrough: byte order of the current section.
    ng_big: bool,
    /// pcapng→pcap: the single link type a pcap file can have, once known.
    pcap_link: Option<u32>,
    header_done: bool,
    /// Added to every section header written (`--annotate`).
    section_comment: Option<String>,
    pub bytes_written: u64,
    pub packets_written: u64,
    scratch: Vec<u8>,
}

fn put32(v: &mut Vec<u8>, x: u32, big: bool) {
    v.extend_from_slice(&if big { x.to_be_bytes() } else { x.to_le_bytes() });
}

fn pad4(n: usize) -> usize {
    (n + 3) & !3
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, source: Format, target: Option<OutFormat>) -> Self {
        let target = match target {
            None => source,
            Some(OutFormat::Pcap) => Format::Pcap,
            Some(OutFormat::Pcapng) => Format::PcapNg,
        };
        Writer {
            out,
            filter: BlockFilter::default(),
            source,
            target,
            pcap_big: false,
            pcap_nanos: false,
            ng_units_per_sec: 1_000_000,
            ng_big: false,
            pcap_link: None,
            header_done: false,
            section_comment: None,
            bytes_written: 0,
            packets_written: 0,
            scratch: Vec::with_capacity(1 << 16),
        }
    }

    pub fn target(&self) -> Format {
        self.target
    }

    pub fn set_filter(&mut self, filter: BlockFilter) {
        self.filter = filter;
    }

    /// A comment for every section header this writer writes or passes through.
    pub fn set_section_comment(&mut self, comment: String) {
        self.section_comment = Some(comment);
    }

    /// A section header with our comment added after its own options.
    fn commented_section(&self, raw: &[u8], big: bool, comment: &str) -> Vec<u8> {
        let start = 24.min(raw.len().saturating_sub(4));
        let (opts, _) = strip_end_of_options(&raw[start..raw.len().saturating_sub(4).max(start)], big);
        let mut extra = opts.to_vec();
        push_option(&mut extra, 1, comment.as_bytes(), big);
        push_option(&mut extra, 0, &[], big);
        let len = start + extra.len() + 4;
        let mut v = Vec::with_capacity(len);
        v.extend_from_slice(&raw[..4]);
        put32(&mut v, len as u32, big);
        v.extend_from_slice(&raw[8..start]);
        v.extend_from_slice(&extra);
        put32(&mut v, len as u32, big);
        v
    }

    /// A block with the filtered options removed, or None when it is dropped whole.
    fn filtered_block(&self, kind: u32, raw: &[u8], big: bool) -> Option<Vec<u8>> {
        if self.filter.drops_block(kind) {
            return None;
        }
        let Some(start) = options_offset(kind).filter(|&s| s + 4 <= raw.len()) else {
            return Some(raw.to_vec());
        };
        let opts = filter_options(&raw[start..raw.len() - 4], big, |code| self.filter.drops(kind, code));
        let len = start + opts.len() + 4;
        let mut v = Vec::with_capacity(len);
        v.extend_from_slice(&raw[..4]);
        put32(&mut v, len as u32, big);
        v.extend_from_slice(&raw[8..start]);
        v.extend_from_slice(&opts);
        put32(&mut v, len as u32, big);
        Some(v)
    }

    fn emit(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes)?;
        self.bytes_written += bytes.len() as u64;
        Ok(())
    }

    fn emit_scratch(&mut self) -> Result<()> {
        self.out.write_all(&self.scratch)?;
        self.bytes_written += self.scratch.len() as u64;
        Ok(())
    }

    /// Starts a pcap input: copies its header, or opens a pcapng section for it.
    pub fn begin_pcap(&mut self, h: &PcapHeader, comment: Option<&str>) -> Result<()> {
        self.header_done = true;
        match self.target {
            Format::Pcap => {
                self.pcap_big = h.big_endian;
                self.pcap_nanos = h.nanos;
                self.pcap_link = Some(h.link_type);
                self.emit(&h.raw)
            }
            Format::PcapNg => {
                self.ng_units_per_sec = if h.nanos { 1_000_000_000 } else { 1_000_000 };
                let own = self.section_comment.clone();
                self.write_section_header(comment.or(own.as_deref()))?;
                self.write_interface(h.link_type, h.snaplen, h.nanos)
            }
        }
    }

    /// A section header of our own (little endian), used when converting to pcapng.
    fn write_section_header(&mut self, comment: Option<&str>) -> Result<()> {
        let mut opts = Vec::new();
        if let Some(c) = comment {
            push_option(&mut opts, 1, c.as_bytes(), false);
            push_option(&mut opts, 0, &[], false);
        }
        let len = 28 + opts.len();
        let mut v = Vec::with_capacity(len);
        put32(&mut v, block::SECTION_HEADER, false);
        put32(&mut v, len as u32, false);
        put32(&mut v, 0x1a2b_3c4d, false);
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        v.extend_from_slice(&(-1i64).to_le_bytes());
        v.extend_from_slice(&opts);
        put32(&mut v, len as u32, false);
        self.ng_big = false;
        self.emit(&v)
    }

    fn write_interface(&mut self, link_type: u32, snaplen: u32, nanos: bool) -> Result<()> {
        let mut opts = Vec::new();
        if nanos {
            push_option(&mut opts, 9, &[9], false);
            push_option(&mut opts, 0, &[], false);
        }
        let len = 20 + opts.len();
        let mut v = Vec::with_capacity(len);
        put32(&mut v, block::INTERFACE_DESCRIPTION, false);
        put32(&mut v, len as u32, false);
        v.extend_from_slice(&(link_type as u16).to_le_bytes());
        v.extend_from_slice(&0u16.to_le_bytes());
        put32(&mut v, snaplen, false);
        v.extend_from_slice(&opts);
        put32(&mut v, len as u32, false);
        self.emit(&v)
    }

    /// A pcapng block that is not a packet. Passed through unchanged into pcapng output; for
    /// pcap output only the interfaces matter (they fix the link type and resolution).
    pub fn block(&mut self, kind: u32, raw: &[u8], big_endian: bool) -> Result<()> {
        match self.target {
            Format::PcapNg => {
                if kind == block::SECTION_HEADER {
                    self.ng_big = big_endian;
                }
                self.header_done = true;
                if kind == block::SECTION_HEADER
                    && let Some(c) = &self.section_comment
                {
                    let filtered;
                    let raw = match self.filter.active() {
                        true => match self.filtered_block(kind, raw, big_endian) {
                            Some(b) => {
                                filtered = b;
                                &filtered[..]
                            }
                            None => return Ok(()),
                        },
                        false => raw,
                    };
                    let v = self.commented_section(raw, big_endian, c);
                    return self.emit(&v);
                }
                if self.filter.active() {
                    return match self.filtered_block(kind, raw, big_endian) {
                        Some(b) => self.emit(&b),
                        None => Ok(()),
                    };
                }
                self.emit(raw)
            }
            Format::Pcap => {
                if kind == block::INTERFACE_DESCRIPTION && !self.header_done && raw.len() >= 20 {
                    let rd16 = |b: [u8; 2]| {
                        if big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) }
                    };
                    let rd32 = |b: [u8; 4]| {
                        if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
                    };
                    let link_type = u32::from(rd16([raw[8], raw[9]]));
                    let snaplen = rd32(raw[12..16].try_into().expect("4 bytes"));
                    // if_tsresol (code 9) of 9 means nanoseconds.
                    let nanos =
                        find_option(&raw[16..raw.len() - 4], 9, big_endian).is_some_and(|v| v.first() == Some(&9));
                    self.start_pcap(link_type, snaplen, nanos)?;
                }
                Ok(())
            }
        }
    }

    fn start_pcap(&mut self, link_type: u32, snaplen: u32, nanos: bool) -> Result<()> {
        self.pcap_big = false;
        self.pcap_nanos = nanos;
        self.pcap_link = Some(link_type);
        self.header_done = true;
        let mut v = Vec::with_capacity(24);
        put32(&mut v, if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }, false);
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        put32(&mut v, 0, false);
        put32(&mut v, 0, false);
        put32(&mut v, if snaplen == 0 { 262_144 } else { snaplen }, false);
        put32(&mut v, link_type, false);
        self.emit(&v)
    }

    /// Writes a packet, whole (`cut == None`) or with its captured bytes cut to `cut`
    /// (the original length stays in the record, as editcap -s does).
    pub fn packet(&mut self, p: &Packet<'_>, cut: Option<u32>, comment: Option<&str>) -> Result<()> {
        let m = p.meta;
        let caplen = cut.map_or(m.caplen, |c| c.min(m.caplen));
        self.packets_written += 1;
        let same = self.source == self.target;
        match self.target {
            Format::Pcap => {
                if !self.header_done {
                    return Err(Error::Usage("pcap output needs an interface before the first packet".into()));
                }
                if self.pcap_link.is_some_and(|l| l != m.link_type) {
                    return Err(Error::Usage(format!(
                        "packet {} has link type {} but the pcap output has {}; write pcapng (--format pcapng)",
                        m.number,
                        m.link_type,
                        self.pcap_link.unwrap_or(0)
                    )));
                }
                if same && caplen == m.caplen {
                    return self.emit(p.raw);
                }
                self.scratch.clear();
                let big = self.pcap_big;
                if same {
                    self.scratch.extend_from_slice(&p.raw[..8]);
                } else {
                    let sec = (m.ts_ns / 1_000_000_000) as u32;
                    let sub = m.ts_ns % 1_000_000_000;
                    put32(&mut self.scratch, sec, big);
                    put32(&mut self.scratch, if self.pcap_nanos { sub } else { sub / 1000 } as u32, big);
                }
                put32(&mut self.scratch, caplen, big);
                put32(&mut self.scratch, m.orig_len, big);
                self.scratch.extend_from_slice(&p.data()[..caplen as usize]);
                self.emit_scratch()
            }
            Format::PcapNg => {
                let kind_bytes: [u8; 4] = p.raw[..4].try_into().expect("block type");
                let kind = if self.ng_big { u32::from_be_bytes(kind_bytes) } else { u32::from_le_bytes(kind_bytes) };
                let epb_like = same && matches!(kind, block::ENHANCED_PACKET | block::OBSOLETE_PACKET);
                if same
                    && caplen == m.caplen
                    && comment.is_none()
                    && !self.filter.strip_comments
                    && !self.filter.scrubbing
                {
                    return self.emit(p.raw);
                }
                let big = self.ng_big;
                let options: &[u8] = if epb_like {
                    let start = 28 + pad4(m.caplen as usize);
                    &p.raw[start.min(p.raw.len() - 4)..p.raw.len() - 4]
                } else {
                    &[]
                };
                let mut extra = Vec::new();
                if let Some(c) = comment {
                    push_option(&mut extra, 1, c.as_bytes(), big);
                }
                // Options end with opt_endofopt; ours go before it.
                let kept_opts;
                let options = if self.filter.strip_comments || self.filter.scrubbing {
                    kept_opts = filter_options(options, big, |code| self.filter.drops(block::ENHANCED_PACKET, code));
                    &kept_opts[..]
                } else {
                    options
                };
                let (opts_body, had_end) = strip_end_of_options(options, big);
                let end = if had_end || !extra.is_empty() { 4 } else { 0 };
                let len = 32 + pad4(caplen as usize) + opts_body.len() + extra.len() + end;
                self.scratch.clear();
                put32(&mut self.scratch, block::ENHANCED_PACKET, big);
                put32(&mut self.scratch, len as u32, big);
                if epb_like {
                    self.scratch.extend_from_slice(&p.raw[8..20]);
                } else {
                    let units = if same {
                        0
                    } else {
                        (u128::from(m.ts_ns) * u128::from(self.ng_units_per_sec) / 1_000_000_000) as u64
                    };
                    put32(&mut self.scratch, m.interface, big);
                    put32(&mut self.scratch, (units >> 32) as u32, big);
                    put32(&mut self.scratch, units as u32, big);
                }
                put32(&mut self.scratch, caplen, big);
                put32(&mut self.scratch, m.orig_len, big);
                self.scratch.extend_from_slice(&p.data()[..caplen as usize]);
                self.scratch.resize(self.scratch.len() + pad4(caplen as usize) - caplen as usize, 0);
                self.scratch.extend_from_slice(opts_body);
                self.scratch.extend_from_slice(&extra);
                if end == 4 {
                    self.scratch.extend_from_slice(&[0; 4]);
                }
                put32(&mut self.scratch, len as u32, big);
                self.emit_scratch()
            }
        }
    }

    pub fn finish(mut self) -> Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }
}

/// One pcapng option: its code, its value (None when cut short) and the bytes it spans,
/// padding included (clamped to the options area).
struct OptionEntry<'a> {
    code: u16,
    value: Option<&'a [u8]>,
    start: usize,
    end: usize,
}

/// Walks the options of a block up to opt_endofopt (or the end of the area).
struct OptionWalk<'a> {
    opts: &'a [u8],
    big: bool,
    at: usize,
    /// Where opt_endofopt was met, once the walk has reached it.
    end_of_options: Option<usize>,
}

fn options(opts: &[u8], big: bool) -> OptionWalk<'_> {
    OptionWalk { opts, big, at: 0, end_of_options: None }
}

impl<'a> Iterator for OptionWalk<'a> {
    type Item = OptionEntry<'a>;

    fn next(&mut self) -> Option<OptionEntry<'a>> {
        let (opts, i) = (self.opts, self.at);
        if self.end_of_options.is_some() || i + 4 > opts.len() {
            return None;
        }
        let rd = |j: usize| {
            let b: [u8; 2] = opts[j..j + 2].try_into().expect("2 bytes");
            if self.big { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) }
        };
        let (code, len) = (rd(i), rd(i + 2) as usize);
        if code == 0 {
            self.end_of_options = Some(i);
            return None;
        }
        self.at = i + 4 + pad4(len);
        Some(OptionEntry { code, value: opts.get(i + 4..i + 4 + len), start: i, end: self.at.min(opts.len()) })
    }
}

/// The options without those `drop` names, ending with opt_endofopt when any remain.
fn filter_options(opts: &[u8], big: bool, drop: impl Fn(u16) -> bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(opts.len());
    for e in options(opts, big).filter(|e| !drop(e.code)) {
        out.extend_from_slice(&opts[e.start..e.end]);
    }
    if !out.is_empty() {
        out.extend_from_slice(&[0; 4]);
    }
    out
}

/// The value of the first option with this code.
fn find_option(opts: &[u8], want: u16, big: bool) -> Option<&[u8]> {
    options(opts, big).find(|e| e.code == want).and_then(|e| e.value)
}

/// Returns the options without a trailing opt_endofopt, and whether there was one.
fn strip_end_of_options(opts: &[u8], big: bool) -> (&[u8], bool) {
    let mut walk = options(opts, big);
    walk.by_ref().for_each(drop);
    match walk.end_of_options {
        Some(i) => (&opts[..i], true),
        None => (&opts[..walk.at.min(opts.len())], false),
    }
}

fn push_option(v: &mut Vec<u8>, code: u16, value: &[u8], big: bool) {
    // The length field is 16 bits: a longer value (a long command line in a comment) is cut
    // to fit rather than written with a length that wraps and corrupts the block.
    let value = &value[..value.len().min(usize::from(u16::MAX))];
    let (c, l) = if big {
        (code.to_be_bytes(), (value.len() as u16).to_be_bytes())
    } else {
        (code.to_le_bytes(), (value.len() as u16).to_le_bytes())
    };
    v.extend_from_slice(&c);
    v.extend_from_slice(&l);
    v.extend_from_slice(value);
    v.resize(v.len() + pad4(value.len()) - value.len(), 0);
}
