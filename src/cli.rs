//! Command-line definitions (clap derive). Kept apart from `main.rs` so that man pages and
//! completions can be generated from the same definitions.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::capture::OutFormat;
use crate::policy::{Bulk, Selection};

/// The finding codes and legs, for `diagnose --help` and its man page (the source tree's
/// docs/findings.md has each one's causes, checks and an example; tests/docs.rs keeps both
/// complete).
const DIAGNOSE_REFERENCE: &str = "Examples:
  pcap-surgery diagnose customer.pcapng
  pcap-surgery diagnose --json *.pcap | jq -c '.findings[] | select(.severity == \"error\")'
  pcap-surgery diagnose --fail-on error capture.pcap || echo 'broken'

Finding codes (severity: error names the cause of a failed attempt, warning a likely problem,
info what happened or a failure elsewhere):
  dns-failure             a lookup failed (NXDOMAIN, SERVFAIL, REFUSED, no answer)
  tcp-connect-refused     the SYN was answered by RST: nothing listens, or a firewall rejects
  tcp-connect-timeout     SYNs never answered: a firewall drops them, or a wrong address
  tls-alert               a fatal TLS alert before any HTTP: certificate trust, name, versions
  tls-reset               a reset during the TLS handshake
  tls-aborted             the handshake ended with a FIN and no alert (an untrusted certificate)
  tls-to-plain-port       a ClientHello answered in plaintext: wss:// on a ws:// port
  h2-negotiated           HTTP/2 on the connection: no RFC 6455 upgrade without RFC 8441
  upgrade-header-missing  the request lacks Upgrade: websocket or Connection: Upgrade
  proxy-stripped-upgrade  a proxy dropped Upgrade/Connection on its leg to the backend
  upgrade-rejected        a status other than 101 (400, 403, 404, 426, 5xx)
  upgrade-unanswered      no response before the connection closed or the capture ended
  auth-redirect           a redirect or 401 instead of 101: missing or expired credentials
  bad-accept              Sec-WebSocket-Accept does not match the key
  proxy-connect-failed    a forward proxy refused CONNECT (407, 403, 502)
  one-sided-capture       only one direction was captured (info)
  reset-after-upgrade     a reset after the 101
  closed-after-upgrade    who closed after the 101, how, the close code and idle time
  idle-timeout            closes after the same idle interval: a proxy timeout
  no-keepalive            an idle connection closed with no ping/pong
  retransmissions         segments sent again: loss on the path
  zero-window             a receiver stopped reading
  upgrade-ok              101 with a valid Sec-WebSocket-Accept (info)

Legs: direct; client-proxy and proxy-backend (a reverse proxy's two legs, paired by
Sec-WebSocket-Key); auth-subrequest (a proxy's copy of the request to an auth service);
tunnel (inside an HTTP CONNECT).

Ctrl-C or SIGTERM on standard input or a pipe ends the capture and reports what was read
(exit 130 / 143).";

#[derive(Parser, Debug)]
#[command(
    name = "pcap-surgery",
    version,
    about = "Trim, scrub and diagnose packet captures of failing WebSocket connections.",
    after_help = "Common jobs:\n  \
Shrink for a ticket:   pcap-surgery trim customer.pcapng -o ticket.pcapng\n  \
Make it safe to share: pcap-surgery trim --scrub customer.pcapng -o ticket.pcapng\n  \
Say what failed:       pcap-surgery diagnose customer.pcapng\n  \
A folder of captures:  pcap-surgery trim -r --out-dir out/ tickets/\n\n\
Exit status: 0 ok; 1 an input or output failed (the others still ran); 2 usage error;\n\
3 diagnose --fail-on met a finding; 130 / 143 interrupted by SIGINT / SIGTERM.\n\n\
Interrupting: reading standard input or a pipe, Ctrl-C (SIGINT) or SIGTERM ends the capture\n\
as it ends tcpdump: the packets read so far are decided and written, the summary says\n\
\"interrupted after N packets\", and diagnose and flows report what they read. Reading a\n\
file, it abandons the run and writes nothing for it (finished files of a batch stay, no\n\
new one starts). A second signal stops at once. An output is never left half-written, not\n\
even after kill -9: it has no name until it is complete. A closed standard output (| head)\n\
ends the run quietly, as it ends cat.\n\n\
Link layers read: Ethernet (VLAN, QinQ, MPLS, PPPoE), Linux cooked (SLL, SLL2), raw IP, BSD\n\
loopback, PPP, NFLOG, 802.11 data (with radiotap). Tunnels entered: IP-in-IP, GRE (also\n\
ERSPAN, PPTP), VXLAN, Geneve, GTP-U. A link type or encapsulation that cannot be read\n\
(IPsec ESP, encrypted 802.11 or PPP) is named in a warning with its packet count."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Keep the packets that carry a WebSocket diagnosis: DNS, connect, TLS hello and alerts,
    /// the whole upgrade handshake, control frames and teardown; cut bulk to headers.
    #[command(after_help = "Examples:\n  pcap-surgery trim big.pcapng -o ticket.pcapng\n  \
tcpdump -i any -w - port 443 | pcap-surgery trim - -o live.pcap    # Ctrl-C ends the capture, live.pcap is written\n  \
tcpdump -i any -w - port 443 | pcap-surgery trim - -o - | tshark -r -\n  \
pcap-surgery trim --host chat.example.com --bulk drop capture.pcap.gz -o small.pcap\n  \
pcap-surgery trim -j 4 --recursive --out-dir trimmed/ tickets/\n  \
pcap-surgery trim --annotate big.pcap -o why.pcapng && tshark -r why.pcapng -T fields -e frame.comment\n\n\
Ctrl-C or SIGTERM on standard input or a pipe ends the capture: what was read is decided and\n\
written, exit 130 / 143. On a file it writes nothing. A second signal stops at once; an output\n\
is never left half-written, not even after kill -9.")]
    Trim(TrimArgs),
    /// Overwrite cookies, tokens, message payloads (and with --pseudonymize addresses and
    /// names) while keeping the headers that carry the diagnosis. Packet lengths never change.
    #[command(after_help = "Examples:\n  pcap-surgery scrub capture.pcapng -o safe.pcapng\n  \
pcap-surgery scrub --pseudonymize --key \"$TEAM_KEY\" a.pcap b.pcap --out-dir safe/\n  \
pcap-surgery trim --scrub --scrub-report report.json big.pcap -o ticket.pcap\n\n\
Ctrl-C or SIGTERM on standard input or a pipe ends the capture and writes it (exit 130 / 143);\n\
on a file it writes nothing. An output is never left half-written, not even after kill -9.")]
    Scrub(ScrubCmdArgs),
    /// Name the phase that failed for each WebSocket attempt — DNS, TCP connect, TLS, the
    /// upgrade request, the response, proxy legs, the connection's lifetime — and the frames
    /// (numbered as Wireshark numbers them) that prove it.
    #[command(after_help = "Examples:\n  pcap-surgery diagnose customer.pcapng\n  \
pcap-surgery diagnose --json *.pcap | jq -c '.findings[] | select(.severity == \"error\")'\n  \
pcap-surgery diagnose --fail-on error capture.pcap || echo 'broken'\n\n\
Ctrl-C or SIGTERM on standard input or a pipe ends the capture and reports what was read\n\
(exit 130 / 143).", after_long_help = DIAGNOSE_REFERENCE)]
    Diagnose(DiagnoseArgs),
    /// List every flow, one line each: addresses, first time and span, packets, bytes, what
    /// it carries (websocket, tls-http1, tls-h2, http, h2c, dns, other) and whether `trim`
    /// keeps it, and why.
    #[command(after_help = "Examples:\n  pcap-surgery flows capture.pcapng\n  \
pcap-surgery flows --json capture.pcap | jq -r 'select(.class == \"websocket\") | .client'\n  \
pcap-surgery flows --host chat.example.com capture.pcap | grep kept\n\n\
Ctrl-C or SIGTERM on standard input or a pipe ends the capture and lists what was read\n\
(exit 130 / 143).")]
    Flows(FlowsArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout.
    #[command(after_help = "Examples:\n  pcap-surgery completions bash > /etc/bash_completion.d/pcap-surgery\n  \
pcap-surgery completions zsh > \"${fpath[1]}/_pcap-surgery\"\n  \
pcap-surgery completions fish > ~/.config/fish/completions/pcap-surgery.fish")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How many files at a time, whether directories are walked, and how damaged files are read.
#[derive(Args, Debug, Clone)]
pub struct BatchArgs {
    /// Files processed at once (default: the number of cores). Each file is streamed by one
    /// thread in bounded memory.
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,
    /// Read the capture files (*.pcap, *.pcapng, *.cap, optionally .gz) in input directories
    /// and their subdirectories.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Treat a file cut short (a truncated last record) as an error instead of processing
    /// the packets before the cut with a warning.
    #[arg(long)]
    pub strict: bool,
    /// After a pcap record with an impossible length, skip to the next plausible record and
    /// go on (with a warning) instead of stopping with an error.
    #[arg(long)]
    pub salvage: bool,
    /// TLS key log (NSS format, as written by SSLKEYLOGFILE) to decrypt TLS sessions with,
    /// besides the input's own Decryption Secrets Blocks: a WebSocket inside TLS is then read
    /// like a plain one. Nothing decrypted is written; scrub never writes keys.
    #[arg(long, value_name = "FILE")]
    pub keylog: Option<PathBuf>,
}

impl BatchArgs {
    pub fn read(&self) -> crate::capture::ReadOptions {
        crate::capture::ReadOptions { strict: self.strict, salvage: self.salvage }
    }

    pub fn jobs(&self) -> usize {
        self.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1)
    }
}

/// `--host` and `--port`, the same in every command: the flows they select are kept by
/// `trim`, listed as kept by `flows` and diagnosed as attempts by `diagnose`.
#[derive(Args, Debug, Clone, Default)]
pub struct SelectionArgs {
    /// Select TLS flows whose SNI is HOST (also *.domain, which matches domain and its
    /// subdomains) whatever their ALPN, and DNS lookups of HOST. Repeatable.
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Select every TCP flow to PORT, whatever it carries. Repeatable.
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
}

impl SelectionArgs {
    pub fn selection(&self) -> Selection {
        Selection::new(&self.hosts, &self.ports)
    }
}

#[derive(Args, Debug, Clone)]
pub struct FlowsArgs {
    /// Capture files (pcap, pcapng, optionally gzip-compressed), directories with
    /// --recursive, or - for standard input.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// One JSON object per flow (JSON Lines).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub select: SelectionArgs,
    /// Print nothing on stderr but errors.
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub batch: BatchArgs,
}

#[derive(Args, Debug, Clone)]
pub struct DiagnoseArgs {
    /// Capture files (pcap, pcapng, optionally gzip-compressed), or - for standard input.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    /// One JSON object per input on stdout (JSON Lines).
    #[arg(long)]
    pub json: bool,
    /// Exit with status 3 when a finding reaches this severity.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<crate::diagnose::Severity>,
    /// After the findings, draw each attempt as a ladder diagram in 80 columns: one lifeline
    /// per endpoint (client, proxy, backend, auth service), an arrow per step (connect, TLS
    /// hello and alerts, request, status, pings, close frames, FIN/RST) with its frame number,
    /// long idle gaps folded, and the failing step marked.
    #[arg(long, conflicts_with = "json")]
    pub ladder: bool,
    /// Also write one self-contained HTML page to FILE (inline CSS and SVG, nothing loaded
    /// from the network): a summary table across the inputs and, per attempt, its ladder
    /// diagram with the findings beside it. It shows what the text shows, never a secret.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub select: SelectionArgs,
    /// Print nothing but errors (and the JSON with --json).
    #[arg(short, long)]
    pub quiet: bool,
    #[command(flatten)]
    pub batch: BatchArgs,
}

#[derive(Args, Debug, Clone, Default)]
pub struct ScrubArgs {
    /// Keep pcapng packet and section comments.
    #[arg(long)]
    pub keep_comments: bool,
    /// Map IP and MAC addresses (prefix-preserving) and host names (same length) to
    /// consistent pseudonyms.
    #[arg(long)]
    pub pseudonymize: bool,
    /// Key for --pseudonymize: the same key gives the same pseudonyms across runs and files
    /// (default: a random key per run).
    #[arg(long, value_name = "KEY", requires = "pseudonymize")]
    pub key: Option<String>,
    /// Write what was overwritten, per rule (bytes and packets), to FILE as JSON.
    #[arg(long, value_name = "FILE")]
    pub scrub_report: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ScrubCmdArgs {
    /// Capture files (pcap, pcapng, optionally gzip-compressed), or - for standard input.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub scrub: ScrubArgs,
}

#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Output file, or - for standard output.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Write each output into DIR as <name>.trimmed.<ext> (<name>.scrubbed.<ext> for scrub),
    /// keeping the subfolders of --recursive inputs.
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    pub out_dir: Option<PathBuf>,
    /// Output file name in --out-dir: {stem} is the input's name without extension, {ext}
    /// the output format's extension [default: {stem}.trimmed.{ext}, {stem}.scrubbed.{ext}]
    #[arg(long, value_name = "PATTERN", requires = "out_dir")]
    pub out_name: Option<String>,
    /// Output format (default: the input's).
    #[arg(long, value_enum)]
    pub format: Option<OutFormat>,
    /// Overwrite an existing output file.
    #[arg(long)]
    pub force: bool,
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print the per-file summary as one JSON object per line on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub batch: BatchArgs,
}

#[derive(Args, Debug, Clone)]
pub struct TrimArgs {
    /// Capture files (pcap, pcapng, optionally gzip-compressed), or - for standard input.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(flatten)]
    pub select: SelectionArgs,
    /// WebSocket data frames of up to 4 KiB (and TLS application-data records) kept whole per
    /// direction; longer frames are bulk.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub keep_frames: u32,
    /// What to do with the other packets of kept flows.
    #[arg(long, value_enum, default_value_t = Bulk::Headers)]
    pub bulk: Bulk,
    /// Per flow, bytes of truncated bulk packets kept before further bulk is dropped
    /// (suffixes k, M, G).
    #[arg(long, default_value = "1M", value_parser = parse_size, value_name = "BYTES")]
    pub bulk_budget: u64,
    /// Scrub what is kept (see `pcap-surgery scrub`).
    #[arg(long)]
    pub scrub: bool,
    /// Give each kept packet a pcapng comment saying why it was kept, and the file a comment
    /// naming this program and command line (implies pcapng output).
    #[arg(long)]
    pub annotate: bool,
    #[command(flatten)]
    pub scrub_opts: ScrubArgs,
    /// Write the key-log lines (NSS format) of the TLS sessions the output keeps to FILE, so
    /// that a pcap output decrypts in Wireshark too (a pcapng output carries them in a
    /// Decryption Secrets Block). Not with --scrub: a scrubbed capture never comes with keys.
    #[arg(long, value_name = "FILE", conflicts_with = "scrub")]
    pub keylog_out: Option<PathBuf>,
}

/// Parses sizes like 1048576, 512k, 1M, 2G (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 1u64 << 10),
        Some((i, 'm' | 'M')) => (&s[..i], 1 << 20),
        Some((i, 'g' | 'G')) => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("'{s}' is not a size (e.g. 1048576, 512k, 1M)"))
}
