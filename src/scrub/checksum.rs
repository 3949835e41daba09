//! Internet checksum fix-ups (RFC 1071 sums, RFC 1624 incremental update).
//!
//! Scrubbing rewrites bytes without changing lengths, so the TCP/UDP checksum can be updated
//! from the old and new sums of the rewritten bytes alone, without the pseudo-header or the
//! bytes cut by the snaplen. The same arithmetic keeps a correct checksum correct and an
//! offloaded (wrong) one wrong by the same amount, so tshark flags exactly what it flagged in
//! the input.

/// One's-complement sum of big-endian 16-bit words, folded to 16 bits. An odd final byte is
/// padded with zero, as RFC 1071 does.
pub fn sum(data: &[u8]) -> u16 {
    let mut s: u64 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        s += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        s += u64::from(*last) << 8;
    }
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), where m and m' are the sums of the old and new
/// bytes (at the same even offset within the checksummed data).
pub fn update(hc: u16, old_sum: u16, new_sum: u16) -> u16 {
    let mut s = u32::from(!hc) + u32::from(!old_sum) + u32::from(new_sum);
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(data: &[u8]) -> u16 {
        !sum(data)
    }

    #[test]
    fn incremental_update_equals_recomputation() {
        let mut seg = b"\x12\x34\x00\x00GET /?token=secret HTTP/1.1\r\n".to_vec();
        let hc = full(&seg);
        let (a, b) = (10, seg.len() - 2);
        let old = sum(&seg[a..b]);
        for c in &mut seg[a..b] {
            *c = b'x';
        }
        let new = sum(&seg[a..b]);
        assert_eq!(update(hc, old, new), full(&seg));
    }

    #[test]
    fn odd_length_tail_is_padded() {
        assert_eq!(sum(&[0x01]), 0x0100);
        assert_eq!(sum(&[0xff, 0xff, 0x00, 0x01]), 0x0001);
    }
}
