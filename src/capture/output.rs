//! Atomic output: data goes to a temporary file beside the target and is renamed over it only
//! when everything succeeded, so a failed or killed run never leaves a half-written capture
//! under the name the user asked for.

use std::fs::{self, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const WRITE_BUFFER_BYTES: usize = 1 << 20;

pub enum OutputTarget {
    Stdout,
    File(PathBuf),
}

pub struct AtomicOutput {
    inner: Option<BufWriter<Box<dyn Write + Send>>>,
    tmp: Option<PathBuf>,
    target: Option<PathBuf>,
    /// Names the output in write errors ("writing out.pcap: No space left on device"), which
    /// would otherwise read like errors of the input.
    label: String,
}

impl AtomicOutput {
    /// Opens the output. Refuses to overwrite an existing file without `force`, and refuses
    /// any output that is one of the inputs (same file, even through a link).
    pub fn create(target: &OutputTarget, force: bool, inputs: &[PathBuf]) -> Result<Self> {
        match target {
            OutputTarget::Stdout => Ok(AtomicOutput {
                inner: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, Box::new(io::stdout()))),
                tmp: None,
                target: None,
                label: "standard output".into(),
            }),
            OutputTarget::File(path) => {
                for input in inputs {
                    if same_file(input, path) {
                        return Err(Error::Usage(format!(
                            "output {} is the input file; choose another output path",
                            path.display()
                        )));
                    }
                }
                // A device or a pipe (/dev/null, a FIFO a script reads): written in place;
                // there is no partial file to protect and it must not be replaced.
                if fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
                    let f = OpenOptions::new().write(true).open(path)?;
                    return Ok(AtomicOutput {
                        inner: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, Box::new(f))),
                        tmp: None,
                        target: None,
                        label: path.display().to_string(),
                    });
                }
                if path.exists() && !force {
                    return Err(Error::Usage(format!(
                        "output {} exists; pass --force to overwrite it",
                        path.display()
                    )));
                }
                let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
                let f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
                Ok(AtomicOutput {
                    inner: Some(BufWriter::with_capacity(WRITE_BUFFER_BYTES, Box::new(f))),
                    tmp: Some(tmp),
                    target: Some(path.clone()),
                    label: path.display().to_string(),
                })
            }
        }
    }

    /// Flushes and moves the temporary file into place.
    pub fn commit(mut self) -> Result<()> {
        let w = self.inner.take().expect("commit once");
        let label = std::mem::take(&mut self.label);
        let inner = w.into_inner().map_err(|e| Error::Io(writing(&label, e.into_error())))?;
        drop(inner);
        if let (Some(tmp), Some(target)) = (self.tmp.take(), self.target.take()) {
            fs::rename(&tmp, &target).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })?;
        }
        Ok(())
    }
}

fn writing(label: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("writing {label}: {e}"))
}

impl Write for AtomicOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.as_mut().expect("open output").write(buf).map_err(|e| writing(&self.label, e))
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.inner.as_mut().expect("open output").write_all(buf).map_err(|e| writing(&self.label, e))
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.as_mut().expect("open output").flush().map_err(|e| writing(&self.label, e))
    }
}

impl Drop for AtomicOutput {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            self.inner.take();
            let _ = fs::remove_file(tmp);
        }
    }
}

/// True when both paths name one file: same device and inode after following links.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if a.as_os_str() == "-" || b.as_os_str() == "-" {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (fs::metadata(a), fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}
