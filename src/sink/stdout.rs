//! Standard output as the stream's destination: an unbuffered `File` on a duplicate of fd 1, so
//! each access unit goes out in as few write(2) calls as the pipe allows, with no line buffering.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::exit::{Exit, ExitExt, fail};

/// Set once any stream byte has gone out on stdout (in this process).
static WROTE: AtomicBool = AtomicBool::new(false);

/// Whether this process has written any stream byte to stdout: before that, a failure is a
/// start-up failure to whoever reads stdout (see `entry::linger_for_reader`).
pub fn wrote_any() -> bool {
    WROTE.load(Ordering::Relaxed)
}

/// Stdout as the stream's writer: the `File` on fd 1's duplicate, noting its first byte.
#[derive(Debug)]
pub struct Stdout(File);

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.0.write(buf)?;
        if n > 0 {
            WROTE.store(true, Ordering::Relaxed);
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Opens stdout for binary output; refuses a terminal, which cannot show H.264.
pub fn open() -> anyhow::Result<Stdout> {
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        return Err(fail(
            Exit::Usage,
            "stdout is a terminal: pipe agentcast into a file, ffmpeg or go2rtc (agentcast > out.h264)",
        ));
    }
    let fd = stdout.as_fd().try_clone_to_owned();
    fd.map(|fd| Stdout(File::from(fd))).exit(Exit::Io)
}
