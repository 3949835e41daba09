//! The man pages in `man/` are generated from the clap definitions; this test fails when they
//! are stale. Regenerate with `UPDATE_MAN=1 cargo test --test man`.

use std::path::PathBuf;

use clap::CommandFactory;
use pcap_surgery::cli::Cli;

fn pages() -> Vec<(String, Vec<u8>)> {
    let mut cmd = Cli::command();
    cmd.build();
    let mut out = Vec::new();
    let mut render = |name: String, c: clap::Command| {
        let mut buf = Vec::new();
        let static_name: &'static str = Box::leak(name.clone().into_boxed_str());
        clap_mangen::Man::new(c.name(static_name).version(env!("CARGO_PKG_VERSION"))).render(&mut buf).unwrap();
        out.push((format!("{name}.1"), buf));
    };
    render("pcap-surgery".into(), cmd.clone());
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        render(format!("pcap-surgery-{}", sub.get_name()), sub.clone());
    }
    out
}

#[test]
fn man_pages_are_up_to_date() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man");
    let update = std::env::var_os("UPDATE_MAN").is_some();
    let pages = pages();
    let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "pcap-surgery.1",
        "pcap-surgery-trim.1",
        "pcap-surgery-scrub.1",
        "pcap-surgery-diagnose.1",
        "pcap-surgery-flows.1",
    ] {
        assert!(names.contains(&want), "{want}");
    }
    for (name, text) in &pages {
        let path = dir.join(name);
        if update {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, text).unwrap();
            continue;
        }
        let committed = std::fs::read(&path).unwrap_or_default();
        assert!(committed == *text, "man/{name} is stale: run `UPDATE_MAN=1 cargo test --test man` and commit man/");
    }
}

#[test]
fn man_pages_render() {
    let page = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("man/pcap-surgery-trim.1");
    let Ok(o) =
        std::process::Command::new("man").arg("-l").arg(&page).env("MANPAGER", "cat").env("MANWIDTH", "80").output()
    else {
        assert!(std::env::var_os("CI").is_none(), "man is needed under CI");
        return;
    };
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(text.contains("--keep-frames") || text.contains("keep-frames"), "{text}");
    assert!(text.contains("Examples"), "{text}");
}
