//! `--annotate`: a pcapng comment on each kept packet saying why it was kept, so that a
//! Wireshark user reading a trimmed capture sees the reasoning (`frame.comment`).
//!
//! The comment is read off the bytes as written (after scrubbing, so it can never carry what
//! scrubbing removed) and the flow's label from the policy. It runs only for kept packets of
//! an annotated run, off the hot path of a plain trim.

use std::fmt::Write as _;

use crate::capture::RecordMeta;
use crate::engine::Engine;
use crate::flow::{FlowKey, PROTO_TCP, PROTO_UDP};
use crate::policy::Verdict;
use crate::proto::units::{Header, UnitFormat};
use crate::proto::websocket::{self, Frames};
use crate::proto::{dns, http, tls};
use crate::wire::{self, Transport, tcp_flags};

/// The section header comment: which program and command line made this file.
pub fn section_comment(args: &[String]) -> String {
    format!("pcap-surgery {} trimmed this capture: {}", env!("CARGO_PKG_VERSION"), args.join(" "))
}

/// The section comment of a pseudonymized output: the options used, without their values or
/// the paths (a `--host` name or a file name would undo the pseudonyms).
pub fn section_comment_pseudonymized(args: &[String]) -> String {
    let options: Vec<&str> =
        args.iter().filter(|a| a.starts_with('-') && a.len() > 1).map(|a| a.split('=').next().unwrap_or(a)).collect();
    format!(
        "pcap-surgery {} trimmed this capture: {} (values and paths not recorded in a pseudonymized capture)",
        env!("CARGO_PKG_VERSION"),
        options.join(" ")
    )
}

/// Writes into `out` why the packet is in the output. `frame` is the whole captured packet
/// (as scrubbed, when scrubbing), also when only its headers are written.
pub fn reason(out: &mut String, engine: &Engine, meta: &RecordMeta, frame: &[u8], verdict: Verdict) {
    out.clear();
    let Ok(d) = wire::decode(meta.link_type, frame) else {
        out.push_str("kept: not TCP or UDP");
        return;
    };
    let proto = if matches!(d.transport, Transport::Tcp { .. }) { PROTO_TCP } else { PROTO_UDP };
    let (key, _) = FlowKey::of(d.src, d.sport, d.dst, d.dport, proto);
    let label = engine.flow_label(&key);
    let is_ws = label.is_some_and(|(p, _)| p == crate::engine::Proto::WebSocket);
    let mut parts: Vec<String> = Vec::new();
    if let Transport::Tcp { flags, .. } = d.transport {
        let syn = flags & tcp_flags::SYN != 0;
        let ack = flags & tcp_flags::ACK != 0;
        if syn {
            parts.push(if ack { "TCP SYN/ACK" } else { "TCP SYN" }.into());
        }
        if flags & tcp_flags::FIN != 0 {
            parts.push("TCP FIN".into());
        }
        if flags & tcp_flags::RST != 0 {
            parts.push("TCP RST".into());
        }
    }
    if let Some(what) = payload(d.payload, d.sport == 53 || d.dport == 53, is_ws) {
        parts.push(what);
    }
    let cut = matches!(verdict, Verdict::Truncate(n) if n < meta.caplen);
    if cut {
        parts.push("truncated: bulk".into());
    }
    if parts.is_empty() {
        parts.push(
            match (d.payload.is_empty(), verdict) {
                (true, Verdict::Keep) => "TCP ACK during the handshake",
                (true, _) => "TCP ACK",
                (false, _) => "payload",
            }
            .into(),
        );
    }
    out.push_str(&parts.join("; "));
    // The first packet of a flow also says why the flow is kept.
    let first = matches!(d.transport, Transport::Tcp { flags, .. } if flags & tcp_flags::SYN != 0);
    if let Some((p, why)) = label
        && !why.is_empty()
        && first
    {
        let _ = write!(out, " (flow: {}, {why})", p.name());
    }
}

/// What the packet's payload starts with, when it is something a diagnosis looks at.
fn payload(b: &[u8], dns_port: bool, websocket_flow: bool) -> Option<String> {
    if b.is_empty() {
        return None;
    }
    if dns_port && let Some(m) = dns::parse(b) {
        let name = m.names.first().cloned().unwrap_or_default();
        return Some(if m.response {
            format!("DNS response for {name} (rcode {})", m.rcode)
        } else {
            format!("DNS query for {name}")
        });
    }
    if http::looks_like_response(b) == Some(true) {
        let line = b.split(|&c| c == b'\r' || c == b'\n').next().unwrap_or_default();
        return Some(String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned());
    }
    if http::looks_like_request(b) == Some(true) {
        let method = b.split(|&c| c == b' ').next().unwrap_or_default();
        let upgrade = b.windows(8).any(|w| w.eq_ignore_ascii_case(b"upgrade:"));
        return Some(format!(
            "HTTP {} request{}",
            String::from_utf8_lossy(method),
            if upgrade { " with Upgrade" } else { "" }
        ));
    }
    // A record header as the record walker reads one, of the four common content types and a
    // TLS 1.x version.
    let tls_record = matches!(
        tls::Records::parse(&b[..b.len().min(5)]),
        Header::Complete { header, .. } if header.content_type <= tls::APPLICATION_DATA && header.version & 0xff <= 4
    );
    if tls_record && !websocket_flow {
        return Some(match (b[0], b.get(5)) {
            (tls::HANDSHAKE, Some(1)) => "TLS ClientHello".into(),
            (tls::HANDSHAKE, Some(2)) => "TLS ServerHello".into(),
            (tls::HANDSHAKE, _) => "TLS handshake".into(),
            (tls::ALERT, _) => "TLS alert".into(),
            (tls::CHANGE_CIPHER_SPEC, _) => "TLS ChangeCipherSpec".into(),
            _ => "TLS application data".into(),
        });
    }
    if websocket_flow {
        return Some(frames(b));
    }
    None
}

/// The WebSocket frames of a segment that is a whole run of frames. A segment that is not
/// may start inside a frame, where bytes that look like a header are data: it is named as
/// data rather than guessed at.
fn frames(b: &[u8]) -> String {
    if websocket::segment_is_frames(b).is_none() {
        return "WebSocket data".into();
    }
    let mut names = Vec::new();
    let mut rest = b;
    while !rest.is_empty() && names.len() < 4 {
        let Header::Complete { header, len, body } = Frames::parse(&rest[..rest.len().min(14)]) else { break };
        let end = (len as u64 + body).min(rest.len() as u64) as usize;
        names.push(match header.opcode {
            websocket::OP_CLOSE => match websocket::close_code(&header, &rest[len.min(end)..end]) {
                Some(code) => format!("close frame {code}"),
                None => "close frame".into(),
            },
            websocket::OP_PING => "ping".into(),
            websocket::OP_PONG => "pong".into(),
            websocket::OP_TEXT => "text frame".into(),
            websocket::OP_BINARY => "binary frame".into(),
            _ => "continuation frame".into(),
        });
        rest = &rest[end..];
    }
    format!("WebSocket {}", names.join(", "))
}
