//! Internet checksums of rewritten packets (RFC 1071 sums). A whole segment's checksum is
//! computed afresh — a wrong (offloaded) one kept wrong by the same amount would tell the sum
//! of the removed bytes; only a segment cut by the snaplen, whose sum cannot be known, is
//! updated from the old and new sums of the rewritten bytes (RFC 1624).

/// One's-complement sum of big-endian 16-bit words, folded to 16 bits. An odd final byte is
/// padded with zero, as RFC 1071 does.
pub fn sum(data: &[u8]) -> u16 {
    // Eight bytes at a time as two 32-bit words, in native (little-endian) order: 2^16 = 1
    // modulo 0xffff, so folding a sum of 32-bit words gives the sum of their 16-bit halves,
    // and the one's-complement sum of byte-swapped words is the byte-swapped sum (RFC 1071
    // §2(A), (B)). No per-word byte swap, so the loop vectorises; it runs twice over every
    // scrubbed payload.
    let mut s: u64 = 0;
    let mut wide = data.chunks_exact(8);
    for c in &mut wide {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        s += (w >> 32) + (w & 0xffff_ffff);
    }
    let mut chunks = wide.remainder().chunks_exact(2);
    for c in &mut chunks {
        s += u64::from(u16::from_le_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        s += u64::from(*last);
    }
    fold(s).swap_bytes()
}

/// Folds a wide one's-complement sum to 16 bits (RFC 1071 §4.1: add the carries back in).
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The sum of an IPv4 or IPv6 pseudo-header (the header's own source and destination, the
/// protocol and the length) for the IP header at `ip`; None when the header is not in the
/// frame.
fn pseudo_header(frame: &[u8], ip: usize, proto: u8, len: usize) -> Option<u64> {
    let v6 = frame.get(ip)? >> 4 == 6;
    let addrs = if v6 { frame.get(ip + 8..ip + 40)? } else { frame.get(ip + 12..ip + 20)? };
    let len = len as u64;
    Some(u64::from(sum(addrs)) + u64::from(proto) + (len >> 16) + (len & 0xffff))
}

/// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), where m and m' are the sums of the old and new
/// bytes (at the same even offset within the checksummed data).
pub fn update(hc: u16, old_sum: u16, new_sum: u16) -> u16 {
    !fold(u64::from(!hc) + u64::from(!old_sum) + u64::from(new_sum))
}

/// The sum of `n` bytes of `fill` starting at byte `at` of the summed data (an odd start
/// pairs its first byte with the byte before): what a run of filler adds, without the run.
pub fn sum_of_fill(fill: u8, at: usize, n: usize) -> u16 {
    let word = u64::from(u16::from_be_bytes([fill, fill]));
    let (pairs, lone) = if at % 2 == 1 && n > 0 {
        // The first byte is a word's low half.
        ((n - 1) / 2, u64::from(fill) + if (n - 1) % 2 == 1 { u64::from(fill) << 8 } else { 0 })
    } else {
        (n / 2, if n % 2 == 1 { u64::from(fill) << 8 } else { 0 })
    };
    fold(pairs as u64 * word + lone)
}

/// The sum of `data` placed at byte `at` of the summed data: an odd start swaps its bytes'
/// halves (RFC 1071 §2(B)).
pub fn sum_at(data: &[u8], at: usize) -> u16 {
    let s = sum(data);
    if at % 2 == 1 { s.swap_bytes() } else { s }
}

/// Adds 16-bit sums (one's complement).
pub fn add(a: u16, b: u16) -> u16 {
    fold(u64::from(a) + u64::from(b))
}

/// The TCP or UDP checksum of the segment at `l4..end` (whole in the frame), over the IP
/// pseudo-header of the IPv4 or IPv6 header at `ip` (RFC 793, RFC 768, RFC 8200 §8.1).
pub fn transport(frame: &mut [u8], ip: usize, l4: usize, end: usize, proto: u8) -> u16 {
    transport_summed(frame, ip, l4, end, end, proto, 0)
}

/// `transport` of a segment whose payload from `payload_at` (an even distance from `l4`) to
/// `end` is not in the frame but summed already (`payload_sum`): a scrubbed packet cut after
/// its headers gets the checksum of its scrubbed payload without that payload being written.
pub fn transport_summed(
    frame: &mut [u8],
    ip: usize,
    l4: usize,
    payload_at: usize,
    end: usize,
    proto: u8,
    payload_sum: u16,
) -> u16 {
    // The checksum field is summed as zero (TCP's at 16, UDP's at 6), as for ICMP below.
    let (field, header) = if proto == 6 { (16, 20) } else { (6, 8) };
    if end < l4 + header || frame.len() < end {
        return 0;
    }
    frame[l4 + field..l4 + field + 2].fill(0);
    let v6 = frame[ip] >> 4 == 6;
    let len = (end - l4) as u32;
    let addrs = if v6 {
        // The pseudo-header's destination is the final one: past a routing header, its last
        // address (RFC 8200 §8.1).
        let dst =
            ipv6_routing_addresses(frame, ip).and_then(|(first, n, final_at)| (n > 0).then_some(first + final_at * 16));
        u32::from(sum(&frame[ip + 8..ip + 24])) + u32::from(sum(&frame[dst.map_or(ip + 24..ip + 40, |d| d..d + 16)]))
    } else {
        u32::from(sum(&frame[ip + 12..ip + 20]))
    };
    let acc = addrs
        + u32::from(proto)
        + (len >> 16)
        + (len & 0xffff)
        + u32::from(sum(&frame[l4..payload_at]))
        + u32::from(payload_sum);
    !fold(u64::from(acc))
}

/// The checksum of the ICMP (v4: over the message; v6: with the pseudo-header, RFC 4443 §2.3)
/// message at `l4..end`, whole in the frame.
pub fn icmp(frame: &mut [u8], ip: usize, l4: usize, end: usize, v6: bool) -> u16 {
    frame[l4 + 2..l4 + 4].fill(0);
    let mut acc = u64::from(sum(&frame[l4..end]));
    if v6 {
        acc += pseudo_header(frame, ip, 58, end - l4).unwrap_or(0);
    }
    !fold(acc)
}

/// The UDP checksum of a fragmented datagram whose first fragment at `l4` keeps its 8-byte
/// header and whose `ulen - 8` payload bytes are all `fill` in every fragment (as scrub leaves
/// them): known from the first fragment alone, without reassembly. Zero becomes 0xffff (zero
/// means "no checksum").
pub fn udp_over_filler(frame: &mut [u8], ip: usize, l4: usize, ulen: u16, fill: u8) -> u16 {
    frame[l4 + 6..l4 + 8].fill(0);
    let filler = usize::from(ulen.saturating_sub(8));
    let acc = pseudo_header(frame, ip, 17, usize::from(ulen)).unwrap_or(0)
        + u64::from(sum(&frame[l4..l4 + 8]))
        + u64::from(sum_of_fill(fill, 8, filler));
    match !fold(acc) {
        0 => 0xffff,
        v => v,
    }
}

/// The addresses of an IPv6 routing header, if the packet has one before its transport
/// header: the offset of the first, how many, and which one is the final destination (RFC
/// 8200 §4.4 type 0, RFC 6275 type 2, RFC 8754 segment routing type 4).
pub fn ipv6_routing_addresses(frame: &[u8], ip: usize) -> Option<(usize, usize, usize)> {
    let mut next = *frame.get(ip + 6)?;
    let mut at = ip + 40;
    loop {
        match next {
            // Hop-by-hop and destination options: skip.
            0 | 60 => {
                next = *frame.get(at)?;
                at += (usize::from(*frame.get(at + 1)?) + 1) * 8;
            }
            43 => {
                let (kind, len) = (*frame.get(at + 2)?, usize::from(*frame.get(at + 1)?) * 8);
                let n = match kind {
                    0 | 2 => len / 16,
                    4 => usize::from(*frame.get(at + 4)?) + 1,
                    _ => return None,
                };
                frame.get(at + 8..at + 8 + n * 16)?;
                // Type 4 lists segments last-first: the final destination is the first.
                let final_at = if kind == 4 { 0 } else { n.saturating_sub(1) };
                return Some((at + 8, n, final_at));
            }
            _ => return None,
        }
    }
}

/// Recomputes a tunnel header's checksum (outer UDP or GRE) after the packet inside it was
/// rewritten. The inner packet's own checksums are updated incrementally; the outer one covers
/// all of them and the inner addresses, so it is summed anew. When the frame was cut by the
/// snaplen the sum cannot be known: a UDP checksum becomes zero ("none", which RFC 6935 also
/// allows for tunnels over IPv6), a GRE one is left.
pub fn recompute_tunnel(frame: &mut [u8], ip: usize, s: &super::Sum) {
    if s.to > frame.len() || s.from > s.to || s.field + 2 > s.to {
        if s.pseudo && s.field + 2 <= frame.len() {
            frame[s.field..s.field + 2].fill(0);
        }
        return;
    }
    frame[s.field..s.field + 2].fill(0);
    let mut acc = u64::from(sum(&frame[s.from..s.to]));
    if s.pseudo {
        let Some(p) = pseudo_header(frame, ip, 17, s.to - s.from) else {
            return;
        };
        acc += p;
    }
    let mut v = !fold(acc);
    if s.pseudo && v == 0 {
        v = 0xffff;
    }
    frame[s.field..s.field + 2].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_sum_equals_the_word_by_word_sum() {
        let word_sum = |d: &[u8]| {
            let mut s: u64 = 0;
            for c in d.chunks(2) {
                s += u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
            }
            while s >> 16 != 0 {
                s = (s & 0xffff) + (s >> 16);
            }
            s as u16
        };
        let data: Vec<u8> = (0..3000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in [0, 1, 2, 7, 8, 9, 15, 16, 17, 1447, 1448, 3000] {
            for start in [0, 1, 3] {
                let d = &data[start.min(len)..len];
                assert_eq!(sum(d), word_sum(d), "len {len} start {start}");
            }
        }
        assert_eq!(sum(&[0xff; 4096]), word_sum(&[0xff; 4096]));
    }

    /// A payload summed in pieces (stored bytes, filler runs, at odd and even offsets) gives
    /// the checksum of the payload written out.
    #[test]
    fn summed_pieces_give_the_checksum_of_the_written_payload() {
        let data: Vec<u8> = (0..97u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
        for cut in [0, 1, 2, 3, 10, 51, 96, 97] {
            for fill_to in [cut, (cut + 1).min(97), (cut + 14).min(97), 97] {
                // data[..cut] stored, then filler, then data[fill_to..] stored.
                let mut written = data.clone();
                written[cut..fill_to].fill(b'x');
                let pieces = add(
                    add(sum_at(&data[..cut], 0), sum_of_fill(b'x', cut, fill_to - cut)),
                    sum_at(&data[fill_to..], fill_to),
                );
                assert_eq!(pieces, sum(&written), "cut {cut} fill to {fill_to}");
                // As a TCP segment over IPv4: the checksum of the frame with its payload, and
                // of the frame whose payload is only summed.
                let mut frame = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
                frame.extend_from_slice(&[0x30, 0x39, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff]);
                frame.extend_from_slice(&[0xab, 0xcd, 0, 0]);
                let end = frame.len() + written.len();
                let mut whole = frame.clone();
                whole.extend_from_slice(&written);
                frame.resize(end, 0);
                assert_eq!(
                    transport_summed(&mut frame, 0, 20, 40, end, 6, pieces),
                    transport(&mut whole, 0, 20, end, 6)
                );
            }
        }
    }

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
