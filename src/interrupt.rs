//! SIGINT and SIGTERM, as users of tcpdump expect them: the first signal ends a live capture
//! (standard input or a pipe) — reading stops, the packets still waiting are decided, the
//! output is written under its name — and aborts the reading of a file (no output); a second
//! signal ends the process at once. The handler only records the signal (and, on the second
//! one, removes named temporary outputs and exits): everything else happens on the normal
//! paths, which look at `requested()`.
//!
//! The handler is installed without `SA_RESTART`, so a read blocked on a pipe that stays open
//! returns `EINTR` and the reader sees the request at once.

use std::ffi::CString;
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicI32, AtomicPtr, Ordering};

static SIGNAL: AtomicI32 = AtomicI32::new(0);

/// Named temporary outputs to remove if a second signal ends the process (unnamed ones —
/// Linux `O_TMPFILE` — vanish by themselves). A fixed table, so that the handler reads it
/// without locking or allocating.
const TEMP_SLOTS: usize = 64;
static TEMPS: [AtomicPtr<libc::c_char>; TEMP_SLOTS] = [const { AtomicPtr::new(ptr::null_mut()) }; TEMP_SLOTS];

/// The signal that asked the run to stop, if any.
pub fn requested() -> Option<i32> {
    match SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        s => Some(s),
    }
}

/// The exit status for a run stopped by `signal` (130 for SIGINT, 143 for SIGTERM).
pub fn exit_status(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}

extern "C" fn on_signal(sig: libc::c_int) {
    if SIGNAL.swap(sig, Ordering::SeqCst) == 0 {
        return;
    }
    // A second signal: abort now. unlink and _exit are async-signal-safe.
    for slot in &TEMPS {
        let p = slot.load(Ordering::SeqCst);
        if !p.is_null() {
            // SAFETY: the pointer came from CString::into_raw and stays valid while registered.
            unsafe { libc::unlink(p) };
        }
    }
    // SAFETY: _exit ends the process without running anything that is not signal-safe.
    unsafe { libc::_exit(128 + sig) };
}

/// Installs the handler for SIGINT and SIGTERM (the binary calls this once, at start).
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a valid handler and an empty mask is well formed;
        // no SA_RESTART, so blocked reads return EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = 0;
            libc::sigaction(sig, &sa, ptr::null_mut());
        }
    }
}

/// A named temporary file registered for removal on a second signal; deregistered on drop.
pub struct TempGuard {
    slot: Option<usize>,
}

impl TempGuard {
    pub fn register(path: &Path) -> TempGuard {
        use std::os::unix::ffi::OsStrExt;
        let Ok(c) = CString::new(path.as_os_str().as_bytes()) else { return TempGuard { slot: None } };
        let raw = c.into_raw();
        for (i, slot) in TEMPS.iter().enumerate() {
            if slot.compare_exchange(ptr::null_mut(), raw, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
                return TempGuard { slot: Some(i) };
            }
        }
        // SAFETY: `raw` came from into_raw above and was not stored.
        drop(unsafe { CString::from_raw(raw) });
        TempGuard { slot: None }
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let p = TEMPS[i].swap(ptr::null_mut(), Ordering::SeqCst);
            if !p.is_null() {
                // SAFETY: registered by `register` from CString::into_raw.
                drop(unsafe { CString::from_raw(p) });
            }
        }
    }
}

/// Ends the process the way a closed pipe ends `cat`: SIGPIPE back to its default action,
/// so writing to a reader that went away (`| head`) stops the run quietly (status 141).
pub fn default_sigpipe() {
    // SAFETY: restoring a default disposition.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}
