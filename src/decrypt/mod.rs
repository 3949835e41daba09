//! TLS record decryption with keys from a key log, so that a `wss://` upgrade is read like a
//! `ws://` one. The engine walks the records and hands each whole record of a session it has
//! keys for to one `Direction` here, which returns the plaintext; what the plaintext says is
//! read by the same HTTP and WebSocket code as cleartext. Nothing decrypted is ever written:
//! outputs carry the original ciphertext.
//!
//! TLS 1.3 (RFC 8446 §5.2, §7): per-record nonce = IV xor sequence number, the record header is
//! the additional data, the content type is the last non-zero byte of the plaintext; keys come
//! from the traffic secrets in the key log ("key", "iv" via HKDF-Expand-Label), first the
//! handshake secrets until the Finished message, then the application secrets, renewed by
//! KeyUpdate. TLS 1.2 (RFC 5246 §6.3, RFC 5288, RFC 7905): the key block is the PRF of the
//! master secret; AES-GCM takes a 4-byte salt and an 8-byte explicit nonce in each record,
//! ChaCha20-Poly1305 the IV xor the sequence number. CBC suites are not decrypted.

pub mod keylog;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, Mac};
use sha2::{Sha256, Sha384};

pub use keylog::{KeyLog, Secrets};

const TAG_BYTES: usize = 16;
const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
pub const TLS13: u16 = 0x0304;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cipher {
    Aes128Gcm,
    Aes256Gcm,
    ChaCha20Poly1305,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
}

impl Cipher {
    fn key_len(self) -> usize {
        match self {
            Cipher::Aes128Gcm => 16,
            Cipher::Aes256Gcm | Cipher::ChaCha20Poly1305 => 32,
        }
    }
}

impl Hash {
    fn len(self) -> usize {
        match self {
            Hash::Sha256 => 32,
            Hash::Sha384 => 48,
        }
    }
}

/// The AEAD and hash of a cipher suite this module decrypts.
fn suite(id: u16) -> Option<(Cipher, Hash)> {
    Some(match id {
        0x1301 => (Cipher::Aes128Gcm, Hash::Sha256),
        0x1302 => (Cipher::Aes256Gcm, Hash::Sha384),
        0x1303 => (Cipher::ChaCha20Poly1305, Hash::Sha256),
        // (EC)DHE and RSA key exchange with AES-GCM (RFC 5288, 5289).
        0xc02b | 0xc02f | 0x009c | 0x009e | 0x00a2 | 0x00a4 => (Cipher::Aes128Gcm, Hash::Sha256),
        0xc02c | 0xc030 | 0x009d | 0x009f | 0x00a3 | 0x00a5 => (Cipher::Aes256Gcm, Hash::Sha384),
        // ChaCha20-Poly1305 (RFC 7905).
        0xcca8..=0xccaa => (Cipher::ChaCha20Poly1305, Hash::Sha256),
        _ => return None,
    })
}

/// Why a session is read without keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoKeys {
    /// The key log has nothing for this client random.
    Missing,
    /// The key log lacks a secret this version needs.
    Partial,
    /// A cipher suite not decrypted here (CBC, CCM, export...).
    Suite(u16),
    /// A record failed authentication: the keys are not this session's.
    Wrong,
}

impl NoKeys {
    pub fn describe(self) -> String {
        match self {
            NoKeys::Missing => "no key-log line for its client random".into(),
            NoKeys::Partial => "the key log lacks the traffic secrets it needs".into(),
            NoKeys::Suite(s) => format!("cipher suite 0x{s:04x} is not decrypted (AES-GCM and ChaCha20-Poly1305 are)"),
            NoKeys::Wrong => "the key log's keys do not decrypt it (a record failed authentication)".into(),
        }
    }
}

enum Aead {
    Aes128(Box<Aes128Gcm>),
    Aes256(Box<Aes256Gcm>),
    ChaCha(Box<ChaCha20Poly1305>),
}

impl Aead {
    fn new(c: Cipher, key: &[u8]) -> Option<Aead> {
        Some(match c {
            Cipher::Aes128Gcm => Aead::Aes128(Box::new(Aes128Gcm::new_from_slice(key).ok()?)),
            Cipher::Aes256Gcm => Aead::Aes256(Box::new(Aes256Gcm::new_from_slice(key).ok()?)),
            Cipher::ChaCha20Poly1305 => Aead::ChaCha(Box::new(ChaCha20Poly1305::new_from_slice(key).ok()?)),
        })
    }

    /// Decrypts `buf` in place and checks the tag.
    fn open(&self, nonce: &[u8; 12], aad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        let (Ok(tag), nonce) = (tag.try_into(), nonce.into()) else {
            return false;
        };
        match self {
            Aead::Aes128(a) => a.decrypt_inout_detached(nonce, aad, buf.into(), tag).is_ok(),
            Aead::Aes256(a) => a.decrypt_inout_detached(nonce, aad, buf.into(), tag).is_ok(),
            Aead::ChaCha(a) => a.decrypt_inout_detached(nonce, aad, buf.into(), tag).is_ok(),
        }
    }
}

/// What one record held.
#[derive(Debug, PartialEq, Eq)]
pub enum Opened {
    /// Application data: the plaintext is in the caller's buffer.
    Data,
    /// An alert (level, description), now readable: close_notify among them.
    Alert(Option<(u8, u8)>),
    /// Handshake messages (Finished, tickets, key updates): consumed here.
    Handshake,
    /// Not a protected record (a TLS 1.3 compatibility ChangeCipherSpec), or a record before
    /// the keys could be told to fit (TLS 1.3 without handshake secrets).
    Skipped,
    /// Authentication failed: not this session's keys.
    Failed,
}

enum Stage {
    /// TLS 1.3 handshake records; the application secret waits for the Finished.
    Handshake { next: Option<Vec<u8>> },
    /// Application records; TLS 1.3 keeps the secret for KeyUpdate.
    Application { secret: Option<Vec<u8>> },
}

/// One direction's record protection.
pub struct Direction {
    tls13: bool,
    cipher: Cipher,
    hash: Hash,
    aead: Aead,
    iv: [u8; 12],
    seq: u64,
    stage: Stage,
    /// TLS 1.3 without handshake secrets: records fail until the first application record;
    /// once one opens, a failure means wrong keys.
    synced: bool,
    /// TLS 1.2: records are protected after this direction's ChangeCipherSpec.
    active: bool,
}

impl Direction {
    /// The two directions (client, server) of a session, from its hellos and the key log.
    pub fn pair(
        secrets: Option<&Secrets>,
        client_random: &[u8],
        server_random: &[u8],
        cipher_suite: u16,
        version: u16,
    ) -> Result<[Direction; 2], NoKeys> {
        let s = secrets.ok_or(NoKeys::Missing)?;
        let (cipher, hash) = suite(cipher_suite).ok_or(NoKeys::Suite(cipher_suite))?;
        if version == TLS13 {
            let one = |hs: &Option<Vec<u8>>, app: &Option<Vec<u8>>| match (hs, app) {
                (Some(h), a) => Direction::tls13(cipher, hash, h, Stage::Handshake { next: a.clone() }, true),
                (None, Some(a)) => {
                    Direction::tls13(cipher, hash, a, Stage::Application { secret: Some(a.clone()) }, false)
                }
                (None, None) => None,
            };
            let c = one(&s.client_handshake, &s.client_traffic).ok_or(NoKeys::Partial)?;
            let sv = one(&s.server_handshake, &s.server_traffic).ok_or(NoKeys::Partial)?;
            return Ok([c, sv]);
        }
        let master = s.master.as_ref().ok_or(NoKeys::Partial)?;
        let iv_len = if cipher == Cipher::ChaCha20Poly1305 { 12 } else { 4 };
        let k = cipher.key_len();
        let mut seed = server_random.to_vec();
        seed.extend_from_slice(client_random);
        let block = prf(hash, master, b"key expansion", &seed, 2 * k + 2 * iv_len);
        let make = |key: &[u8], iv: &[u8]| -> Option<Direction> {
            let mut v = [0u8; 12];
            v[..iv.len()].copy_from_slice(iv);
            Some(Direction {
                tls13: false,
                cipher,
                hash,
                aead: Aead::new(cipher, key)?,
                iv: v,
                seq: 0,
                stage: Stage::Application { secret: None },
                synced: true,
                active: false,
            })
        };
        let (ck, sk) = (&block[..k], &block[k..2 * k]);
        let (civ, siv) = (&block[2 * k..2 * k + iv_len], &block[2 * k + iv_len..]);
        Ok([make(ck, civ).ok_or(NoKeys::Partial)?, make(sk, siv).ok_or(NoKeys::Partial)?])
    }

    fn tls13(cipher: Cipher, hash: Hash, secret: &[u8], stage: Stage, synced: bool) -> Option<Direction> {
        let (key, iv) = traffic_keys(cipher, hash, secret)?;
        Some(Direction {
            tls13: true,
            cipher,
            hash,
            aead: Aead::new(cipher, &key)?,
            iv,
            seq: 0,
            stage,
            synced,
            active: true,
        })
    }

    fn rekey(&mut self, secret: &[u8]) -> bool {
        let Some((key, iv)) = traffic_keys(self.cipher, self.hash, secret) else {
            return false;
        };
        let Some(aead) = Aead::new(self.cipher, &key) else {
            return false;
        };
        (self.aead, self.iv, self.seq) = (aead, iv, 0);
        true
    }

    /// Opens one protected record: its header's type and version and its whole body. The
    /// plaintext (application data or alert) is left in `out`.
    pub fn open(&mut self, content_type: u8, version: u16, body: &[u8], out: &mut Vec<u8>) -> Opened {
        out.clear();
        if content_type == CHANGE_CIPHER_SPEC {
            // TLS 1.2: protection starts after it; TLS 1.3: a compatibility record.
            self.active = true;
            return Opened::Skipped;
        }
        if !self.active || (self.tls13 && content_type != APPLICATION_DATA) {
            return Opened::Skipped;
        }
        let Some((nonce, aad, ct_len, explicit)) = self.nonce_and_aad(content_type, version, body) else {
            return self.failed();
        };
        out.extend_from_slice(&body[explicit..explicit + ct_len]);
        if !self.aead.open(&nonce, &aad, out, &body[explicit + ct_len..]) {
            out.clear();
            return self.failed();
        }
        self.seq += 1;
        self.synced = true;
        let inner = if self.tls13 {
            // RFC 8446 §5.4: the content type is the last non-zero byte; zeros pad.
            let Some(at) = out.iter().rposition(|&b| b != 0) else {
                out.clear();
                return Opened::Failed;
            };
            let t = out[at];
            out.truncate(at);
            t
        } else {
            content_type
        };
        match inner {
            APPLICATION_DATA => Opened::Data,
            ALERT => Opened::Alert((out.len() >= 2).then(|| (out[0], out[1]))),
            HANDSHAKE => {
                self.handshake(out);
                out.clear();
                Opened::Handshake
            }
            _ => {
                out.clear();
                Opened::Skipped
            }
        }
    }

    /// After `lost` bytes of records were lost: finds the sequence number at which this whole
    /// record opens and takes it (the record itself is opened again by `open`). A protected
    /// record takes at least 22 bytes and at most 16 KiB + 256 + 5, so the lost bytes bound
    /// where to look; the search is capped, and fails closed.
    /// `lost` is None when how much was lost is not known (a hole in the capture).
    pub fn find_seq(
        &mut self,
        content_type: u8,
        version: u16,
        body: &[u8],
        lost: Option<u64>,
        scratch: &mut Vec<u8>,
    ) -> bool {
        const MAX_RECORD: u64 = (1 << 14) + 256 + 5;
        const MIN_RECORD: u64 = 22;
        const MAX_TRIES: u64 = 4096;
        if !self.active || !self.synced {
            return false;
        }
        let start = self.seq;
        let (from, tries) = match lost {
            Some(lost) => (start.saturating_add(lost / MAX_RECORD), (lost / MIN_RECORD + 1).min(MAX_TRIES)),
            None => (start, MAX_TRIES),
        };
        for seq in from..from.saturating_add(tries) {
            self.seq = seq;
            if self.try_open(content_type, version, body, scratch) {
                return true;
            }
        }
        self.seq = start;
        false
    }

    /// Whether the record opens at the current sequence number (nothing changes).
    fn try_open(&self, content_type: u8, version: u16, body: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        if content_type == CHANGE_CIPHER_SPEC || (self.tls13 && content_type != APPLICATION_DATA) {
            return false;
        }
        let Some((nonce, aad, ct_len, explicit)) = self.nonce_and_aad(content_type, version, body) else {
            return false;
        };
        out.extend_from_slice(&body[explicit..explicit + ct_len]);
        self.aead.open(&nonce, &aad, out, &body[explicit + ct_len..])
    }

    /// The nonce and additional data of a record at the current sequence number, with the
    /// ciphertext length and where it starts.
    fn nonce_and_aad(&self, content_type: u8, version: u16, body: &[u8]) -> Option<([u8; 12], Vec<u8>, usize, usize)> {
        let explicit = if !self.tls13 && self.cipher != Cipher::ChaCha20Poly1305 { 8 } else { 0 };
        if body.len() < explicit + TAG_BYTES {
            return None;
        }
        let mut nonce = self.iv;
        if explicit > 0 {
            nonce[4..].copy_from_slice(&body[..8]);
        } else {
            for (n, s) in nonce[4..].iter_mut().zip(self.seq.to_be_bytes()) {
                *n ^= s;
            }
        }
        let ct_len = body.len() - explicit - TAG_BYTES;
        let mut aad = Vec::with_capacity(13);
        if self.tls13 {
            aad.push(content_type);
            aad.extend_from_slice(&version.to_be_bytes());
            aad.extend_from_slice(&(body.len() as u16).to_be_bytes());
        } else {
            aad.extend_from_slice(&self.seq.to_be_bytes());
            aad.push(content_type);
            aad.extend_from_slice(&version.to_be_bytes());
            aad.extend_from_slice(&(ct_len as u16).to_be_bytes());
        }
        Some((nonce, aad, ct_len, explicit))
    }

    /// A record whose bytes were not all captured: its sequence number is used up.
    pub fn skip_record(&mut self) {
        if self.active && self.synced {
            self.seq += 1;
        }
    }

    fn failed(&mut self) -> Opened {
        if self.synced { Opened::Failed } else { Opened::Skipped }
    }

    /// TLS 1.3 handshake messages inside protected records: the Finished ends the handshake
    /// keys; a KeyUpdate renews the application keys.
    fn handshake(&mut self, msgs: &[u8]) {
        if !self.tls13 {
            return;
        }
        let mut at = 0;
        while let Some(h) = msgs.get(at..at + 4) {
            let len = usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]);
            match (h[0], &mut self.stage) {
                (20, Stage::Handshake { next }) => {
                    let next = next.take();
                    match next {
                        Some(secret) if self.rekey(&secret) => self.stage = Stage::Application { secret: Some(secret) },
                        _ => self.synced = false,
                    }
                }
                (24, Stage::Application { secret: Some(secret) }) => {
                    let new = expand_label(self.hash, secret, b"traffic upd", self.hash.len());
                    if self.rekey(&new) {
                        self.stage = Stage::Application { secret: Some(new) };
                    }
                }
                _ => {}
            }
            at += 4 + len;
        }
    }
}

/// TLS 1.3 write key and IV from a traffic secret (RFC 8446 §7.3).
fn traffic_keys(cipher: Cipher, hash: Hash, secret: &[u8]) -> Option<(Vec<u8>, [u8; 12])> {
    if secret.len() != hash.len() {
        return None;
    }
    let key = expand_label(hash, secret, b"key", cipher.key_len());
    let iv: [u8; 12] = expand_label(hash, secret, b"iv", 12).try_into().ok()?;
    Some((key, iv))
}

/// HKDF-Expand-Label with an empty context (RFC 8446 §7.1).
fn expand_label(hash: Hash, secret: &[u8], label: &[u8], len: usize) -> Vec<u8> {
    let mut info = (len as u16).to_be_bytes().to_vec();
    info.push((6 + label.len()) as u8);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(0);
    let mut out = vec![0u8; len];
    let ok = match hash {
        Hash::Sha256 => hkdf::Hkdf::<Sha256>::from_prk(secret).is_ok_and(|h| h.expand(&info, &mut out).is_ok()),
        Hash::Sha384 => hkdf::Hkdf::<Sha384>::from_prk(secret).is_ok_and(|h| h.expand(&info, &mut out).is_ok()),
    };
    if !ok {
        out.clear();
    }
    out
}

/// The TLS 1.2 PRF (RFC 5246 §5): P_hash(secret, label + seed).
fn prf(hash: Hash, secret: &[u8], label: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
    fn p_hash<M: Mac + hmac::KeyInit + Clone>(secret: &[u8], seed: &[u8], len: usize) -> Vec<u8> {
        let mac = <M as hmac::KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
        let mut out = Vec::with_capacity(len + 64);
        let mut a = seed.to_vec();
        while out.len() < len {
            a = mac.clone().chain_update(&a).finalize().into_bytes().to_vec();
            out.extend_from_slice(&mac.clone().chain_update(&a).chain_update(seed).finalize().into_bytes());
        }
        out.truncate(len);
        out
    }
    let mut full = label.to_vec();
    full.extend_from_slice(seed);
    match hash {
        Hash::Sha256 => p_hash::<Hmac<Sha256>>(secret, &full, len),
        Hash::Sha384 => p_hash::<Hmac<Sha384>>(secret, &full, len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    /// RFC 8448 §3 (simple 1-RTT handshake): the server's handshake traffic secret gives the
    /// key and IV printed there.
    #[test]
    fn tls13_traffic_keys_match_rfc8448() {
        let secret =
            unhex("b6 7b 7d 69 0c c1 6c 4e 75 e5 42 13 cb 2d 37 b4 e9 c9 12 bc de d9 10 5d 42 be fd 59 d3 91 ad 38");
        let (key, iv) = traffic_keys(Cipher::Aes128Gcm, Hash::Sha256, &secret).unwrap();
        assert_eq!(key, unhex("3f ce 51 60 09 c2 17 27 d0 f2 e4 e8 6e e4 03 bc"));
        assert_eq!(iv.to_vec(), unhex("5d 31 3e b2 67 12 76 ee 13 00 0b 30"));
    }

    /// The TLS 1.2 PRF test vector (SHA-256) published on the IETF TLS list.
    #[test]
    fn tls12_prf_matches_the_published_vector() {
        let out = prf(
            Hash::Sha256,
            &unhex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35"),
            b"test label",
            &unhex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c"),
            100,
        );
        assert_eq!(
            out[..32],
            unhex("e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e db 5a")[..]
        );
    }

    /// A TLS 1.3 record of application-data type sealed at `seq` as a peer would seal it.
    fn seal13(aead: &Aead, iv: [u8; 12], seq: u64, inner: &[u8]) -> Vec<u8> {
        let mut nonce = iv;
        for (n, b) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= b;
        }
        let len = (inner.len() + TAG_BYTES) as u16;
        let aad = [23, 3, 3, (len >> 8) as u8, len as u8];
        let mut buf = inner.to_vec();
        let (n, b) = ((&nonce).into(), (&mut buf[..]).into());
        let tag = match aead {
            Aead::Aes128(a) => a.encrypt_inout_detached(n, &aad, b).unwrap().to_vec(),
            Aead::Aes256(a) => a.encrypt_inout_detached(n, &aad, b).unwrap().to_vec(),
            Aead::ChaCha(a) => a.encrypt_inout_detached(n, &aad, b).unwrap().to_vec(),
        };
        buf.extend_from_slice(&tag);
        buf
    }

    /// Seals records as a TLS 1.3 peer would and opens them: every suite, the inner content
    /// type and padding, a wrong key failing, a compatibility ChangeCipherSpec skipped.
    #[test]
    fn tls13_records_open_for_every_suite() {
        for id in [0x1301u16, 0x1302, 0x1303] {
            let (cipher, hash) = suite(id).unwrap();
            let secret = vec![7u8; hash.len()];
            let s = Secrets {
                client_traffic: Some(secret.clone()),
                server_traffic: Some(secret.clone()),
                ..Default::default()
            };
            let [mut c, _] = Direction::pair(Some(&s), &[1; 32], &[2; 32], id, TLS13).unwrap();
            let (key, iv) = traffic_keys(cipher, hash, &secret).unwrap();
            let aead = Aead::new(cipher, &key).unwrap();
            let seal = |seq: u64, inner: &[u8]| seal13(&aead, iv, seq, inner);
            let mut out = Vec::new();
            assert_eq!(c.open(20, 0x0303, &[1], &mut out), Opened::Skipped);
            assert_eq!(
                c.open(23, 0x0303, &seal(0, b"GET / HTTP/1.1\r\n\r\n\x17\0\0"), &mut out),
                Opened::Data,
                "{id:x}"
            );
            assert_eq!(out, b"GET / HTTP/1.1\r\n\r\n");
            assert_eq!(c.open(23, 0x0303, &seal(1, b"\x01\x00\x15"), &mut out), Opened::Alert(Some((1, 0))));
            let mut bad = seal(2, b"x\x17");
            bad[0] ^= 1;
            assert_eq!(c.open(23, 0x0303, &bad, &mut out), Opened::Failed);
        }
    }

    /// Records lost in between (a trimmed capture): the next whole record is found at its
    /// sequence number, and reading goes on from there.
    #[test]
    fn sequence_is_found_again_after_lost_records() {
        let secret = vec![9u8; 32];
        let s = Secrets {
            client_traffic: Some(secret.clone()),
            server_traffic: Some(secret.clone()),
            ..Default::default()
        };
        let [mut c, _] = Direction::pair(Some(&s), &[1; 32], &[2; 32], 0x1301, TLS13).unwrap();
        let (key, iv) = traffic_keys(Cipher::Aes128Gcm, Hash::Sha256, &secret).unwrap();
        let aead = Aead::new(Cipher::Aes128Gcm, &key).unwrap();
        let seal = |seq: u64, inner: &[u8]| seal13(&aead, iv, seq, inner);
        let mut out = Vec::new();
        assert_eq!(c.open(23, 0x0303, &seal(0, b"a\x17"), &mut out), Opened::Data);
        // Records 1..=40 are lost; 41 is a pong.
        let pong = seal(41, b"\x8a\x00\x17");
        assert!(c.find_seq(23, 0x0303, &pong, Some(40 * 1000), &mut out));
        assert_eq!(c.open(23, 0x0303, &pong, &mut out), Opened::Data);
        assert_eq!(out, b"\x8a\x00");
        assert_eq!(c.open(23, 0x0303, &seal(42, b"b\x17"), &mut out), Opened::Data);
        // A record these keys never sealed is not found, and nothing moves.
        let mut junk = seal(43, b"c\x17");
        junk[3] ^= 0xff;
        assert!(!c.find_seq(23, 0x0303, &junk, None, &mut out));
        assert_eq!(c.open(23, 0x0303, &seal(43, b"c\x17"), &mut out), Opened::Data);
    }

    #[test]
    fn missing_partial_and_unknown_suites_are_told_apart() {
        let none = Direction::pair(None, &[0; 32], &[0; 32], 0x1301, TLS13).err();
        assert_eq!(none, Some(NoKeys::Missing));
        let s = Secrets { master: Some(vec![1; 48]), ..Default::default() };
        assert_eq!(Direction::pair(Some(&s), &[0; 32], &[0; 32], 0x1301, TLS13).err(), Some(NoKeys::Partial));
        assert_eq!(Direction::pair(Some(&s), &[0; 32], &[0; 32], 0x002f, 0x0303).err(), Some(NoKeys::Suite(0x2f)));
        assert!(Direction::pair(Some(&s), &[0; 32], &[0; 32], 0xc02f, 0x0303).is_ok());
    }
}
