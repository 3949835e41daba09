//! Flows: a bidirectional key for TCP and UDP conversations, the table that holds their state,
//! and per-direction stream reassembly (`reassembly`). The table is generic over what a
//! consumer (trim's policy, diagnose) keeps per flow, so both read the same packets the same way.

pub mod reassembly;

use rustc_hash::FxHashMap;

use crate::wire::Addr;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// One end of a flow in the key's canonical order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    A = 0,
    B = 1,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A conversation's identity regardless of direction: the lower endpoint is `a`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    pub a: Addr,
    pub b: Addr,
    pub port_a: u16,
    pub port_b: u16,
    pub proto: u8,
}

/// Hashes the key as one word folded from its fields: the derived `Hash` feeds the hasher
/// field by field (and each address as a length-prefixed slice), which made hashing a third
/// of the cost of a table lookup, and a trim looks up a flow at least once per packet.
impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let word = |b: &[u8; 16], i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        let ports = (u64::from(self.port_a) << 32) | (u64::from(self.port_b) << 16) | u64::from(self.proto);
        let mut h = ports ^ u64::from(self.a.v6) << 63;
        for w in [word(&self.a.bytes, 0), word(&self.a.bytes, 8), word(&self.b.bytes, 0), word(&self.b.bytes, 8)] {
            h = (h.rotate_left(23) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        state.write_u64(h);
    }
}

impl FlowKey {
    /// The key of a packet and which side sent it.
    pub fn of(src: Addr, sport: u16, dst: Addr, dport: u16, proto: u8) -> (FlowKey, Side) {
        if (src, sport) <= (dst, dport) {
            (FlowKey { a: src, b: dst, port_a: sport, port_b: dport, proto }, Side::A)
        } else {
            (FlowKey { a: dst, b: src, port_a: dport, port_b: sport, proto }, Side::B)
        }
    }

    pub fn addr(&self, s: Side) -> Addr {
        match s {
            Side::A => self.a,
            Side::B => self.b,
        }
    }

    pub fn port(&self, s: Side) -> u16 {
        match s {
            Side::A => self.port_a,
            Side::B => self.port_b,
        }
    }

    pub fn endpoint(&self, s: Side) -> String {
        let a = self.addr(s);
        if a.v6 { format!("[{a}]:{}", self.port(s)) } else { format!("{a}:{}", self.port(s)) }
    }
}

/// The flow table: a hash map with a fast non-cryptographic hasher (keys come from packets,
/// but the table is bounded and swept, so flooding it costs memory bounds, not quadratic time).
pub type FlowTable<S> = FxHashMap<FlowKey, S>;

/// The `n` candidates a full table forgets: lowest rank first (how little the entry says),
/// then quietest (oldest last-packet time). Candidates are (rank, last time, key).
pub fn least_telling<K: Copy>(mut candidates: Vec<(u8, u64, K)>, n: usize) -> Vec<K> {
    let n = n.min(candidates.len());
    if n == 0 {
        return Vec::new();
    }
    candidates.select_nth_unstable_by_key(n - 1, |&(rank, last, _)| (rank, last));
    candidates[..n].iter().map(|&(_, _, k)| k).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_share_one_key() {
        let (x, y) = (Addr::v4([10, 0, 0, 1]), Addr::v4([10, 0, 0, 2]));
        let (k1, s1) = FlowKey::of(x, 5000, y, 80, PROTO_TCP);
        let (k2, s2) = FlowKey::of(y, 80, x, 5000, PROTO_TCP);
        assert_eq!(k1, k2);
        assert_eq!(s1.other(), s2);
        assert_eq!(k1.endpoint(s1), "10.0.0.1:5000");
    }
}
