//! Reading and writing captures: pcap (either byte order, µs or ns), pcapng (several
//! sections and interfaces), gzip-compressed either way. The reader hands out zero-copy views
//! of each record together with its raw bytes, so that a kept packet can be written back
//! byte-identical; the writer re-encodes only what it has to (a truncated or converted record).

mod background;
mod output;
mod read_ahead;
mod reader;
pub mod secrets;
mod writer;

pub use output::{AtomicOutput, OutputTarget};
pub use reader::{Input, Item, ReadOptions, Reader};
pub use writer::{BlockFilter, OutFormat, Writer};

/// Largest record or block accepted. tcpdump's own maximum snaplen is 256 KiB; 16 MiB leaves
/// room for jumbo and reassembled records while turning a corrupt length field into an error
/// instead of a huge allocation.
pub const MAX_RECORD_BYTES: usize = 16 << 20;

/// pcap magic numbers as read big-endian from the first four bytes.
pub(crate) const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
pub(crate) const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
pub(crate) const PCAPNG_SHB: u32 = 0x0a0d_0d0a;

/// pcapng block types this crate looks inside.
pub mod block {
    pub const SECTION_HEADER: u32 = 0x0a0d_0d0a;
    pub const INTERFACE_DESCRIPTION: u32 = 1;
    pub const OBSOLETE_PACKET: u32 = 2;
    pub const SIMPLE_PACKET: u32 = 3;
    pub const NAME_RESOLUTION: u32 = 4;
    pub const INTERFACE_STATISTICS: u32 = 5;
    pub const ENHANCED_PACKET: u32 = 6;
    pub const DECRYPTION_SECRETS: u32 = 0x0a;
    pub const SYSTEMD_JOURNAL: u32 = 9;
    pub const CUSTOM: u32 = 0x0000_0bad;
    pub const CUSTOM_NO_COPY: u32 = 0x4000_0bad;

    /// Block types of the pcapng specification; others are skipped with a warning (a reader
    /// cannot know what they hold, and a resynchronisation must not land on garbage).
    pub fn is_known(kind: u32) -> bool {
        matches!(
            kind,
            SECTION_HEADER
                | INTERFACE_DESCRIPTION
                | OBSOLETE_PACKET
                | SIMPLE_PACKET
                | NAME_RESOLUTION
                | INTERFACE_STATISTICS
                | ENHANCED_PACKET
                | SYSTEMD_JOURNAL
                | DECRYPTION_SECRETS
                | CUSTOM
                | CUSTOM_NO_COPY
        )
    }
}

/// The container format of a capture file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Pcap,
    PcapNg,
}

/// One capture interface: pcap has exactly one, pcapng one per Interface Description Block.
#[derive(Clone, Debug)]
pub struct Interface {
    pub link_type: u32,
    pub snaplen: u32,
    /// Timestamp units per second (if_tsresol; 10^6 unless stated).
    pub units_per_sec: u64,
    /// if_tsoffset, seconds added to every timestamp.
    pub offset_s: i64,
}

/// Where a packet sits in its record, and what the record header says about it.
#[derive(Clone, Copy, Debug)]
pub struct RecordMeta {
    /// 1-based frame number, as Wireshark numbers frames.
    pub number: u64,
    pub interface: u32,
    pub link_type: u32,
    /// Nanoseconds since the epoch, for time windows and conversions.
    pub ts_ns: u64,
    pub orig_len: u32,
    /// Offset of the packet data inside the raw record.
    pub data_offset: u32,
    pub caplen: u32,
}

/// A packet record: its meaning plus the bytes it had in the file.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub meta: RecordMeta,
    pub raw: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn data(&self) -> &'a [u8] {
        let start = self.meta.data_offset as usize;
        &self.raw[start..start + self.meta.caplen as usize]
    }
}
