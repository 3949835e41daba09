//! The `pcap-surgery` binary: parses the command line, runs the library on each input (in
//! parallel across files), shows progress on a terminal, and maps failures to exit codes
//! (0 ok, 1 runtime error, 2 usage error, 3 `diagnose --fail-on`).

mod ui;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, Parser};

use pcap_surgery::batch::{self, Source};
use pcap_surgery::capture::{AtomicOutput, Input, OutFormat, OutputTarget};
use pcap_surgery::cli::{BatchArgs, Cli, Command, DiagnoseArgs, FlowsArgs, OutputArgs, ScrubArgs};
use pcap_surgery::diagnose::{DiagnoseOptions, diagnose, use_color, write_text};
use pcap_surgery::flows::{FlowsOptions, flows};
use pcap_surgery::policy::Options;
use pcap_surgery::progress::Progress;
use pcap_surgery::report::Summary;
use pcap_surgery::scrub::ScrubOptions;
use pcap_surgery::trim::{TrimConfig, trim};
use pcap_surgery::{Error, interrupt};

use ui::Ui;

const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_FINDING: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    interrupt::install();
    interrupt::default_sigpipe();
    let code = match cli.command {
        Command::Trim(args) => {
            if !args.scrub
                && (args.scrub_opts.pseudonymize
                    || args.scrub_opts.keep_comments
                    || args.scrub_opts.scrub_report.is_some())
            {
                return usage("--pseudonymize, --keep-comments and --scrub-report go with --scrub");
            }
            let mut format = args.out.format;
            if args.annotate {
                if format == Some(OutFormat::Pcap) {
                    return usage("--annotate writes pcapng comments: drop --format pcap");
                }
                format = Some(OutFormat::Pcapng);
            }
            let cfg = TrimConfig {
                policy: Options {
                    select: args.select.selection(),
                    keep_frames: args.keep_frames,
                    bulk: args.bulk,
                    bulk_budget: args.bulk_budget,
                    ..Options::default()
                },
                format,
                scrub: match args.scrub.then(|| scrub_options(&args.scrub_opts)).transpose() {
                    Ok(s) => s,
                    Err(code) => return code,
                },
                annotate: args.annotate.then(|| {
                    if args.scrub_opts.pseudonymize {
                        pcap_surgery::annotate::section_comment_pseudonymized(&shown_args())
                    } else {
                        pcap_surgery::annotate::section_comment(&shown_args())
                    }
                }),
                read: args.out.batch.read(),
                keylog: match keylog(&args.out.batch) {
                    Ok(k) => k,
                    Err(code) => return code,
                },
                keylog_out: args.keylog_out.is_some(),
            };
            let files =
                Files { scrub_report: args.scrub_opts.scrub_report.as_deref(), keylog_out: args.keylog_out.as_deref() };
            run(Verb::Trim, &args.inputs, &args.out, &cfg, files)
        }
        Command::Scrub(args) => {
            let cfg = TrimConfig {
                policy: Options { keep_all: true, ..Options::default() },
                format: args.out.format,
                scrub: match scrub_options(&args.scrub) {
                    Ok(s) => Some(s),
                    Err(code) => return code,
                },
                annotate: None,
                read: args.out.batch.read(),
                keylog: match keylog(&args.out.batch) {
                    Ok(k) => k,
                    Err(code) => return code,
                },
                keylog_out: false,
            };
            let files = Files { scrub_report: args.scrub.scrub_report.as_deref(), keylog_out: None };
            run(Verb::Scrub, &args.inputs, &args.out, &cfg, files)
        }
        Command::Diagnose(args) => run_diagnose(&args),
        Command::Flows(args) => run_flows(&args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "pcap-surgery", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    };
    // SIGINT / SIGTERM: what was finished stays; the status says the run was cut short.
    match interrupt::requested() {
        Some(sig) => ExitCode::from(interrupt::exit_status(sig)),
        None => code,
    }
}

/// The `--keylog` file, read once for every input (a bad one is a one-line error, exit 1).
fn keylog(batch: &pcap_surgery::cli::BatchArgs) -> Result<Option<std::sync::Arc<Vec<u8>>>, ExitCode> {
    let Some(path) = &batch.keylog else { return Ok(None) };
    match std::fs::read(path) {
        Ok(text) => Ok(Some(std::sync::Arc::new(text))),
        Err(e) => {
            eprintln!("pcap-surgery: {}: cannot read the key log: {e}", path.display());
            Err(ExitCode::from(1))
        }
    }
}

/// A batch input not started because an interrupt came first.
#[derive(Debug)]
struct NotStarted;

impl std::fmt::Display for NotStarted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not started: interrupted")
    }
}

impl std::error::Error for NotStarted {}

fn usage(msg: &str) -> ExitCode {
    eprintln!("pcap-surgery: {msg}");
    ExitCode::from(EXIT_USAGE)
}

/// The command line as the annotation shows it, with the pseudonymization key hidden.
fn shown_args() -> Vec<String> {
    let mut out = Vec::new();
    let mut hide_next = false;
    for a in std::env::args() {
        if hide_next {
            out.push("(key hidden)".into());
            hide_next = false;
        } else if a == "--key" {
            hide_next = true;
            out.push(a);
        } else if a.starts_with("--key=") {
            out.push("--key=(key hidden)".into());
        } else {
            out.push(a);
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Verb {
    Trim,
    Scrub,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Trim => "trim",
            Verb::Scrub => "scrub",
        }
    }
    fn default_pattern(self) -> &'static str {
        match self {
            Verb::Trim => "{stem}.trimmed.{ext}",
            Verb::Scrub => "{stem}.scrubbed.{ext}",
        }
    }
}

/// Expands inputs (directories with --recursive); a usage error says why not.
fn sources(inputs: &[PathBuf], b: &BatchArgs) -> Result<Vec<Source>, ExitCode> {
    if inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        return Err(usage("standard input (-) can be read only once"));
    }
    match batch::expand(inputs, b.recursive) {
        Ok(s) if s.is_empty() => Err(usage("no capture files (*.pcap, *.pcapng, *.cap, .gz) in the input directories")),
        Ok(s) => Ok(s),
        Err(e) => Err(usage(&e.to_string())),
    }
}

fn file_size(p: &Path) -> Option<u64> {
    std::fs::metadata(p).ok().filter(|m| m.is_file()).map(|m| m.len())
}

/// Opens one input of a batch with its progress bar (on a terminal) and runs `job` on it.
fn with_input<T>(
    ui: &Ui,
    path: &Path,
    job: impl FnOnce(Input, &Arc<Progress>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    if interrupt::requested().is_some() {
        return Err(NotStarted.into());
    }
    let progress = Arc::new(Progress::default());
    let _bar = ui.bar(path, file_size(path), &progress);
    let input = Input::open_with(path, Some(progress.clone()))?;
    job(input, &progress)
}

fn run_diagnose(args: &DiagnoseArgs) -> ExitCode {
    let srcs = match sources(&args.inputs, &args.batch) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let keylog = match keylog(&args.batch) {
        Ok(k) => k,
        Err(code) => return code,
    };
    let opts = DiagnoseOptions {
        select: args.select.selection(),
        read: args.batch.read(),
        keylog,
        ladders: args.ladder || args.html.is_some(),
    };
    let color = use_color();
    let ui = Ui::new(!args.quiet);
    let mut status = 0u8;
    let mut worst = None;
    let mut closed = false;
    let mut pages: Vec<pcap_surgery::diagnose::Report> = Vec::new();
    batch::run_ordered(
        srcs.len(),
        args.batch.jobs(),
        |i| {
            let path = &srcs[i].path;
            with_input(&ui, path, |input, _| {
                let mut warnings = Vec::new();
                let r = diagnose(input, &path.display().to_string(), &opts, &mut warnings)?;
                Ok((r, warnings))
            })
        },
        |i, r| {
            let path = &srcs[i].path;
            match r {
                Ok((r, warnings)) => {
                    for w in warnings {
                        ui.println(&format!("pcap-surgery: {}: warning: {w}", path.display()));
                    }
                    worst = worst.max(r.worst());
                    if args.html.is_some() {
                        pages.push(r.clone());
                    }
                    if closed {
                        return;
                    }
                    // Buffered: serde writes a report in many small pieces, and a locked
                    // stdout is line-buffered (it scans every piece for newlines).
                    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
                    let written = ui.suspend(|| {
                        if args.json {
                            serde_json::to_writer(&mut out, &r)
                                .map_err(std::io::Error::from)
                                .and_then(|_| writeln!(out))
                        } else if !args.quiet {
                            write_text(&mut out, &r, color).and_then(|()| {
                                if args.ladder {
                                    pcap_surgery::diagnose::write_ladders(&mut out, &r, color)
                                } else {
                                    Ok(())
                                }
                            })
                        } else {
                            Ok(())
                        }
                        .and_then(|_| out.flush())
                    });
                    if let Err(e) = written {
                        if e.kind() == std::io::ErrorKind::BrokenPipe {
                            closed = true;
                        } else {
                            ui.println(&format!("pcap-surgery: standard output: {e}"));
                            status = status.max(EXIT_RUNTIME);
                        }
                    }
                }
                Err(e) => status = status.max(report_error(&ui, path, &e)),
            }
        },
    );
    if let Some(path) = &args.html
        && let Err(e) = write_whole(
            path,
            pcap_surgery::diagnose::html_page(&pages).as_bytes(),
            &srcs.iter().map(|s| s.path.clone()).collect::<Vec<_>>(),
        )
    {
        ui.println(&format!("pcap-surgery: {}: {e}", path.display()));
        status = status.max(EXIT_RUNTIME);
    }
    if status == 0
        && let (Some(limit), Some(w)) = (args.fail_on, worst)
        && w >= limit
    {
        return ExitCode::from(EXIT_FINDING);
    }
    ExitCode::from(status)
}

/// Collects whole lines and hands them to standard output in chunks, so that files listed
/// in parallel interleave only at line boundaries.
struct Lines {
    buf: Vec<u8>,
}

impl Lines {
    const CHUNK: usize = 1 << 16;

    fn flush_lines(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            std::io::stdout().lock().write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Write for Lines {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= Self::CHUNK && self.buf.ends_with(b"\n") {
            self.flush_lines()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_lines()
    }
}

fn run_flows(args: &FlowsArgs) -> ExitCode {
    let srcs = match sources(&args.inputs, &args.batch) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let opts = FlowsOptions {
        policy: Options { select: args.select.selection(), ..Options::default() },
        json: args.json,
        with_file: srcs.len() > 1,
        read: args.batch.read(),
        keylog: match keylog(&args.batch) {
            Ok(k) => k,
            Err(code) => return code,
        },
    };
    let ui = Ui::new(!args.quiet && !std::io::stdout().is_terminal());
    let mut status = 0u8;
    batch::run_ordered(
        srcs.len(),
        args.batch.jobs(),
        |i| {
            let path = &srcs[i].path;
            with_input(&ui, path, |input, progress| {
                let mut out = Lines { buf: Vec::with_capacity(Lines::CHUNK * 2) };
                let r = flows(input, &path.display().to_string(), &opts, &mut out, Some(progress))?;
                out.flush_lines()?;
                Ok(r)
            })
        },
        |i, r| match r {
            Ok((_, warnings)) => {
                for w in warnings {
                    ui.println(&format!("pcap-surgery: {}: warning: {w}", srcs[i].path.display()));
                }
            }
            Err(e) if is_broken_pipe(&e) => {}
            Err(e) => status = status.max(report_error(&ui, &srcs[i].path, &e)),
        },
    );
    ExitCode::from(status)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || matches!(c.downcast_ref::<Error>(), Some(Error::Io(io)) if io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The 32-byte pseudonymization key: derived from `--key`, else random for this run.
fn scrub_options(a: &ScrubArgs) -> Result<ScrubOptions, ExitCode> {
    let key = match (a.pseudonymize, &a.key) {
        (false, _) => None,
        (true, Some(k)) => Some(derive_key(k.as_bytes())),
        (true, None) => match random_key() {
            Ok(k) => Some(k),
            Err(msg) => {
                eprintln!("pcap-surgery: {msg}");
                return Err(ExitCode::from(1));
            }
        },
    };
    Ok(ScrubOptions { keep_comments: a.keep_comments, pseudonymize: key })
}

fn derive_key(secret: &[u8]) -> [u8; 32] {
    use sha1::{Digest, Sha1};
    let mut out = [0u8; 32];
    for (i, half) in out.chunks_mut(16).enumerate() {
        let mut h = Sha1::new();
        h.update(b"pcap-surgery pseudonymization key ");
        h.update([i as u8]);
        h.update(secret);
        half.copy_from_slice(&h.finalize()[..16]);
    }
    out
}

/// A random pseudonymization key from the kernel. There is no weaker fallback: a key made
/// from the time and the process id could be found again, and the pseudonyms undone.
fn random_key() -> Result<[u8; 32], String> {
    let mut k = [0u8; 32];
    // SAFETY: getrandom writes at most `k.len()` bytes into the buffer it is given.
    let n = unsafe { libc::getrandom(k.as_mut_ptr().cast(), k.len(), 0) };
    if n == k.len() as isize {
        return Ok(k);
    }
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut k))
        .map(|()| k)
        .map_err(|e| format!("no random key for --pseudonymize ({e}); give one with --key"))
}

/// Prints an error on one line and says whether it is the user's (exit 2) or the input's /
/// system's (exit 1).
fn report_error(ui: &Ui, file: &Path, err: &anyhow::Error) -> u8 {
    if err.downcast_ref::<NotStarted>().is_some() {
        return EXIT_RUNTIME;
    }
    if let Some(Error::Interrupted(_)) = err.downcast_ref::<Error>() {
        ui.println(&format!("pcap-surgery: {}: interrupted; nothing written for it", file.display()));
        return EXIT_RUNTIME;
    }
    ui.println(&format!("pcap-surgery: {}: {err:#}", file.display()));
    match err.downcast_ref::<Error>() {
        Some(Error::Usage(_)) => EXIT_USAGE,
        _ => EXIT_RUNTIME,
    }
}

fn output_for(src: &Source, out: &OutputArgs, verb: Verb) -> Result<OutputTarget, String> {
    if let Some(dir) = &out.out_dir {
        let ext = out.format.map(|f| match f {
            OutFormat::Pcap => "pcap",
            OutFormat::Pcapng => "pcapng",
        });
        let pattern = out.out_name.as_deref().unwrap_or(verb.default_pattern());
        let name = batch::output_name(pattern, &src.path, ext);
        return Ok(OutputTarget::File(dir.join(&src.rel_dir).join(name)));
    }
    match &out.output {
        Some(p) if p.as_os_str() == "-" => Ok(OutputTarget::Stdout),
        Some(p) => Ok(OutputTarget::File(p.clone())),
        None => Err("no output: give -o OUT (or - for standard output) or --out-dir DIR".into()),
    }
}

/// Files written once for a whole batch, after it.
struct Files<'a> {
    /// `--scrub-report`: what was overwritten, a JSON line per input.
    scrub_report: Option<&'a Path>,
    /// `--keylog-out`: the key-log lines of the kept sessions, of every input.
    keylog_out: Option<&'a Path>,
}

fn run(verb: Verb, inputs: &[PathBuf], out: &OutputArgs, cfg: &TrimConfig, files: Files<'_>) -> ExitCode {
    let srcs = match sources(inputs, &out.batch) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if srcs.len() > 1 && out.out_dir.is_none() {
        return usage("several inputs need --out-dir DIR (one output per input)");
    }
    let mut targets = Vec::with_capacity(srcs.len());
    for s in &srcs {
        match output_for(s, out, verb) {
            Ok(t) => targets.push(t),
            Err(msg) => return usage(&msg),
        }
    }
    let mut seen = std::collections::HashMap::new();
    for (s, t) in srcs.iter().zip(&targets) {
        if let OutputTarget::File(p) = t
            && let Some(other) = seen.insert(p.clone(), &s.path)
        {
            return usage(&format!(
                "{} and {} would both be written to {}; use --out-name",
                other.display(),
                s.path.display(),
                p.display()
            ));
        }
    }
    let all_inputs: Vec<PathBuf> = srcs.iter().map(|s| s.path.clone()).collect();
    let to_stdout = targets.iter().any(|t| matches!(t, OutputTarget::Stdout));
    let ui = Ui::new(!out.quiet && !to_stdout);
    let mut reports = Vec::new();
    let mut key_log: Vec<u8> = Vec::new();
    let mut status = 0u8;
    let mut total = Summary { file: "total".into(), ..Default::default() };
    let (mut ok, mut failed, mut not_started) = (0usize, 0usize, 0usize);
    batch::run_ordered(
        srcs.len(),
        out.batch.jobs(),
        |i| {
            let path = &srcs[i].path;
            with_input(&ui, path, |input, progress| {
                trim_one(input, path, &targets[i], out.force, &all_inputs, cfg, progress)
            })
        },
        |i, r| {
            let path = &srcs[i].path;
            match r {
                Ok(summary) => {
                    ok += 1;
                    for w in &summary.warnings {
                        ui.println(&format!("pcap-surgery: {}: warning: {w}", path.display()));
                    }
                    if !out.quiet {
                        ui.println(&summary.line(verb.name()));
                    }
                    if out.json && !to_stdout {
                        println!("{}", summary.json());
                    }
                    if let Some(r) = &summary.scrub {
                        let line = serde_json::json!({"file": summary.file, "rules": r.rules});
                        reports.push(line.to_string());
                    }
                    key_log.extend_from_slice(&summary.key_log);
                    total.add(&summary);
                }
                Err(e) if e.downcast_ref::<NotStarted>().is_some() => not_started += 1,
                Err(e) => {
                    failed += 1;
                    status = status.max(report_error(&ui, path, &e));
                }
            }
        },
    );
    if srcs.len() > 1 && !out.quiet {
        let failed = if failed > 0 { format!(", {failed} failed") } else { String::new() };
        let skipped = if not_started > 0 { format!(", {not_started} not started: interrupted") } else { String::new() };
        ui.println(&format!("{} ({ok} files{failed}{skipped})", total.line(verb.name())));
    }
    let mut text = reports.join("\n");
    text.push('\n');
    for (path, bytes) in [(files.scrub_report, text.as_bytes()), (files.keylog_out, &key_log[..])] {
        if let Some(path) = path
            && let Err(e) = write_whole(path, bytes, &all_inputs)
        {
            ui.println(&format!("pcap-surgery: {}: {e}", path.display()));
            status = status.max(EXIT_RUNTIME);
        }
    }
    ExitCode::from(status)
}

/// A side file (`--html`, `--scrub-report`, `--keylog-out`), written whole or not at all the
/// way captures are, over any file of that name but never over one of the inputs.
fn write_whole(path: &Path, bytes: &[u8], inputs: &[PathBuf]) -> pcap_surgery::Result<()> {
    let mut out = AtomicOutput::create(&OutputTarget::File(path.to_path_buf()), true, inputs)?;
    out.write_all(bytes)?;
    out.commit()
}

fn trim_one(
    opened: Input,
    input: &Path,
    target: &OutputTarget,
    force: bool,
    inputs: &[PathBuf],
    cfg: &TrimConfig,
    progress: &Arc<Progress>,
) -> anyhow::Result<Summary> {
    if let OutputTarget::File(dir) = target
        && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let sink = AtomicOutput::create(target, force, inputs)?;
    let mut summary = Summary { file: input.display().to_string(), ..Default::default() };
    let sink = trim(opened, sink, cfg, &mut summary, Some(progress))?;
    sink.commit()?;
    Ok(summary)
}
