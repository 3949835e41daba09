//! Ladder diagrams: an attempt as the sequence of what its endpoints said to each other —
//! connect, TLS hellos and alerts, the upgrade request and its answer, control frames, the
//! close — one lifeline per endpoint (client, proxy, backend, auth service), on a time axis
//! whose long quiet stretches are folded and labelled, with the failing step marked. Support
//! engineers explain a failed WebSocket this way; Wireshark's flow graph knows nothing of proxy
//! legs or findings. The diagram is built from the same conversations as the findings, and
//! shows what the text shows (query values as `*`, no cookies, no payloads).

use std::io::Write;

use super::track::{Conv, Tracker};
use super::{Attempt, Finding, Leg, Severity, alert_name};
use crate::flow::Side;

/// One attempt's diagram.
#[derive(Clone, Debug)]
pub struct Ladder {
    pub title: String,
    /// Endpoint names, left to right.
    pub lifelines: Vec<String>,
    pub steps: Vec<Step>,
    /// The attempts (legs) drawn in it, as indices into the report's attempts.
    pub attempts: Vec<usize>,
}

/// One arrow.
#[derive(Clone, Debug)]
pub struct Step {
    pub ts_ns: u64,
    pub frame: u64,
    pub from: usize,
    pub to: usize,
    pub label: String,
    /// The finding whose evidence ends at this step.
    pub finding: Option<(Severity, &'static str)>,
}

/// A gap between steps longer than this is folded into one labelled line.
pub(super) const FOLD_NS: u64 = 1_000_000_000;

/// The ladders of a report: one per attempt, with its proxy's backend and auth legs on the
/// same diagram.
pub fn build(attempts: &[Attempt], findings: &[Finding], t: &Tracker, partner: &[Option<usize>]) -> Vec<Ladder> {
    let mut out = Vec::new();
    for (i, a) in attempts.iter().enumerate() {
        if matches!(a.leg, Leg::ProxyBackend | Leg::AuthSubrequest) {
            continue;
        }
        let proxied = a.leg == Leg::ClientProxy;
        let mut lifelines =
            vec![format!("client {}", a.client), format!("{} {}", if proxied { "proxy" } else { "server" }, a.server)];
        let mut legs = vec![(i, 0, 1)];
        if let Some(b) = partner[i].filter(|&b| attempts[b].leg == Leg::ProxyBackend) {
            lifelines.push(format!("backend {}", attempts[b].server));
            legs.push((b, 1, lifelines.len() - 1));
        }
        if let Some(auth) = a.auth_leg {
            lifelines.push(format!("auth {}", attempts[auth].server));
            legs.push((auth, 1, lifelines.len() - 1));
        }
        let mut steps = Vec::new();
        for &(j, c, s) in &legs {
            leg_steps(t.conv(attempts[j].conv), c, s, &mut steps);
        }
        // The lookup that named the server, as the findings found it.
        if let Some(l) = a.lookup.map(|k| &t.lookups[k]) {
            lifelines.insert(0, "resolver".into());
            for st in &mut steps {
                st.from += 1;
                st.to += 1;
            }
            let mut dns_steps = Vec::new();
            if let Some(q) = l.query {
                dns_steps.push(Step {
                    ts_ns: q.ts_ns,
                    frame: q.frame,
                    from: 1,
                    to: 0,
                    label: format!("DNS {}?", l.name),
                    finding: None,
                });
            }
            if let Some(r) = l.response {
                let answer = match l.rcode {
                    Some(0) if !l.addrs.is_empty() => l.addrs.first().map(|a| a.to_string()).unwrap_or_default(),
                    Some(0) => "no address".into(),
                    Some(3) => "NXDOMAIN".into(),
                    Some(2) => "SERVFAIL".into(),
                    Some(5) => "REFUSED".into(),
                    Some(n) => format!("rcode {n}"),
                    None => "answer".into(),
                };
                dns_steps.push(Step { ts_ns: r.ts_ns, frame: r.frame, from: 0, to: 1, label: answer, finding: None });
            }
            steps.extend(dns_steps);
        }
        steps.sort_by_key(|s| (s.frame, s.ts_ns));
        // Each finding at warning or above marks the step of its last evidence frame.
        for f in findings.iter().filter(|f| f.severity >= Severity::Warning) {
            let ours = f.attempt.is_some_and(|k| legs.iter().any(|&(j, _, _)| j == k));
            if let (true, Some(&last)) = (ours, f.frames.last())
                && let Some(step) = steps.iter_mut().rev().find(|s| s.frame <= last)
                && step.finding.is_none_or(|(sev, _)| sev < f.severity)
            {
                step.finding = Some((f.severity, f.code.as_str()));
            }
        }
        let target = a.path.clone().or(a.sni.clone()).unwrap_or_default();
        let attempts = legs.iter().map(|&(j, _, _)| j).collect();
        out.push(Ladder { title: format!("{} -> {} {target}", a.client, a.server), lifelines, steps, attempts });
    }
    out
}

/// The steps of one leg, between lifelines `c` (its client) and `s` (its server).
fn leg_steps(conv: &Conv, c: usize, s: usize, out: &mut Vec<Step>) {
    let client = conv.client.unwrap_or(Side::A);
    let ends = |side: Side| if side == client { (c, s) } else { (s, c) };
    let mut push = |at: super::At, (from, to): (usize, usize), label: String| {
        out.push(Step { ts_ns: at.ts_ns, frame: at.frame, from, to, label, finding: None });
    };
    if let Some(&first) = conv.syns.first() {
        let n = conv.syns.len();
        push(first, (c, s), if n > 1 { format!("SYN x{n}") } else { "SYN".into() });
    }
    if let Some(at) = conv.synack {
        push(at, (s, c), "SYN-ACK".into());
    }
    if let Some((ch, at)) = &conv.client_hello {
        let sni = ch.sni.as_deref().map(|n| format!(" {n}")).unwrap_or_default();
        push(*at, (c, s), format!("ClientHello{sni}"));
    }
    for al in &conv.alerts {
        let what = al.description.map_or("encrypted alert".to_string(), |d| format!("alert {}", alert_name(d)));
        push(al.at, ends(al.from), what);
    }
    if let Some((status, at)) = conv.plain_answer {
        push(at, (s, c), format!("plaintext {status}"));
    }
    if let Some((r, at)) = &conv.request {
        push(*at, (c, s), format!("{} {}", r.method, r.path));
    }
    if let Some((r, at)) = &conv.response {
        push(*at, (s, c), format!("{} {}", r.status, r.reason));
    }
    for (tally, from, name) in [(&conv.pings, conv.ping_from, "ping"), (&conv.pongs, conv.pong_from, "pong")] {
        if let Some(at) = tally.first {
            let n = tally.count;
            push(at, ends(from.unwrap_or(client)), if n > 1 { format!("{name} x{n}") } else { name.into() });
        }
    }
    for cl in &conv.closes {
        push(cl.at, ends(cl.from), cl.code.map_or("close".into(), |code| format!("close {code}")));
    }
    for (side, at, _) in &conv.fins {
        push(*at, ends(*side), "FIN".into());
    }
    for (side, at, _) in &conv.rsts {
        push(*at, ends(*side), "RST".into());
    }
}

/// Writes the ladders in `width` columns: a time column, lifelines evenly spaced, each arrow
/// with its label and frame number, long gaps folded, findings marked at their step. Plain
/// ASCII; colour only for the marks, when asked.
pub fn write_text(out: &mut dyn Write, ladders: &[Ladder], width: usize, color: bool) -> std::io::Result<()> {
    const TIME: usize = 9;
    const NOTE: usize = 8;
    for l in ladders {
        writeln!(out)?;
        writeln!(out, "{}", clip(&l.title, width))?;
        let n = l.lifelines.len().max(2);
        // The last lifeline stands two columns left of the frame numbers.
        let span = (width.saturating_sub(TIME + NOTE + 4)) / (n - 1);
        let col = |k: usize| TIME + 1 + k * span;
        // Lifeline names, each centred on its column as far as the margins allow.
        let mut names = vec![b' '; width];
        for (k, name) in l.lifelines.iter().enumerate() {
            let name = clip(name, span.saturating_sub(1).max(8));
            let start = col(k).saturating_sub(name.len() / 2).min(width.saturating_sub(name.len()));
            names[start..start + name.len()].copy_from_slice(name.as_bytes());
        }
        writeln!(out, "{}", String::from_utf8_lossy(&names).trim_end())?;
        let t0 = l.steps.first().map_or(0, |s| s.ts_ns);
        let mut last = t0;
        for st in &l.steps {
            if st.ts_ns.saturating_sub(last) > FOLD_NS {
                let idle = format!("~~ {:.1} s idle ~~", (st.ts_ns - last) as f64 / 1e9);
                writeln!(out, "{}", lifelines(&vec![b' '; width], n, col, Some(&idle)))?;
            }
            last = st.ts_ns;
            let mut row = vec![b' '; width];
            let time = format!("{:>8.3}", (st.ts_ns - t0) as f64 / 1e9);
            row[..time.len()].copy_from_slice(time.as_bytes());
            for k in 0..n {
                row[col(k)] = b'|';
            }
            let (a, b) = (col(st.from.min(st.to)), col(st.from.max(st.to)));
            for x in row.iter_mut().take(b).skip(a + 1) {
                *x = b'-';
            }
            if st.from < st.to {
                row[b - 1] = b'>';
            } else {
                row[a + 1] = b'<';
            }
            let label = clip(&st.label, b - a - 4);
            let at = a + 2 + (b - a - 3 - label.len()) / 2;
            row[at..at + label.len()].copy_from_slice(label.as_bytes());
            let frame = format!("#{}", st.frame);
            let fx = width - NOTE;
            row[fx..fx + frame.len().min(NOTE)].copy_from_slice(&frame.as_bytes()[..frame.len().min(NOTE)]);
            let mut line = String::from_utf8_lossy(&row).trim_end().to_string();
            if let Some((sev, code)) = st.finding {
                let mark = format!("  <- {code}");
                line.push_str(&super::paint_severity(sev, &mark, color));
            }
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// A row of bare lifelines, with an optional note over the middle.
fn lifelines(blank: &[u8], n: usize, col: impl Fn(usize) -> usize, note: Option<&str>) -> String {
    let mut row = blank.to_vec();
    for k in 0..n {
        row[col(k)] = b':';
    }
    if let Some(note) = note {
        let at = (col(0) + col(n - 1)) / 2 - note.len() / 2;
        row[at..at + note.len()].copy_from_slice(note.as_bytes());
    }
    String::from_utf8_lossy(&row).trim_end().to_string()
}

fn clip(s: &str, max: usize) -> String {
    let s: String = s.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).collect();
    if s.len() <= max { s } else { format!("{}~", &s[..max.saturating_sub(1)]) }
}
