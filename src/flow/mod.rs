//! Flows: a bidirectional key for TCP and UDP conversations, the table that holds their state,
//! and per-direction stream reassembly (`reassembly`). The table is generic over what a
//! consumer (trim's policy, diagnose) keeps per flow, so both read the same packets the same way.

pub mod reassembly;

use crate::wire::Addr;

/// Bytes held on one thread (a file is read by one thread) by one kind of holder, summed over
/// all its flows: thousands of flows each holding a little would otherwise hold hundreds of
/// megabytes. Each kind declares its own thread-local counter.
pub struct ThreadBytes(pub &'static std::thread::LocalKey<std::cell::Cell<usize>>);

impl ThreadBytes {
    pub fn add(&self, n: usize) {
        self.0.with(|t| t.set(t.get() + n));
    }

    pub fn sub(&self, n: usize) {
        self.0.with(|t| t.set(t.get().saturating_sub(n)));
    }

    pub fn get(&self) -> usize {
        self.0.with(|t| t.get())
    }
}

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
    /// Whether either end uses `port` (a well-known port says what a flow may be).
    pub fn has_port(&self, port: u16) -> bool {
        self.port_a == port || self.port_b == port
    }

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

/// The flow table: a hash index of slot numbers over a slab of (key, state) entries, where a
/// map from key to boxed state was before. Most packets cost one lookup here, and under a
/// flood of small flows each lookup missed the cache three times in a row: the map's bucket
/// (key and box pointer, 48 bytes each: 3 MiB of buckets for 65,536 flows), then the box.
/// The index's buckets are 4 bytes (256 KiB, which stays in cache), and the entry holds the
/// key beside the state, so a lookup that hits reads one entry. (Keys come from packets, but
/// the table is bounded and swept, so flooding it costs memory bounds, not quadratic time.)
pub struct FlowTable<S> {
    index: hashbrown::HashTable<u32>,
    slots: Vec<Slot<S>>,
    /// Which slots hold an entry. Apart from the slots: an `Option` around each put its tag
    /// inside the state, a cache line away from the key, and every lookup read both.
    live: Vec<bool>,
    /// Slots emptied by removals, reused before the slab grows.
    free: Vec<u32>,
    /// The slot the last lookup found: a packet's flow is looked up again by each step that
    /// reads it, and a key compare costs less than hashing the 40-byte key once more.
    last: std::cell::Cell<u32>,
}

/// The key first, and each entry on a cache line of its own: a lookup compares the key and
/// goes on to the state's first fields, in the same line.
#[repr(C, align(64))]
struct Slot<S> {
    key: FlowKey,
    value: S,
}

fn hash(key: &FlowKey) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(key)
}

impl<S> Default for FlowTable<S> {
    fn default() -> Self {
        FlowTable {
            index: hashbrown::HashTable::new(),
            slots: Vec::new(),
            live: Vec::new(),
            free: Vec::new(),
            last: std::cell::Cell::new(0),
        }
    }
}

/// The entry of a key that is known to be in the table.
impl<S: Default> std::ops::Index<&FlowKey> for FlowTable<S> {
    type Output = S;
    fn index(&self, key: &FlowKey) -> &S {
        self.get(key).expect("flow in the table")
    }
}

/// `S: Default` fills an emptied slot (its value is returned by `remove`).
impl<S: Default> FlowTable<S> {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Only occupied slots are in the index, so the key alone decides. (An emptied slot
    /// keeps its key: the last slot found counts only while it is live.)
    fn find(&self, key: &FlowKey) -> Option<usize> {
        let last = self.last.get() as usize;
        if self.live.get(last) == Some(&true) && self.slots[last].key == *key {
            return Some(last);
        }
        let slots = &self.slots;
        let at = *self.index.find(hash(key), |&i| slots[i as usize].key == *key)?;
        self.last.set(at);
        Some(at as usize)
    }

    pub fn get(&self, key: &FlowKey) -> Option<&S> {
        self.find(key).map(|i| &self.slots[i].value)
    }

    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut S> {
        self.find(key).map(|i| &mut self.slots[i].value)
    }

    pub fn contains_key(&self, key: &FlowKey) -> bool {
        self.find(key).is_some()
    }

    /// The entry of `key`, made with `S::default()` when there is none.
    pub fn get_or_default(&mut self, key: FlowKey) -> &mut S {
        let i = match self.find(&key) {
            Some(i) => i,
            None => self.add(key, S::default()),
        };
        &mut self.slots[i].value
    }

    /// Puts `value` under `key`; returns the value it replaces.
    pub fn insert(&mut self, key: FlowKey, value: S) -> Option<S> {
        if let Some(i) = self.find(&key) {
            return Some(std::mem::replace(&mut self.slots[i].value, value));
        }
        self.add(key, value);
        None
    }

    /// Puts a key that is not in the table into a slot (an emptied one first); its slot.
    fn add(&mut self, key: FlowKey, value: S) -> usize {
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Slot { key, value };
                i
            }
            None => {
                self.slots.push(Slot { key, value });
                self.live.push(false);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 flows")
            }
        };
        self.live[i as usize] = true;
        let slots = &self.slots;
        self.index.insert_unique(hash(&key), i, |&j| hash(&slots[j as usize].key));
        i as usize
    }

    pub fn remove(&mut self, key: &FlowKey) -> Option<S> {
        let slots = &self.slots;
        let entry = self.index.find_entry(hash(key), |&i| slots[i as usize].key == *key).ok()?;
        let (i, _) = entry.remove();
        Some(self.vacate(i))
    }

    /// Empties slot `i` (already out of the index); its value.
    fn vacate(&mut self, i: u32) -> S {
        self.live[i as usize] = false;
        self.free.push(i);
        std::mem::take(&mut self.slots[i as usize].value)
    }

    /// The entries with their slots, for `remove_at`: a full table ranks all its entries to
    /// forget some, and a slot number is a tenth of the size of a key.
    pub fn slots(&self) -> impl Iterator<Item = (u32, &S)> {
        self.slots.iter().zip(&self.live).zip(0u32..).filter(|((_, l), _)| **l).map(|((s, _), i)| (i, &s.value))
    }

    /// Removes the entry in slot `i`, if there is one; its key and value.
    pub fn remove_at(&mut self, i: u32) -> Option<(FlowKey, S)> {
        if !*self.live.get(i as usize)? {
            return None;
        }
        let key = self.slots[i as usize].key;
        if let Ok(e) = self.index.find_entry(hash(&key), |&j| j == i) {
            e.remove();
        }
        Some((key, self.vacate(i)))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &S)> {
        self.slots.iter().zip(&self.live).filter(|(_, l)| **l).map(|(s, _)| (&s.key, &s.value))
    }

    /// Keeps the entries for which `keep` says so.
    pub fn retain(&mut self, mut keep: impl FnMut(&FlowKey, &mut S) -> bool) {
        for i in 0..self.slots.len() {
            if !self.live[i] {
                continue;
            }
            let s = &mut self.slots[i];
            if keep(&s.key, &mut s.value) {
                continue;
            }
            let n = i as u32;
            if let Ok(e) = self.index.find_entry(hash(&s.key), |&j| j == n) {
                e.remove();
            }
            drop(self.vacate(n));
        }
    }
}

/// The `n` candidates a full table forgets, moved to the front of `candidates`: lowest rank
/// first (how little the entry says), then quietest (oldest last-packet time). Candidates are
/// (rank, last time, key). The caller keeps the list for the next time: a list as long as the
/// table, allocated at every eviction of a flood, set the allocator consolidating its free
/// chunks each time.
pub fn least_telling<K: Copy>(candidates: &mut [(u8, u64, K)], n: usize) -> &[(u8, u64, K)] {
    let n = n.min(candidates.len());
    if n > 0 {
        candidates.select_nth_unstable_by_key(n - 1, |&(rank, last, _)| (rank, last));
    }
    &candidates[..n]
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

    #[test]
    fn the_table_finds_replaces_removes_and_reuses_slots() {
        let key = |p: u16| FlowKey::of(Addr::v4([10, 0, 0, 1]), p, Addr::v4([10, 0, 0, 2]), 80, PROTO_TCP).0;
        let mut t: FlowTable<u32> = FlowTable::default();
        for p in 0..1000 {
            assert_eq!(t.insert(key(p), u32::from(p)), None);
        }
        assert_eq!(t.insert(key(7), 70), Some(7));
        assert_eq!((t.len(), t[&key(7)], t.get(&key(1000))), (1000, 70, None));
        *t.get_mut(&key(8)).unwrap() += 1;
        assert_eq!(t.remove(&key(8)), Some(9));
        assert_eq!((t.remove(&key(8)), t.contains_key(&key(8))), (None, false));
        t.retain(|_, v| *v % 2 == 0);
        assert_eq!(t.len(), 500);
        assert!(t.iter().all(|(k, v)| *v % 2 == 0 && t.get(k) == Some(v)));
        // Emptied slots are reused before the slab grows.
        let slab = t.slots.len();
        for p in 2000..2400 {
            t.insert(key(p), 0);
        }
        assert_eq!((t.slots.len(), t.len()), (slab, 900));
        assert!((2000..2400).all(|p| t.get(&key(p)) == Some(&0)));
        // By slot: what `slots` lists, `remove_at` removes (once).
        let (slot, _) = t.slots().find(|(_, v)| **v == 70).unwrap();
        assert_eq!(t.remove_at(slot), Some((key(7), 70)));
        assert_eq!((t.remove_at(slot), t.get(&key(7)), t.len()), (None, None, 899));
        assert_eq!(t.slots().count(), 899);
    }
}
