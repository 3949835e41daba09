//! Documentation that stands alone: every finding code and leg has an entry in
//! docs/findings.md (meaning, severity, causes, what to check, an example), and every
//! command-line option is described in the README, which points at that reference. The man
//! pages carry the options too (tests/man.rs keeps them current) and the reference's path.

use clap::CommandFactory;
use pcap_surgery::cli::Cli;
use pcap_surgery::diagnose::{Code, Leg};

fn read(path: &str) -> String {
    std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn every_finding_code_and_leg_has_a_reference_entry() {
    let doc = read("docs/findings.md");
    let mut missing = Vec::new();
    for c in Code::ALL {
        let heading = format!("### `{}`", c.as_str());
        let Some(at) = doc.find(&heading) else {
            missing.push(heading);
            continue;
        };
        let entry = &doc[at..doc[at + 4..].find("\n### ").map_or(doc.len(), |e| at + 4 + e)];
        for part in ["**Means:**", "**Severity:**", "**Example:**"] {
            if !entry.contains(part) {
                missing.push(format!("{heading}: {part}"));
            }
        }
    }
    for l in Leg::ALL {
        if !doc.contains(&format!("- `{}` —", l.as_str())) {
            missing.push(format!("leg {}", l.as_str()));
        }
    }
    assert!(missing.is_empty(), "docs/findings.md lacks: {missing:?}");
    assert!(read("README.md").contains("docs/findings.md"), "the README points at the reference");
}

#[test]
fn every_command_line_option_is_in_the_readme() {
    let readme = read("README.md");
    let mut cmd = Cli::command();
    cmd.build();
    let mut missing = Vec::new();
    for sub in cmd.get_subcommands() {
        for arg in sub.get_arguments() {
            if let Some(long) = arg.get_long()
                && !["help", "version"].contains(&long)
                && !readme.contains(&format!("--{long}"))
            {
                missing.push(format!("{} --{long}", sub.get_name()));
            }
        }
    }
    assert!(missing.is_empty(), "options the README does not describe: {missing:?}");
}

#[test]
fn the_diagnose_man_page_lists_every_code_and_leg() {
    let man = read("man/pcap-surgery-diagnose.1");
    let missing: Vec<&str> = Code::ALL
        .iter()
        .map(|c| c.as_str())
        .chain(Leg::ALL.iter().map(|l| l.as_str()))
        .filter(|name| !man.contains(&name.replace('-', "\\-")) && !man.contains(name))
        .collect();
    assert!(missing.is_empty(), "man/pcap-surgery-diagnose.1 lacks {missing:?}");
}
