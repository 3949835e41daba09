//! `diagnose`: names the phase of each WebSocket attempt that failed and the frames that
//! prove it (SPEC "What `diagnose` reports").
//!
//! `track` collects the facts in one pass; this module turns them into attempts, pairs the
//! legs of proxied attempts, and walks each attempt in troubleshooting order — DNS, TCP
//! connect, TLS, the request, the response, then the connection's lifetime — stopping at the
//! first phase that failed, so headers are never blamed before the path to the server is
//! proven. Findings across attempts (a fixed idle interval) come last.

mod html;
mod ladder;
mod track;

pub use html::page as html_page;

pub use ladder::{Ladder, Step as LadderStep};

use std::io::{IsTerminal, Write};

use rustc_hash::FxHashMap;
use serde::Serialize;
use sha1::{Digest, Sha1};

use crate::capture::{Input, ReadOptions};
use crate::engine::Observed;
use crate::error::Result;
use crate::flow::Side;
use crate::policy::{Options, Selection};
use crate::proto::http;
use crate::report::Summary;
use crate::trim::{Listener, TrimConfig, observe};
use crate::wire::Addr;
use track::{At, Conv, Kind, Lookup, Tracker};

/// RFC 6455 §1.3: the server proves it read the key by hashing it with this GUID.
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// Legs of one proxied attempt start within this much of each other.
const LEG_PAIRING_NS: u64 = 1_000_000_000;
/// An idle gap at least this long before a close counts towards an idle-timeout pattern.
const MIN_IDLE_GAP_NS: u64 = 1_000_000_000;
/// A connection quiet this long with no ping/pong has no keepalive worth the name.
const NO_KEEPALIVE_IDLE_NS: u64 = 2_000_000_000;
/// Closes within this fraction of each other share one idle interval.
const IDLE_TOLERANCE: f64 = 0.10;

#[derive(Clone, Debug, Default)]
pub struct DiagnoseOptions {
    /// `--host` / `--port`: which flows count as attempts besides WebSocket upgrades.
    pub select: Selection,
    pub read: ReadOptions,
    /// `--keylog`: TLS secrets to read wss:// sessions with.
    pub keylog: Option<std::sync::Arc<Vec<u8>>>,
    /// Build the ladder diagrams (`--ladder`, `--html`); they cost time on big captures.
    pub ladders: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// An enum whose variants have stable names for scripts (`--json`, docs): each variant and its
/// name are written once, and the list of all, the name, `Display` and serde's form come from
/// that one line (three lists kept in step by hand drifted apart before).
macro_rules! named {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)* }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named! {
    /// The finding codes: stable names for scripts (`--json`), one per kind of failure or fact.
    Code {
        DnsFailure => "dns-failure",
        TcpConnectRefused => "tcp-connect-refused",
        TcpConnectTimeout => "tcp-connect-timeout",
        TlsAlert => "tls-alert",
        TlsReset => "tls-reset",
        TlsAborted => "tls-aborted",
        H2Negotiated => "h2-negotiated",
        UpgradeHeaderMissing => "upgrade-header-missing",
        ProxyStrippedUpgrade => "proxy-stripped-upgrade",
        UpgradeRejected => "upgrade-rejected",
        UpgradeUnanswered => "upgrade-unanswered",
        AuthRedirect => "auth-redirect",
        BadAccept => "bad-accept",
        TlsToPlainPort => "tls-to-plain-port",
        ProxyConnectFailed => "proxy-connect-failed",
        OneSidedCapture => "one-sided-capture",
        ResetAfterUpgrade => "reset-after-upgrade",
        ClosedAfterUpgrade => "closed-after-upgrade",
        IdleTimeout => "idle-timeout",
        NoKeepalive => "no-keepalive",
        Retransmissions => "retransmissions",
        ZeroWindow => "zero-window",
        UpgradeOk => "upgrade-ok",
    }
}

/// How a connection ended: the first FIN or the first RST.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseKind {
    Fin,
    Rst,
}

named! {
    /// Which leg of a (possibly proxied) attempt a connection is.
    Leg {
        Direct => "direct",
        ClientProxy => "client-proxy",
        ProxyBackend => "proxy-backend",
        /// A proxy's copy of the client's request to an auth service (nginx auth_request).
        AuthSubrequest => "auth-subrequest",
        /// Inside an HTTP CONNECT through a forward proxy.
        Tunnel => "tunnel",
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub frames: Vec<u64>,
    /// Index of the attempt it is about (text output groups by it).
    #[serde(skip)]
    pub attempt: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DnsFact {
    pub name: String,
    pub rcode: Option<u8>,
    pub answers: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AlertFact {
    pub level: Option<u8>,
    pub description: Option<String>,
    pub from: &'static str,
}

/// One WebSocket attempt: the keys of SPEC's example first, then the rest of what the
/// troubleshooting order looks at.
#[derive(Clone, Debug, Serialize)]
pub struct Attempt {
    pub client: String,
    pub server: String,
    pub leg: Leg,
    pub sni: Option<String>,
    pub path: Option<String>,
    pub status: Option<u16>,
    pub upgraded: bool,
    pub closed_by: Option<&'static str>,
    pub close: Option<CloseKind>,
    pub close_code: Option<u16>,
    pub idle_before_close_s: Option<f64>,
    pub frames: Vec<u64>,
    pub connect: &'static str,
    pub dns: Option<DnsFact>,
    pub alpn_offered: Vec<String>,
    pub alpn: Option<String>,
    pub tls_alert: Option<AlertFact>,
    pub host: Option<String>,
    pub upgrade: Option<String>,
    pub connection: Option<String>,
    pub ws_version: Option<String>,
    pub origin: Option<String>,
    pub reason: Option<String>,
    pub location: Option<String>,
    pub accept_valid: Option<bool>,
    pub duration_s: f64,
    pub data_frames_client: u64,
    pub data_frames_server: u64,
    pub data_bytes_client: u64,
    pub data_bytes_server: u64,
    pub pings: usize,
    pub pongs: usize,
    pub ping_interval_s: Option<f64>,
    pub close_frame_from: Option<&'static str>,
    pub retransmissions: usize,
    pub zero_windows: usize,
    #[serde(skip)]
    start_ns: u64,
    /// The client's address, to tell which other connections the same client made.
    #[serde(skip)]
    client_addr: Option<Addr>,
    /// The auth service's leg of this (client) leg, when the proxy asked one.
    #[serde(skip)]
    auth_leg: Option<usize>,
    #[serde(skip)]
    conv: usize,
    /// Which of the tracker's lookups named the server (the one `dns` tells of), for the ladder.
    #[serde(skip)]
    lookup: Option<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub file: String,
    pub attempts: Vec<Attempt>,
    pub findings: Vec<Finding>,
    /// TCP flows that are not attempts, by what they are ("TLS offering h2": 3): said when
    /// there is no attempt, so that "0 attempts" comes with its reason.
    #[serde(skip)]
    pub not_attempts: Vec<(&'static str, u64)>,
    /// One ladder diagram per attempt (`--ladder`).
    #[serde(skip)]
    pub ladders: Vec<Ladder>,
}

impl Report {
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

/// Reads a capture and diagnoses it. A truncated last record is a warning in the report.
pub fn diagnose(input: Input, file: &str, opts: &DiagnoseOptions, warnings: &mut Vec<String>) -> Result<Report> {
    struct Observer(Tracker);
    impl Listener for Observer {
        fn event(&mut self, e: Observed) {
            self.0.observe(e);
        }
    }
    // `trim`'s own pass with the output thrown away: the engine that decides what trim keeps
    // is the one whose events make the diagnosis.
    let policy = Options { select: opts.select.clone(), observe: true, ..Options::default() };
    let cfg = TrimConfig { policy, read: opts.read, keylog: opts.keylog.clone(), ..TrimConfig::default() };
    let mut summary = Summary::default();
    let mut observer = Observer(Tracker::new());
    observe(input, &cfg, &mut summary, None, &mut observer)?;
    let tracker = observer.0;
    warnings.extend(summary.warnings);
    if tracker.evicted > 0 {
        warnings.push(format!(
            "more than {} connections were open at once; {} of the quietest were not analysed",
            track::MAX_OPEN_CONVS,
            tracker.evicted
        ));
    }
    if tracker.lookups_dropped > 0 {
        warnings.push(format!(
            "more than {} DNS lookups; {} later ones were not analysed",
            track::MAX_LOOKUPS,
            tracker.lookups_dropped
        ));
    }
    // Once per file: what keys would show.
    let hidden = tracker
        .conversations()
        .filter(|(_, c)| c.is_attempt() && c.kind == track::Kind::Tls && c.app_data.iter().any(Option::is_some))
        .count();
    if hidden > 0 {
        warnings.push(format!(
            "{hidden} TLS session(s) may carry a WebSocket upgrade that is not visible without their keys: run \
             the client with SSLKEYLOGFILE=keys.log and pass --keylog keys.log (or embed the keys in the capture: \
             editcap --inject-secrets tls,keys.log in.pcap out.pcapng)"
        ));
    }
    Ok(analyse(file, &tracker, opts.ladders))
}

fn side_name(c: &Conv, s: Side) -> &'static str {
    if c.client == Some(s) { "client" } else { "server" }
}

fn secs(ns: u64) -> f64 {
    (ns as f64 / 1e6).round() / 1e3
}

fn expected_accept(key: &str) -> String {
    use base64::Engine;
    let digest = Sha1::digest(format!("{}{WEBSOCKET_GUID}", key.trim()).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// The tracker's lookups by the name asked and by each address answered, each list in
/// capture order: an attempt finds its lookup among its own names' and address's, where a
/// scan of every lookup for every attempt took 25 ms of a 1 GB capture's 0.45 s (8,000
/// conversations; it grows as their product).
struct LookupIndex<'a> {
    lookups: &'a [Lookup],
    by_name: FxHashMap<&'a str, Vec<usize>>,
    by_addr: FxHashMap<Addr, Vec<usize>>,
}

impl<'a> LookupIndex<'a> {
    fn new(lookups: &'a [Lookup]) -> LookupIndex<'a> {
        let mut by_name: FxHashMap<&str, Vec<usize>> = FxHashMap::default();
        let mut by_addr: FxHashMap<Addr, Vec<usize>> = FxHashMap::default();
        for (k, l) in lookups.iter().enumerate() {
            by_name.entry(l.name.as_str()).or_default().push(k);
            for a in &l.addrs {
                let v = by_addr.entry(*a).or_default();
                // An address answered twice in one lookup is listed once.
                if v.last() != Some(&k) {
                    v.push(k);
                }
            }
        }
        LookupIndex { lookups, by_name, by_addr }
    }

    /// The last lookup, not asked after `before_ns`, of one of `names` or answering `addr`.
    fn last_of(&self, names: &[String], addr: &Addr, before_ns: u64) -> Option<usize> {
        let asked_in_time = |&k: &usize| self.lookups[k].query.is_none_or(|q| q.ts_ns <= before_ns);
        let last_in = |list: Option<&Vec<usize>>| list.and_then(|v| v.iter().rev().copied().find(asked_in_time));
        names
            .iter()
            .map(|n| last_in(self.by_name.get(n.as_str())))
            .chain([last_in(self.by_addr.get(addr))])
            .flatten()
            .max()
    }
}

fn build_attempt(i: usize, c: &Conv, index: &LookupIndex<'_>) -> Attempt {
    let lookups = index.lookups;
    let client = c.client.unwrap_or(Side::A);
    let server = client.other();
    let req = c.request.as_ref().map(|(r, _)| r);
    let resp = c.response.as_ref().map(|(r, _)| r);
    let upgraded = c.upgraded();
    let upgraded_at = c.response.as_ref().filter(|_| upgraded).map(|(_, at)| at.ts_ns).unwrap_or(0);
    // The end of the connection: the first FIN or RST (after the 101, if there was one).
    let fin = c.fins.iter().find(|(_, at, _)| at.ts_ns >= upgraded_at);
    let rst = c.rsts.iter().find(|(_, at, _)| at.ts_ns >= upgraded_at);
    let end = match (fin, rst) {
        (Some(f), Some(r)) => Some(if r.1.frame < f.1.frame { (CloseKind::Rst, r) } else { (CloseKind::Fin, f) }),
        (Some(f), None) => Some((CloseKind::Fin, f)),
        (None, Some(r)) => Some((CloseKind::Rst, r)),
        (None, None) => None,
    };
    let first_close = c.closes.first();
    // The idle gap before the close: from the last payload packet before the first close
    // frame or the first FIN/RST (whichever came first) to it. Payload activity, not frame
    // contents, is what a proxy's idle timer sees, and it survives trimming.
    let close_event = match (first_close, end) {
        (Some(cf), Some((_, (_, at, before)))) if at.frame < cf.at.frame => Some((*at, *before)),
        (Some(cf), _) => Some((cf.at, cf.activity_before)),
        (None, Some((_, (_, at, before)))) => Some((*at, *before)),
        (None, None) => None,
    };
    let idle = match (upgraded, close_event) {
        (true, Some((at, Some(last)))) if at.ts_ns >= last.ts_ns => Some(secs(at.ts_ns - last.ts_ns)),
        _ => None,
    };
    let connect = if c.syns.is_empty() {
        "mid-stream"
    } else if c.synack.is_some() {
        "established"
    } else if c.one_sided() {
        "one-sided"
    } else if c.rsts.iter().any(|(s, _, _)| *s == server) {
        "refused"
    } else {
        "timeout"
    };
    let names: Vec<String> =
        [req.and_then(|r| r.host_name()), c.client_hello.as_ref().and_then(|(h, _)| h.sni.clone())]
            .into_iter()
            .flatten()
            .collect();
    let server_addr = c.key.addr(server);
    let lookup = index.last_of(&names, &server_addr, c.first.ts_ns);
    let dns = lookup.map(|k| &lookups[k]).map(|l| DnsFact {
        name: l.name.clone(),
        rcode: l.rcode,
        answers: l.addrs.iter().map(Addr::to_string).collect(),
    });
    let alert = c.alerts.iter().find(|a| a.description.is_some()).or(c.alerts.first());
    let mut frames: Vec<u64> = Vec::new();
    frames.extend(c.syns.first().map(|a| a.frame));
    frames.extend(c.client_hello.as_ref().map(|(_, a)| a.frame));
    frames.extend(alert.map(|a| a.at.frame));
    frames.extend(c.request.as_ref().map(|(_, a)| a.frame));
    frames.extend(c.response.as_ref().map(|(_, a)| a.frame));
    frames.extend(first_close.map(|cf| cf.at.frame));
    frames.extend(end.map(|(_, (_, a, _))| a.frame));
    frames.sort_unstable();
    frames.dedup();
    let ping_interval = (c.pings.count >= 2).then(|| {
        let (first, last) = (c.pings.first.map_or(0, |a| a.ts_ns), c.pings.last.map_or(0, |a| a.ts_ns));
        secs(last.saturating_sub(first) / (c.pings.count - 1))
    });
    let cs = &c.dir_stats[client.index()];
    let ss = &c.dir_stats[server.index()];
    Attempt {
        client: c.key.endpoint(client),
        client_addr: Some(c.key.addr(client)),
        auth_leg: None,
        server: c.key.endpoint(server),
        leg: if req.is_some_and(|r| r.method.eq_ignore_ascii_case("CONNECT")) { Leg::Tunnel } else { Leg::Direct },
        sni: c.client_hello.as_ref().and_then(|(h, _)| h.sni.clone()),
        path: req.map(|r| r.path.clone()),
        status: resp.map(|r| r.status),
        upgraded,
        closed_by: end.map(|(_, (s, _, _))| side_name(c, *s)),
        close: end.map(|(k, _)| k),
        close_code: first_close.and_then(|cf| cf.code),
        idle_before_close_s: idle,
        frames,
        connect,
        dns,
        alpn_offered: c.client_hello.as_ref().map(|(h, _)| h.alpn.clone()).unwrap_or_default(),
        alpn: c.server_alpn.clone().filter(|a| !a.is_empty()),
        tls_alert: alert.map(|a| AlertFact {
            level: a.level,
            description: a.description.map(|d| alert_name(d).to_string()),
            from: side_name(c, a.from),
        }),
        host: req.and_then(|r| r.host.clone()),
        upgrade: req.and_then(|r| r.upgrade.clone()),
        connection: req.and_then(|r| r.connection.clone()),
        ws_version: req.and_then(|r| r.ws_version.clone()),
        origin: req.and_then(|r| r.origin.clone()),
        reason: resp.map(|r| r.reason.clone()),
        location: resp.and_then(|r| r.location.clone()),
        accept_valid: match (req.and_then(|r| r.ws_key.as_deref()), resp.filter(|r| r.status == 101)) {
            (Some(k), Some(r)) => Some(r.accept.as_deref().map(str::trim) == Some(expected_accept(k).as_str())),
            _ => None,
        },
        duration_s: secs(c.last.ts_ns.saturating_sub(c.first.ts_ns)),
        data_frames_client: cs.data_frames,
        data_frames_server: ss.data_frames,
        data_bytes_client: cs.data_bytes,
        data_bytes_server: ss.data_bytes,
        pings: c.pings.count as usize,
        pongs: c.pongs.count as usize,
        ping_interval_s: ping_interval,
        close_frame_from: first_close.map(|cf| side_name(c, cf.from)),
        retransmissions: c.retransmissions.count as usize,
        zero_windows: c.zero_windows.count as usize,
        start_ns: c.first.ts_ns,
        conv: i,
        lookup,
    }
}

fn alert_name(d: u8) -> &'static str {
    match d {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        22 => "record_overflow",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        109 => "missing_extension",
        110 => "unsupported_extension",
        112 => "unrecognized_name",
        116 => "certificate_required",
        120 => "no_application_protocol",
        _ => "unknown",
    }
}

fn forwarded(c: &Conv) -> bool {
    c.request.as_ref().is_some_and(|(r, _)| r.forwarded || r.via.is_some())
}

/// Pairs the legs of proxied attempts; returns, per attempt, its partner on the other leg.
/// Copies of one request a proxy chain makes (front, auth services, backend): more attempts
/// with one key within a second are other clients sending the same key, not legs.
const MAX_LEGS: usize = 8;
/// Attempts with its key that an attempt looks at for its legs (those of the second after its
/// start). A client library that sends one fixed key to one server thousands of times a second
/// made each attempt look at every later one, none of them a leg (20,000 in a fifth of a
/// second: 1.9 s).
const MAX_LEG_CANDIDATES: usize = 8 * MAX_LEGS;

fn pair_legs(attempts: &mut [Attempt], t: &Tracker) -> Vec<Option<usize>> {
    let mut partner = vec![None; attempts.len()];
    // Legs of one attempt carry the same Sec-WebSocket-Key: random per attempt, and forwarded
    // by proxies that rewrite the path (location /app/ -> /) or drop Upgrade. The path is no
    // part of the match.
    // Borrowed, not cloned: each attempt is compared with every other in its second.
    let key_of = |a: &Attempt| t.conv(a.conv).request.as_ref().and_then(|(r, _)| r.ws_key.as_deref());
    let status_of = |a: &Attempt| t.conv(a.conv).response.as_ref().map(|(r, _)| r.status);
    let asks_upgrade = |a: &Attempt| {
        t.conv(a.conv)
            .request
            .as_ref()
            .is_some_and(|(r, _)| r.upgrade.as_deref().is_some_and(|u| u.to_ascii_lowercase().contains("websocket")))
    };
    // Attempts by key, in order of start: a capture can hold thousands of attempts a second
    // (and a client library that always sends the same key).
    let mut by_key: FxHashMap<&str, Vec<usize>> = FxHashMap::default();
    for (i, a) in attempts.iter().enumerate() {
        if let Some(k) = key_of(a) {
            by_key.entry(k).or_default().push(i);
        }
    }
    for i in 0..attempts.len() {
        if partner[i].is_some() || attempts[i].leg != Leg::Direct {
            continue;
        }
        let Some(same) = key_of(&attempts[i]).and_then(|k| by_key.get(k)) else { continue };
        // Attempts are in order of start: the first is the client's leg, the others the
        // proxy's copies of its request (an auth service's among them), within a second.
        let after = same.partition_point(|&j| j <= i);
        let group: Vec<usize> = same[after..]
            .iter()
            .copied()
            .take_while(|&j| attempts[j].start_ns.saturating_sub(attempts[i].start_ns) <= LEG_PAIRING_NS)
            .take(MAX_LEG_CANDIDATES)
            .filter(|&j| partner[j].is_none() && attempts[j].leg == Leg::Direct)
            // A proxy forwards elsewhere: the same key sent to the same server again is
            // another attempt (a client library that sends a fixed key), not a leg.
            .filter(|&j| attempts[j].server != attempts[i].server)
            .take(MAX_LEGS)
            .collect();
        if group.is_empty() {
            continue;
        }
        // An auth service's copy (nginx auth_request, Traefik forwardAuth, Envoy ext_authz):
        // no Upgrade, answered 2xx with another leg after it, or 401/403 that the client got too.
        let front_status = status_of(&attempts[i]);
        let mut backend = None;
        for (n, &j) in group.iter().enumerate() {
            let st = status_of(&attempts[j]);
            let later = n + 1 < group.len();
            let auth = !asks_upgrade(&attempts[j])
                && (st.is_some_and(|s| (200..300).contains(&s)) && later
                    || st.is_some_and(|s| s == 401 || s == 403) && st == front_status);
            if auth {
                attempts[j].leg = Leg::AuthSubrequest;
                attempts[i].auth_leg.get_or_insert(j);
            } else if backend.is_none() {
                backend = Some(j);
            }
        }
        let Some(j) = backend else {
            attempts[i].leg = Leg::ClientProxy;
            continue;
        };
        // The backend leg carries X-Forwarded-* / Via, or else starts second.
        let (front, back) = match (forwarded(t.conv(attempts[i].conv)), forwarded(t.conv(attempts[j].conv))) {
            (true, false) => (j, i),
            _ => (i, j),
        };
        partner[front] = Some(back);
        partner[back] = Some(front);
        attempts[front].leg = Leg::ClientProxy;
        attempts[back].leg = Leg::ProxyBackend;
    }
    // A TLS leg terminated by a proxy: its backend leg starts while it is open, from the
    // address the TLS leg connected to. Indexed by address: a capture may hold many attempts.
    let mut http_by_client: FxHashMap<Addr, Vec<usize>> = FxHashMap::default();
    let mut by_server: FxHashMap<Addr, Vec<usize>> = FxHashMap::default();
    for (j, a) in attempts.iter().enumerate() {
        let c = t.conv(a.conv);
        if let Some(cl) = c.client {
            if c.kind == Kind::Http {
                http_by_client.entry(c.key.addr(cl)).or_default().push(j);
            }
            if c.request.is_some() {
                by_server.entry(c.key.addr(cl.other())).or_default().push(j);
            }
        }
    }
    for i in 0..attempts.len() {
        let ci = t.conv(attempts[i].conv);
        if ci.kind != Kind::Tls || partner[i].is_some() || attempts[i].leg == Leg::Tunnel {
            continue;
        }
        let Some(proxy) = ci.client.map(|cl| ci.key.addr(cl.other())) else { continue };
        let legs = http_by_client.get(&proxy).map_or(&[][..], Vec::as_slice);
        // In order of start: only those that start while the TLS leg is open are read.
        let from = legs.partition_point(|&j| attempts[j].start_ns < ci.first.ts_ns);
        for &j in legs[from..].iter().take_while(|&&j| attempts[j].start_ns <= ci.last.ts_ns) {
            let cj = t.conv(attempts[j].conv);
            if partner[j].is_none() && i != j && cj.first.ts_ns >= ci.first.ts_ns && cj.first.ts_ns <= ci.last.ts_ns {
                partner[i] = Some(j);
                partner[j] = Some(i);
                attempts[i].leg = Leg::ClientProxy;
                attempts[j].leg = Leg::ProxyBackend;
                break;
            }
        }
    }
    // A proxy's connect to its upstream that never got as far as a request (refused, timed
    // out): made while a front leg was open, from the address that leg connected to.
    for j in 0..attempts.len() {
        let cj = t.conv(attempts[j].conv);
        if partner[j].is_some() || cj.request.is_some() || cj.syns.is_empty() {
            continue;
        }
        let Some(from) = cj.client.map(|cl| cj.key.addr(cl)) else { continue };
        let front = by_server.get(&from).into_iter().flatten().copied().find(|&i| {
            let ci = t.conv(attempts[i].conv);
            i != j
                && partner[i].is_none()
                && attempts[i].leg != Leg::Tunnel
                && cj.first.ts_ns >= ci.first.ts_ns
                && cj.first.ts_ns <= ci.last.ts_ns
        });
        if let Some(i) = front {
            partner[i] = Some(j);
            partner[j] = Some(i);
            attempts[i].leg = Leg::ClientProxy;
            attempts[j].leg = Leg::ProxyBackend;
        }
    }
    for (i, a) in attempts.iter_mut().enumerate() {
        if partner[i].is_none() && a.leg == Leg::Direct && forwarded(t.conv(a.conv)) {
            a.leg = Leg::ProxyBackend;
        }
    }
    partner
}

fn finding(code: Code, severity: Severity, message: String, frames: Vec<u64>, attempt: Option<usize>) -> Finding {
    let mut frames = frames;
    frames.sort_unstable();
    frames.dedup();
    Finding { code, severity, message, frames, attempt }
}

fn analyse(file: &str, t: &Tracker, with_ladders: bool) -> Report {
    let index = LookupIndex::new(&t.lookups);
    // In the order they began, sorted before they are built: an attempt is 672 bytes, and a
    // stable sort of six thousand of them moved 50 MB.
    let mut order: Vec<(u64, u64, usize)> =
        t.conversations().filter(|(_, c)| c.is_attempt()).map(|(i, c)| (c.first.ts_ns, c.seq, i)).collect();
    order.sort_unstable();
    let mut attempts: Vec<Attempt> = order.iter().map(|&(_, _, i)| build_attempt(i, t.conv(i), &index)).collect();
    let partner = pair_legs(&mut attempts, t);
    let mut findings = Vec::new();

    // DNS first: a failing lookup is often the whole story — when it is the name of an
    // attempt, or no attempt followed it. A failure for a name no later attempt used (an ad
    // server, a typo in another tab) is noted, not blamed.
    // Sets, not lists: a capture can hold thousands of failed lookups and of attempts.
    let attempt_names: std::collections::HashSet<String> = attempts
        .iter()
        .flat_map(|a| [a.sni.clone(), a.host.as_deref().map(http::strip_port)])
        .flatten()
        .map(|h| h.trim_end_matches('.').to_ascii_lowercase())
        .collect();
    let last_start = attempts.iter().map(|a| a.start_ns).max();
    for l in &t.lookups {
        let failed = matches!(l.rcode, Some(2 | 3 | 5));
        let unanswered = l.response.is_none() && l.query.is_some();
        if failed || unanswered {
            let asked_ns = l.query.or(l.response).map_or(0, |a| a.ts_ns);
            let name = l.name.trim_end_matches('.').to_ascii_lowercase();
            let followed = last_start.is_some_and(|t| t >= asked_ns);
            let blamed = !followed || attempt_names.contains(&name);
            let what = match l.rcode {
                Some(3) => "does not exist (NXDOMAIN)".to_string(),
                Some(2) => "failed on the server (SERVFAIL)".to_string(),
                Some(5) => "was refused by the server (REFUSED)".to_string(),
                _ => "got no answer".to_string(),
            };
            let (severity, advice) = if blamed {
                (Severity::Error, "check the name in the client's URL and the resolver.")
            } else {
                (Severity::Info, "no WebSocket attempt after it used that name.")
            };
            findings.push(finding(
                Code::DnsFailure,
                severity,
                format!("DNS lookup of {} {what}: {advice}", l.name),
                [l.query, l.response].into_iter().flatten().map(|a| a.frame).collect(),
                None,
            ));
        }
    }

    // Where WebSockets were attempted: their servers and names, and the names their clients
    // looked up. HTTP/2 there explains a failure (error); HTTP/2 elsewhere is a fact (info).
    let is_ws = |a: &Attempt| {
        a.upgrade.as_deref().is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
            || a.ws_version.is_some()
            || t.conv(a.conv).kind == Kind::Frames
    };
    let ws_servers: std::collections::HashSet<&str> =
        attempts.iter().filter(|a| is_ws(a)).map(|a| a.server.as_str()).collect();
    let ws_clients: std::collections::HashSet<Addr> =
        attempts.iter().filter(|a| is_ws(a)).filter_map(|a| a.client_addr).collect();
    let mut ws_names: std::collections::HashSet<String> = attempts
        .iter()
        .filter(|a| is_ws(a))
        .flat_map(|a| [a.sni.clone(), a.host.as_deref().map(http::strip_port)])
        .flatten()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    ws_names.extend(
        attempts
            .iter()
            .filter(|a| a.client_addr.is_some_and(|c| ws_clients.contains(&c)))
            .filter_map(|a| a.sni.clone())
            .map(|h| h.to_ascii_lowercase()),
    );
    let h2_severity = |a: &Attempt| {
        let named = [a.sni.clone(), a.host.as_deref().map(http::strip_port)]
            .into_iter()
            .flatten()
            .any(|h| ws_names.contains(&h.to_ascii_lowercase()));
        if ws_servers.contains(a.server.as_str()) || named { Severity::Error } else { Severity::Info }
    };

    for (i, a) in attempts.iter().enumerate() {
        let c = t.conv(a.conv);
        let who = format!("{} -> {}", a.client, a.server);
        // An auth service's copy of the client's request is no WebSocket attempt of its own:
        // its answer is cited by the client leg's finding.
        if a.leg == Leg::AuthSubrequest {
            continue;
        }
        // One direction only: silence from the other proves nothing, so no verdict is drawn
        // from it (no connect timeout, no unanswered request).
        let one_sided = c.one_sided();
        if one_sided {
            let side = if c.client.is_some_and(|cl| c.sent[cl.index()] > 0) { "client" } else { "server" };
            findings.push(finding(
                Code::OneSidedCapture,
                Severity::Info,
                format!("{who}: only the {side}'s packets were captured (its ACKs show the other side answered): a capture filter or a mirror port saw one direction; what the other side sent is not in the file."),
                c.syns.iter().take(1).map(|s| s.frame).chain(c.last_payload.map(|p| p.frame)).collect(),
                Some(i),
            ));
        }
        // TCP connect.
        match a.connect {
            "refused" => {
                let mut fr: Vec<u64> = c.syns.iter().map(|s| s.frame).collect();
                fr.extend(c.rsts.first().map(|r| r.1.frame));
                findings.push(finding(
                    Code::TcpConnectRefused,
                    Severity::Error,
                    format!("{who}: the connection was refused (SYN answered by RST): nothing listens on that port, or a firewall rejects it."),
                    fr,
                    Some(i),
                ));
                continue;
            }
            "timeout" => {
                findings.push(finding(
                    Code::TcpConnectTimeout,
                    Severity::Error,
                    format!("{who}: {} SYN(s) never answered: the server or a firewall drops the connection; check routing and security groups.", c.syns.len()),
                    c.syns.iter().map(|s| s.frame).collect(),
                    Some(i),
                ));
                continue;
            }
            _ => {}
        }
        // A forward proxy's tunnel: refused, nothing inside it happened.
        if a.leg == Leg::Tunnel
            && let (Some((req, req_at)), Some((resp, resp_at))) = (&c.request, &c.response)
            && !(200..300).contains(&resp.status)
        {
            let why = match resp.status {
                407 => {
                    "the proxy wants credentials the client did not send (Proxy-Authorization): configure the client's proxy settings with them"
                }
                403 => {
                    "the proxy's policy forbids this destination or port: ask for it to be allowed (often only 443 is)"
                }
                502..=504 => "the proxy could not reach the destination: check its DNS, routes and firewall towards it",
                _ => "the proxy refused the tunnel: look at its logs",
            };
            findings.push(finding(
                Code::ProxyConnectFailed,
                Severity::Error,
                format!("{who}: CONNECT {} answered {} {}: {why}.", req.path, resp.status, resp.reason),
                vec![req_at.frame, resp_at.frame],
                Some(i),
            ));
            continue;
        }
        // TLS.
        if c.kind == Kind::Tls
            && let Some((status, at)) = c.plain_answer
        {
            findings.push(finding(
                Code::TlsToPlainPort,
                Severity::Error,
                format!("{who}: the client opened TLS{} but the server answered in plain HTTP ({}): the wss:// URL points at a ws:// (plain HTTP) port; use ws:// there, or the TLS port.", a.sni.as_ref().map(|s| format!(" for {s}")).unwrap_or_default(), if status == 0 { "text without a status line".to_string() } else { status.to_string() }),
                c.client_hello.iter().map(|(_, h)| h.frame).chain([at.frame]).collect(),
                Some(i),
            ));
            continue;
        }
        if c.kind == Kind::Tls {
            let app = c.app_data.iter().flatten().map(|x| x.ts_ns).min();
            if let Some(al) = c.alerts.iter().find(|al| al.level == Some(2) || al.description.is_some_and(|d| d != 0)) {
                let desc = al.description.map_or("an encrypted alert".to_string(), |d| alert_name(d).to_string());
                findings.push(finding(
                    Code::TlsAlert,
                    Severity::Error,
                    format!("{who}: the {} sent TLS alert {desc}{}: the handshake failed before any HTTP; check the certificate (trust, name, expiry) and TLS versions.", side_name(c, al.from), a.sni.as_ref().map(|s| format!(" for {s}")).unwrap_or_default()),
                    vec![al.at.frame],
                    Some(i),
                ));
                continue;
            }
            // A finished TLS 1.2 handshake (ChangeCipherSpec each way) is never reset or
            // aborted "during the handshake", whatever closes it later (close_notify, FIN).
            let finished = c.ccs.iter().all(Option::is_some);
            let before_app = |at: &At| !finished && app.is_none_or(|t| at.ts_ns < t);
            if let Some((s, at, _)) = c.rsts.iter().find(|(_, at, _)| before_app(at)) {
                findings.push(finding(
                    Code::TlsReset,
                    Severity::Error,
                    format!("{who}: the {} reset the connection during the TLS handshake: look at the TLS terminator's logs (SNI routing, protocol or cipher mismatch).", side_name(c, *s)),
                    vec![at.frame],
                    Some(i),
                ));
                continue;
            }
            if let Some((s, at, _)) = c.fins.iter().find(|(_, at, _)| before_app(at)) {
                findings.push(finding(
                    Code::TlsAborted,
                    Severity::Error,
                    format!("{who}: the {} closed the connection during the TLS handshake without an alert: typically a client that does not trust the server's certificate.", side_name(c, *s)),
                    vec![at.frame],
                    Some(i),
                ));
                continue;
            }
            if a.alpn.as_deref() == Some("h2") {
                findings.push(finding(
                    Code::H2Negotiated,
                    h2_severity(a),
                    format!("{who}: the server selected HTTP/2 (ALPN h2): an RFC 6455 upgrade cannot happen on it unless both sides support RFC 8441; offer only http/1.1 for WebSocket."),
                    a.frames.clone(),
                    Some(i),
                ));
                continue;
            }
        }
        if let Some(at) = c.h2_preface {
            findings.push(finding(
                Code::H2Negotiated,
                h2_severity(a),
                format!(
                    "{who}: the client speaks HTTP/2 (connection preface): no RFC 6455 upgrade on this connection."
                ),
                vec![at.frame],
                Some(i),
            ));
            continue;
        }
        let Some((req, req_at)) = &c.request else { continue };
        // The tunnel itself is judged above (and its TLS with the TLS checks).
        if a.leg == Leg::Tunnel {
            continue;
        }
        if req.upgrade.as_deref().is_some_and(|u| u.eq_ignore_ascii_case("h2c")) {
            findings.push(finding(
                Code::H2Negotiated,
                h2_severity(a),
                format!("{who}: the request asks for Upgrade: h2c (HTTP/2), not websocket."),
                vec![req_at.frame],
                Some(i),
            ));
            continue;
        }
        // An upgrade to another protocol (Docker's `Upgrade: tcp` attach, a custom tunnel)
        // with no Sec-WebSocket-* header: not a WebSocket, so neither its headers nor its
        // stream are judged as one.
        if req.upgrade.as_deref().is_some_and(|u| !u.to_ascii_lowercase().contains("websocket"))
            && req.ws_key.is_none()
            && req.ws_version.is_none()
        {
            continue;
        }
        // The request's headers; a backend leg is judged against its front leg.
        let has_upgrade = |r: &http::RequestHead| {
            r.upgrade.as_deref().is_some_and(|u| u.to_ascii_lowercase().contains("websocket"))
                && r.connection.as_deref().is_some_and(|c| c.to_ascii_lowercase().contains("upgrade"))
        };
        if !has_upgrade(req) {
            let front = partner[i].filter(|_| a.leg == Leg::ProxyBackend).map(|p| t.conv(attempts[p].conv));
            match front.and_then(|f| f.request.as_ref()) {
                Some((fr, fat)) if has_upgrade(fr) => findings.push(finding(
                    Code::ProxyStrippedUpgrade,
                    Severity::Error,
                    format!(
                        "The proxy forwarded {} to {} without the Upgrade/Connection headers the client sent: configure the proxy to pass them (nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\").",
                        req.path, a.server
                    ),
                    vec![fat.frame, req_at.frame],
                    Some(i),
                )),
                _ if a.leg != Leg::ProxyBackend => findings.push(finding(
                    Code::UpgradeHeaderMissing,
                    Severity::Error,
                    format!("{who}: the request for {} lacks Upgrade: websocket or Connection: Upgrade (Upgrade {:?}, Connection {:?}): the client or something in front of it dropped them.", req.path, req.upgrade, req.connection),
                    vec![req_at.frame],
                    Some(i),
                )),
                _ => {}
            }
        }
        // The response.
        let front_reports = a.leg == Leg::ProxyBackend && partner[i].is_some();
        let Some((resp, resp_at)) = &c.response else {
            if one_sided {
                continue;
            }
            let end = c.fins.first().or(c.rsts.first()).map(|x| x.1.frame);
            let message = if front_reports {
                // The backend leg of a proxied attempt: its silence is why the front leg got
                // the proxy's error (504), so it carries its own finding, with the proxy's
                // FIN or RST that gave up on it.
                let proxy_end =
                    c.client.and_then(|cl| c.fins.iter().chain(&c.rsts).filter(|x| x.0 == cl).map(|x| x.1.frame).min());
                let end = proxy_end.or(end);
                findings.push(finding(
                    Code::UpgradeUnanswered,
                    Severity::Error,
                    format!("{who}: the backend never answered the proxy's upgrade request for {}; the proxy {}: the backend hung or is overloaded, or the proxy's timeout is too short for it.", req.path, if end.is_some() { "gave up and closed the connection" } else { "was still waiting when the capture ended" }),
                    [Some(req_at.frame), end].into_iter().flatten().collect(),
                    Some(i),
                ));
                continue;
            } else {
                format!(
                    "{who}: the upgrade request for {} got no response before the connection {}: the server or a proxy hung; check its timeouts and logs.",
                    req.path,
                    if end.is_some() { "closed" } else { "capture ended" }
                )
            };
            findings.push(finding(
                Code::UpgradeUnanswered,
                Severity::Error,
                message,
                [Some(req_at.frame), end].into_iter().flatten().collect(),
                Some(i),
            ));
            continue;
        };
        if resp.status != 101 {
            if front_reports {
                continue;
            }
            let mut frames = vec![req_at.frame, resp_at.frame];
            let backend = partner[i].map(|p| t.conv(attempts[p].conv)).and_then(|b| b.response.as_ref());
            let auth = a.auth_leg.map(|p| (&attempts[p], t.conv(attempts[p].conv)));
            let via = match (auth, backend) {
                (Some((aa, ac)), _) if ac.response.is_some() => {
                    let (ar, aat) = ac.response.as_ref().expect("checked");
                    frames.extend(ac.request.as_ref().map(|(_, at)| at.frame));
                    frames.push(aat.frame);
                    format!(
                        " (the proxy's auth subrequest to {} {} answered {} {})",
                        aa.server,
                        aa.path.as_deref().unwrap_or("/"),
                        ar.status,
                        ar.reason
                    )
                }
                (_, Some((br, bat))) => {
                    frames.push(bat.frame);
                    format!(" (the backend answered {} {})", br.status, br.reason)
                }
                _ => String::new(),
            };
            if (300..400).contains(&resp.status) || resp.status == 401 || resp.status == 407 {
                findings.push(finding(
                    Code::AuthRedirect,
                    Severity::Error,
                    format!("{who}: {} {} instead of 101{}{via}: the WebSocket endpoint wants authentication (a login redirect); browsers do not follow redirects on a WebSocket handshake; send the session cookie or token the endpoint expects.", resp.status, resp.reason, resp.location.as_ref().map(|l| format!(" to {l}")).unwrap_or_default()),
                    frames,
                    Some(i),
                ));
            } else {
                let hint = match resp.status {
                    400 => {
                        "the server refused the handshake headers (often a proxy that dropped Upgrade/Connection, or a bad Sec-WebSocket-Version)"
                    }
                    403 => "the server forbids it: Origin check or authorization",
                    404 => "no WebSocket route at that path on the backend",
                    426 => {
                        "the server insists on an upgrade it did not get: Upgrade/Connection were missing when the request reached it"
                    }
                    502 => "the proxy could not reach its upstream: backend down or wrong proxy_pass address",
                    503 => "the service is unavailable or overloaded",
                    504 => "the proxy's upstream did not answer in time: backend hung or proxy timeout too short",
                    500..=599 => "the server failed: see its logs",
                    _ => "see the server's logs for why it refused",
                };
                findings.push(finding(
                    Code::UpgradeRejected,
                    Severity::Error,
                    format!(
                        "{who}: {} {} instead of 101 Switching Protocols for {}{via}: {hint}.",
                        resp.status, resp.reason, req.path
                    ),
                    frames,
                    Some(i),
                ));
            }
            continue;
        }
        if a.accept_valid == Some(false) {
            findings.push(finding(
                Code::BadAccept,
                Severity::Error,
                format!("{who}: the 101 carries Sec-WebSocket-Accept {:?}, not the value derived from the request's key: clients reject it; something between client and server rewrote the key or the answer.", resp.accept.as_deref().unwrap_or("")),
                vec![req_at.frame, resp_at.frame],
                Some(i),
            ));
            continue;
        }
        findings.push(finding(
            Code::UpgradeOk,
            Severity::Info,
            format!("{who}: 101 Switching Protocols for {}.", req.path),
            vec![req_at.frame, resp_at.frame],
            Some(i),
        ));
        lifetime(&mut findings, i, a, c, &who);
    }
    // TLS legs without visible HTTP still get their lifetime checks when they carried data.
    for (i, a) in attempts.iter().enumerate() {
        let c = t.conv(a.conv);
        if c.kind == Kind::Frames {
            lifetime(&mut findings, i, a, c, &format!("{} -> {}", a.client, a.server));
        }
    }
    idle_timeouts(&mut findings, &attempts);
    findings.sort_by_key(|f| (f.frames.first().copied().unwrap_or(u64::MAX), f.code.as_str()));
    let mut not_attempts: Vec<(&'static str, u64)> = t.not_attempts.iter().map(|(w, n)| (*w, *n)).collect();
    not_attempts.sort_by_key(|&(w, n)| (std::cmp::Reverse(n), w));
    let ladders = if with_ladders { ladder::build(&attempts, &findings, t, &partner) } else { Vec::new() };
    Report { file: file.to_string(), attempts, findings, not_attempts, ladders }
}

/// After the 101: how the connection ended, keepalive, retransmissions, zero windows.
fn lifetime(findings: &mut Vec<Finding>, i: usize, a: &Attempt, c: &Conv, who: &str) {
    let idle = a.idle_before_close_s.map(|s| format!(" after {s:.1} s idle")).unwrap_or_default();
    let end_frame = a.frames.last().copied().unwrap_or(0);
    // Close codes that say the WebSocket ended normally (none is 1005, as clean as 1000).
    let clean_code = |code: Option<u16>| code.is_none_or(|x| x == 1000 || x == 1001);
    match a.close {
        Some(CloseKind::Rst) => {
            // RFC 6455 §7.1.1: once a client has sent and received a Close it may drop the
            // connection; a reset then ends a WebSocket that already closed. Only a reset
            // before the closing handshake finished (or after an abnormal code) is a failure.
            let handshake_done = [Side::A, Side::B].iter().all(|&s| c.closes.iter().any(|cf| cf.from == s));
            let by = a.closed_by.unwrap_or("?");
            let code = a.close_code.map(|c| format!(" (close code {c} first)")).unwrap_or_default();
            let (severity, message) = if handshake_done && c.closes.iter().all(|cf| clean_code(cf.code)) {
                (
                    Severity::Info,
                    format!(
                        "{who}: the {by} reset the TCP connection{idle} after the closing handshake finished{code}: the WebSocket closed cleanly (RFC 6455 lets a client drop the connection once Close frames went both ways)."
                    ),
                )
            } else if handshake_done {
                (
                    Severity::Warning,
                    format!(
                        "{who}: the {by} reset the TCP connection{idle} after a closing handshake with an abnormal code{code}: see the code's meaning and the {by} side's logs."
                    ),
                )
            } else {
                (
                    Severity::Error,
                    format!(
                        "{who}: the {by} reset the WebSocket{idle}{code}: the application aborted it or a middlebox killed it; check the {} side's logs.",
                        a.closed_by.unwrap_or("closing")
                    ),
                )
            };
            findings.push(finding(
                Code::ResetAfterUpgrade,
                severity,
                message,
                c.rsts.iter().map(|r| r.1.frame).take(1).collect(),
                Some(i),
            ));
        }
        Some(CloseKind::Fin) => {
            // RFC 6455 §7.1.5: a close frame without a body is a close with no status (1005),
            // as clean as 1000 — it is the absence of any close frame that is not.
            let clean = clean_code(a.close_code) && (a.close_code.is_some() || !c.closes.is_empty());
            findings.push(finding(
                Code::ClosedAfterUpgrade,
                if clean { Severity::Info } else { Severity::Warning },
                match a.close_code {
                    Some(code) => format!("{who}: the {} closed the WebSocket{idle}, close code {code} from the {}.", a.closed_by.unwrap_or("?"), a.close_frame_from.unwrap_or("?")),
                    None if !c.closes.is_empty() => format!("{who}: the {} closed the WebSocket{idle} after close frames without a status code (1005, no status: a clean close).", a.closed_by.unwrap_or("?")),
                    None => format!("{who}: the {} closed the connection{idle} without a WebSocket close frame: an idle timeout or a crash, not a clean close.", a.closed_by.unwrap_or("?")),
                },
                vec![end_frame],
                Some(i),
            ));
        }
        _ => {}
    }
    // Idle with no ping matters when something else ended the connection; a clean close
    // (close frames with 1000/1001 or no status) after a quiet spell is the application's.
    let clean_close = !c.closes.is_empty() && c.closes.iter().all(|cf| clean_code(cf.code));
    if a.pings + a.pongs == 0
        && !clean_close
        && a.idle_before_close_s.is_some_and(|s| s * 1e9 >= NO_KEEPALIVE_IDLE_NS as f64)
    {
        findings.push(finding(
            Code::NoKeepalive,
            Severity::Warning,
            format!(
                "{who}: idle {idle} with no ping/pong: enable WebSocket pings shorter than the proxies' idle timeouts.",
                idle = a.idle_before_close_s.map(|s| format!("{s:.1} s")).unwrap_or_default()
            ),
            vec![end_frame],
            Some(i),
        ));
    }
    if c.retransmissions.count > 0 {
        findings.push(finding(
            Code::Retransmissions,
            Severity::Warning,
            format!("{who}: {} retransmitted segment(s): packet loss on the path.", c.retransmissions.count),
            c.retransmissions.frames.clone(),
            Some(i),
        ));
    }
    if c.zero_windows.count > 0 {
        findings.push(finding(
            Code::ZeroWindow,
            Severity::Warning,
            format!(
                "{who}: {} zero-window advertisement(s): a receiver stopped reading (slow consumer).",
                c.zero_windows.count
            ),
            c.zero_windows.frames.clone(),
            Some(i),
        ));
    }
}

/// Closes after the same idle gap on several connections: a proxy or load-balancer timeout.
fn idle_timeouts(findings: &mut Vec<Finding>, attempts: &[Attempt]) {
    let mut gaps: Vec<(f64, u64)> = attempts
        .iter()
        .filter(|a| a.leg != Leg::ProxyBackend && a.close.is_some())
        .filter_map(|a| {
            a.idle_before_close_s
                .filter(|s| s * 1e9 >= MIN_IDLE_GAP_NS as f64)
                .map(|s| (s, a.frames.last().copied().unwrap_or(0)))
        })
        .collect();
    gaps.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut best: &[(f64, u64)] = &[];
    for i in 0..gaps.len() {
        let j = gaps[i..].iter().take_while(|g| g.0 <= gaps[i].0 * (1.0 + IDLE_TOLERANCE)).count();
        if j > best.len() {
            best = &gaps[i..i + j];
        }
    }
    if best.len() >= 2 {
        let mean = best.iter().map(|g| g.0).sum::<f64>() / best.len() as f64;
        findings.push(finding(
            Code::IdleTimeout,
            Severity::Warning,
            format!(
                "closed after {mean:.1} s idle on {} connections: a proxy or load-balancer timeout (e.g. nginx proxy_read_timeout); send pings more often than that or raise the timeout.",
                best.len()
            ),
            best.iter().map(|g| g.1).collect(),
            None,
        ));
    }
}

/// Text for people: a verdict line per attempt, then the file's findings.
/// The ladder diagrams of a report, in `TEXT_WIDTH` columns (`diagnose --ladder`).
pub fn write_ladders(out: &mut dyn Write, r: &Report, color: bool) -> std::io::Result<()> {
    ladder::write_text(out, &r.ladders, TEXT_WIDTH, color)
}

/// `text` in its severity's colour on a terminal (red, yellow, green), as is otherwise.
fn paint_severity(s: Severity, text: &str, color: bool) -> String {
    if !color {
        return text.to_string();
    }
    let code = match s {
        Severity::Error => "31",
        Severity::Warning => "33",
        Severity::Info => "32",
    };
    format!("\x1b[{code}m{text}\x1b[0m")
}

pub fn write_text(out: &mut dyn Write, r: &Report, color: bool) -> std::io::Result<()> {
    let paint = |s: Severity, text: &str| paint_severity(s, text, color);
    if r.attempts.is_empty() && !r.not_attempts.is_empty() {
        let what: Vec<String> = r.not_attempts.iter().map(|(why, n)| format!("{n} {why}")).collect();
        let line = format!("{}: 0 WebSocket attempt(s); TCP flows seen: {}", r.file, what.join("; "));
        for l in wrap(&line, TEXT_WIDTH) {
            writeln!(out, "{l}")?;
        }
    } else {
        writeln!(out, "{}: {} WebSocket attempt(s)", r.file, r.attempts.len())?;
    }
    // Each attempt's first finding of the highest severity: the phase that failed first (one
    // pass over the findings; a capture can hold thousands of attempts).
    let mut worst: Vec<Option<&Finding>> = vec![None; r.attempts.len()];
    for f in &r.findings {
        if let Some(w) = f.attempt.and_then(|i| worst.get_mut(i))
            && w.is_none_or(|b| b.severity < f.severity)
        {
            *w = Some(f);
        }
    }
    for (a, worst) in r.attempts.iter().zip(worst) {
        let target = a.path.clone().or(a.sni.clone()).unwrap_or_default();
        let verdict = match worst {
            Some(f) => paint(f.severity, f.code.as_str()),
            None => "no findings".to_string(),
        };
        writeln!(out, "  {} -> {} [{}] {}: {}", a.client, a.server, a.leg, target, verdict)?;
    }
    for f in &r.findings {
        if f.severity == Severity::Info && f.code != Code::UpgradeOk {
            continue;
        }
        let frames: Vec<String> = f.frames.iter().map(u64::to_string).collect();
        let sev = format!("{:?}", f.severity).to_lowercase();
        writeln!(out, "  {} {}", paint(f.severity, &sev), f.code.as_str())?;
        for line in wrap(&f.message, TEXT_WIDTH - 6) {
            writeln!(out, "      {line}")?;
        }
        for line in wrap(&format!("frames {}", frames.join(", ")), TEXT_WIDTH - 6) {
            writeln!(out, "      {line}")?;
        }
    }
    Ok(())
}

/// Text output fits an 80-column terminal.
const TEXT_WIDTH: usize = 80;

/// Breaks text at spaces into lines of at most `width` characters (a longer word stands alone).
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// Colour only on a terminal, and never with NO_COLOR set.
pub fn use_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_legs_serialize_as_their_names() {
        for c in Code::ALL {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        for l in Leg::ALL {
            assert_eq!(serde_json::to_value(l).unwrap(), l.as_str());
        }
    }

    /// The index finds what a scan of every lookup finds: the last one, not asked after the
    /// attempt began, of one of its names or answering its server's address.
    #[test]
    fn the_lookup_index_agrees_with_a_scan() {
        let mut rnd = crate::test_rng::below(0x2545_f491_4f6c_dd1du64);
        let at = |t: u64| At { frame: t, ts_ns: t };
        let addr = |k: u64| Addr::v4([10, 0, 0, k as u8]);
        for _ in 0..200 {
            let lookups: Vec<Lookup> = (0..rnd(30))
                .map(|_| Lookup {
                    name: format!("h{}.example", rnd(5)),
                    query: (rnd(4) > 0).then(|| at(rnd(100))),
                    response: None,
                    rcode: None,
                    addrs: (0..rnd(3)).map(|_| addr(rnd(6))).collect(),
                })
                .collect();
            let index = LookupIndex::new(&lookups);
            for _ in 0..20 {
                let names: Vec<String> = (0..rnd(3)).map(|_| format!("h{}.example", rnd(6))).collect();
                let (server, first) = (addr(rnd(7)), rnd(110));
                let scan = lookups
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| l.query.is_none_or(|q| q.ts_ns <= first))
                    .rev()
                    .find(|(_, l)| names.contains(&l.name) || l.addrs.contains(&server))
                    .map(|(k, _)| k);
                assert_eq!(index.last_of(&names, &server, first), scan);
            }
        }
    }
}
