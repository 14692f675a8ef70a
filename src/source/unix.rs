//! `unix:PATH`: agentcast listens on a Unix stream socket; one agent connects and sends raw frames
//! in the `raw:` format. A second connection while one is active is refused with a log line. An
//! agent that disconnects may connect again: meanwhile the last frame repeats, and
//! `--source-timeout` ends the stream if nobody comes back.
//!
//! Path safety, as for FIFO outputs: the socket is created with mode 0600 and removed on exit. A
//! socket left by an agentcast that was killed (nobody accepts on it) is replaced; a live one, or
//! anything that is not a socket, is refused and left untouched.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use anyhow::Context as _;
use log::{info, warn};

use crate::exit::{Exit, ExitExt, fail};
use crate::source::live::{Latest, SourceEnd};
use crate::source::raw;

/// How often the accepting thread looks whether the stream has stopped.
const ACCEPT_POLL: Duration = Duration::from_millis(100);

/// The listening socket; removes its path when dropped.
pub struct Socket {
    listener: UnixListener,
    path: PathBuf,
}

/// What `--source unix:PATH` finds at its path: `false` for nothing, `true` for a stale socket that
/// nobody listens on (replaced at start-up). A live socket, or anything that is not a socket, is
/// refused and left untouched.
pub fn check(path: &Path) -> anyhow::Result<bool> {
    let shown = format!("--source unix:{}", path.display());
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => Err(fail(Exit::CantCreate, format!("{shown}: another process is listening on this socket"))),
            Err(_) => Ok(true),
        },
        Ok(m) => Err(fail(
            Exit::CantCreate,
            format!(
                "{shown}: the path is a {}, not a socket; refusing to replace it",
                crate::fsutil::kind(m.file_type())
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(fail(Exit::CantCreate, format!("{shown}: {e}"))),
    }
}

impl Socket {
    /// Creates the socket at `path` (mode 0600).
    pub fn bind(path: &Path) -> anyhow::Result<Socket> {
        let shown = format!("--source unix:{}", path.display());
        if check(path)? {
            info!("{shown}: replacing a stale socket nobody listens on");
            std::fs::remove_file(path)
                .with_context(|| format!("{shown}: removing the stale socket"))
                .exit(Exit::CantCreate)?;
        }
        let listener = UnixListener::bind(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => fail(
                Exit::CantCreate,
                format!(
                    "{shown}: the directory {} does not exist",
                    path.parent().map(|p| p.display().to_string()).unwrap_or_default()
                ),
            ),
            _ => fail(Exit::CantCreate, format!("{shown}: cannot listen: {e}")),
        })?;
        let socket = Socket { listener, path: path.to_path_buf() };
        // bind applies the umask; make the mode exactly 0600 whatever it is.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("{shown}: setting mode 0600"))
            .exit(Exit::CantCreate)?;
        socket.listener.set_nonblocking(true).exit(Exit::CantCreate)?;
        info!("unix:{}: listening for the agent's frames (mode 0600)", path.display());
        Ok(socket)
    }

    /// Starts the accepting thread: one agent at a time, its frames into `latest`, until the slot
    /// closes. The socket's path is removed when `self` is dropped.
    pub fn spawn(&self, frame_bytes: usize, latest: Arc<Latest>) -> anyhow::Result<()> {
        let what = format!("unix:{}", self.path.display());
        let busy = Arc::new(AtomicBool::new(false));
        let listener = self.listener.try_clone().exit(Exit::Io)?;
        thread::Builder::new().name("source-unix".into()).spawn(move || {
            while !latest.is_closed() {
                let stream = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(ACCEPT_POLL);
                        continue;
                    }
                    Err(e) => {
                        latest.end(SourceEnd::Failed(Exit::Io, format!("{what}: accepting: {e}")));
                        return;
                    }
                };
                if busy.swap(true, Ordering::AcqRel) {
                    warn!("{what}: refused a second agent connection (one agent at a time)");
                    drop(stream);
                    continue;
                }
                info!("{what}: an agent connected");
                let (latest, busy, what) = (latest.clone(), busy.clone(), what.clone());
                let reader = thread::Builder::new().name("source-unix-conn".into()).spawn(move || {
                    if let Err(e) = stream.set_nonblocking(false) {
                        warn!("{what}: {e}");
                    }
                    let mut stream = stream;
                    match raw::pump(&mut stream, frame_bytes, &latest, &what) {
                        Ok(_) => {}
                        Err(SourceEnd::Finished(_)) => {
                            info!("{what}: the agent disconnected; the last frame repeats until one connects again")
                        }
                        Err(SourceEnd::Failed(_, why)) => {
                            warn!("{why}; the partial frame is dropped, waiting for the agent to connect again")
                        }
                    }
                    busy.store(false, Ordering::Release);
                });
                if let Err(e) = reader {
                    warn!("{e}");
                }
            }
        })?;
        Ok(())
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_socket() => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    warn!("removing {}: {e}", self.path.display());
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn the_socket_is_private_replaces_a_stale_one_and_refuses_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.sock");
        let socket = Socket::bind(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // A live socket is refused.
        let e = Socket::bind(&path).err().unwrap();
        assert_eq!(crate::exit::classify(&e), Exit::CantCreate);
        assert!(format!("{e:#}").contains("another process is listening"), "{e:#}");
        // A stale one (its listener gone, the file left behind) is replaced.
        drop(socket);
        assert!(!path.exists(), "removed on drop");
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale); // the file stays, nobody listens
        assert!(path.exists());
        drop(Socket::bind(&path).unwrap());
        // Not a socket: left alone.
        std::fs::write(&path, b"x").unwrap();
        let e = Socket::bind(&path).err().unwrap();
        assert!(format!("{e:#}").contains("is a regular file, not a socket"), "{e:#}");
        assert_eq!(std::fs::read(&path).unwrap(), b"x");
        let e = Socket::bind(&dir.path().join("no/such/dir.sock")).err().unwrap();
        assert!(format!("{e:#}").contains("does not exist"), "{e:#}");
    }
}
