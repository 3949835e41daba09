//! Many inputs: expanding directories, naming outputs, and running files in parallel.
//!
//! Each file is still streamed by one thread in bounded memory; parallelism is across files,
//! which is where a batch of customer captures has it. Results are handed back in input order
//! (a slow first file holds back the lines of later ones, not their work), so that summaries
//! and JSON lines read the same whatever `-j` is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use crate::error::{Error, Result};

/// One input, and the folder it was found under relative to the directory given (for
/// `--recursive`, so that outputs keep the tree and equal names in two folders do not clash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    pub path: PathBuf,
    pub rel_dir: PathBuf,
}

/// File names taken as captures when walking a directory.
fn is_capture_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    [".pcap", ".pcapng", ".cap", ".ntar"].iter().any(|e| name.ends_with(e))
}

/// Expands the command line's inputs: files as given, directories walked (with `recursive`)
/// for capture files in sorted order.
pub fn expand(inputs: &[PathBuf], recursive: bool) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.as_os_str() != "-" && input.is_dir() {
            if !recursive {
                return Err(Error::Usage(format!(
                    "{}: is a directory (give --recursive to read the captures in it)",
                    input.display()
                )));
            }
            walk(input, Path::new(""), &mut out)?;
        } else {
            out.push(Source { path: input.clone(), rel_dir: PathBuf::new() });
        }
    }
    Ok(out)
}

fn walk(dir: &Path, rel: &Path, out: &mut Vec<Source>) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .and_then(|rd| rd.collect::<std::io::Result<Vec<_>>>())
        .map_err(|e| Error::Usage(format!("{}: {e}", dir.display())))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        // Symlinked directories are not followed: a loop would never end.
        let ft = e.file_type().map_err(|err| Error::Usage(format!("{}: {err}", path.display())))?;
        if ft.is_dir() {
            walk(&path, &rel.join(&name), out)?;
        } else if is_capture_name(&name) {
            out.push(Source { path, rel_dir: rel.to_path_buf() });
        }
    }
    Ok(())
}

/// Fills an output name pattern: `{stem}` is the input's name without its extension (and
/// `.gz`), `{ext}` the extension of the output format.
pub fn output_name(pattern: &str, input: &Path, ext: Option<&str>) -> String {
    let name = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "stdin".into());
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    let (stem, own_ext) = match name.rsplit_once('.') {
        Some((b, e)) if !b.is_empty() => (b, e),
        _ => (name, "pcap"),
    };
    pattern.replace("{stem}", stem).replace("{ext}", ext.unwrap_or(own_ext))
}

/// Runs `work` on items `0..n` with `jobs` threads; `done` gets each result in item order,
/// on the calling thread, as soon as it and all before it are finished.
pub fn run_ordered<T: Send>(n: usize, jobs: usize, work: impl Fn(usize) -> T + Sync, mut done: impl FnMut(usize, T)) {
    let jobs = jobs.clamp(1, n.max(1));
    if jobs == 1 {
        for i in 0..n {
            done(i, work(i));
        }
        return;
    }
    let next = AtomicUsize::new(0);
    let (tx, rx) = mpsc::channel::<(usize, T)>();
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (next, work) = (&next, &work);
            scope.spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n || tx.send((i, work(i))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut want = 0;
        for (i, r) in rx {
            pending.insert(i, r);
            while let Some(r) = pending.remove(&want) {
                done(want, r);
                want += 1;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_pattern() {
        let p = Path::new("/x/customer.pcapng.gz");
        assert_eq!(output_name("{stem}.trimmed.{ext}", p, None), "customer.trimmed.pcapng");
        assert_eq!(output_name("{stem}.trimmed.{ext}", p, Some("pcap")), "customer.trimmed.pcap");
        assert_eq!(output_name("small-{stem}.{ext}", Path::new("noext"), None), "small-noext.pcap");
    }

    #[test]
    fn results_arrive_in_order_whatever_the_threads_do() {
        let mut seen = Vec::new();
        run_ordered(
            20,
            4,
            |i| {
                std::thread::sleep(std::time::Duration::from_millis(((20 - i) % 5) as u64));
                i * 2
            },
            |i, r| seen.push((i, r)),
        );
        assert_eq!(seen, (0..20).map(|i| (i, i * 2)).collect::<Vec<_>>());
    }

    #[test]
    fn capture_names() {
        for n in ["a.pcap", "b.PCAPNG", "c.pcap.gz", "d.cap"] {
            assert!(is_capture_name(n), "{n}");
        }
        for n in ["notes.txt", "pcap", "x.gz"] {
            assert!(!is_capture_name(n), "{n}");
        }
    }
}
