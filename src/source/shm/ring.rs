//! The reading side of the seqlock ring: finding and validating a ring file ([`Ring::open`],
//! [`check`]), and taking one frame by the sequence protocol ([`Ring::poll`]). The module doc of
//! [`super`] explains the protocol; this file is where its reads and fences are.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering, fence};
use std::time::Instant;

use super::layout::{FLAG_CLOSED, Header, HeaderError, SLOT_TABLE, off};
use crate::exit::{Exit, fail};
use crate::frame::{HostFrame, PixFmt, PlaneLayout};
use crate::source::live::Latest;

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
    pub(super) fn add(counter: &AtomicU64, n: u64) {
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
    pub(super) file: F,
    /// `shm:NAME`, for messages.
    pub(super) label: String,
    header: Header,
    pub(super) format: PixFmt,
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
pub(super) enum Found<F: ReadAt> {
    Missing,
    /// There, but the writer has not finished creating it ([`HeaderError::is_not_ready`]).
    NotReady(HeaderError),
    Ready(Ring<F>),
}

pub(super) fn bad_data(label: &str, reason: impl std::fmt::Display) -> anyhow::Error {
    fail(Exit::BadData, format!("{label}: {reason}"))
}

/// Why a ring's header could not be read; every kind but a header that is not ready yet is bad
/// data.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("reading the ring: {0}")]
    Len(std::io::Error),
    #[error("reading the header: {0}")]
    Read(std::io::Error),
    #[error(transparent)]
    Header(#[from] HeaderError),
}

/// Reads and decodes a header, with the file's length.
fn read_header<F: ReadAt>(file: &F) -> Result<(Header, u64), ReadError> {
    let len = file.file_len().map_err(ReadError::Len)?;
    let mut b = vec![0u8; (len.min(SLOT_TABLE)) as usize];
    file.read_exact_at(&mut b, 0).map_err(ReadError::Read)?;
    Ok((Header::decode(&b)?, len))
}

impl<F: ReadAt> Ring<F> {
    /// Validates `file`'s header against the stream's flags.
    pub(super) fn from_file(file: F, label: &str, width: u32, height: u32, format: PixFmt) -> anyhow::Result<Found<F>> {
        let (header, len) = match read_header(&file) {
            Ok(h) => h,
            Err(ReadError::Header(why)) if why.is_not_ready() => return Ok(Found::NotReady(why)),
            Err(e) => return Err(bad_data(label, e)),
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
    /// read the header again, so a changed size or format is refused instead of misread (a header
    /// not ready yet included).
    fn restarted(&mut self) -> anyhow::Result<()> {
        let (header, len) = read_header(&self.file).map_err(|e| bad_data(&self.label, e))?;
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
    /// (`Exit::NoInput`, `Exit::BadData`); [`super::spawn`] waits for one instead.
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
/// flags (the errors of [`Ring::open`]); a missing or half-created one is fine ([`super::spawn`]
/// waits).
pub fn check(name: &str, width: u32, height: u32, format: PixFmt) -> anyhow::Result<()> {
    find(name, width, height, format).map(drop)
}

/// Opens `shm:NAME` if it is there and validates it.
pub(super) fn find(name: &str, width: u32, height: u32, format: PixFmt) -> anyhow::Result<Found<File>> {
    let path = ring_path(name)?;
    let label = format!("shm:{name}");
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(fail(Exit::NoInput, format!("{label}: opening {}: {e}", path.display()))),
    };
    Ring::from_file(file, &label, width, height, format)
}

/// A test writer, shared with the reader thread's tests.
#[cfg(test)]
pub(super) mod testing {
    use super::*;

    /// A test writer: the same protocol as examples/shm_writer.py, with pwrite.
    pub struct Writer {
        pub file: File,
        pub header: Header,
        frames: u64,
    }

    impl Writer {
        pub fn create(path: &std::path::Path, header: Header) -> Writer {
            let file =
                std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).unwrap();
            file.set_len(header.file_len()).unwrap();
            file.write_all_at(&header.encode(), 0).unwrap();
            Writer { file, header, frames: 0 }
        }

        pub fn seq(&self, slot: u32, seq: u64) {
            self.file.write_all_at(&seq.to_le_bytes(), Header::entry(slot)).unwrap();
        }

        /// Writes a whole frame of `value` bytes into the next slot and publishes it.
        pub fn frame(&mut self, value: u8) -> (u64, u32) {
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

        pub fn publish(&self, n: u64, slot: u32) {
            self.file.write_all_at(&(n << 8 | slot as u64).to_le_bytes(), off::LATEST).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::Writer;
    use super::*;
    use crate::source::live::Taken;
    use std::cell::Cell;

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
    fn a_half_created_ring_is_waited_for_by_check_and_refused_by_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ring");
        std::fs::write(&path, [0; 300]).unwrap();
        let name = path.to_str().unwrap();
        assert!(check(name, 16, 8, PixFmt::Gray).is_ok());
        let (kind, reason) = kind_and_reason(&Ring::open(name, 16, 8, PixFmt::Gray).unwrap_err());
        assert_eq!(kind, Exit::BadData);
        assert_eq!(reason, format!("shm:{name}: no magic yet (the writer has not initialised the ring)"));
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
        let latest = Latest::new(crate::source::live::Overrun::Replace);
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
        let latest = Latest::new(crate::source::live::Overrun::Replace);
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
        let latest = Latest::new(crate::source::live::Overrun::Replace);
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
        let latest = Latest::new(crate::source::live::Overrun::Replace);
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
        let latest = Latest::new(crate::source::live::Overrun::Replace);
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
}
