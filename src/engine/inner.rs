//! The connection inside a TLS session the key log has keys for. Its records are decrypted as
//! the record walk completes them (`decrypt`), and the plaintext runs through the same phases
//! and classifiers as a cleartext connection — on a second pair of directions that is swapped
//! in for the flow's own while it runs, so every rule (request head, 101, frames, close code)
//! is the cleartext one. What it finds is reported on the TLS flow's conversation, and what it
//! is decides the TLS flow: a session waits until its plaintext says what it carries.

use super::{Class, Content, Dir, Engine, Event, FlowKey, Phase, Proto, Side};
use crate::decrypt::{self, NoKeys, Opened};
use crate::proto::tls;

/// A TLS session with keys.
pub(super) struct Keyed {
    /// What the flow is without keys (the ALPN or `--host` rule), for when decryption fails.
    fallback: (Class, Proto, &'static str),
    /// The flow's packets wait until the plaintext shows what the session carries.
    pub(super) pending: bool,
    client_random: Vec<u8>,
    /// The packet that completed the ClientHello: a kept session's key-log lines go before it.
    hello_packet: u64,
    inner: Box<Inner>,
}

/// The plaintext connection: its directions, and what it was classified as.
struct Inner {
    dirs: [Dir; 2],
    class: Class,
    content: Content,
    proto: Proto,
    why: &'static str,
    /// Plaintext bytes seen per direction: the stream offset of the next ones.
    offset: [u64; 2],
}

/// One direction of a keyed session, kept in its `Dir` so that the record walk can use it.
#[derive(Default)]
pub(super) struct DirTls {
    /// Decryption, from the ServerHello on.
    pub(super) dec: Option<DirDecrypt>,
    /// The ServerHello, read by the record walk for `start_decrypting`.
    pub(super) server_hello: Option<tls::ServerHello>,
    /// Whole records that completed before the keys were set up (the encrypted records in
    /// the ServerHello's own segment): opened once they are.
    pub(super) held: Vec<(tls::RecordHeader, Option<Vec<u8>>)>,
}

/// One direction's decryption.
pub(super) struct DirDecrypt {
    pub(super) dir: decrypt::Direction,
    /// Plaintext of the records completed by the segment being fed.
    pub(super) plain: Vec<u8>,
    /// Alerts read from protected records: (level, description).
    pub(super) alerts: Vec<Option<(u8, u8)>>,
    pub(super) failed: bool,
    /// Records were lost since the last one opened (a trimmed capture): the plaintext that
    /// follows starts at a record boundary, not where the last left off.
    pub(super) resynced: bool,
    /// Record bytes lost since the last record opened, which bound where the walk resumes
    /// (None: a hole of unknown size); and resynchronisations tried in vain, which are
    /// capped (hostile input).
    pub(super) lost: Option<u64>,
    vain: u32,
    scratch: Vec<u8>,
}

/// Segments that look like whole records but open at no nearby sequence number, before a
/// direction stops trying.
const MAX_VAIN_RESYNCS: u32 = 256;

impl DirDecrypt {
    /// After records were lost: whether this segment starts with a whole record the keys open
    /// at a later sequence number (then the walk restarts here, at that number).
    pub(super) fn resync(&mut self, segment: &[u8]) -> bool {
        let whole = segment.get(..5).and_then(|h| {
            let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
            Some((h, segment.get(5..5 + len)?)).filter(|_| matches!(h[0], 0x14..=0x18) && self.vain < MAX_VAIN_RESYNCS)
        });
        let Some((h, body)) = whole else {
            self.add_lost(segment.len() as u64);
            return false;
        };
        let found = self.dir.find_seq(h[0], u16::from_be_bytes([h[1], h[2]]), body, self.lost, &mut self.scratch);
        if found {
            (self.resynced, self.lost) = (true, Some(0));
        } else {
            self.vain += 1;
            self.add_lost(segment.len() as u64);
        }
        found
    }

    pub(super) fn add_lost(&mut self, n: u64) {
        if let Some(l) = &mut self.lost {
            *l += n;
        }
    }

    /// Opens one whole record; `None` when bytes of it were not captured (its sequence
    /// number is used up all the same).
    pub(super) fn record(&mut self, h: &tls::RecordHeader, body: Option<&[u8]>) {
        if self.failed {
            return;
        }
        let Some(body) = body else {
            self.dir.skip_record();
            return;
        };
        match self.dir.open(h.content_type, h.version, body, &mut self.scratch) {
            Opened::Data => self.plain.extend_from_slice(&self.scratch),
            Opened::Alert(a) => self.alerts.push(a),
            Opened::Handshake | Opened::Skipped => {}
            Opened::Failed => self.failed = true,
        }
    }
}

impl Keyed {
    pub(super) fn new(client_random: &[u8], fallback: (Class, Proto, &'static str), hello_packet: u64) -> Box<Keyed> {
        Box::new(Keyed {
            fallback,
            pending: true,
            client_random: client_random.to_vec(),
            hello_packet,
            inner: Box::new(Inner {
                dirs: [Dir::default(), Dir::default()],
                class: Class::Undecided,
                content: Content::Unknown,
                proto: Proto::Unknown,
                why: "",
                offset: [0, 0],
            }),
        })
    }
}

impl Engine {
    /// After the record walk of one segment of a keyed session: sets up decryption at the
    /// ServerHello, reports decrypted alerts, and runs new plaintext through the inner
    /// connection. Returns whether the plaintext held something important (the upgrade, a
    /// control frame), which makes the segment's packet kept whole.
    pub(super) fn after_records(&mut self, key: FlowKey, side: Side, base: u32) -> bool {
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let conv = flow.conv;
        if let Some(sh) = flow.dirs[side.index()].tls.as_mut().and_then(|t| t.server_hello.take()) {
            self.start_decrypting(key, &sh);
        }
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let Some(dec) = flow.dirs[side.index()].tls.as_mut().and_then(|t| t.dec.as_mut()) else {
            return false;
        };
        let plain = std::mem::take(&mut dec.plain);
        let alerts = std::mem::take(&mut dec.alerts);
        let failed = dec.failed;
        let resynced = std::mem::take(&mut dec.resynced);
        // A protected alert (close_notify among them) is kept whole, like a clear one.
        let alerted = !alerts.is_empty();
        for a in alerts {
            self.ev.push(conv, key, side, Event::Alert { level: a.map(|a| a.0), description: a.map(|a| a.1) });
        }
        if failed {
            self.give_up_keys(key, NoKeys::Wrong);
            return alerted;
        }
        if plain.is_empty() {
            return alerted;
        }
        self.run_inner(key, side, &plain, base, resynced) || alerted
    }

    /// The ServerHello tells the version and cipher suite: with the client random and the key
    /// log, each direction's keys.
    fn start_decrypting(&mut self, key: FlowKey, sh: &tls::ServerHello) {
        // A HelloRetryRequest is a ServerHello with this random (RFC 8446 §4.1.3): the real
        // one follows.
        const HRR: [u8; 32] = [
            0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91, 0xc2, 0xa2,
            0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
        ];
        if sh.random == HRR {
            return;
        }
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let (Some(k), Some(client)) = (flow.keyed.as_ref(), flow.client) else {
            return;
        };
        let pair = decrypt::Direction::pair(
            self.keys.get(&k.client_random),
            &k.client_random,
            &sh.random,
            sh.cipher,
            sh.version,
        );
        match pair {
            Ok([c, s]) => {
                for (side, d) in [(client, c), (client.other(), s)] {
                    let t = flow.dirs[side.index()].tls.get_or_insert_with(Box::default);
                    let mut dec = DirDecrypt {
                        dir: d,
                        plain: Vec::new(),
                        alerts: Vec::new(),
                        failed: false,
                        resynced: false,
                        lost: Some(0),
                        vain: 0,
                        scratch: Vec::new(),
                    };
                    // Records that completed before the keys were known, in order.
                    for (h, body) in std::mem::take(&mut t.held) {
                        dec.record(&h, body.as_deref());
                    }
                    t.dec = Some(dec);
                }
            }
            Err(why) => self.give_up_keys(key, why),
        }
    }

    /// The session is read as without keys from here on: a note names it, and a flow still
    /// waiting gets the verdict it would have had without keys.
    fn give_up_keys(&mut self, key: FlowKey, why: NoKeys) {
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let Some(k) = flow.keyed.take() else { return };
        for d in &mut flow.dirs {
            d.tls = None;
        }
        let client = flow.client.unwrap_or(Side::A);
        let random: String = k.client_random.iter().take(8).map(|b| format!("{b:02x}")).collect();
        self.notes.push(format!(
            "TLS session {} -> {} (client random {random}…) read without keys: {}",
            key.endpoint(client),
            key.endpoint(client.other()),
            why.describe()
        ));
        if k.pending {
            let (class, proto, why) = k.fallback;
            flow.class = class;
            (flow.proto, flow.why) = (proto, why);
            if class.kept()
                && let Ok(r) = <[u8; 32]>::try_from(k.client_random.as_slice())
            {
                self.kept_tls_randoms.push((r, Some(k.hello_packet)));
            }
            self.on_classified(key);
        }
    }

    /// Runs plaintext of one direction through the inner connection, with its directions and
    /// class swapped in for the flow's own.
    fn run_inner(&mut self, key: FlowKey, side: Side, plain: &[u8], base: u32, resynced: bool) -> bool {
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let Some(mut k) = flow.keyed.take() else { return false };
        let start = k.inner.offset[side.index()];
        k.inner.offset[side.index()] += plain.len() as u64;
        swap(flow, &mut k.inner);
        if resynced {
            // Plaintext was lost with the records: frames resynchronise as after any gap.
            super::lose_sync(&mut flow.dirs[side.index()]);
        }
        let at_packet = self.ev.at.frame;
        self.reading_inner = true;
        let consumed = self.consume(key, side, start, plain, at_packet, base);
        self.reading_inner = false;
        let flow = self.flows.get_mut(&key).expect("flow exists");
        // The pending flow: its packets get the verdict of what the plaintext is.
        if flow.needs_content() {
            // Classified, it resolves the waiting packets of the flow with its own verdict.
            self.try_classify(key);
        }
        let flow = self.flows.get_mut(&key).expect("flow exists");
        let (decided, inner_class) = (flow.class != Class::Undecided, flow.class);
        swap(flow, &mut k.inner);
        if k.pending && decided {
            k.pending = false;
            let kept = inner_class.kept();
            flow.class = if kept { Class::Tls } else { Class::Dropped };
            if kept && let Ok(r) = <[u8; 32]>::try_from(k.client_random.as_slice()) {
                self.kept_tls_randoms.push((r, Some(k.hello_packet)));
            }
            flow.why = match inner_class {
                Class::WebSocket => "a WebSocket upgrade inside TLS (decrypted)",
                Class::H2Preface => "HTTP/2 inside TLS (decrypted)",
                Class::Tunnel => "an HTTP CONNECT inside TLS (decrypted)",
                c if c.kept() => "TLS kept for what it carries (decrypted)",
                _ => "HTTPS without an upgrade (decrypted)",
            };
            if !kept {
                for d in &mut flow.dirs {
                    d.tls = None;
                    d.phase = Phase::Bulk;
                }
            }
        }
        flow.keyed = Some(k);
        self.note_reading_changed(key);
        consumed == super::Consumed::Important
    }
}

/// Exchanges the flow's directions and classification with the inner connection's.
fn swap(flow: &mut super::Flow, inner: &mut Inner) {
    std::mem::swap(&mut flow.dirs, &mut inner.dirs);
    std::mem::swap(&mut flow.class, &mut inner.class);
    std::mem::swap(&mut flow.content, &mut inner.content);
    std::mem::swap(&mut flow.proto, &mut inner.proto);
    std::mem::swap(&mut flow.why, &mut inner.why);
}
