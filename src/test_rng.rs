//! The unit tests' generator (xorshift64): random inputs that are the same on every run, so
//! that a failure names an input that can be met again.

/// Numbers below `n` from `seed`: `let mut rnd = test_rng::below(SEED); rnd(6)`.
pub fn below(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed;
    move |n| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    }
}
