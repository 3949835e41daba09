//! WebSocket frame headers (RFC 6455 §5.2).

use super::units::{Header, Run, UnitFormat, run};

pub const OP_CONTINUATION: u8 = 0;
pub const OP_TEXT: u8 = 1;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;
pub const OP_PING: u8 = 9;
pub const OP_PONG: u8 = 10;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1..3 as the top bits of the first byte (RSV1 = permessage-deflate).
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

impl FrameHeader {
    pub fn is_control(&self) -> bool {
        self.opcode >= OP_CLOSE
    }
}

pub struct Frames;

impl UnitFormat for Frames {
    type Header = FrameHeader;
    const MAX_HEADER_BYTES: usize = 14;

    /// A header is found invalid at its first byte that makes it so, not at its end: the
    /// scrubber keeps each header byte as it reads it.
    fn parse(b: &[u8]) -> Header<FrameHeader> {
        let Some(&first) = b.first() else { return Header::NeedMore };
        let opcode = first & 0x0f;
        if !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10) {
            return Header::Invalid;
        }
        // RSV2 and RSV3 belong to extensions no one deployed (permessage-deflate uses RSV1):
        // a byte with them set is not a frame's first, and reading on would keep bytes of
        // whatever the stream really is as frame headers (plain text after a `101` to
        // another protocol kept two bytes of every few dozen that way).
        if first & 0x30 != 0 {
            return Header::Invalid;
        }
        if b.len() < 2 {
            return Header::NeedMore;
        }
        if b[1] & 0x7f == 127 && b.get(2).is_some_and(|&c| c & 0x80 != 0) {
            // A 64-bit length with its top bit set (RFC 6455 §5.2).
            return Header::Invalid;
        }
        let masked = b[1] & 0x80 != 0;
        let (len, mut at) = match b[1] & 0x7f {
            126 => {
                if b.len() < 4 {
                    return Header::NeedMore;
                }
                (u64::from(u16::from_be_bytes([b[2], b[3]])), 4)
            }
            127 => {
                if b.len() < 10 {
                    return Header::NeedMore;
                }
                (u64::from_be_bytes(b[2..10].try_into().expect("8 bytes")), 10)
            }
            l => (u64::from(l), 2),
        };
        // A control frame over 125 bytes or fragmented breaks RFC 6455 §5.5, but its length
        // field still frames the stream; real peers send such frames and the diagnosis
        // needs them, so they are walked, not treated as loss of sync.
        let fin = b[0] & 0x80 != 0;
        let mask = if masked {
            if b.len() < at + 4 {
                return Header::NeedMore;
            }
            let m: [u8; 4] = b[at..at + 4].try_into().expect("4 bytes");
            at += 4;
            Some(m)
        } else {
            None
        };
        Header::Complete {
            header: FrameHeader { fin, rsv: b[0] & 0x70, opcode, mask, payload_len: len },
            len: at,
            body: len,
        }
    }
}

/// The close status code of a close frame body (unmasking it when needed).
pub fn close_code(h: &FrameHeader, body: &[u8]) -> Option<u16> {
    if h.opcode != OP_CLOSE || body.len() < 2 {
        return None;
    }
    let m = h.mask.unwrap_or([0; 4]);
    Some(u16::from_be_bytes([body[0] ^ m[0], body[1] ^ m[1]]))
}

/// Walks `b` as frames from its first byte (`units::run`), all with the mask bit `masked`
/// holds (or the first frame's, stored there when it holds none) and no RSV2 or RSV3.
pub fn frames_run(b: &[u8], masked: &mut Option<bool>) -> Run {
    run::<Frames>(b, |h| {
        let m = h.mask.is_some();
        h.rsv & 0x30 == 0 && *masked.get_or_insert(m) == m
    })
}

/// Whether a whole segment parses as a run of frames ending exactly at its end, all with the
/// same mask bit: the signature of a WebSocket met mid-connection. Returns the mask bit.
pub fn segment_is_frames(b: &[u8]) -> Option<bool> {
    let mut masked = None;
    match frames_run(b, &mut masked) {
        Run::Exact => masked,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_close_frame_gives_its_code() {
        let mask = [1, 2, 3, 4];
        let frame = [0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2];
        let Header::Complete { header, len, body } = Frames::parse(&frame) else { panic!() };
        assert_eq!((header.opcode, len, body, header.mask), (OP_CLOSE, 6, 2, Some(mask)));
        assert_eq!(close_code(&header, &frame[6..]), Some(1000));
    }

    #[test]
    fn extended_lengths_need_their_bytes() {
        assert!(matches!(Frames::parse(&[0x82, 126, 0]), Header::NeedMore));
        let Header::Complete { body, len, .. } = Frames::parse(&[0x82, 126, 0x40, 0]) else { panic!() };
        assert_eq!((body, len), (16384, 4));
        assert!(matches!(Frames::parse(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]), Header::Invalid));
    }

    #[test]
    fn reserved_opcodes_are_invalid_but_oversized_control_frames_are_walked() {
        assert!(matches!(Frames::parse(&[0x83, 0]), Header::Invalid));
        // RSV2 / RSV3 set ('p', 'l' of plain text); RSV1 alone is permessage-deflate's.
        assert!(matches!(Frames::parse(b"p"), Header::Invalid));
        assert!(matches!(Frames::parse(&[0x82, 127, 0x80]), Header::Invalid));
        assert!(matches!(Frames::parse(&[0x91, 0]), Header::Invalid));
        assert!(matches!(Frames::parse(&[0xc1, 0]), Header::Complete { .. }));
        assert!(matches!(Frames::parse(&[0x8b, 0]), Header::Invalid));
        let Header::Complete { header, body, .. } = Frames::parse(&[0x88, 127, 0, 0, 0, 0, 0, 0, 1, 2]) else {
            panic!()
        };
        assert_eq!((header.opcode, body), (OP_CLOSE, 258));
    }

    #[test]
    fn mid_connection_frames_are_recognised() {
        let masked_text = [0x81, 0x83, 0, 0, 0, 0, b'a', b'b', b'c'];
        assert_eq!(segment_is_frames(&masked_text), Some(true));
        assert_eq!(segment_is_frames(&[0x81, 0x03, b'a', b'b', b'c', 0x8a, 0x00]), Some(false));
        assert_eq!(segment_is_frames(b"GET / HTTP/1.1\r\n"), None);
        assert_eq!(segment_is_frames(&[0x81, 0x05, b'a']), None);
    }
}
