//! Exit codes (sysexits style) and the error wrapper that carries one up to `main`.

use std::fmt;

/// Every way the process ends, with its documented code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: finished, stopped by SIGTERM/SIGINT, or the reader went away (BrokenPipe).
    Ok,
    /// 1: `agentcast check` found violations.
    CheckFailed,
    /// 2: bad command line or environment variable.
    Usage,
    /// 65: the shader does not compile or link.
    BadShader,
    /// 65: the agent's frames are malformed: a partial frame at EOF, a bad shared-memory header.
    BadData,
    /// 66: an input file (shader, stream to check) is missing or unreadable, or the PipeWire node
    /// never appeared within `--source-timeout`.
    NoInput,
    /// 69: something required is not installed or not available: libEGL, an EGL display, a GStreamer
    /// element, the requested encoder, a PipeWire daemon or session manager, the `--output rtsp://`
    /// server (unreachable, or it refused).
    Unavailable,
    /// 70: internal, GPU or encoder failure while running.
    Software,
    /// 73: the output cannot be created: a FIFO path that is taken or whose directory is missing,
    /// a TCP address that cannot be listened on; or a file we write (`--frame-log`, `--stats-file`).
    CantCreate,
    /// 74: writing the output failed (other than the reader leaving).
    Io,
    /// 75: a temporary failure: every NVENC slot is busy and `--on-busy fail` (or `wait` timed out).
    TempFail,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::CheckFailed => 1,
            Exit::Usage => 2,
            Exit::BadShader | Exit::BadData => 65,
            Exit::NoInput => 66,
            Exit::Unavailable => 69,
            Exit::Software => 70,
            Exit::CantCreate => 73,
            Exit::Io => 74,
            Exit::TempFail => 75,
        }
    }
}

/// The exit-code table for `--help` and the README.
pub const EXIT_CODES_HELP: &str = exit_codes_text!();

/// An error that knows which exit code it maps to. Its message is the full chain of the wrapped
/// error; context added outside it is prepended as usual by anyhow.
pub struct Coded {
    pub exit: Exit,
    pub error: anyhow::Error,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl fmt::Debug for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {:#}", self.exit, self.error)
    }
}

impl std::error::Error for Coded {}

/// Attaches an exit code to an error: `thing().context("...").exit(Exit::NoInput)?`.
pub trait ExitExt<T> {
    fn exit(self, exit: Exit) -> anyhow::Result<T>;
}

impl<T, E: Into<anyhow::Error>> ExitExt<T> for Result<T, E> {
    fn exit(self, exit: Exit) -> anyhow::Result<T> {
        self.map_err(|e| Coded { exit, error: e.into() }.into())
    }
}

/// Builds a coded error from a message.
pub fn fail(exit: Exit, msg: impl fmt::Display) -> anyhow::Error {
    Coded { exit, error: anyhow::anyhow!("{msg}") }.into()
}

/// Where an error chain says to exit: BrokenPipe anywhere means the reader left (0), a [`Coded`]
/// error carries its own code, anything else is an internal failure (70).
pub fn classify(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return Exit::Ok;
        }
        if let Some(coded) = cause.downcast_ref::<Coded>() {
            if let Some(io) = coded.error.downcast_ref::<std::io::Error>()
                && io.kind() == std::io::ErrorKind::BrokenPipe
            {
                return Exit::Ok;
            }
            return coded.exit;
        }
    }
    Exit::Software
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn classify_finds_codes_through_context() {
        let e: anyhow::Error = Err::<(), _>(std::io::Error::other("x"))
            .exit(Exit::NoInput)
            .context("reading --shader foo.glsl")
            .unwrap_err();
        assert_eq!(classify(&e), Exit::NoInput);
        assert_eq!(format!("{e:#}"), "reading --shader foo.glsl: x");
    }

    #[test]
    fn broken_pipe_is_success_even_when_coded() {
        let bp = || std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let e = anyhow::Error::from(bp()).context("writing stdout");
        assert_eq!(classify(&e), Exit::Ok);
        let e = Err::<(), _>(bp()).exit(Exit::Io).unwrap_err();
        assert_eq!(classify(&e), Exit::Ok);
    }

    #[test]
    fn plain_errors_are_internal() {
        assert_eq!(classify(&anyhow::anyhow!("boom")), Exit::Software);
        assert_eq!(Exit::BadShader.code(), 65);
        assert_eq!(Exit::Unavailable.code(), 69);
    }
}
