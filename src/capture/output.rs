//! Atomic output: data goes to a file beside the target that has no name yet (Linux
//! `O_TMPFILE`) and is linked into place only when everything succeeded, so a failed,
//! interrupted or killed run — even by SIGKILL or a power cut — never leaves a half-written
//! capture, under the name the user asked for or any other. Where the file system refuses
//! unnamed files, a named temporary file beside the target is renamed over it instead, and
//! removed on every exit path the process lives through (errors, interrupts, a second signal).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::background::Background;
use crate::error::{Error, Result};

const WRITE_BUFFER_BYTES: usize = 1 << 20;

pub enum OutputTarget {
    Stdout,
    File(PathBuf),
}

pub struct AtomicOutput {
    inner: Option<Background>,
    tmp: Option<PathBuf>,
    /// Registers `tmp` for removal if a second signal ends the process.
    _guard: Option<crate::interrupt::TempGuard>,
    /// The unnamed file's descriptor, to link it into place on commit.
    unnamed: Option<std::os::fd::RawFd>,
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
                inner: Some(Background::new(Box::new(io::stdout()), WRITE_BUFFER_BYTES)),
                tmp: None,
                _guard: None,
                unnamed: None,
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
                        inner: Some(Background::new(Box::new(f), WRITE_BUFFER_BYTES)),
                        tmp: None,
                        _guard: None,
                        unnamed: None,
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
                if let Ok(f) = open_unnamed(dir) {
                    use std::os::fd::AsRawFd;
                    let fd = f.as_raw_fd();
                    return Ok(AtomicOutput {
                        inner: Some(Background::new(Box::new(f), WRITE_BUFFER_BYTES)),
                        tmp: None,
                        _guard: None,
                        unnamed: Some(fd),
                        target: Some(path.clone()),
                        label: path.display().to_string(),
                    });
                }
                Self::create_named(path)
            }
        }
    }

    /// The fallback where unnamed files are refused: a hidden temporary file beside the target.
    fn create_named(path: &Path) -> Result<Self> {
        let tmp = temp_name(path);
        let f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        Ok(AtomicOutput {
            inner: Some(Background::new(Box::new(f), WRITE_BUFFER_BYTES)),
            _guard: Some(crate::interrupt::TempGuard::register(&tmp)),
            tmp: Some(tmp),
            unnamed: None,
            target: Some(path.to_path_buf()),
            label: path.display().to_string(),
        })
    }

    /// Flushes and moves the temporary file into place.
    pub fn commit(mut self) -> Result<()> {
        let w = self.inner.take().expect("commit once");
        let label = std::mem::take(&mut self.label);
        let inner = w.finish().map_err(|e| Error::Io(writing(&label, e)))?;
        if let Some(fd) = self.unnamed.take() {
            let target = self.target.take().expect("an unnamed output has a target");
            let linked = link_unnamed(fd, &target);
            drop(inner);
            return linked.map_err(|e| Error::Io(writing(&label, e)));
        }
        drop(inner);
        if let (Some(tmp), Some(target)) = (self.tmp.take(), self.target.take()) {
            fs::rename(&tmp, &target).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })?;
        }
        Ok(())
    }
}

/// A name beside `target` for a temporary file: hidden, and unique to this process.
fn temp_name(target: &Path) -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    dir.join(format!(".{name}.{}.{}.tmp", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)))
}

/// Opens a file with no name in `dir` (Linux `O_TMPFILE`): if the process dies, it is gone.
fn open_unnamed(dir: &Path) -> io::Result<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().write(true).mode(0o666).custom_flags(libc::O_TMPFILE).open(dir)
}

/// Gives the unnamed file `fd` the name `target`: linked directly when the name is free,
/// else linked beside it and renamed over it (so an existing output is replaced atomically).
fn link_unnamed(fd: std::os::fd::RawFd, target: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let proc_path = c(Path::new(&format!("/proc/self/fd/{fd}")))?;
    let link = |to: &Path| -> io::Result<()> {
        let to = c(to)?;
        // SAFETY: both paths are valid C strings; linkat only reads them.
        let r = unsafe {
            libc::linkat(libc::AT_FDCWD, proc_path.as_ptr(), libc::AT_FDCWD, to.as_ptr(), libc::AT_SYMLINK_FOLLOW)
        };
        if r == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
    };
    match link(target) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let tmp = temp_name(target);
            let _guard = crate::interrupt::TempGuard::register(&tmp);
            link(&tmp)?;
            fs::rename(&tmp, target).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })
        }
        Err(e) => Err(e),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn unnamed_output_has_no_name_until_commit_and_none_after_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.pcap");
        let mut o = AtomicOutput::create(&OutputTarget::File(target.clone()), false, &[]).unwrap();
        o.write_all(b"data").unwrap();
        assert!(o.unnamed.is_some(), "this file system takes O_TMPFILE");
        assert_eq!(names(dir.path()), Vec::<String>::new());
        o.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"data");
        // Replacing an existing output (--force) goes through a rename, leaving nothing else.
        let mut o = AtomicOutput::create(&OutputTarget::File(target.clone()), true, &[]).unwrap();
        o.write_all(b"new").unwrap();
        o.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"new");
        assert_eq!(names(dir.path()), vec!["out.pcap".to_string()]);
        let mut o = AtomicOutput::create(&OutputTarget::File(dir.path().join("failed.pcap")), false, &[]).unwrap();
        o.write_all(b"half").unwrap();
        drop(o);
        assert_eq!(names(dir.path()), vec!["out.pcap".to_string()]);
    }

    #[test]
    fn named_fallback_is_removed_on_failure_and_renamed_on_success() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.pcap");
        let mut o = AtomicOutput::create_named(&target).unwrap();
        o.write_all(b"half").unwrap();
        assert_eq!(names(dir.path()).len(), 1, "a hidden temporary file while writing");
        drop(o);
        assert_eq!(names(dir.path()), Vec::<String>::new(), "removed when the run fails");
        let mut o = AtomicOutput::create_named(&target).unwrap();
        o.write_all(b"whole").unwrap();
        o.commit().unwrap();
        assert_eq!(names(dir.path()), vec!["out.pcap".to_string()]);
        assert_eq!(fs::read(&target).unwrap(), b"whole");
    }
}
