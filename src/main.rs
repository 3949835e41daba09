//! The `pcap-surgery` binary: parses the command line, runs the library on each input, and
//! maps failures to exit codes (0 ok, 1 runtime error, 2 usage error).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use pcap_surgery::Error;
use pcap_surgery::capture::{AtomicOutput, Input, OutFormat, OutputTarget};
use std::io::Write;

use pcap_surgery::cli::{Cli, Command, DiagnoseArgs, OutputArgs, ScrubArgs};
use pcap_surgery::diagnose::{DiagnoseOptions, diagnose, use_color, write_text};
use pcap_surgery::policy::Options;
use pcap_surgery::report::Summary;
use pcap_surgery::scrub::ScrubOptions;
use pcap_surgery::trim::{TrimConfig, trim};

const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Trim(args) => {
            if !args.scrub
                && (args.scrub_opts.pseudonymize
                    || args.scrub_opts.keep_comments
                    || args.scrub_opts.scrub_report.is_some())
            {
                eprintln!("pcap-surgery: --pseudonymize, --keep-comments and --scrub-report go with --scrub");
                return ExitCode::from(EXIT_USAGE);
            }
            let cfg = TrimConfig {
                policy: Options {
                    hosts: args.hosts.clone(),
                    ports: args.ports.clone(),
                    keep_frames: args.keep_frames,
                    bulk: args.bulk,
                    bulk_budget: args.bulk_budget,
                    keep_all: false,
                },
                format: args.out.format,
                scrub: args.scrub.then(|| scrub_options(&args.scrub_opts)),
            };
            run(Verb::Trim, &args.inputs, &args.out, &cfg, args.scrub_opts.scrub_report.as_deref())
        }
        Command::Diagnose(args) => run_diagnose(&args),
        Command::Scrub(args) => {
            let cfg = TrimConfig {
                policy: Options { keep_all: true, ..Options::default() },
                format: args.out.format,
                scrub: Some(scrub_options(&args.scrub)),
            };
            run(Verb::Scrub, &args.inputs, &args.out, &cfg, args.scrub.scrub_report.as_deref())
        }
    }
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
    fn suffix(self) -> &'static str {
        match self {
            Verb::Trim => "trimmed",
            Verb::Scrub => "scrubbed",
        }
    }
}

const EXIT_FINDING: u8 = 3;

fn run_diagnose(args: &DiagnoseArgs) -> ExitCode {
    let opts = DiagnoseOptions { hosts: args.hosts.clone(), ports: args.ports.clone() };
    let color = use_color();
    let mut status = 0u8;
    let mut worst = None;
    for input in &args.inputs {
        let result = Input::open(input).map_err(anyhow::Error::from).and_then(|i| {
            let mut warnings = Vec::new();
            let r = diagnose(i, &input.display().to_string(), &opts, &mut warnings)?;
            Ok((r, warnings))
        });
        match result {
            Ok((r, warnings)) => {
                for w in warnings {
                    eprintln!("pcap-surgery: {}: warning: {w}", input.display());
                }
                worst = worst.max(r.worst());
                let mut out = std::io::stdout().lock();
                let written = if args.json {
                    serde_json::to_writer(&mut out, &r).map_err(std::io::Error::from).and_then(|_| writeln!(out))
                } else if !args.quiet {
                    write_text(&mut out, &r, color)
                } else {
                    Ok(())
                };
                if let Err(e) = written {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return ExitCode::from(status);
                    }
                    eprintln!("pcap-surgery: {e}");
                    status = status.max(EXIT_RUNTIME);
                }
            }
            Err(e) => status = status.max(report_error(input, &e)),
        }
    }
    if status == 0
        && let (Some(limit), Some(w)) = (args.fail_on, worst)
        && w >= limit
    {
        return ExitCode::from(EXIT_FINDING);
    }
    ExitCode::from(status)
}

/// The 32-byte pseudonymization key: derived from `--key`, else random for this run.
fn scrub_options(a: &ScrubArgs) -> ScrubOptions {
    let key = a.pseudonymize.then(|| match &a.key {
        Some(k) => derive_key(k.as_bytes()),
        None => random_key(),
    });
    ScrubOptions { keep_comments: a.keep_comments, pseudonymize: key }
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

fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    let ok = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut k)).is_ok();
    if !ok {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        k = derive_key(format!("{t:?}{}", std::process::id()).as_bytes());
    }
    k
}

/// An error and whether it is the user's (exit 2) or the input's / system's (exit 1).
fn report_error(file: &Path, err: &anyhow::Error) -> u8 {
    eprintln!("pcap-surgery: {}: {err:#}", file.display());
    match err.downcast_ref::<Error>() {
        Some(Error::Usage(_)) => EXIT_USAGE,
        _ => EXIT_RUNTIME,
    }
}

fn output_for(input: &Path, out: &OutputArgs, ext_from: Option<OutFormat>, verb: Verb) -> Result<OutputTarget, String> {
    if let Some(dir) = &out.out_dir {
        let name = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "stdin".into());
        let stem = name.trim_end_matches(".gz");
        let (base, ext) = match stem.rsplit_once('.') {
            Some((b, e)) => (b.to_string(), e.to_string()),
            None => (stem.to_string(), "pcap".to_string()),
        };
        let ext = match ext_from {
            Some(OutFormat::Pcap) => "pcap".to_string(),
            Some(OutFormat::Pcapng) => "pcapng".to_string(),
            None => ext,
        };
        return Ok(OutputTarget::File(dir.join(format!("{base}.{}.{ext}", verb.suffix()))));
    }
    match &out.output {
        Some(p) if p.as_os_str() == "-" => Ok(OutputTarget::Stdout),
        Some(p) => Ok(OutputTarget::File(p.clone())),
        None => Err("no output: give -o OUT (or - for standard output) or --out-dir DIR".into()),
    }
}

fn run(verb: Verb, inputs: &[PathBuf], out: &OutputArgs, cfg: &TrimConfig, report: Option<&Path>) -> ExitCode {
    if inputs.len() > 1 && out.out_dir.is_none() {
        eprintln!("pcap-surgery: several inputs need --out-dir DIR (one output per input)");
        return ExitCode::from(EXIT_USAGE);
    }
    if inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        eprintln!("pcap-surgery: standard input (-) can be read only once");
        return ExitCode::from(EXIT_USAGE);
    }
    let mut reports = Vec::new();
    let mut status = 0u8;
    for input in inputs {
        let target = match output_for(input, out, out.format, verb) {
            Ok(t) => t,
            Err(msg) => {
                eprintln!("pcap-surgery: {msg}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let to_stdout = matches!(target, OutputTarget::Stdout);
        match trim_one(input, &target, out.force, inputs, cfg) {
            Ok(summary) => {
                for w in &summary.warnings {
                    eprintln!("pcap-surgery: {}: warning: {w}", input.display());
                }
                if out.json && !to_stdout {
                    println!("{}", summary.json());
                } else if !out.quiet {
                    eprintln!("{}", summary.line(verb.name()));
                }
                if let Some(r) = &summary.scrub {
                    let line = serde_json::json!({"file": summary.file, "rules": r.rules});
                    reports.push(line.to_string());
                }
            }
            Err(e) => status = status.max(report_error(input, &e)),
        }
    }
    if let Some(path) = report {
        let mut text = reports.join("\n");
        text.push('\n');
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("pcap-surgery: {}: {e}", path.display());
            status = status.max(EXIT_RUNTIME);
        }
    }
    ExitCode::from(status)
}

fn trim_one(
    input: &PathBuf,
    target: &OutputTarget,
    force: bool,
    inputs: &[PathBuf],
    cfg: &TrimConfig,
) -> anyhow::Result<Summary> {
    if let OutputTarget::File(dir) = target
        && let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let opened = Input::open(input)?;
    let sink = AtomicOutput::create(target, force, inputs)?;
    let mut summary = Summary { file: input.display().to_string(), ..Default::default() };
    let sink = trim(opened, sink, cfg, &mut summary)?;
    sink.commit()?;
    Ok(summary)
}
