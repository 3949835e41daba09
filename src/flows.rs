//! `flows`: one line per flow with what `trim` would do with it and why. It runs the same
//! policy as `trim` (with the same `--host` / `--port`), writing nothing.
//!
//! A flow is listed when the policy forgets it (closed and quiet, or idle for long) or at the
//! end of the capture, after `trim`'s own decisions for its waiting packets, so the listing streams in bounded memory; lines are therefore in
//! order of the end of each flow, and carry first/last times for sorting.

use std::io::Write;
use std::sync::Arc;

use serde::Serialize;

use crate::capture::{Input, ReadOptions};
use crate::engine::FlowRecord;
use crate::error::Result;
use crate::flow::{PROTO_TCP, Side};
use crate::policy::Options;
use crate::progress::Progress;
use crate::report::Summary;
use crate::trim::{Listener, TrimConfig, observe};

#[derive(Serialize)]
struct Line<'a> {
    file: &'a str,
    client: String,
    server: String,
    transport: &'static str,
    first: String,
    last: String,
    first_ns: u64,
    last_ns: u64,
    packets: u64,
    bytes: u64,
    class: &'static str,
    verdict: &'static str,
    why: &'static str,
}

/// Formats a capture timestamp as RFC 3339 UTC with microseconds.
fn time(ns: u64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns);
    humantime::format_rfc3339_micros(t).to_string()
}

fn line<'a>(file: &'a str, r: &FlowRecord) -> Line<'a> {
    let client = r.client.unwrap_or(Side::A);
    Line {
        file,
        client: r.key.endpoint(client),
        server: r.key.endpoint(client.other()),
        transport: if r.key.proto == PROTO_TCP { "tcp" } else { "udp" },
        first: time(r.first_ns),
        last: time(r.last_ns),
        first_ns: r.first_ns,
        last_ns: r.last_ns,
        packets: r.packets,
        bytes: r.bytes,
        class: r.proto.name(),
        verdict: if r.kept { "kept" } else { "dropped" },
        why: r.why,
    }
}

fn write_line(out: &mut dyn Write, l: &Line<'_>, json: bool, with_file: bool) -> std::io::Result<()> {
    if json {
        serde_json::to_writer(&mut *out, l)?;
        return writeln!(out);
    }
    if with_file {
        write!(out, "{}: ", l.file)?;
    }
    let span = (l.last_ns.saturating_sub(l.first_ns)) as f64 / 1e9;
    writeln!(
        out,
        "{} {} -> {} {} +{span:.3}s {} pkts {} B {} {}: {}",
        l.transport, l.client, l.server, l.first, l.packets, l.bytes, l.class, l.verdict, l.why
    )
}

pub struct FlowsOptions {
    pub policy: Options,
    pub json: bool,
    /// Prefix text lines with the file name (several inputs).
    pub with_file: bool,
    pub read: ReadOptions,
    /// `--keylog`: TLS secrets; a decrypted session is listed by what it carries.
    pub keylog: Option<std::sync::Arc<Vec<u8>>>,
}

/// Lists the flows of one capture into `out`; returns the number of flows and any warnings.
/// It is `trim`'s own pass with the output thrown away, so each verdict is what `trim` does.
pub fn flows(
    input: Input,
    file: &str,
    opts: &FlowsOptions,
    out: &mut dyn Write,
    progress: Option<&Arc<Progress>>,
) -> Result<(u64, Vec<String>)> {
    struct Lister<'a> {
        out: &'a mut dyn Write,
        file: &'a str,
        opts: &'a FlowsOptions,
        count: u64,
    }
    impl Listener for Lister<'_> {
        fn flow(&mut self, r: &FlowRecord) -> Result<()> {
            write_line(self.out, &line(self.file, r), self.opts.json, self.opts.with_file)?;
            self.count += 1;
            Ok(())
        }
    }
    let cfg = TrimConfig {
        policy: opts.policy.clone(),
        read: opts.read,
        keylog: opts.keylog.clone(),
        ..TrimConfig::default()
    };
    let mut summary = Summary::default();
    let mut lister = Lister { out, file, opts, count: 0 };
    observe(input, &cfg, &mut summary, progress.map(|p| &**p), &mut lister)?;
    Ok((lister.count, summary.warnings))
}
