//! The NSS key log format (`SSLKEYLOGFILE`, written by browsers, curl, Node, Python and
//! carried in pcapng Decryption Secrets Blocks): one line per secret, `LABEL <client random
//! hex> <secret hex>`. TLS 1.2 sessions have a `CLIENT_RANDOM` line (the master secret); TLS
//! 1.3 sessions have a line per traffic secret.

use rustc_hash::FxHashMap;

/// Key-log bytes read at most, from files and blocks together; the rest is ignored with a
/// warning. A browser session's key log is a few kilobytes per connection.
pub const MAX_KEY_LOG_BYTES: usize = 16 << 20;

/// The secrets of one TLS session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Secrets {
    /// TLS 1.2 (and earlier): the 48-byte master secret.
    pub master: Option<Vec<u8>>,
    /// TLS 1.3 traffic secrets: handshake and first application secrets, each direction.
    pub client_handshake: Option<Vec<u8>>,
    pub server_handshake: Option<Vec<u8>>,
    pub client_traffic: Option<Vec<u8>>,
    pub server_traffic: Option<Vec<u8>>,
}

#[derive(Default)]
pub struct KeyLog {
    sessions: FxHashMap<[u8; 32], Secrets>,
    bytes: usize,
    /// Input was ignored past `MAX_KEY_LOG_BYTES`.
    pub truncated: bool,
}

impl KeyLog {
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn get(&self, client_random: &[u8]) -> Option<&Secrets> {
        self.sessions.get(<&[u8; 32]>::try_from(client_random).ok()?)
    }

    /// Reads key-log text; malformed lines, comments and labels this tool does not use (early
    /// data, exporter secrets) are skipped. Returns the number of lines taken.
    pub fn add(&mut self, text: &[u8]) -> usize {
        let mut taken = 0;
        for line in text.split(|&c| c == b'\n') {
            if self.bytes + line.len() + 1 > MAX_KEY_LOG_BYTES {
                self.truncated = true;
                break;
            }
            self.bytes += line.len() + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let mut fields = line.split(|&c| c == b' ');
            let (Some(label), Some(random), Some(secret)) = (fields.next(), fields.next(), fields.next()) else {
                continue;
            };
            let (Some(random), Some(secret)) = (hex(random), hex(secret)) else {
                continue;
            };
            let Ok(random) = <[u8; 32]>::try_from(random.as_slice()) else {
                continue;
            };
            let s = self.sessions.entry(random).or_default();
            let slot = match label {
                b"CLIENT_RANDOM" if secret.len() == 48 => &mut s.master,
                b"CLIENT_HANDSHAKE_TRAFFIC_SECRET" => &mut s.client_handshake,
                b"SERVER_HANDSHAKE_TRAFFIC_SECRET" => &mut s.server_handshake,
                b"CLIENT_TRAFFIC_SECRET_0" => &mut s.client_traffic,
                b"SERVER_TRAFFIC_SECRET_0" => &mut s.server_traffic,
                _ => continue,
            };
            *slot = Some(secret);
            taken += 1;
        }
        taken
    }
}

fn hex(s: &[u8]) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.is_empty() {
        return None;
    }
    s.chunks(2)
        .map(|p| {
            let d = |c: u8| (c as char).to_digit(16);
            Some((d(p[0])? * 16 + d(p[1])?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_both_versions_are_read_and_junk_is_skipped() {
        let r = "ab".repeat(32);
        let text = format!(
            "# SSL/TLS secrets log file\nCLIENT_RANDOM {r} {}\r\nCLIENT_TRAFFIC_SECRET_0 {r} {}\n\
             SERVER_TRAFFIC_SECRET_0 {r} zz\nEXPORTER_SECRET {r} 00\nCLIENT_RANDOM short 00\n",
            "11".repeat(48),
            "22".repeat(32)
        );
        let mut k = KeyLog::default();
        assert_eq!(k.add(text.as_bytes()), 2);
        let s = k.get(&[0xab; 32]).unwrap();
        assert_eq!(s.master.as_deref(), Some(&[0x11; 48][..]));
        assert_eq!(s.client_traffic.as_deref(), Some(&[0x22; 32][..]));
        assert_eq!(s.server_traffic, None);
        assert!(k.get(&[0; 32]).is_none());
    }
}
