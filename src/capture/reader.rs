//! Streaming capture reader over any `Read` (a file, a pipe, a gzip stream).
//!
//! pcap records are framed here by hand: a 16-byte header is cheaper to read in place than to
//! turn into pcap-file's `PcapPacket` (which builds a `Duration` and a `Cow` per packet), and
//! this loop runs for every packet of multi-gigabyte files. pcapng blocks are framed by
//! pcap-file's `PcapNgParser`, which also tracks section byte order and interfaces; the
//! packet fields of an Enhanced Packet Block are then read in place.

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::Path;
use std::sync::Arc;

use flate2::read::MultiGzDecoder;
use pcap_file::pcapng::PcapNgParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::{Endianness, PcapError};

use super::read_ahead::{HEADROOM, ReadAhead};
use super::{Format, Interface, MAX_RECORD_BYTES, PCAP_MAGIC_NS, PCAP_MAGIC_US, PCAPNG_SHB, Packet, RecordMeta, block};
use crate::error::{Error, Result};
use crate::progress::{Counting, Progress};

const READ_CHUNK_BYTES: usize = 1 << 20;

/// An opened input: the decompressed byte stream and what is known about its size.
pub struct Input {
    pub stream: Box<dyn Read + Send>,
    /// Size on disk of a regular file (compressed size for gzip), for progress.
    pub size: Option<u64>,
    pub gzip: bool,
}

impl Input {
    /// Opens a path, or standard input for `-`. Gzip is detected by its magic bytes.
    pub fn open(path: &Path) -> Result<Input> {
        Self::open_with(path, None)
    }

    /// Opens a path, counting the bytes read from it (before decompression) into `progress`.
    pub fn open_with(path: &Path, progress: Option<Arc<Progress>>) -> Result<Input> {
        let (mut raw, size): (Box<dyn Read + Send>, Option<u64>) = if path.as_os_str() == "-" {
            (Box::new(io::stdin()), None)
        } else {
            let f = File::open(path)?;
            let meta = f.metadata()?;
            if meta.is_dir() {
                return Err(Error::Usage("is a directory (give --recursive to read the captures in it)".into()));
            }
            let size = meta.is_file().then_some(meta.len());
            (Box::new(f), size)
        };
        if let Some(p) = progress {
            raw = Box::new(Counting::new(raw, p));
        }
        Self::from_reader(raw, size)
    }

    pub fn from_reader(mut raw: Box<dyn Read + Send>, size: Option<u64>) -> Result<Input> {
        let mut magic = [0u8; 2];
        let n = read_full(&mut raw, &mut magic)?;
        let prefix = Cursor::new(magic[..n].to_vec());
        let joined: Box<dyn Read + Send> = Box::new(prefix.chain(raw));
        if n == 2 && magic == [0x1f, 0x8b] {
            Ok(Input { stream: Box::new(MultiGzDecoder::new(joined)), size, gzip: true })
        } else {
            Ok(Input { stream: joined, size, gzip: false })
        }
    }
}

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// What the reader hands out, in file order.
pub enum Item<'a> {
    Packet(Packet<'a>),
    /// A pcapng block that carries no packet (section header, interface description, name
    /// resolution, statistics, decryption secrets, custom): `raw` is the whole block.
    Block {
        kind: u32,
        raw: &'a [u8],
        big_endian: bool,
    },
}

/// pcap global header facts needed to write the same format back.
#[derive(Clone, Debug)]
pub struct PcapHeader {
    pub raw: [u8; 24],
    pub big_endian: bool,
    pub nanos: bool,
    pub link_type: u32,
    pub snaplen: u32,
}

/// How damaged input is handled.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOptions {
    /// A file cut short is an error (by default: everything before the cut is processed and
    /// a warning names the packet).
    pub strict: bool,
    /// After an impossible pcap record header, look for the next plausible record and go on
    /// (by default it is an error naming the packet number and byte offset).
    pub salvage: bool,
}

/// Warnings kept word for word; further ones are only counted.
const MAX_WARNINGS: usize = 10;

/// Where the bytes come from.
enum Source {
    Direct(Box<dyn Read + Send>),
    /// Blocks read on another thread, parsed in place.
    Ahead(ReadAhead),
}

pub struct Reader {
    src: Source,
    opts: ReadOptions,
    warnings: Vec<String>,
    warnings_dropped: u64,
    /// The input ended (cleanly, or after a warned truncation).
    done: bool,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    /// Standard input, a pipe or a device: an interrupt ends the capture rather than the run.
    live: bool,
    /// Reading stopped at an interrupt (of a live input).
    pub interrupted: bool,
    /// File offset (of the decompressed stream) of `buf[0]`.
    base_offset: u64,
    format: Format,
    pcap: Option<PcapHeader>,
    ng: Option<PcapNgParser>,
    ng_big_endian: bool,
    interfaces: Vec<Interface>,
    number: u64,
    bytes_read: u64,
    /// Records whose captured length exceeds the file's snaplen (accepted, as Wireshark does).
    pub over_snaplen: u64,
    /// The first such record: (packet number, captured length, snaplen).
    pub first_over_snaplen: Option<(u64, usize, u32)>,
    /// Seconds of the last pcap record, for judging candidate records when salvaging.
    last_pcap_sec: u64,
}

impl Reader {
    pub fn new(input: Input) -> Result<Reader> {
        let mut r = Reader {
            live: input.size.is_none(),
            interrupted: false,
            // A file is read ahead on another thread; a pipe or a device (a live capture) is
            // read as it comes, so that an interrupt ends it where the pass is.
            src: if input.size.is_some() {
                Source::Ahead(ReadAhead::new(input.stream))
            } else {
                Source::Direct(input.stream)
            },
            opts: ReadOptions::default(),
            warnings: Vec::new(),
            warnings_dropped: 0,
            done: false,
            buf: vec![0; READ_CHUNK_BYTES],
            pos: 0,
            end: 0,
            eof: false,
            base_offset: 0,
            format: Format::Pcap,
            pcap: None,
            ng: None,
            ng_big_endian: false,
            interfaces: Vec::new(),
            number: 0,
            bytes_read: 0,
            over_snaplen: 0,
            first_over_snaplen: None,
            last_pcap_sec: 0,
        };
        r.fill(4)?;
        let avail = r.end - r.pos;
        if avail == 0 {
            return Err(Error::Empty);
        }
        if avail < 4 {
            return Err(Error::NotACapture(r.buf[..avail].to_vec()));
        }
        let head = &r.buf[r.pos..r.pos + 4];
        let be = u32::from_be_bytes(head.try_into().expect("4 bytes"));
        let le = u32::from_le_bytes(head.try_into().expect("4 bytes"));
        if [PCAP_MAGIC_US, PCAP_MAGIC_NS].contains(&be) || [PCAP_MAGIC_US, PCAP_MAGIC_NS].contains(&le) {
            r.open_pcap()?;
        } else if be == PCAPNG_SHB {
            r.format = Format::PcapNg;
            r.open_section()?;
        } else {
            return Err(Error::NotACapture(head.to_vec()));
        }
        Ok(r)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    pub fn pcap_header(&self) -> Option<&PcapHeader> {
        self.pcap.as_ref()
    }

    pub fn interfaces(&self) -> &[Interface] {
        &self.interfaces
    }

    /// Byte order of the current pcapng section.
    pub fn section_big_endian(&self) -> bool {
        self.ng_big_endian
    }

    /// Bytes consumed from the (decompressed) stream so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    pub fn packets_read(&self) -> u64 {
        self.number
    }

    fn offset(&self) -> u64 {
        self.offset_of(self.pos)
    }

    /// Stream offset of `buf[i]`. (`base_offset` may be "negative" when blocks come with room
    /// before them: it is used wrapping, and an offset of real bytes never wraps.)
    fn offset_of(&self, i: usize) -> u64 {
        self.base_offset.wrapping_add(i as u64)
    }

    /// Makes at least `need` bytes available at `pos`, unless the stream ends first.
    fn fill(&mut self, need: usize) -> Result<()> {
        if self.end - self.pos >= need {
            return Ok(());
        }
        if let Source::Ahead(_) = self.src {
            return self.fill_from_blocks(need);
        }
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.base_offset += self.pos as u64;
            self.end -= self.pos;
            self.pos = 0;
        }
        if need > self.buf.len() {
            self.buf.resize(need.max(READ_CHUNK_BYTES), 0);
        }
        while self.end < need && !self.eof {
            if let Some(sig) = crate::interrupt::requested() {
                // A live capture ends here and is written; a file is abandoned.
                if !self.live {
                    return Err(Error::Interrupted(sig));
                }
                self.eof = true;
                self.interrupted = true;
                break;
            }
            let Source::Direct(src) = &mut self.src else { unreachable!("blocks are read by fill_from_blocks") };
            match src.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// `fill` from blocks read ahead: the bytes left of the current block (part of a record)
    /// go into the room before the next block's, which becomes the buffer; only when they do
    /// not fit (a record longer than the room) is the next block appended to them instead.
    fn fill_from_blocks(&mut self, need: usize) -> Result<()> {
        let Source::Ahead(ahead) = &mut self.src else { unreachable!("called for blocks") };
        while self.end - self.pos < need && !self.eof {
            if let Some(sig) = crate::interrupt::requested() {
                return Err(Error::Interrupted(sig));
            }
            let Some(mut block) = ahead.next_block()? else {
                self.eof = true;
                break;
            };
            let left = self.end - self.pos;
            if left <= HEADROOM {
                let start = HEADROOM - left;
                block[start..HEADROOM].copy_from_slice(&self.buf[self.pos..self.end]);
                self.base_offset = self.base_offset.wrapping_add(self.pos as u64).wrapping_sub(start as u64);
                ahead.give_back(std::mem::replace(&mut self.buf, block));
                self.pos = start;
            } else {
                self.buf.copy_within(self.pos..self.end, 0);
                self.base_offset = self.base_offset.wrapping_add(self.pos as u64);
                self.buf.truncate(left);
                self.buf.extend_from_slice(&block[HEADROOM..]);
                self.pos = 0;
                ahead.give_back(block);
            }
            self.end = self.buf.len();
        }
        Ok(())
    }

    fn open_pcap(&mut self) -> Result<()> {
        self.fill(24)?;
        if self.end - self.pos < 24 {
            return Err(Error::BadHeader("pcap header cut short".into()));
        }
        let raw: [u8; 24] = self.buf[self.pos..self.pos + 24].try_into().expect("24 bytes");
        let (_, h) = pcap_file::pcap::PcapHeader::from_slice(&raw).map_err(|e| Error::BadHeader(e.to_string()))?;
        let big_endian = h.endianness == Endianness::Big;
        let nanos = h.ts_resolution == pcap_file::TsResolution::NanoSecond;
        let link_type = u32::from(h.datalink);
        self.interfaces.push(Interface {
            link_type,
            snaplen: h.snaplen,
            units_per_sec: if nanos { 1_000_000_000 } else { 1_000_000 },
            offset_s: 0,
        });
        self.pcap = Some(PcapHeader { raw, big_endian, nanos, link_type, snaplen: h.snaplen });
        self.pos += 24;
        self.bytes_read = 24;
        Ok(())
    }

    fn open_section(&mut self) -> Result<()> {
        let len = self.peek_block_len(true)?;
        self.fill(len)?;
        if self.end - self.pos < len {
            return Err(Error::BadHeader("pcapng section header cut short".into()));
        }
        let slice = &self.buf[self.pos..self.pos + len];
        let (_, parser) = PcapNgParser::new(slice).map_err(|e| Error::BadHeader(e.to_string()))?;
        self.ng_big_endian = parser.section().endianness == Endianness::Big;
        self.ng = Some(parser);
        self.interfaces.clear();
        Ok(())
    }

    /// The byte order, type and length of the pcapng block header at `pos` (12 bytes must be
    /// available); None for a section header with a bad byte-order magic.
    fn block_header(&self) -> Option<(bool, u32, usize)> {
        let b = &self.buf[self.pos..self.pos + 12];
        let word = |x: &[u8], big: bool| {
            let x: [u8; 4] = x.try_into().expect("4 bytes");
            if big { u32::from_be_bytes(x) } else { u32::from_le_bytes(x) }
        };
        let big = if word(&b[0..4], true) == PCAPNG_SHB {
            match word(&b[8..12], true) {
                0x1a2b_3c4d => true,
                0x4d3c_2b1a => false,
                _ => return None,
            }
        } else {
            self.ng_big_endian
        };
        Some((big, word(&b[0..4], big), word(&b[4..8], big) as usize))
    }

    /// Reads the length of the pcapng block at `pos` and checks it before anything is
    /// allocated for it.
    fn peek_block_len(&mut self, first: bool) -> Result<usize> {
        self.fill(12)?;
        let avail = self.end - self.pos;
        let packet = self.number + 1;
        if avail < 12 {
            return Err(self.bad(packet, "truncated block header"));
        }
        let Some((_, _, len)) = self.block_header() else {
            return Err(Error::BadHeader("pcapng section header with a bad byte-order magic".into()));
        };
        if len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD_BYTES {
            let what = format!("impossible pcapng block length {len}");
            return Err(if first { Error::BadHeader(what) } else { self.bad(packet, &what) });
        }
        Ok(len)
    }

    fn bad(&self, packet: u64, what: &str) -> Error {
        Error::BadRecord { packet, offset: self.offset(), what: what.to_string() }
    }

    pub fn set_options(&mut self, opts: ReadOptions) {
        self.opts = opts;
    }

    /// What was skipped or cut short so far (packet numbers and byte offsets included).
    pub fn take_warnings(&mut self) -> Vec<String> {
        let mut w = std::mem::take(&mut self.warnings);
        if self.warnings_dropped > 0 {
            w.push(format!("{} more warnings like these", self.warnings_dropped));
            self.warnings_dropped = 0;
        }
        w
    }

    fn warn(&mut self, w: String) {
        if self.warnings.len() < MAX_WARNINGS {
            self.warnings.push(w);
        } else {
            self.warnings_dropped += 1;
        }
    }

    /// The next record or block, or `None` at the end of the file. Damage is handled here,
    /// before a record is handed out: a file cut short ends the input with a warning (an
    /// error with `strict`), pcapng blocks with impossible lengths or of unknown types are
    /// skipped with a warning, an impossible pcap record is an error (skipped over with
    /// `salvage`).
    pub fn next_item(&mut self) -> Result<Option<Item<'_>>> {
        if self.done {
            return Ok(None);
        }
        if self.format == Format::Pcap {
            return self.next_pcap();
        }
        let checked = self.check_block();
        match checked {
            Ok(true) => {}
            Ok(false) => {
                self.done = true;
                return Ok(None);
            }
            Err(e) if e.is_truncation() => return self.ended_early(e),
            Err(e) => return Err(e),
        }
        self.next_block()
    }

    /// A file cut short at `packet`.
    fn cut_short(&mut self, packet: u64, what: &str) -> Result<Option<Item<'_>>> {
        let e = self.bad(packet, what);
        self.ended_early(e)
    }

    /// The input ends at a cut: with a warning, or as the error `e` with `strict`.
    fn ended_early(&mut self, e: Error) -> Result<Option<Item<'_>>> {
        if self.opts.strict {
            return Err(e);
        }
        self.warn(format!("{e}; the packets before it were processed"));
        self.done = true;
        Ok(None)
    }

    /// Whether a pcap record header at `at` (relative to `pos`, bytes available) is one a
    /// capture tool would write: lengths within bounds and a timestamp near the last one.
    fn plausible_pcap_header(&self, at: usize) -> Option<usize> {
        let h = self.pcap.as_ref()?;
        // (Bytes past `end` are stale, or absent when blocks are read ahead.)
        let b = self.buf[..self.end].get(self.pos + at..self.pos + at + 16)?;
        let rd = |i: usize| {
            let x: [u8; 4] = b[i..i + 4].try_into().expect("4 bytes");
            if h.big_endian { u32::from_be_bytes(x) } else { u32::from_le_bytes(x) }
        };
        let (sec, frac, incl, orig) = (rd(0), rd(4), rd(8), rd(12));
        let max_len = h.snaplen.clamp(65_535, MAX_RECORD_BYTES as u32);
        let frac_ok = frac < if h.nanos { 1_000_000_000 } else { 1_000_000 };
        let last = self.last_pcap_sec;
        let time_ok = last == 0 || (u64::from(sec) + 86_400 >= last && u64::from(sec) <= last + 7 * 86_400);
        (incl <= max_len && incl <= orig && orig <= max_len.max(262_144) && frac_ok && time_ok).then_some(incl as usize)
    }

    /// After an impossible record header at `pos`: with `salvage`, moves to the next plausible
    /// record and says so (false when none is left); otherwise the error.
    #[cold]
    fn resync_pcap(&mut self, packet: u64, what: &str) -> Result<bool> {
        if !self.opts.salvage {
            return Err(self.bad(packet, &format!("{what} (--salvage skips to the next plausible record)")));
        }
        let at = self.offset();
        let mut skipped = 0u64;
        loop {
            self.pos += 1;
            self.bytes_read += 1;
            skipped += 1;
            self.fill(16)?;
            if self.end - self.pos < 16 {
                self.warn(format!("packet {packet} at byte offset {at}: {what}; no plausible record after it"));
                return Ok(false);
            }
            let Some(n) = self.plausible_pcap_header(0) else { continue };
            // The record after it must be plausible too, or the file must end right there.
            self.fill(16 + n + 16)?;
            let rest = self.end - self.pos;
            if rest < 16 + n {
                continue;
            }
            if rest == 16 + n || self.plausible_pcap_header(16 + n).is_some() {
                self.warn(format!(
                    "packet {packet} at byte offset {at}: {what}; skipped {skipped} bytes to the next plausible record"
                ));
                return Ok(true);
            }
        }
    }

    /// Whether a pcapng block of a known type with a consistent length starts at `pos`;
    /// returns its length.
    fn plausible_block(&mut self) -> Result<Option<usize>> {
        self.fill(12)?;
        if self.end - self.pos < 12 {
            return Ok(None);
        }
        let Some((big, kind, len)) = self.block_header() else { return Ok(None) };
        if !block::is_known(kind) || len < 12 || !len.is_multiple_of(4) || len > MAX_RECORD_BYTES {
            return Ok(None);
        }
        self.fill(len)?;
        if self.end - self.pos < len {
            return Ok(None);
        }
        Ok((self.block_trailer(big, len) == len).then_some(len))
    }

    /// The trailing length field of the `len`-byte block at `pos` (all of it available).
    fn block_trailer(&self, big: bool, len: usize) -> usize {
        let t: [u8; 4] = self.buf[self.pos + len - 4..self.pos + len].try_into().expect("4 bytes");
        (if big { u32::from_be_bytes(t) } else { u32::from_le_bytes(t) }) as usize
    }

    /// Checks the next pcapng block: skips blocks of unknown types and resynchronises past
    /// impossible lengths, with warnings.
    fn check_block(&mut self) -> Result<bool> {
        loop {
            self.fill(1)?;
            if self.end == self.pos {
                return Ok(false);
            }
            let packet = self.number + 1;
            let len = self.peek_block_len(false);
            let len = match len {
                Ok(len) => {
                    self.fill(len)?;
                    if self.end - self.pos < len {
                        return Err(self.bad(packet, "truncated block (file cut short)"));
                    }
                    Some(len)
                }
                Err(e) if e.is_truncation() => return Err(e),
                Err(_) => None,
            };
            if let Some(len) = len {
                // A section header is checked when it is opened; a good length means a header.
                let (big, kind, _) = self.block_header().expect("the length was read from it");
                let trailer = self.block_trailer(big, len);
                if kind == block::SECTION_HEADER || (trailer == len && block::is_known(kind)) {
                    return Ok(true);
                }
                if trailer == len {
                    let at = self.offset();
                    self.warn(format!(
                        "block at byte offset {at} (before packet {packet}): unknown block type {kind:#x}, skipped"
                    ));
                    self.pos += len;
                    self.bytes_read += len as u64;
                    continue;
                }
            }
            // An impossible length: look for the next block that makes sense.
            let at = self.offset();
            let mut skipped = 0u64;
            loop {
                let step = 4.min(self.end - self.pos);
                self.pos += step;
                self.bytes_read += step as u64;
                skipped += step as u64;
                self.fill(12)?;
                if self.end - self.pos < 12 {
                    self.warn(format!(
                        "block at byte offset {at} (before packet {packet}): impossible block length; no valid block after it"
                    ));
                    return Ok(false);
                }
                if self.plausible_block()?.is_some() {
                    self.warn(format!(
                        "block at byte offset {at} (before packet {packet}): impossible block length; skipped {skipped} bytes to the next block"
                    ));
                    break;
                }
            }
        }
    }

    fn next_pcap(&mut self) -> Result<Option<Item<'_>>> {
        let h = self.pcap.as_ref().expect("pcap header read in new()");
        let (big, nanos, snaplen, link_type) = (h.big_endian, h.nanos, h.snaplen, h.link_type);
        self.fill(16)?;
        let avail = self.end - self.pos;
        let packet = self.number + 1;
        if avail == 0 {
            return Ok(None);
        }
        if avail < 16 {
            return self.cut_short(packet, "truncated record header (file cut short)");
        }
        let rd = |i: usize| {
            let b: [u8; 4] = self.buf[self.pos + i..self.pos + i + 4].try_into().expect("4 bytes");
            if big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
        };
        let (sec, frac, incl, orig) = (rd(0), rd(4), rd(8) as usize, rd(12));
        if incl > MAX_RECORD_BYTES {
            return match self.resync_pcap(packet, &format!("impossible captured length {incl}"))? {
                true => self.next_pcap(),
                false => {
                    self.done = true;
                    Ok(None)
                }
            };
        }
        if snaplen != 0 && incl as u32 > snaplen {
            self.over_snaplen += 1;
            self.first_over_snaplen.get_or_insert((packet, incl, snaplen));
        }
        self.fill(16 + incl)?;
        if self.end - self.pos < 16 + incl {
            return self.cut_short(packet, "truncated record (file cut short)");
        }
        self.number = packet;
        let start = self.pos;
        self.pos += 16 + incl;
        self.bytes_read += 16 + incl as u64;
        self.last_pcap_sec = u64::from(sec);
        let ts_ns = u64::from(sec) * 1_000_000_000 + u64::from(frac) * if nanos { 1 } else { 1000 };
        let meta = RecordMeta {
            number: packet,
            interface: 0,
            link_type,
            ts_ns,
            orig_len: orig,
            data_offset: 16,
            caplen: incl as u32,
        };
        Ok(Some(Item::Packet(Packet { meta, raw: &self.buf[start..start + 16 + incl] })))
    }

    fn next_block(&mut self) -> Result<Option<Item<'_>>> {
        self.fill(1)?;
        if self.end == self.pos {
            return Ok(None);
        }
        let len = self.peek_block_len(false)?;
        self.fill(len)?;
        let packet = self.number + 1;
        if self.end - self.pos < len {
            return Err(self.bad(packet, "truncated block (file cut short)"));
        }
        let start = self.pos;
        let kind_be = u32::from_be_bytes(self.buf[start..start + 4].try_into().expect("4 bytes"));
        if kind_be == PCAPNG_SHB {
            self.open_section()?;
            self.pos += len;
            self.bytes_read += len as u64;
            let big_endian = self.ng_big_endian;
            return Ok(Some(Item::Block {
                kind: block::SECTION_HEADER,
                raw: &self.buf[start..start + len],
                big_endian,
            }));
        }
        let offset = self.offset_of(start);
        let ng = self.ng.as_mut().expect("section opened in new()");
        let (_, raw_block) = ng.next_raw_block(&self.buf[start..start + len]).map_err(|e| match e {
            PcapError::IncompleteBuffer => Error::BadRecord { packet, offset, what: "truncated block".into() },
            e => Error::BadRecord { packet, offset, what: e.to_string() },
        })?;
        let kind = raw_block.type_;
        if kind == block::INTERFACE_DESCRIPTION {
            let idb = ng.interfaces().last().expect("parser recorded the interface");
            let mut iface = Interface {
                link_type: u32::from(idb.linktype),
                snaplen: idb.snaplen,
                units_per_sec: 1_000_000,
                offset_s: 0,
            };
            for opt in &idb.options {
                match opt {
                    InterfaceDescriptionOption::IfTsResol(r) => {
                        iface.units_per_sec = if r & 0x80 != 0 {
                            1u64.checked_shl(u32::from(r & 0x7f)).unwrap_or(u64::MAX)
                        } else {
                            10u64.checked_pow(u32::from(*r)).unwrap_or(u64::MAX)
                        }
                    }
                    InterfaceDescriptionOption::IfTsOffset(o) => iface.offset_s = *o as i64,
                    _ => {}
                }
            }
            self.interfaces.push(iface);
        }
        self.pos += len;
        self.bytes_read += len as u64;
        let raw = &self.buf[start..start + len];
        let big = self.ng_big_endian;
        let rd = |i: usize| {
            let b: [u8; 4] = raw[i..i + 4].try_into().expect("4 bytes");
            if big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }
        };
        let packet_fields = match kind {
            block::ENHANCED_PACKET if len >= 32 => {
                Some((rd(8), (u64::from(rd(12)) << 32) | u64::from(rd(16)), rd(20) as usize, rd(24), 28))
            }
            block::SIMPLE_PACKET if len >= 16 => {
                let orig = rd(8);
                let snap = self.interfaces.first().map_or(u32::MAX, |i| i.snaplen);
                let cap = (orig.min(if snap == 0 { u32::MAX } else { snap }) as usize).min(len - 16);
                Some((0, 0, cap, orig, 12))
            }
            block::OBSOLETE_PACKET if len >= 32 => {
                let iface = if big {
                    u32::from(raw[8]) << 8 | u32::from(raw[9])
                } else {
                    u32::from(raw[9]) << 8 | u32::from(raw[8])
                };
                Some((iface, (u64::from(rd(12)) << 32) | u64::from(rd(16)), rd(20) as usize, rd(24), 28))
            }
            _ => None,
        };
        let Some((iface_id, ts, caplen, orig_len, data_offset)) = packet_fields else {
            return Ok(Some(Item::Block { kind, raw, big_endian: big }));
        };
        if data_offset + caplen + 4 > len {
            return Err(Error::BadRecord {
                packet,
                offset: self.offset_of(start),
                what: format!("captured length {caplen} exceeds its block"),
            });
        }
        let Some(iface) = self.interfaces.get(iface_id as usize) else {
            return Err(Error::BadRecord {
                packet,
                offset: self.offset_of(start),
                what: format!("packet names interface {iface_id}, which was never described"),
            });
        };
        let ts_ns = (u128::from(ts) * 1_000_000_000 / u128::from(iface.units_per_sec.max(1))) as i128
            + i128::from(iface.offset_s) * 1_000_000_000;
        let meta = RecordMeta {
            number: packet,
            interface: iface_id,
            link_type: iface.link_type,
            ts_ns: ts_ns.clamp(0, i128::from(u64::MAX)) as u64,
            orig_len,
            data_offset: data_offset as u32,
            caplen: caplen as u32,
        };
        self.number = packet;
        Ok(Some(Item::Packet(Packet { meta, raw })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records of every size against the read-ahead's blocks and the room before them (small
    /// ones cut by a block's end, ones longer than the room, one longer than a block) come out
    /// as they come from a plain read, bytes and numbers.
    #[test]
    fn blocks_read_ahead_give_the_records_a_plain_read_gives() {
        let mut file = PCAP_MAGIC_US.to_le_bytes().to_vec();
        file.extend([2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 1, 0, 0, 0]);
        let mut rnd = crate::test_rng::below(3);
        for i in 0..3000u32 {
            let len = match i % 500 {
                7 => 70_000,
                8 => 1_500_000,
                _ => 40 + rnd(1500) as usize,
            };
            for v in [i, 0, len as u32, len as u32] {
                file.extend(v.to_le_bytes());
            }
            file.extend((0..len).map(|k| (k as u32 ^ i) as u8));
        }
        let read = |size| {
            let input = Input::from_reader(Box::new(Cursor::new(file.clone())), size).unwrap();
            let mut r = Reader::new(input).unwrap();
            let mut out = Vec::new();
            while let Some(item) = r.next_item().unwrap() {
                let Item::Packet(p) = item else { panic!("a pcap has packets only") };
                out.push((p.meta.number, p.meta.ts_ns, p.raw.to_vec()));
            }
            out
        };
        let (ahead, plain) = (read(Some(file.len() as u64)), read(None));
        assert_eq!(ahead.len(), 3000);
        assert!(ahead == plain, "the records differ");
    }
}
