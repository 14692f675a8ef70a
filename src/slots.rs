//! NVENC session leases across processes. A GeForce card allows about 8 NVENC sessions per system,
//! and agents past the cap crashed with `OpenEncodeSessionEx failed`. Here an encoder may open NVENC
//! only while it holds one of N slot locks: `flock` on `slot-K.lock` files in a shared directory,
//! taken without blocking. The kernel releases a lock when its process dies, so a go2rtc SIGKILL
//! never leaks a slot. The holder writes its pid and stream name into the file, for `agentcast
//! slots`; a record whose lock nobody holds is stale and the slot is free.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The default lock directory: `$XDG_RUNTIME_DIR/agentcast`, else `/run/agentcast`.
pub fn default_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("agentcast"),
        _ => PathBuf::from("/run/agentcast"),
    }
}

/// Why a directory agentcast keeps files in cannot be used. The text is one line that names the
/// directory as the user knows it (`role`: "--lock-dir", "FIFO dir") and says what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("{role} {}: cannot create the directory: {source}", path.display())]
    Create { role: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{role} {}: cannot write there: {source}", path.display())]
    Write { role: &'static str, path: PathBuf, source: std::io::Error },
}

/// Makes sure `path` is a directory this user can create files in (creating it if needed): a file
/// is created there and removed. `role` names the directory in the error.
pub fn writable_dir(path: &Path, role: &'static str) -> Result<(), DirError> {
    std::fs::create_dir_all(path).map_err(|source| DirError::Create { role, path: path.into(), source })?;
    let probe = path.join(format!(".write-test-{}", std::process::id()));
    File::create(&probe).and_then(|_| std::fs::remove_file(&probe)).map_err(|source| DirError::Write {
        role,
        path: path.into(),
        source,
    })
}

/// A directory of N slot files.
#[derive(Debug, Clone)]
pub struct LockDir {
    path: PathBuf,
    slots: u32,
}

/// A held slot. Dropping it clears the record and releases the lock.
#[derive(Debug)]
pub struct Lease {
    lock: Option<Flock<File>>,
    pub index: u32,
    pub path: PathBuf,
}

/// What `agentcast slots` shows for one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    Free,
    Held {
        pid: u32,
        stream: String,
    },
    /// A record left by a process that died; the slot is free.
    Stale {
        pid: u32,
        stream: String,
    },
}

impl LockDir {
    /// Opens (creating if needed) a lock directory for `slots` slots. The error is one line that
    /// names the directory (as `--lock-dir`) and says what is wrong with it.
    pub fn open(path: &Path, slots: u32) -> Result<LockDir, DirError> {
        writable_dir(path, "--lock-dir")?;
        Ok(LockDir { path: path.to_path_buf(), slots })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn slots(&self) -> u32 {
        self.slots
    }

    fn slot_path(&self, i: u32) -> PathBuf {
        self.path.join(format!("slot-{i}.lock"))
    }

    fn open_slot(&self, i: u32) -> std::io::Result<File> {
        OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o666).open(self.slot_path(i))
    }

    /// Takes the first free slot without blocking; `None` when all N are held.
    pub fn try_acquire(&self, stream: &str) -> std::io::Result<Option<Lease>> {
        for i in 0..self.slots {
            let file = self.open_slot(i)?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(mut lock) => {
                    let record = format!("pid={}\nstream={}\n", std::process::id(), stream.replace('\n', " "));
                    lock.set_len(0)?;
                    lock.rewind()?;
                    lock.write_all(record.as_bytes())?;
                    lock.flush()?;
                    return Ok(Some(Lease { lock: Some(lock), index: i, path: self.slot_path(i) }));
                }
                Err((_, Errno::EWOULDBLOCK)) => continue,
                Err((_, e)) => return Err(std::io::Error::from(e)),
            }
        }
        Ok(None)
    }

    /// The state of every slot, without disturbing holders (a free slot is locked for an instant).
    pub fn list(&self) -> std::io::Result<Vec<(u32, SlotState)>> {
        let mut out = Vec::new();
        for i in 0..self.slots {
            let mut file = self.open_slot(i)?;
            let mut text = String::new();
            file.read_to_string(&mut text)?;
            let record = parse_record(&text);
            let state = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(_free) => match record {
                    Some((pid, stream)) => SlotState::Stale { pid, stream },
                    None => SlotState::Free,
                },
                Err((_, Errno::EWOULDBLOCK)) => {
                    let (pid, stream) = record.unwrap_or((0, String::new()));
                    SlotState::Held { pid, stream }
                }
                Err((_, e)) => return Err(std::io::Error::from(e)),
            };
            out.push((i, state));
        }
        Ok(out)
    }
}

/// `agentcast slots`: one line per slot of the lock directory `lock_dir` (`None` =
/// [`default_dir`]). With no `nvenc_sessions` (`--nvenc-sessions`), shows the slot files found.
pub fn show(lock_dir: Option<&Path>, nvenc_sessions: Option<u32>) -> anyhow::Result<crate::exit::Exit> {
    use crate::exit::{Exit, fail};
    let path = lock_dir.map_or_else(default_dir, Path::to_path_buf);
    let slots = match nvenc_sessions {
        Some(n) => n,
        None => std::fs::read_dir(&path)
            .map(|rd| {
                rd.filter_map(|e| {
                    let name = e.ok()?.file_name().into_string().ok()?;
                    name.strip_prefix("slot-")?.strip_suffix(".lock")?.parse::<u32>().ok()
                })
                .map(|i| i + 1)
                .max()
                .unwrap_or(0)
            })
            .unwrap_or(0),
    };
    let dir = LockDir::open(&path, slots).map_err(|e| fail(Exit::CantCreate, e))?;
    println!("{} ({} slot(s))", path.display(), slots);
    let list = dir.list().map_err(|e| fail(Exit::Io, format!("reading {}: {e}", path.display())))?;
    for (i, state) in list {
        match state {
            SlotState::Free => println!("slot {i}: free"),
            SlotState::Held { pid, stream } => println!("slot {i}: held by pid {pid} ({stream})"),
            SlotState::Stale { pid, stream } => println!("slot {i}: free (stale record of pid {pid}, {stream})"),
        }
    }
    Ok(Exit::Ok)
}

/// Parses `pid=..\nstream=..` (missing or garbled records are `None`).
pub fn parse_record(text: &str) -> Option<(u32, String)> {
    let mut pid = None;
    let mut stream = String::new();
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("pid=") {
            pid = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("stream=") {
            stream = v.to_string();
        }
    }
    pid.map(|p| (p, stream))
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(lock) = self.lock.take() {
            // Clear the record while still holding the lock; the lock goes with the descriptor.
            let _ = lock.set_len(0);
            drop(lock);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(slots: u32) -> (tempfile::TempDir, LockDir) {
        let t = tempfile::tempdir().unwrap();
        let d = LockDir::open(&t.path().join("locks"), slots).unwrap();
        (t, d)
    }

    #[test]
    fn n_slots_for_n_plus_one_contenders() {
        let (_t, d) = dir(2);
        let a = d.try_acquire("agent_01").unwrap().expect("slot 0");
        let b = d.try_acquire("agent_02").unwrap().expect("slot 1");
        assert_eq!((a.index, b.index), (0, 1));
        assert!(d.try_acquire("agent_03").unwrap().is_none(), "a third contender gets nothing");
        let me = std::process::id();
        assert_eq!(
            d.list().unwrap(),
            vec![
                (0, SlotState::Held { pid: me, stream: "agent_01".into() }),
                (1, SlotState::Held { pid: me, stream: "agent_02".into() })
            ]
        );
    }

    #[test]
    fn release_on_drop() {
        let (_t, d) = dir(1);
        let a = d.try_acquire("a").unwrap().unwrap();
        assert!(d.try_acquire("b").unwrap().is_none());
        drop(a);
        assert_eq!(d.list().unwrap(), vec![(0, SlotState::Free)]);
        let b = d.try_acquire("b").unwrap().expect("free again");
        assert_eq!(b.index, 0);
    }

    #[test]
    fn a_stale_record_without_a_lock_is_free() {
        let (_t, d) = dir(1);
        std::fs::write(d.path().join("slot-0.lock"), "pid=999999\nstream=dead\n").unwrap();
        assert_eq!(d.list().unwrap(), vec![(0, SlotState::Stale { pid: 999_999, stream: "dead".into() })]);
        let lease = d.try_acquire("alive").unwrap().expect("a stale slot is free");
        assert_eq!(lease.index, 0);
        let text = std::fs::read_to_string(&lease.path).unwrap();
        assert_eq!(parse_record(&text), Some((std::process::id(), "alive".into())));
    }

    #[test]
    fn unusable_lock_dirs_are_clear_errors() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let e = LockDir::open(&file.join("locks"), 2).unwrap_err().to_string();
        assert!(e.starts_with("--lock-dir ") && e.contains("cannot create the directory"), "{e}");
        // A directory nobody can create files in, not even root.
        let e = LockDir::open(Path::new("/proc"), 2).unwrap_err().to_string();
        assert!(e.contains("--lock-dir /proc: cannot write there"), "{e}");
        // Another directory is named as the user knows it.
        let e = writable_dir(Path::new("/proc/agentcast-fifos"), "FIFO dir").unwrap_err().to_string();
        assert!(e.starts_with("FIFO dir /proc/agentcast-fifos: cannot create the directory: "), "{e}");
    }

    #[test]
    fn records_parse() {
        assert_eq!(parse_record("pid=12\nstream=agent 1\n"), Some((12, "agent 1".into())));
        assert_eq!(parse_record(""), None);
        assert_eq!(parse_record("garbage"), None);
    }
}
