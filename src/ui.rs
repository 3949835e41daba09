//! Progress on a terminal (indicatif): one bar per file being read, bytes read of the file's
//! size (compressed size for gzip), packets per second and flows kept. Nothing is drawn when
//! standard error is not a terminal or with `--quiet`, so pipes and logs stay clean.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use pcap_surgery::progress::Progress;

/// How often a bar is brought up to date with its counters.
const TICK: Duration = Duration::from_millis(100);

pub struct Ui {
    multi: Option<MultiProgress>,
}

/// A bar for one file; dropping it stops its updates and removes it from the screen.
pub struct Bar {
    bar: ProgressBar,
    stop: Arc<AtomicBool>,
    updater: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.updater.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        self.bar.finish_and_clear();
    }
}

impl Ui {
    pub fn new(wanted: bool) -> Ui {
        let on = wanted && std::io::stderr().is_terminal();
        Ui { multi: on.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())) }
    }

    pub fn bar(&self, path: &Path, size: Option<u64>, progress: &Arc<Progress>) -> Option<Bar> {
        let multi = self.multi.as_ref()?;
        let name = path.file_name().map_or_else(|| "stdin".into(), |n| n.to_string_lossy().into_owned());
        let bar = match size {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{prefix:20!} {wide_bar} {binary_bytes}/{binary_total_bytes} {msg}")
                    .expect("valid template"),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix:20!} {spinner} {binary_bytes} {msg}").expect("valid template"),
            ),
        };
        let bar = multi.add(bar.with_prefix(name));
        bar.tick();
        let stop = Arc::new(AtomicBool::new(false));
        let updater = {
            let (bar, stop, progress) = (bar.clone(), stop.clone(), progress.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let (bytes, packets, kept) = progress.snapshot();
                    let secs = started.elapsed().as_secs_f64().max(1e-3);
                    bar.set_position(bytes);
                    if packets > 0 {
                        bar.set_message(format!("{:.0} pkt/s, {kept} flows kept", packets as f64 / secs));
                    }
                    std::thread::park_timeout(TICK);
                }
            })
        };
        Some(Bar { bar, stop, updater: Some(updater) })
    }

    /// Prints a line above the bars (or plainly when there are none).
    pub fn println(&self, line: &str) {
        match &self.multi {
            Some(m) => m.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    /// Runs `f` with the bars taken off the screen (for output on the same terminal).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.multi {
            Some(m) => m.suspend(f),
            None => f(),
        }
    }
}
