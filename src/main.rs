//! The `pcap-surgery` binary: parses the command line, runs the library on each input, and
//! maps failures to exit codes (0 ok, 1 runtime error, 2 usage error).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use pcap_surgery::Error;
use pcap_surgery::capture::{AtomicOutput, Input, OutFormat, OutputTarget};
use pcap_surgery::cli::{Cli, Command, OutputArgs, TrimArgs};
use pcap_surgery::policy::Options;
use pcap_surgery::report::Summary;
use pcap_surgery::trim::{TrimConfig, trim};

const EXIT_RUNTIME: u8 = 1;
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Trim(args) => run_trim(args),
    }
}

/// An error and whether it is the user's (exit 2) or the input's / system's (exit 1).
fn report_error(file: &Path, err: &anyhow::Error) -> u8 {
    eprintln!("pcap-surgery: {}: {err:#}", file.display());
    match err.downcast_ref::<Error>() {
        Some(Error::Usage(_)) => EXIT_USAGE,
        _ => EXIT_RUNTIME,
    }
}

fn output_for(
    input: &Path,
    out: &OutputArgs,
    ext_from: Option<OutFormat>,
) -> Result<OutputTarget, String> {
    if let Some(dir) = &out.out_dir {
        let name = input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "stdin".into());
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
        return Ok(OutputTarget::File(
            dir.join(format!("{base}.trimmed.{ext}")),
        ));
    }
    match &out.output {
        Some(p) if p.as_os_str() == "-" => Ok(OutputTarget::Stdout),
        Some(p) => Ok(OutputTarget::File(p.clone())),
        None => Err("no output: give -o OUT (or - for standard output) or --out-dir DIR".into()),
    }
}

fn run_trim(args: TrimArgs) -> ExitCode {
    let out = &args.out;
    if args.inputs.len() > 1 && out.out_dir.is_none() {
        eprintln!("pcap-surgery: several inputs need --out-dir DIR (one output per input)");
        return ExitCode::from(EXIT_USAGE);
    }
    if args.inputs.iter().filter(|p| p.as_os_str() == "-").count() > 1 {
        eprintln!("pcap-surgery: standard input (-) can be read only once");
        return ExitCode::from(EXIT_USAGE);
    }
    let cfg = TrimConfig {
        policy: Options {
            hosts: args.hosts.clone(),
            ports: args.ports.clone(),
            keep_frames: args.keep_frames,
            bulk: args.bulk,
            bulk_budget: args.bulk_budget,
        },
        format: out.format,
    };
    let mut status = 0u8;
    for input in &args.inputs {
        let target = match output_for(input, out, out.format) {
            Ok(t) => t,
            Err(msg) => {
                eprintln!("pcap-surgery: {msg}");
                return ExitCode::from(EXIT_USAGE);
            }
        };
        let to_stdout = matches!(target, OutputTarget::Stdout);
        match trim_one(input, &target, out.force, &args.inputs, &cfg) {
            Ok(summary) => {
                for w in &summary.warnings {
                    eprintln!("pcap-surgery: {}: warning: {w}", input.display());
                }
                if out.json && !to_stdout {
                    println!("{}", summary.json());
                } else if !out.quiet {
                    eprintln!("{}", summary.line("trim"));
                }
            }
            Err(e) => status = status.max(report_error(input, &e)),
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
    if let OutputTarget::File(dir) = target {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
        }
    }
    let opened = Input::open(input)?;
    let sink = AtomicOutput::create(target, force, inputs)?;
    let mut summary = Summary {
        file: input.display().to_string(),
        ..Default::default()
    };
    let sink = trim(opened, sink, cfg, &mut summary)?;
    sink.commit()?;
    Ok(summary)
}
