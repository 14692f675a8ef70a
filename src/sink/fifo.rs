//! The FIFO endpoint: `--output fifo:PATH`. Readers (`cat PATH`, go2rtc's `exec:cat`) open and close
//! the pipe whenever they like; we open the write end without blocking and only while one is there.
//!
//! Path safety: a missing FIFO is created with mode 0600; an existing FIFO is used as it is; anything
//! else at the path (a file, a directory, a symlink) is refused and left untouched. The FIFO is
//! removed on exit only if we created it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use log::{debug, info, warn};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;
use nix::sys::stat::Mode;

use crate::exit::{Exit, ExitExt, fail};
use crate::sink::{Conn, Endpoint};

pub struct Fifo {
    path: PathBuf,
    created: bool,
}

/// What `--output fifo:PATH` finds at its path: `true` for an existing FIFO (used as it is),
/// `false` for nothing yet in a directory that exists (created at start-up). Anything else at the
/// path (a file, a directory, a symlink) is refused and left untouched.
pub fn check(path: &Path) -> anyhow::Result<bool> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_fifo() => Ok(true),
        Ok(m) => Err(fail(
            Exit::CantCreate,
            format!(
                "--output fifo:{shown}: the path is a {}, not a FIFO; refusing to replace or follow it",
                crate::fsutil::kind(m.file_type())
            ),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => match path.parent().filter(|d| !d.as_os_str().is_empty()) {
            Some(dir) if !dir.is_dir() => Err(fail(
                Exit::CantCreate,
                format!("--output fifo:{shown}: the directory {} does not exist", dir.display()),
            )),
            _ => Ok(false),
        },
        Err(e) => Err(fail(Exit::CantCreate, format!("--output fifo:{shown}: {e}"))),
    }
}

impl Fifo {
    /// Checks or creates the FIFO at `path`.
    pub fn prepare(path: &Path) -> anyhow::Result<Fifo> {
        let shown = path.display();
        if check(path)? {
            info!("fifo:{shown}: using the existing FIFO");
            return Ok(Fifo { path: path.to_path_buf(), created: false });
        }
        match nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR) {
            Ok(()) => {}
            Err(Errno::ENOENT) => {
                let dir = path.parent().map(|p| p.display().to_string()).unwrap_or_default();
                return Err(fail(
                    Exit::CantCreate,
                    format!("--output fifo:{shown}: the directory {dir} does not exist"),
                ));
            }
            Err(e) => {
                return Err(fail(Exit::CantCreate, format!("--output fifo:{shown}: cannot create a FIFO: {e}")));
            }
        }
        let fifo = Fifo { path: path.to_path_buf(), created: true };
        // mkfifo applies the umask; make the mode exactly 0600 whatever it is.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("--output fifo:{shown}: setting mode 0600"))
            .exit(Exit::CantCreate)?;
        info!("fifo:{shown}: created (mode 0600)");
        Ok(fifo)
    }
}

/// Grows the pipe buffer to the system's limit, to absorb a reader's jitter.
fn grow_pipe(file: &File) {
    let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .unwrap_or(1 << 20);
    match fcntl(file, FcntlArg::F_SETPIPE_SZ(max)) {
        Ok(size) => debug!("FIFO pipe buffer: {size} bytes"),
        Err(e) => debug!("F_SETPIPE_SZ({max}) failed: {e}; keeping the default pipe buffer"),
    }
}

impl Endpoint for Fifo {
    fn try_attach(&mut self) -> anyhow::Result<Option<Box<dyn Conn>>> {
        let opened = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&self.path);
        match opened {
            Ok(file) => {
                // O_NOFOLLOW stops a symlink; this stops a regular file swapped in after start-up.
                let ft = file.metadata().exit(Exit::Io)?.file_type();
                if !ft.is_fifo() {
                    return Err(fail(
                        Exit::Io,
                        format!(
                            "fifo:{}: the path became a {}; refusing to write to it",
                            self.path.display(),
                            crate::fsutil::kind(ft)
                        ),
                    ));
                }
                grow_pipe(&file);
                Ok(Some(Box::new(file)))
            }
            // No reader has the FIFO open.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
            Err(e) => Err(fail(Exit::Io, format!("fifo:{}: opening for writing: {e}", self.path.display()))),
        }
    }

    fn describe(&self) -> String {
        format!("fifo:{}", self.path.display())
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        if !self.created {
            return;
        }
        // Remove only what we made: still a FIFO at that path.
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.file_type().is_fifo() => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    warn!("removing {}: {e}", self.path.display());
                }
            }
            _ => {}
        }
    }
}
