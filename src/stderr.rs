//! The process's stderr while a stream starts: log lines and stats lines are held back until the
//! stream has started ([`release`]), so a start-up that fails prints its `agentcast:` line first and
//! the lines that led to it after. go2rtc keeps only the first 512 bytes of a failed producer's
//! stderr, and on a machine with CUDA but no NVENC the start-up lines alone (CUDA device, every
//! encoder skipped, EGL) fill them. Only the CLI holds ([`hold`]); elsewhere lines pass straight
//! through.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

/// How long lines may be held back before they are written anyway: a start-up that fails does so
/// well within it (probing the encoders and opening EGL takes under a second), and one that waits
/// (for an NVENC slot, `--on-busy wait`) or hangs still says so promptly.
const HOLD_LIMIT: Duration = Duration::from_secs(3);

/// Lines held back while the stream starts; `None` once they pass straight to stderr.
static HELD: Mutex<Option<Vec<u8>>> = Mutex::new(None);

/// Holds lines back until [`release`], or [`HOLD_LIMIT`] at most.
pub fn hold() {
    *HELD.lock().unwrap_or_else(|e| e.into_inner()) = Some(Vec::new());
    let _ = std::thread::Builder::new().name("log-hold".into()).spawn(|| {
        std::thread::sleep(HOLD_LIMIT);
        release();
    });
}

/// Writes the held lines (if any) and lets lines through from now on.
pub fn release() {
    if let Some(held) = HELD.lock().unwrap_or_else(|e| e.into_inner()).take() {
        let _ = std::io::stderr().write_all(&held);
    }
}

/// Writes to stderr, or to the held lines while they are held.
pub fn write(buf: &[u8]) {
    match HELD.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        Some(held) => held.extend_from_slice(buf),
        None => {
            let _ = std::io::stderr().write_all(buf);
        }
    }
}
