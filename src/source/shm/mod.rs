//! `--source shm:NAME`: an agent's frames from a latest-frame ring in POSIX shared memory.
//!
//! The ring is a file on tmpfs: `shm:NAME` is `/dev/shm/NAME`, the object that
//! `shm_open("/NAME")` (C), `multiprocessing.shared_memory.SharedMemory("NAME")` (Python) and
//! `examples/shm_writer.py NAME` make on Linux; `shm:/an/absolute/path` names any file, on tmpfs
//! for speed. The writer maps it and never waits for agentcast. A 4 KiB header describes the
//! frames and holds one seqlock counter per slot; frames sit in 4 KiB-aligned slots after it.
//! docs/SHM.md is the full layout, written for people implementing a writer.
//!
//! The reader has no `unsafe`: it reads the file with `pread` ([`FileExt::read_at`]) instead of
//! mapping it. Taking a frame: read the header's `latest` word (frame number and slot), read the
//! slot's sequence counter (it must be even, and name that frame), copy the frame, then read the
//! counter again. Equal means the copy is whole; a changed counter means the writer overwrote the
//! slot during the copy, and the copy is dropped (counted as torn). A writer killed mid-frame leaves
//! an odd counter, which is never taken. Acquire fences between the reads keep them in order on
//! weakly ordered CPUs.
//!
//! [`spawn`] runs this on a thread of its own that polls every millisecond and hands each new
//! frame to [`Latest`].

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::exit::{Exit, fail};
use crate::frame::{HostFrame, PixFmt, PlaneLayout};
use crate::source::live::{Latest, SourceEnd};

/// The first 8 bytes of every ring.
pub const MAGIC: [u8; 8] = *b"AGCSHM01";
/// The layout version this reader understands.
pub const VERSION: u32 = 1;
/// Bytes of the fixed fields; the slot table starts here.
pub const SLOT_TABLE: u64 = 256;
/// Bytes per slot-table entry: sequence (u64), timestamp (u64), 48 reserved.
pub const SLOT_ENTRY: u64 = 64;
/// Frame slots (and so the header size and the slot stride) are multiples of this.
pub const ALIGN: u64 = 4096;
/// At most this many planes have a stride and offset in the header.
pub const MAX_PLANES: usize = 4;
/// The slot index lives in the low 8 bits of `latest`.
pub const MAX_SLOTS: u32 = 255;
/// `flags` bit 0: the writer has closed the ring (no more frames will come).
pub const FLAG_CLOSED: u32 = 1;

/// Byte offsets of the header fields (all little-endian).
pub mod off {
    pub const MAGIC: u64 = 0;
    pub const VERSION: u64 = 8;
    pub const HEADER_SIZE: u64 = 12;
    pub const WIDTH: u64 = 16;
    pub const HEIGHT: u64 = 20;
    pub const PIX_FMT: u64 = 24;
    pub const PLANE_COUNT: u64 = 28;
    /// `u32[4]`
    pub const PLANE_STRIDE: u64 = 32;
    /// `u32[4]`, from the start of a slot
    pub const PLANE_OFFSET: u64 = 48;
    pub const FRAME_BYTES: u64 = 64;
    pub const SLOT_COUNT: u64 = 72;
    pub const FLAGS: u64 = 76;
    pub const SLOT_STRIDE: u64 = 80;
    pub const DRM_MODIFIER: u64 = 88;
    pub const DRM_FOURCC: u64 = 96;
    pub const WRITER_PID: u64 = 100;
    pub const LATEST: u64 = 104;
    /// Within a slot-table entry.
    pub const SLOT_SEQ: u64 = 0;
    pub const SLOT_TIMESTAMP: u64 = 8;
}

/// The fixed fields of a ring header, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub version: u32,
    /// Bytes before slot 0's frame: the fixed fields and the slot table, a multiple of [`ALIGN`].
    pub header_size: u32,
    pub width: u32,
    pub height: u32,
    /// [`PixFmt::code`].
    pub pix_fmt: u32,
    pub plane_count: u32,
    pub plane_stride: [u32; MAX_PLANES],
    pub plane_offset: [u32; MAX_PLANES],
    /// Bytes of a frame in its slot, padding between rows included.
    pub frame_bytes: u64,
    pub slot_count: u32,
    pub flags: u32,
    /// Distance between slots, a multiple of [`ALIGN`].
    pub slot_stride: u64,
    /// Reserved for a DMA-BUF variant (0 = linear); ignored in version 1.
    pub drm_modifier: u64,
    /// Reserved for a DMA-BUF variant; 0 in version 1.
    pub drm_fourcc: u32,
    pub writer_pid: u32,
    /// `frame_number << 8 | slot` of the newest whole frame; 0 before the first.
    pub latest: u64,
}

fn u32_at(b: &[u8], at: u64) -> u32 {
    let at = at as usize;
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: u64) -> u64 {
    let at = at as usize;
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

fn put(b: &mut [u8], at: u64, bytes: &[u8]) {
    b[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
}

fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// Why a header cannot be used yet, or at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// The writer has not finished creating the ring (short file, magic still zero): wait.
    NotReady(String),
    /// Not a ring this reader can use (exit 65).
    Bad(String),
}

impl Header {
    /// The header a writer of `width` x `height` `format` frames in ffmpeg's rawvideo layout
    /// would write: slots of the frame size rounded up to 4 KiB.
    pub fn rawvideo(width: u32, height: u32, format: PixFmt, slots: u32) -> Header {
        let planes = format.planes(width, height);
        let mut plane_stride = [0; MAX_PLANES];
        let mut plane_offset = [0; MAX_PLANES];
        for (i, p) in planes.iter().enumerate() {
            plane_stride[i] = p.stride as u32;
            plane_offset[i] = p.offset as u32;
        }
        let frame_bytes = format.frame_bytes(width, height) as u64;
        Header {
            version: VERSION,
            header_size: round_up(SLOT_TABLE + SLOT_ENTRY * slots as u64, ALIGN) as u32,
            width,
            height,
            pix_fmt: format.code(),
            plane_count: planes.len() as u32,
            plane_stride,
            plane_offset,
            frame_bytes,
            slot_count: slots,
            flags: 0,
            slot_stride: round_up(frame_bytes, ALIGN),
            drm_modifier: 0,
            drm_fourcc: 0,
            writer_pid: 0,
            latest: 0,
        }
    }

    /// The fixed fields as stored (the slot table follows them).
    pub fn encode(&self) -> [u8; SLOT_TABLE as usize] {
        let mut b = [0u8; SLOT_TABLE as usize];
        put(&mut b, off::MAGIC, &MAGIC);
        for (at, v) in [
            (off::VERSION, self.version),
            (off::HEADER_SIZE, self.header_size),
            (off::WIDTH, self.width),
            (off::HEIGHT, self.height),
            (off::PIX_FMT, self.pix_fmt),
            (off::PLANE_COUNT, self.plane_count),
            (off::SLOT_COUNT, self.slot_count),
            (off::FLAGS, self.flags),
            (off::DRM_FOURCC, self.drm_fourcc),
            (off::WRITER_PID, self.writer_pid),
        ] {
            put(&mut b, at, &v.to_le_bytes());
        }
        for i in 0..MAX_PLANES as u64 {
            put(&mut b, off::PLANE_STRIDE + 4 * i, &self.plane_stride[i as usize].to_le_bytes());
            put(&mut b, off::PLANE_OFFSET + 4 * i, &self.plane_offset[i as usize].to_le_bytes());
        }
        for (at, v) in [
            (off::FRAME_BYTES, self.frame_bytes),
            (off::SLOT_STRIDE, self.slot_stride),
            (off::DRM_MODIFIER, self.drm_modifier),
            (off::LATEST, self.latest),
        ] {
            put(&mut b, at, &v.to_le_bytes());
        }
        b
    }

    /// Reads the fixed fields from the start of a ring file. Checks the magic and the version;
    /// [`Header::check`] checks the rest.
    pub fn decode(b: &[u8]) -> Result<Header, HeaderError> {
        if b.len() < SLOT_TABLE as usize {
            return Err(HeaderError::NotReady(format!(
                "truncated header: the file has {} bytes, a header needs {SLOT_TABLE}",
                b.len()
            )));
        }
        let magic = &b[..8];
        if magic == [0; 8] {
            return Err(HeaderError::NotReady("no magic yet (the writer has not initialised the ring)".into()));
        }
        if magic != MAGIC {
            return Err(HeaderError::Bad(format!(
                "wrong magic {:?} (want {:?}): not an agentcast frame ring",
                String::from_utf8_lossy(magic),
                String::from_utf8_lossy(&MAGIC)
            )));
        }
        let version = u32_at(b, off::VERSION);
        if version != VERSION {
            return Err(HeaderError::Bad(format!(
                "layout version {version} is not supported (this agentcast reads {VERSION})"
            )));
        }
        let planes = |base: u64| std::array::from_fn(|i| u32_at(b, base + 4 * i as u64));
        Ok(Header {
            version,
            header_size: u32_at(b, off::HEADER_SIZE),
            width: u32_at(b, off::WIDTH),
            height: u32_at(b, off::HEIGHT),
            pix_fmt: u32_at(b, off::PIX_FMT),
            plane_count: u32_at(b, off::PLANE_COUNT),
            plane_stride: planes(off::PLANE_STRIDE),
            plane_offset: planes(off::PLANE_OFFSET),
            frame_bytes: u64_at(b, off::FRAME_BYTES),
            slot_count: u32_at(b, off::SLOT_COUNT),
            flags: u32_at(b, off::FLAGS),
            slot_stride: u64_at(b, off::SLOT_STRIDE),
            drm_modifier: u64_at(b, off::DRM_MODIFIER),
            drm_fourcc: u32_at(b, off::DRM_FOURCC),
            writer_pid: u32_at(b, off::WRITER_PID),
            latest: u64_at(b, off::LATEST),
        })
    }

    /// Checks that the fields describe frames that fit in a `file_len`-byte file, and returns the
    /// format and where each plane sits in a slot.
    pub fn check(&self, file_len: u64) -> Result<(PixFmt, Vec<PlaneLayout>), String> {
        let format =
            PixFmt::from_code(self.pix_fmt).ok_or_else(|| format!("unknown pixel format code {}", self.pix_fmt))?;
        if self.width == 0 || self.height == 0 {
            return Err(format!("size {}x{} is empty", self.width, self.height));
        }
        if self.slot_count == 0 || self.slot_count > MAX_SLOTS {
            return Err(format!("slot count {} is outside 1..={MAX_SLOTS}", self.slot_count));
        }
        let table_end = SLOT_TABLE + SLOT_ENTRY * self.slot_count as u64;
        let header_size = self.header_size as u64;
        if !header_size.is_multiple_of(ALIGN) || header_size < table_end {
            return Err(format!(
                "header size {header_size} must be a multiple of {ALIGN} and hold the {} slot entries ({table_end} bytes)",
                self.slot_count
            ));
        }
        if !self.slot_stride.is_multiple_of(ALIGN) || self.slot_stride < self.frame_bytes {
            return Err(format!(
                "slot stride {} must be a multiple of {ALIGN} and at least the frame size {}",
                self.slot_stride, self.frame_bytes
            ));
        }
        let packed = format.planes(self.width, self.height);
        if self.plane_count as usize != packed.len() {
            return Err(format!("{format} has {} planes, the header says {}", packed.len(), self.plane_count));
        }
        let mut planes = Vec::new();
        for (i, p) in packed.iter().enumerate() {
            let (stride, offset) = (self.plane_stride[i] as usize, self.plane_offset[i] as usize);
            if stride < p.row_bytes {
                return Err(format!("plane {i}: stride {stride} is less than a row of {} bytes", p.row_bytes));
            }
            let end = (offset + stride * (p.rows - 1) + p.row_bytes) as u64;
            if end > self.frame_bytes {
                return Err(format!("plane {i} ends at byte {end}, beyond the frame size {}", self.frame_bytes));
            }
            planes.push(PlaneLayout { offset, stride, rows: p.rows, row_bytes: p.row_bytes });
        }
        let want = header_size + self.slot_count as u64 * self.slot_stride;
        if file_len < want {
            return Err(format!(
                "size mismatch: the file has {file_len} bytes, the header describes {want} \
                 ({header_size} of header + {} slots x {})",
                self.slot_count, self.slot_stride
            ));
        }
        Ok((format, planes))
    }

    /// Where slot `i`'s table entry (sequence, timestamp) is.
    pub fn entry(i: u32) -> u64 {
        SLOT_TABLE + SLOT_ENTRY * i as u64
    }

    /// Where slot `i`'s frame starts.
    pub fn slot(&self, i: u32) -> u64 {
        self.header_size as u64 + self.slot_stride * i as u64
    }

    /// The whole file's size.
    pub fn file_len(&self) -> u64 {
        self.slot(self.slot_count)
    }
}

/// Where `shm:VALUE` lives: an absolute path as given, otherwise a name under `/dev/shm`.
pub fn ring_path(value: &str) -> anyhow::Result<PathBuf> {
    if value.starts_with('/') {
        return Ok(PathBuf::from(value));
    }
    if value.is_empty() || value.contains('/') || value == "." || value == ".." {
        return Err(fail(
            Exit::Usage,
            format!(
                "--source shm:{value}: give a name (shm:agent1, which is /dev/shm/agent1) or an absolute path \
                 (shm:/dev/shm/agent1)"
            ),
        ));
    }
    Ok(PathBuf::from("/dev/shm").join(value))
}

/// What the reader counted; shared with whoever reports stats.
#[derive(Debug, Default)]
pub struct Counters {
    /// Whole frames taken and offered.
    pub taken: AtomicU64,
    /// Copies dropped because the writer overwrote the slot during the copy.
    pub torn: AtomicU64,
    /// Polls that found the newest slot being written (odd sequence) or not yet matching `latest`.
    pub busy: AtomicU64,
    /// Frames the writer published that were overwritten before a poll saw them.
    pub missed: AtomicU64,
    /// Polls of the `latest` word.
    pub polls: AtomicU64,
    /// Sum over the frames taken of the time from the writer's timestamp to the end of the copy,
    /// in nanoseconds (the writer's clock is CLOCK_MONOTONIC; timestamps from another clock are
    /// left out).
    pub delay_ns: AtomicU64,
    /// CPU time of the reader thread so far, in nanoseconds (updated about once a second).
    pub cpu_ns: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What one poll found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A new whole frame was offered: its number and the writer's timestamp (ns, CLOCK_MONOTONIC).
    Frame { number: u64, timestamp_ns: u64 },
    /// Nothing newer than the last frame taken.
    Nothing,
    /// The newest slot is being written; try again.
    Busy,
    /// The copy was torn and dropped.
    Torn,
    /// The frame loop has stopped taking frames.
    Stopped,
}

/// Positioned reads; a trait so the tests can play a writer that races the reader.
pub trait ReadAt {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
    fn file_len(&self) -> std::io::Result<u64>;
}

impl ReadAt for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
    fn file_len(&self) -> std::io::Result<u64> {
        Ok(self.metadata()?.len())
    }
}

/// An open, validated ring.
pub struct Ring<F: ReadAt = File> {
    file: F,
    /// `shm:NAME`, for messages.
    label: String,
    header: Header,
    format: PixFmt,
    /// Where the planes sit in a slot.
    planes: Vec<PlaneLayout>,
    /// True when a slot holds the frame in rawvideo layout at its start: one read, no repacking.
    packed: bool,
    /// The slot's bytes when they need repacking.
    scratch: Vec<u8>,
    /// The number of the last frame taken (0 = none).
    last: u64,
    pub counters: Arc<Counters>,
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring").field("label", &self.label).field("header", &self.header).finish()
    }
}

/// The outcome of looking for a ring.
enum Found<F: ReadAt> {
    Missing,
    NotReady(String),
    Ready(Ring<F>),
}

fn bad_data(label: &str, reason: impl std::fmt::Display) -> anyhow::Error {
    fail(Exit::BadData, format!("{label}: {reason}"))
}

/// Reads and decodes a header, treating a file still being set up as not ready.
fn read_header<F: ReadAt>(file: &F, label: &str) -> anyhow::Result<Result<(Header, u64), String>> {
    let len = file.file_len().map_err(|e| bad_data(label, format!("reading the ring: {e}")))?;
    let mut b = vec![0u8; (len.min(SLOT_TABLE)) as usize];
    file.read_exact_at(&mut b, 0).map_err(|e| bad_data(label, format!("reading the header: {e}")))?;
    match Header::decode(&b) {
        Ok(h) => Ok(Ok((h, len))),
        Err(HeaderError::NotReady(why)) => Ok(Err(why)),
        Err(HeaderError::Bad(why)) => Err(bad_data(label, why)),
    }
}

impl<F: ReadAt> Ring<F> {
    /// Validates `file`'s header against the stream's flags.
    fn from_file(file: F, label: &str, width: u32, height: u32, format: PixFmt) -> anyhow::Result<Found<F>> {
        let (header, len) = match read_header(&file, label)? {
            Ok(h) => h,
            Err(why) => return Ok(Found::NotReady(why)),
        };
        let (ring_format, planes) = header.check(len).map_err(|why| bad_data(label, why))?;
        for (flag, want, have) in [("--width", width, header.width), ("--height", height, header.height)] {
            if want != have {
                let what = &flag[2..];
                return Err(fail(
                    Exit::Usage,
                    format!("{flag} {want} does not match the ring's {what} {have} ({label})"),
                ));
            }
        }
        if format != ring_format {
            return Err(fail(
                Exit::Usage,
                format!("--pix-fmt {format} does not match the ring's pixel format {ring_format} ({label})"),
            ));
        }
        let packed = planes == format.planes(width, height);
        let scratch = if packed { Vec::new() } else { vec![0; header.frame_bytes as usize] };
        Ok(Found::Ready(Ring {
            file,
            label: label.to_string(),
            header,
            format,
            planes,
            packed,
            scratch,
            last: 0,
            counters: Arc::default(),
        }))
    }

    /// The header as read when the ring was opened (or last re-validated).
    pub fn header(&self) -> &Header {
        &self.header
    }

    fn read_u64(&self, at: u64) -> anyhow::Result<u64> {
        let mut b = [0u8; 8];
        self.file.read_exact_at(&mut b, at).map_err(|e| bad_data(&self.label, format!("reading the ring: {e}")))?;
        Ok(u64::from_le_bytes(b))
    }

    fn read_u32(&self, at: u64) -> anyhow::Result<u32> {
        let mut b = [0u8; 4];
        self.file.read_exact_at(&mut b, at).map_err(|e| bad_data(&self.label, format!("reading the ring: {e}")))?;
        Ok(u32::from_le_bytes(b))
    }

    /// Looks at the writer between frames: another writer pid means a new writer took the ring
    /// over (its header is read again). True once the writer has set [`FLAG_CLOSED`] and every
    /// frame it published was taken.
    pub fn finished(&mut self) -> anyhow::Result<bool> {
        if self.read_u32(off::WRITER_PID)? != self.header.writer_pid {
            self.restarted()?;
        }
        let flags = self.read_u32(off::FLAGS)?;
        fence(Ordering::Acquire);
        Ok(flags & FLAG_CLOSED != 0 && self.read_u64(off::LATEST)? >> 8 <= self.last)
    }

    /// The writer started again over the same file (frame numbers went back, or another pid):
    /// read the header again, so a changed size or format is refused instead of misread.
    fn restarted(&mut self) -> anyhow::Result<()> {
        let (header, len) = read_header(&self.file, &self.label)?.map_err(|why| bad_data(&self.label, why))?;
        let (format, planes) = header.check(len).map_err(|why| bad_data(&self.label, why))?;
        if (header.width, header.height, format) != (self.header.width, self.header.height, self.format)
            || planes != self.planes
        {
            return Err(bad_data(
                &self.label,
                format!(
                    "the writer started again with {}x{} {format} frames, not {}x{} {}",
                    header.width, header.height, self.header.width, self.header.height, self.format
                ),
            ));
        }
        log::info!("{}: the writer started again (pid {}); following it", self.label, header.writer_pid);
        if !self.packed {
            self.scratch.resize(header.frame_bytes as usize, 0);
        }
        self.header = header;
        self.last = 0;
        Ok(())
    }

    /// Copies slot `slot`'s frame into `buf` in the rawvideo layout.
    fn copy(&mut self, slot: u32, buf: &mut [u8]) -> std::io::Result<()> {
        let base = self.header.slot(slot);
        if self.packed {
            return self.file.read_exact_at(buf, base);
        }
        self.file.read_exact_at(&mut self.scratch, base)?;
        let mut at = 0;
        for p in &self.planes {
            for row in 0..p.rows {
                let from = p.offset + row * p.stride;
                buf[at..at + p.row_bytes].copy_from_slice(&self.scratch[from..from + p.row_bytes]);
                at += p.row_bytes;
            }
        }
        Ok(())
    }

    /// Looks once for a newer whole frame and offers it to `latest`.
    pub fn poll(&mut self, latest: &Latest) -> anyhow::Result<Step> {
        Counters::add(&self.counters.polls, 1);
        let word = self.read_u64(off::LATEST)?;
        let (number, slot) = (word >> 8, (word & 0xff) as u32);
        if number < self.last {
            self.restarted()?;
        }
        if number == 0 || number == self.last {
            return Ok(Step::Nothing);
        }
        if slot >= self.header.slot_count {
            return Err(bad_data(
                &self.label,
                format!("latest names slot {slot}, the ring has {}", self.header.slot_count),
            ));
        }
        fence(Ordering::Acquire);
        let entry = Header::entry(slot);
        let seq = self.read_u64(entry + off::SLOT_SEQ)?;
        // Odd: being written. Another even value: the slot already holds another frame, or a
        // newer one whose `latest` is not published yet. Either way, look again next poll.
        if seq != number * 2 {
            Counters::add(&self.counters.busy, 1);
            return Ok(Step::Busy);
        }
        let timestamp_ns = self.read_u64(entry + off::SLOT_TIMESTAMP)?;
        fence(Ordering::Acquire);
        let mut buf = latest.buffer(self.format.frame_bytes(self.header.width, self.header.height));
        let copied = self.copy(slot, &mut buf);
        fence(Ordering::Acquire);
        let again = self.read_u64(entry + off::SLOT_SEQ)?;
        if let Err(e) = copied {
            latest.recycle(buf);
            return Err(bad_data(&self.label, format!("reading slot {slot}: {e}")));
        }
        if again != seq {
            latest.recycle(buf);
            Counters::add(&self.counters.torn, 1);
            return Ok(Step::Torn);
        }
        if self.last != 0 && number > self.last + 1 {
            Counters::add(&self.counters.missed, number - self.last - 1);
        }
        self.last = number;
        if !latest.offer(HostFrame { data: buf, arrived: Instant::now() }) {
            return Ok(Step::Stopped);
        }
        Counters::add(&self.counters.taken, 1);
        Ok(Step::Frame { number, timestamp_ns })
    }
}

impl Ring {
    /// Opens and validates the ring `shm:NAME` now. A missing or half-created ring is an error
    /// (`Exit::NoInput`, `Exit::BadData`); [`spawn`] waits for one instead.
    pub fn open(name: &str, width: u32, height: u32, format: PixFmt) -> anyhow::Result<Ring> {
        let label = format!("shm:{name}");
        match find(name, width, height, format)? {
            Found::Ready(ring) => Ok(ring),
            Found::Missing => Err(fail(Exit::NoInput, format!("{label}: no ring at {}", ring_path(name)?.display()))),
            Found::NotReady(why) => Err(bad_data(&label, why)),
        }
    }
}

/// Checks `shm:NAME` before the stream starts: a ring that is there and set up must fit the
/// flags (the errors of [`Ring::open`]); a missing or half-created one is fine ([`spawn`] waits).
pub fn check(name: &str, width: u32, height: u32, format: PixFmt) -> anyhow::Result<()> {
    find(name, width, height, format).map(drop)
}

fn find(name: &str, width: u32, height: u32, format: PixFmt) -> anyhow::Result<Found<File>> {
    let path = ring_path(name)?;
    let label = format!("shm:{name}");
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(fail(Exit::NoInput, format!("{label}: opening {}: {e}", path.display()))),
    };
    Ring::from_file(file, &label, width, height, format)
}

/// How often the reader looks for a new frame when one is due.
pub const POLL: Duration = Duration::from_millis(1);
/// How often it looks while the writer pauses (longer than [`IDLE_AFTER`] and 4 frame intervals),
/// or while the newest slot stays half-written.
const IDLE_POLL: Duration = Duration::from_millis(4);
const IDLE_AFTER: Duration = Duration::from_millis(250);
/// A newest slot half-written for this long gets a warning.
const STUCK_AFTER: Duration = Duration::from_secs(1);
/// The longest it sleeps on a prediction.
const MAX_NAP: Duration = Duration::from_millis(50);
/// How often it looks for the ring while waiting for it to appear.
const WAIT_POLL: Duration = Duration::from_millis(20);
/// How often it checks whether the writer closed the ring.
const CLOSED_EVERY: Duration = Duration::from_millis(100);

/// When to look next. The writer's frame timestamps give its frame interval and how much that
/// varies (jitter); the reader sleeps until a margin before the next frame is due, then polls every
/// [`POLL`]. The margin is a quarter interval, at least 2 ms, and at least three times the jitter,
/// so a writer whose frames come irregularly gets short naps and loses no latency to them. A steady
/// 30 fps writer costs about ten polls a frame instead of thirty-three. Timestamps from another
/// clock (a time namespace) fall back to plain polling.
#[derive(Debug, Default)]
struct Pacer {
    /// (frame number, timestamp ns) of the last frame taken.
    last: Option<(u64, u64)>,
    /// Smoothed frame interval, ns.
    interval: Option<u64>,
    /// Smoothed absolute difference between an interval and the smoothed one, ns.
    jitter: u64,
}

impl Pacer {
    fn frame(&mut self, number: u64, timestamp_ns: u64) {
        if let Some((n, ts)) = self.last
            && number > n
            && timestamp_ns > ts
        {
            let sample = (timestamp_ns - ts) / (number - n);
            if let Some(i) = self.interval {
                self.jitter = (3 * self.jitter + sample.abs_diff(i)) / 4;
            }
            self.interval = Some(self.interval.map_or(sample, |i| (3 * i + sample) / 4));
        }
        self.last = Some((number, timestamp_ns));
    }

    /// How long to sleep, `now_ns` being CLOCK_MONOTONIC now.
    fn pause(&self, now_ns: u64) -> Duration {
        let (Some((_, ts)), Some(interval)) = (self.last, self.interval) else { return POLL };
        let Some(since) = now_ns.checked_sub(ts) else { return POLL };
        let since = Duration::from_nanos(since);
        let interval = Duration::from_nanos(interval);
        if since > IDLE_AFTER.max(interval * 4) {
            return IDLE_POLL;
        }
        let margin = (interval / 4).max(Duration::from_millis(2)).max(Duration::from_nanos(3 * self.jitter));
        interval.saturating_sub(margin).saturating_sub(since).clamp(POLL, MAX_NAP)
    }
}

fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// The reader thread and what it counts.
#[derive(Debug)]
pub struct Reader {
    pub thread: JoinHandle<()>,
    pub counters: Arc<Counters>,
}

fn thread_cpu_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
        .unwrap_or(0)
}

/// Starts the thread that reads the ring `shm:NAME` into `latest`.
///
/// When the ring already exists, its header is checked here, so a bad ring fails before anything
/// starts: `Exit::BadData` (65) for a wrong magic, version or size, `Exit::Usage` (2) naming the
/// flag that does not match. Otherwise the thread waits for the ring to appear, up to `wait_for`
/// (`None`: forever), then checks it the same way; a failure there, or no ring in time
/// (`Exit::NoInput`), ends `latest` with `SourceEnd::Failed`. The thread offers every new whole
/// frame (arrival time: when it was read), ends `latest` with `SourceEnd::Finished` when the
/// writer closes the ring, and stops when `latest` is closed.
pub fn spawn(
    name: &str,
    width: u32,
    height: u32,
    format: PixFmt,
    latest: Arc<Latest>,
    wait_for: Option<Duration>,
) -> anyhow::Result<Reader> {
    let counters = Arc::new(Counters::default());
    let early = match find(name, width, height, format)? {
        Found::Ready(ring) => Some(ring),
        _ => None,
    };
    let (name, shared) = (name.to_string(), counters.clone());
    let thread = std::thread::Builder::new().name("shm".into()).spawn(move || {
        let ring = match early {
            Some(ring) => Ok(Some(ring)),
            None => wait(&name, width, height, format, &latest, wait_for),
        };
        let end = match ring {
            Ok(Some(mut ring)) => {
                ring.counters = shared;
                read(&mut ring, &latest)
            }
            Ok(None) => None,
            Err(e) => Some(SourceEnd::Failed(crate::exit::classify(&e), format!("{e:#}"))),
        };
        if let Some(end) = end {
            if let SourceEnd::Failed(_, why) = &end {
                log::error!("{why}");
            }
            latest.end(end);
        }
    })?;
    Ok(Reader { thread, counters })
}

/// Waits for the ring to appear and be initialised. `Ok(None)`: the frame loop stopped first.
fn wait(
    name: &str,
    width: u32,
    height: u32,
    format: PixFmt,
    latest: &Latest,
    wait_for: Option<Duration>,
) -> anyhow::Result<Option<Ring>> {
    let start = Instant::now();
    let path = ring_path(name)?;
    log::info!("shm:{name}: waiting for a writer to create {}", path.display());
    loop {
        let why = match find(name, width, height, format)? {
            Found::Ready(ring) => return Ok(Some(ring)),
            Found::Missing => None,
            Found::NotReady(why) => Some(why),
        };
        if latest.is_closed() {
            return Ok(None);
        }
        if wait_for.is_some_and(|limit| start.elapsed() >= limit) {
            let waited = start.elapsed().as_secs_f64();
            return Err(match why {
                None => fail(Exit::NoInput, format!("shm:{name}: no ring at {} after {waited:.0} s", path.display())),
                Some(why) => bad_data(&format!("shm:{name}"), format!("{why}, still after {waited:.0} s")),
            });
        }
        std::thread::sleep(WAIT_POLL);
    }
}

/// Polls until the frame loop stops (None) or the ring ends.
fn read(ring: &mut Ring, latest: &Latest) -> Option<SourceEnd> {
    let h = ring.header().clone();
    log::info!(
        "{}: {}x{} {} frames, {} slots of {} bytes, writer pid {}",
        ring.label,
        h.width,
        h.height,
        ring.format,
        h.slot_count,
        h.slot_stride,
        h.writer_pid
    );
    let (started, cpu0) = (Instant::now(), thread_cpu_ns());
    let mut checked = Instant::now();
    let mut pacer = Pacer::default();
    // Since when the newest slot has been found half-written, and whether that was said.
    let mut busy_since: Option<(Instant, bool)> = None;
    let end = loop {
        let step = ring.poll(latest);
        if !matches!(step, Ok(Step::Busy)) {
            busy_since = None;
        }
        match step {
            Ok(Step::Frame { number, timestamp_ns }) => {
                pacer.frame(number, timestamp_ns);
                let delay = monotonic_ns().saturating_sub(timestamp_ns);
                if delay < 10_000_000_000 {
                    Counters::add(&ring.counters.delay_ns, delay);
                }
            }
            Ok(Step::Busy) => {
                let (since, said) = busy_since.get_or_insert((Instant::now(), false));
                if !*said && since.elapsed() >= STUCK_AFTER {
                    *said = true;
                    log::warn!(
                        "{}: the newest frame has stayed half-written for {} s (did the writer die mid-frame?); \
                         it will not be shown",
                        ring.label,
                        STUCK_AFTER.as_secs()
                    );
                }
            }
            Ok(Step::Stopped) => break None,
            Ok(Step::Nothing) if checked.elapsed() >= CLOSED_EVERY => {
                checked = Instant::now();
                ring.counters.cpu_ns.store(thread_cpu_ns() - cpu0, Ordering::Relaxed);
                match ring.finished() {
                    Ok(true) => break Some(SourceEnd::Finished(format!("{}: the writer closed the ring", ring.label))),
                    Ok(false) => {}
                    Err(e) => break Some(SourceEnd::Failed(crate::exit::classify(&e), format!("{e:#}"))),
                }
            }
            Ok(_) => {}
            Err(e) => break Some(SourceEnd::Failed(crate::exit::classify(&e), format!("{e:#}"))),
        }
        if latest.is_closed() {
            break None;
        }
        let stuck = busy_since.is_some_and(|(since, _)| since.elapsed() >= IDLE_AFTER);
        std::thread::sleep(if stuck { IDLE_POLL } else { pacer.pause(monotonic_ns()) });
    };
    let c = &ring.counters;
    let cpu = thread_cpu_ns() - cpu0;
    c.cpu_ns.store(cpu, Ordering::Relaxed);
    let secs = started.elapsed().as_secs_f64();
    log::info!(
        "{}: {} frames taken (mean {:.2} ms after the writer finished them), {} torn copies dropped, {} frames missed, \
         {} busy polls; reader CPU {:.2}% of a core over {secs:.1} s",
        ring.label,
        c.taken.load(Ordering::Relaxed),
        c.delay_ns.load(Ordering::Relaxed) as f64 / 1e6 / c.taken.load(Ordering::Relaxed).max(1) as f64,
        c.torn.load(Ordering::Relaxed),
        c.missed.load(Ordering::Relaxed),
        c.busy.load(Ordering::Relaxed),
        cpu as f64 / 1e7 / secs.max(1e-9),
    );
    end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::live::Taken;
    use std::cell::Cell;
    use std::io::Write;

    /// A test writer: the same protocol as examples/shm_writer.py, with pwrite.
    struct Writer {
        file: File,
        header: Header,
        frames: u64,
    }

    impl Writer {
        fn create(path: &std::path::Path, header: Header) -> Writer {
            let file =
                std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).unwrap();
            file.set_len(header.file_len()).unwrap();
            file.write_all_at(&header.encode(), 0).unwrap();
            Writer { file, header, frames: 0 }
        }

        fn seq(&self, slot: u32, seq: u64) {
            self.file.write_all_at(&seq.to_le_bytes(), Header::entry(slot)).unwrap();
        }

        /// Writes a whole frame of `value` bytes into the next slot and publishes it.
        fn frame(&mut self, value: u8) -> (u64, u32) {
            self.frames += 1;
            let (n, slot) = (self.frames, ((self.frames - 1) % self.header.slot_count as u64) as u32);
            self.seq(slot, 2 * n - 1);
            let data = vec![value; self.header.frame_bytes as usize];
            self.file.write_all_at(&data, self.header.slot(slot)).unwrap();
            self.file.write_all_at(&(n * 1000).to_le_bytes(), Header::entry(slot) + 8).unwrap();
            self.seq(slot, 2 * n);
            self.publish(n, slot);
            (n, slot)
        }

        fn publish(&self, n: u64, slot: u32) {
            self.file.write_all_at(&(n << 8 | slot as u64).to_le_bytes(), off::LATEST).unwrap();
        }
    }

    fn open(path: &std::path::Path, w: u32, h: u32, f: PixFmt) -> anyhow::Result<Ring> {
        let file = File::open(path).unwrap();
        match Ring::from_file(file, "shm:test", w, h, f)? {
            Found::Ready(r) => Ok(r),
            Found::NotReady(why) => Err(anyhow::anyhow!("not ready: {why}")),
            Found::Missing => unreachable!(),
        }
    }

    fn taken(latest: &Latest) -> Vec<u8> {
        match latest.take() {
            Taken::Frame(f) => f.data,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    fn kind_and_reason(e: &anyhow::Error) -> (Exit, String) {
        (crate::exit::classify(e), format!("{e:#}"))
    }

    #[test]
    fn the_pacer_naps_until_just_before_the_next_frame() {
        let ms = |n: u64| n * 1_000_000;
        let mut p = Pacer::default();
        assert_eq!(p.pause(ms(5)), POLL, "no interval known yet");
        p.frame(1, ms(1000));
        p.frame(2, ms(1040));
        // 40 ms frames: nap until 10 ms before the next one is due.
        assert_eq!(p.pause(ms(1040)), Duration::from_millis(30));
        assert_eq!(p.pause(ms(1065)), Duration::from_millis(5));
        assert_eq!(p.pause(ms(1075)), POLL, "due: poll");
        assert_eq!(p.pause(ms(1500)), IDLE_POLL, "the writer paused");
        assert_eq!(p.pause(ms(900)), POLL, "a timestamp from another clock");
        // 120 fps: a 2 ms margin; a frame number jump divides the time.
        let mut p = Pacer::default();
        p.frame(1, ms(0));
        p.frame(3, ms(16));
        assert_eq!(p.pause(ms(16)), Duration::from_millis(6));
        let mut p = Pacer::default();
        p.frame(1, ms(0));
        p.frame(2, ms(1000));
        assert_eq!(p.pause(ms(1000)), MAX_NAP);
        // Irregular frames (30, 50, 30, 50 ms) widen the margin: the nap ends well before the
        // next frame can come (30 ms), where a steady 40 ms writer's would end at 30 ms.
        let mut p = Pacer::default();
        for (n, t) in [(1, 0), (2, 30), (3, 80), (4, 110), (5, 160), (6, 190), (7, 240)] {
            p.frame(n, ms(t));
        }
        assert!(p.jitter > ms(5), "jitter {} ms", p.jitter / ms(1));
        assert!(p.pause(ms(240)) <= Duration::from_millis(20), "{:?}", p.pause(ms(240)));
    }

    #[test]
    fn header_round_trips_and_slots_are_aligned() {
        let mut h = Header::rawvideo(1280, 720, PixFmt::I420, 3);
        h.writer_pid = 4242;
        h.latest = 7 << 8 | 1;
        h.drm_modifier = 0x00ff_ffff_ffff_ffff;
        let b = h.encode();
        assert_eq!(&b[..8], b"AGCSHM01");
        assert_eq!(u32_at(&b, off::WIDTH), 1280);
        assert_eq!(Header::decode(&b).unwrap(), h);
        assert_eq!(h.header_size, 4096);
        assert_eq!(h.plane_offset[..3], [0, 1280 * 720, 1280 * 720 * 5 / 4]);
        assert_eq!(h.slot_stride % ALIGN, 0);
        assert_eq!(h.slot(2), 4096 + 2 * h.slot_stride);
        assert!(h.check(h.file_len()).is_ok());
        // 61 slots need a second page of header.
        assert_eq!(Header::rawvideo(64, 48, PixFmt::Rgb24, 61).header_size, 8192);
    }

    #[test]
    fn bad_headers_give_bad_data_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let good = Header::rawvideo(64, 48, PixFmt::Rgb24, 3);
        type Spoil = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Spoil)> = vec![
            ("wrong magic", Box::new(|b: &mut Vec<u8>| b[..8].copy_from_slice(b"NOTARING"))),
            ("layout version 2", Box::new(|b: &mut Vec<u8>| b[8..12].copy_from_slice(&2u32.to_le_bytes()))),
            ("truncated header", Box::new(|b: &mut Vec<u8>| b.truncate(100))),
            ("size mismatch: the file has", Box::new(|b: &mut Vec<u8>| b.truncate(4096 + 12288))),
            ("slot count 0", Box::new(|b: &mut Vec<u8>| b[72..76].copy_from_slice(&0u32.to_le_bytes()))),
            (
                "unknown pixel format code 99",
                Box::new(|b: &mut Vec<u8>| b[24..28].copy_from_slice(&99u32.to_le_bytes())),
            ),
            (
                "stride 10 is less than a row",
                Box::new(|b: &mut Vec<u8>| b[32..36].copy_from_slice(&10u32.to_le_bytes())),
            ),
        ];
        for (want, spoil) in cases {
            let mut bytes = good.encode().to_vec();
            bytes.resize(good.file_len() as usize, 0);
            spoil(&mut bytes);
            let path = dir.path().join("ring");
            std::fs::write(&path, &bytes).unwrap();
            let ring = Ring::open(path.to_str().unwrap(), 64, 48, PixFmt::Rgb24);
            let (kind, reason) = kind_and_reason(&ring.unwrap_err());
            assert_eq!(kind, Exit::BadData, "{reason}");
            assert!(reason.contains(want), "{reason:?} should say {want:?}");
            assert!(reason.starts_with(&format!("shm:{}: ", path.display())), "{reason}");
        }
    }

    #[test]
    fn flags_that_do_not_match_the_ring_are_usage_errors_naming_the_flag() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        Writer::create(&path, Header::rawvideo(640, 360, PixFmt::Rgb24, 2));
        let name = path.to_str().unwrap();
        for (w, h, f, want) in [
            (1280, 360, PixFmt::Rgb24, format!("--width 1280 does not match the ring's width 640 (shm:{name})")),
            (640, 720, PixFmt::Rgb24, "--height 720 does not match the ring's height 360".into()),
            (640, 360, PixFmt::Nv12, "--pix-fmt nv12 does not match the ring's pixel format rgb24".into()),
        ] {
            let (kind, reason) = kind_and_reason(&Ring::open(name, w, h, f).unwrap_err());
            assert_eq!(kind, Exit::Usage);
            assert!(reason.contains(&want), "{reason}");
        }
        assert!(Ring::open(name, 640, 360, PixFmt::Rgb24).is_ok());
        let (kind, _) = kind_and_reason(&Ring::open(&format!("{name}.missing"), 640, 360, PixFmt::Rgb24).unwrap_err());
        assert_eq!(kind, Exit::NoInput);
    }

    #[test]
    fn names_are_under_dev_shm_and_paths_are_kept() {
        assert_eq!(ring_path("agent1").unwrap(), PathBuf::from("/dev/shm/agent1"));
        assert_eq!(ring_path("/tmp/x").unwrap(), PathBuf::from("/tmp/x"));
        for bad in ["", "a/b", ".."] {
            assert_eq!(crate::exit::classify(&ring_path(bad).unwrap_err()), Exit::Usage);
        }
    }

    #[test]
    fn the_newest_frame_wins_across_slots() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let mut w = Writer::create(&path, Header::rawvideo(16, 8, PixFmt::Rgb24, 3));
        let mut ring = open(&path, 16, 8, PixFmt::Rgb24).unwrap();
        let latest = Latest::new(false);
        assert_eq!(ring.poll(&latest).unwrap(), Step::Nothing);
        for v in 1..=5 {
            w.frame(v);
        }
        // Frame 5 sits in slot 1; frames 1..4 were never seen.
        assert_eq!(ring.poll(&latest).unwrap(), Step::Frame { number: 5, timestamp_ns: 5000 });
        assert_eq!(taken(&latest), vec![5; 16 * 8 * 3]);
        assert_eq!(ring.poll(&latest).unwrap(), Step::Nothing);
        w.frame(6);
        assert!(matches!(ring.poll(&latest).unwrap(), Step::Frame { number: 6, .. }));
        assert_eq!(taken(&latest), vec![6; 16 * 8 * 3]);
        assert_eq!(ring.counters.missed.load(Ordering::Relaxed), 0);
        w.frame(7);
        w.frame(8);
        ring.poll(&latest).unwrap();
        assert_eq!(ring.counters.missed.load(Ordering::Relaxed), 1);
        assert_eq!(ring.counters.taken.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_writer_that_starts_again_is_followed_and_one_with_another_size_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let header = |width: u32, pid: u32| Header { writer_pid: pid, ..Header::rawvideo(width, 8, PixFmt::Gray, 2) };
        let mut w = Writer::create(&path, header(16, 100));
        let mut ring = open(&path, 16, 8, PixFmt::Gray).unwrap();
        let latest = Latest::new(false);
        for v in 1..=5 {
            w.frame(v);
        }
        assert!(matches!(ring.poll(&latest).unwrap(), Step::Frame { number: 5, .. }));
        // Same size, new pid, numbers from 1 again: the frame numbers going back are noticed.
        let mut w = Writer::create(&path, header(16, 101));
        w.frame(42);
        assert!(matches!(ring.poll(&latest).unwrap(), Step::Frame { number: 1, .. }));
        assert_eq!(taken(&latest)[..4], [42; 4]);
        // Again, and already past the last number taken: the pid tells.
        let mut w = Writer::create(&path, header(16, 102));
        for v in 1..=3 {
            w.frame(v);
        }
        assert!(!ring.finished().unwrap());
        assert!(matches!(ring.poll(&latest).unwrap(), Step::Frame { number: 3, .. }));
        // Another size is refused, not misread.
        Writer::create(&path, header(32, 103));
        let (kind, reason) = kind_and_reason(&ring.finished().unwrap_err());
        assert_eq!(kind, Exit::BadData);
        assert!(reason.contains("started again with 32x8 gray frames, not 16x8 gray"), "{reason}");
    }

    #[test]
    fn a_slot_with_an_odd_sequence_is_never_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let mut w = Writer::create(&path, Header::rawvideo(16, 8, PixFmt::Gray, 1));
        let mut ring = open(&path, 16, 8, PixFmt::Gray).unwrap();
        let latest = Latest::new(false);
        w.frame(1);
        assert!(matches!(ring.poll(&latest).unwrap(), Step::Frame { number: 1, .. }));
        // The writer starts frame 2 in the only slot, publishes (wrongly) early, and dies.
        w.seq(0, 3);
        w.file.write_all_at(&[2; 128], w.header.slot(0)).unwrap();
        w.publish(2, 0);
        for _ in 0..3 {
            assert_eq!(ring.poll(&latest).unwrap(), Step::Busy);
        }
        assert!(matches!(latest.take(), Taken::Frame(f) if f.data == [1; 128]));
        assert!(matches!(latest.take(), Taken::Timeout), "the half-written frame was offered");
        assert_eq!(ring.counters.busy.load(Ordering::Relaxed), 3);
    }

    /// A file whose "writer" rewrites the slot while the reader copies the frame.
    struct Racing {
        file: File,
        /// The sequence the writer stores during the next big read (the copy).
        during_copy: Cell<Option<(u64, u64)>>,
    }

    impl ReadAt for Racing {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
            FileExt::read_exact_at(&self.file, buf, offset)?;
            if buf.len() > 8
                && let Some((at, seq)) = self.during_copy.take()
            {
                self.file.write_all_at(&seq.to_le_bytes(), at)?;
            }
            Ok(())
        }
        fn file_len(&self) -> std::io::Result<u64> {
            Ok(self.file.metadata()?.len())
        }
    }

    #[test]
    fn a_sequence_that_changes_during_the_copy_is_torn_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let mut w = Writer::create(&path, Header::rawvideo(16, 8, PixFmt::Rgb24, 2));
        w.frame(1);
        let racing = Racing {
            file: std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap(),
            during_copy: Cell::new(None),
        };
        let Found::Ready(mut ring) = Ring::from_file(racing, "shm:test", 16, 8, PixFmt::Rgb24).unwrap() else {
            panic!("ring not ready")
        };
        let latest = Latest::new(false);
        // Mid-copy the writer starts over the same slot (seq 2 -> 5, odd).
        ring.file.during_copy.set(Some((Header::entry(0), 5)));
        assert_eq!(ring.poll(&latest).unwrap(), Step::Torn);
        assert!(matches!(latest.take(), Taken::Timeout));
        // It finishes frame 3 there: even again, but not the sequence the copy started with.
        w.seq(0, 2);
        ring.file.during_copy.set(Some((Header::entry(0), 6)));
        assert_eq!(ring.poll(&latest).unwrap(), Step::Torn);
        assert_eq!(ring.counters.torn.load(Ordering::Relaxed), 2);
        w.seq(0, 2);
        assert!(matches!(ring.poll(&latest).unwrap(), Step::Frame { number: 1, .. }));
    }

    #[test]
    fn padded_strides_are_repacked_to_rawvideo() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        // I420 8x4 with every row padded to 16 bytes and planes at 4 KiB-free offsets.
        let mut h = Header::rawvideo(8, 4, PixFmt::I420, 1);
        h.plane_stride = [16, 16, 16, 0];
        h.plane_offset = [0, 64, 96, 0];
        h.frame_bytes = 128;
        let w = Writer::create(&path, h.clone());
        let mut slot = vec![0xEEu8; 128];
        for row in 0..4 {
            slot[row * 16..row * 16 + 8].fill(row as u8 + 1);
        }
        for row in 0..2 {
            slot[64 + row * 16..64 + row * 16 + 4].fill(10 + row as u8);
            slot[96 + row * 16..96 + row * 16 + 4].fill(20 + row as u8);
        }
        w.file.write_all_at(&slot, h.slot(0)).unwrap();
        w.seq(0, 2);
        w.publish(1, 0);
        let mut ring = open(&path, 8, 4, PixFmt::I420).unwrap();
        let latest = Latest::new(false);
        ring.poll(&latest).unwrap();
        let mut want = Vec::new();
        for v in 1..=4u8 {
            want.extend([v; 8]);
        }
        for v in [10u8, 11, 20, 21] {
            want.extend([v; 4]);
        }
        assert_eq!(taken(&latest), want);
    }

    #[test]
    fn spawn_waits_for_the_ring_reads_it_and_ends_when_the_writer_closes_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let latest = Arc::new(Latest::new(false));
        let reader =
            spawn(path.to_str().unwrap(), 16, 8, PixFmt::Gray, latest.clone(), Some(Duration::from_secs(10))).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        // Half-created first: a header with no magic yet must be waited for, not refused.
        std::fs::File::create(&path).unwrap().write_all(&[0; 300]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        let mut w = Writer::create(&path, Header::rawvideo(16, 8, PixFmt::Gray, 2));
        w.frame(9);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(matches!(latest.wait(deadline), Taken::Frame(f) if f.data == [9; 128]));
        w.file.write_all_at(&FLAG_CLOSED.to_le_bytes(), off::FLAGS).unwrap();
        match latest.wait(Instant::now() + Duration::from_secs(5)) {
            Taken::Ended(SourceEnd::Finished(why)) => assert!(why.contains("closed"), "{why}"),
            other => panic!("{other:?}"),
        }
        reader.thread.join().unwrap();
        assert_eq!(reader.counters.taken.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn spawn_refuses_a_bad_ring_at_once_and_gives_up_on_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        let latest = Arc::new(Latest::new(false));
        let err = spawn(path.to_str().unwrap(), 16, 8, PixFmt::Gray, latest.clone(), None).unwrap_err();
        assert_eq!(crate::exit::classify(&err), Exit::BadData);
        let missing = dir.path().join("none");
        let reader =
            spawn(missing.to_str().unwrap(), 16, 8, PixFmt::Gray, latest.clone(), Some(Duration::from_millis(50)))
                .unwrap();
        match latest.wait(Instant::now() + Duration::from_secs(5)) {
            Taken::Ended(SourceEnd::Failed(Exit::NoInput, why)) => assert!(why.contains("no ring at"), "{why}"),
            other => panic!("{other:?}"),
        }
        reader.thread.join().unwrap();
    }

    #[test]
    fn a_closed_frame_loop_stops_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        let latest = Arc::new(Latest::new(false));
        let reader = spawn(path.to_str().unwrap(), 16, 8, PixFmt::Gray, latest.clone(), None).unwrap();
        latest.close();
        reader.thread.join().unwrap();
        let _w = Writer::create(&path, Header::rawvideo(16, 8, PixFmt::Gray, 2));
        let reader = spawn(path.to_str().unwrap(), 16, 8, PixFmt::Gray, latest.clone(), None).unwrap();
        reader.thread.join().unwrap();
    }
}
