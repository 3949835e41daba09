//! `diagnose --html`: one self-contained page (inline CSS and SVG, no script, nothing loaded
//! from anywhere) with a summary table across files and, per attempt, its ladder diagram and
//! findings. It opens from a ticket attachment offline, prints, follows the reader's dark mode,
//! and its text is real text. It shows what the text output shows, never a secret.

use std::fmt::Write;

use super::ladder::Ladder;
use super::{Report, Severity};

const STYLE: &str = "
:root { color-scheme: light dark; --fg: #1b1f24; --bg: #ffffff; --muted: #57606a; --line: #8c959f;
  --err: #cf222e; --warn: #9a6700; --ok: #1a7f37; --band: #f6f8fa; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --bg: #0d1117; --muted: #8b949e;
  --line: #6e7681; --err: #ff7b72; --warn: #d29922; --ok: #3fb950; --band: #161b22; } }
body { font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: var(--bg); margin: 2em; }
h1 { font-size: 1.4em; } h2 { font-size: 1.2em; margin-top: 2em; } h3 { font-size: 1em; margin-top: 1.5em; }
table { border-collapse: collapse; } td, th { padding: .2em .8em; border-bottom: 1px solid var(--line); text-align: left; }
.error { color: var(--err); } .warning { color: var(--warn); } .info { color: var(--ok); }
.muted { color: var(--muted); } code { font-family: ui-monospace, monospace; }
svg text { font: 12px ui-monospace, monospace; fill: var(--fg); }
svg .life { stroke: var(--line); stroke-width: 1; }
svg .arrow { stroke: var(--fg); stroke-width: 1.2; fill: none; }
svg line.failed { stroke: var(--err); stroke-width: 2; }
svg text.failed { fill: var(--err); font-weight: bold; }
svg text.mark.error { fill: var(--err); } svg text.mark.warning { fill: var(--warn); }
svg .band { fill: var(--band); }
svg .head { fill: var(--fg); } svg .head.failed { fill: var(--err); }
ul.findings li { margin: .3em 0; }
.attempt { display: flex; flex-wrap: wrap; gap: 1em 2em; align-items: flex-start; }
.attempt ul.findings { flex: 1 1 22em; max-width: 40em; margin: 0; }
@media print { body { margin: 0; } h2 { break-before: page; } }
";

/// The whole page for the reports of a run.
pub fn page(reports: &[Report]) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>pcap-surgery diagnose</title><style>{STYLE}</style></head><body>\n\
         <h1>WebSocket diagnosis</h1>\n<table><tr><th>file</th><th>attempts</th><th>worst finding</th></tr>\n"
    );
    for r in reports {
        let worst = r.findings.iter().filter(|f| Some(f.severity) == r.worst()).map(|f| f.code.as_str()).next();
        let (class, text) = match (r.worst(), worst) {
            (Some(s), Some(code)) => (sev(s), code.to_string()),
            _ => ("muted", "no findings".to_string()),
        };
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td class=\"{class}\">{}</td></tr>",
            esc(&r.file),
            r.attempts.len(),
            esc(&text)
        );
    }
    h.push_str("</table>\n");
    for r in reports {
        let _ = writeln!(h, "<h2><code>{}</code></h2>", esc(&r.file));
        if r.attempts.is_empty() {
            let what: Vec<String> = r.not_attempts.iter().map(|(why, n)| format!("{n} {why}")).collect();
            let _ =
                writeln!(h, "<p class=\"muted\">No WebSocket attempt. TCP flows seen: {}</p>", esc(&what.join("; ")));
        }
        for l in &r.ladders {
            let _ = writeln!(h, "<h3>{}</h3>\n<div class=\"attempt\">", esc(&l.title));
            h.push_str(&svg(l));
            let findings: Vec<_> =
                r.findings.iter().filter(|f| f.attempt.is_some_and(|a| l.attempts.contains(&a))).collect();
            if !findings.is_empty() {
                h.push_str("<ul class=\"findings\">\n");
                for f in findings {
                    let frames: Vec<String> = f.frames.iter().map(u64::to_string).collect();
                    let _ = writeln!(
                        h,
                        "<li><span class=\"{}\">{} <code>{}</code></span> {} <span class=\"muted\">frames {}</span></li>",
                        sev(f.severity),
                        sev(f.severity),
                        f.code.as_str(),
                        esc(&f.message),
                        frames.join(", ")
                    );
                }
                h.push_str("</ul>\n");
            }
            h.push_str("</div>\n");
        }
        let loose: Vec<_> = r.findings.iter().filter(|f| f.attempt.is_none()).collect();
        if !loose.is_empty() {
            h.push_str("<ul class=\"findings\">\n");
            for f in loose {
                let _ = writeln!(
                    h,
                    "<li><span class=\"{}\">{} <code>{}</code></span> {}</li>",
                    sev(f.severity),
                    sev(f.severity),
                    f.code.as_str(),
                    esc(&f.message)
                );
            }
            h.push_str("</ul>\n");
        }
    }
    h.push_str("</body></html>\n");
    h
}

fn sev(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

/// One ladder as SVG: lifelines, arrows with labels, time on the left, frames on the right,
/// folded gaps as bands.
fn svg(l: &Ladder) -> String {
    const ROW: usize = 24;
    const LEFT: usize = 70;
    const RIGHT: usize = 300;
    const SPAN: usize = 230;
    let n = l.lifelines.len().max(2);
    let width = LEFT + SPAN * (n - 1) + RIGHT;
    let x = |k: usize| LEFT + 10 + k * SPAN;
    let t0 = l.steps.first().map_or(0, |s| s.ts_ns);
    let mut rows: Vec<String> = Vec::new();
    let mut y = 50;
    let mut last = t0;
    for st in &l.steps {
        if st.ts_ns.saturating_sub(last) > super::ladder::FOLD_NS {
            rows.push(format!(
                "<rect class=\"band\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\">~ {:.1} s idle ~</text>",
                LEFT,
                y - 14,
                SPAN * (n - 1) + 20,
                ROW - 4,
                (x(0) + x(n - 1)) / 2,
                y,
                (st.ts_ns - last) as f64 / 1e9
            ));
            y += ROW;
        }
        last = st.ts_ns;
        let (a, b) = (x(st.from), x(st.to));
        let failed = st.finding.is_some_and(|(s, _)| s == Severity::Error);
        let cls = if failed { "arrow failed" } else { "arrow" };
        let head = if b > a {
            format!("{},{} {},{} {},{}", b, y, b - 8, y - 4, b - 8, y + 4)
        } else {
            format!("{},{} {},{} {},{}", b, y, b + 8, y - 4, b + 8, y + 4)
        };
        let mut row = format!(
            "<text x=\"4\" y=\"{}\" class=\"muted\">{:.3}</text><line class=\"{cls}\" x1=\"{a}\" y1=\"{y}\" x2=\"{b}\" y2=\"{y}\"/>\
             <polygon class=\"head{}\" points=\"{head}\"/><text x=\"{}\" y=\"{}\" text-anchor=\"middle\"{}>{}</text>\
             <text x=\"{}\" y=\"{}\">#{}</text>",
            y + 4,
            (st.ts_ns - t0) as f64 / 1e9,
            if failed { " failed" } else { "" },
            (a + b) / 2,
            y - 5,
            if failed { " class=\"failed\"" } else { "" },
            esc(&st.label),
            x(n - 1) + 20,
            y + 4,
            st.frame
        );
        if let Some((s, code)) = st.finding {
            let _ = write!(
                row,
                "<text x=\"{}\" y=\"{}\" class=\"mark {}\">&#8592; {code}</text>",
                x(n - 1) + 80,
                y + 4,
                sev(s)
            );
        }
        rows.push(row);
        y += ROW;
    }
    let height = y + 10;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"{}\">",
        esc(&l.title)
    );
    for (k, name) in l.lifelines.iter().enumerate() {
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"20\" text-anchor=\"middle\" class=\"lifeline\">{}</text><line class=\"life\" x1=\"{}\" y1=\"28\" x2=\"{}\" y2=\"{}\"/>",
            x(k),
            esc(name),
            x(k),
            x(k),
            height - 6
        );
    }
    for r in rows {
        s.push_str(&r);
    }
    s.push_str("</svg>\n");
    s
}

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push(' '),
            c => o.push(c),
        }
    }
    o
}
