//! pcapng Decryption Secrets Blocks (pcapng spec §4.7): reading the TLS key log out of one,
//! and building one that carries only chosen lines.

use super::block;

/// Secrets type of an NSS key log (`TLSK`).
pub const TLS_KEY_LOG: u32 = 0x544c_534b;

/// The secrets type and data of a Decryption Secrets Block.
pub fn parse(raw: &[u8], big: bool) -> Option<(u32, &[u8])> {
    let rd = |i: usize| -> Option<u32> {
        let b: [u8; 4] = raw.get(i..i + 4)?.try_into().ok()?;
        Some(if big { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    };
    let kind = rd(8)?;
    let len = rd(12)? as usize;
    Some((kind, raw.get(16..16 + len)?))
}

/// A Decryption Secrets Block holding `data`, in the given byte order.
pub fn build(kind: u32, data: &[u8], big: bool) -> Vec<u8> {
    let padded = (data.len() + 3) & !3;
    let total = 16 + padded + 4;
    let put = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&if big { x.to_be_bytes() } else { x.to_le_bytes() });
    let mut v = Vec::with_capacity(total);
    put(&mut v, block::DECRYPTION_SECRETS);
    put(&mut v, total as u32);
    put(&mut v, kind);
    put(&mut v, data.len() as u32);
    v.extend_from_slice(data);
    v.resize(16 + padded, 0);
    put(&mut v, total as u32);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_block_parses_back() {
        for big in [false, true] {
            let b = build(TLS_KEY_LOG, b"CLIENT_RANDOM aa bb\n", big);
            assert_eq!(b.len() % 4, 0);
            assert_eq!(parse(&b, big), Some((TLS_KEY_LOG, &b"CLIENT_RANDOM aa bb\n"[..])));
        }
    }
}
