//! `--source shm:NAME`: an agent's frames from a latest-frame ring in POSIX shared memory.
//!
//! The ring is a file on tmpfs: `shm:NAME` is `/dev/shm/NAME`, the object that
//! `shm_open("/NAME")` (C), `multiprocessing.shared_memory.SharedMemory("NAME")` (Python) and
//! `examples/shm_writer.py NAME` make on Linux; `shm:/an/absolute/path` names any file, on tmpfs
//! for speed. The writer maps it and never waits for agentcast. A 4 KiB header describes the
//! frames and holds one seqlock counter per slot; frames sit in 4 KiB-aligned slots after it.
//! docs/SHM.md is the full layout, written for people implementing a writer.
//!
//! The reader has no `unsafe`: it reads the file with `pread` ([`FileExt::read_at`](std::os::unix::fs::FileExt::read_at)) instead of
//! mapping it. Taking a frame: read the header's `latest` word (frame number and slot), read the
//! slot's sequence counter (it must be even, and name that frame), copy the frame, then read the
//! counter again. Equal means the copy is whole; a changed counter means the writer overwrote the
//! slot during the copy, and the copy is dropped (counted as torn). A writer killed mid-frame leaves
//! an odd counter, which is never taken. Acquire fences between the reads keep them in order on
//! weakly ordered CPUs.
//!
//! [`spawn`] runs this on a thread of its own that polls every millisecond and hands each new
//! frame to [`Latest`](crate::source::live::Latest).
//!
//! The code is split by job: `layout.rs` is the wire format (the header's fields and offsets, and
//! their checks), `ring.rs` the seqlock protocol (opening a ring, taking one frame), `reader.rs`
//! the thread. What other modules use is re-exported here.

mod layout;
mod reader;
mod ring;

pub use layout::{
    ALIGN, FLAG_CLOSED, Header, HeaderError, MAGIC, MAX_PLANES, MAX_SLOTS, SLOT_ENTRY, SLOT_TABLE, VERSION, off,
};
pub use reader::{POLL, Reader, spawn};
pub use ring::{Counters, ReadAt, Ring, Step, check, ring_path};
