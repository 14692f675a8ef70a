//! Standard output as the stream's destination: an unbuffered `File` on a duplicate of fd 1, so
//! each access unit goes out in as few write(2) calls as the pipe allows, with no line buffering.

use std::fs::File;
use std::io::IsTerminal;
use std::os::fd::AsFd;

use crate::exit::{Exit, ExitExt, fail};

/// Opens stdout for binary output; refuses a terminal, which cannot show H.264.
pub fn open() -> anyhow::Result<File> {
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        return Err(fail(
            Exit::Usage,
            "stdout is a terminal: pipe agentcast into a file, ffmpeg or go2rtc (agentcast > out.h264)",
        ));
    }
    let fd = stdout.as_fd().try_clone_to_owned();
    fd.map(File::from).exit(Exit::Io)
}
