//! The ring's wire layout: the magic and version, the header's byte offsets, and [`Header`], which
//! encodes, decodes and checks the fixed fields. Pure: no files, no clocks. docs/SHM.md describes
//! the same layout for people writing a writer (examples/shm_writer.py is one); anything changed
//! here changes what every writer must write.

use crate::frame::{PixFmt, PlaneLayout};

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

/// What is wrong with a header. The first two mean the writer has not finished creating the ring
/// (see [`HeaderError::is_not_ready`]): wait for it. Every other one means this is not a ring this
/// reader can use (exit 65). The messages are the reasons users see after `shm:NAME: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("truncated header: the file has {len} bytes, a header needs {SLOT_TABLE}")]
    Truncated { len: usize },
    #[error("no magic yet (the writer has not initialised the ring)")]
    NoMagic,
    #[error(
        "wrong magic {:?} (want {:?}): not an agentcast frame ring",
        String::from_utf8_lossy(.0),
        String::from_utf8_lossy(&MAGIC)
    )]
    WrongMagic([u8; 8]),
    #[error("layout version {0} is not supported (this agentcast reads {VERSION})")]
    Version(u32),
    #[error("unknown pixel format code {0}")]
    UnknownFormat(u32),
    #[error("size {width}x{height} is empty")]
    EmptySize { width: u32, height: u32 },
    #[error("slot count {0} is outside 1..={MAX_SLOTS}")]
    SlotCount(u32),
    #[error(
        "header size {header_size} must be a multiple of {ALIGN} and hold the {slot_count} slot entries ({table_end} bytes)"
    )]
    HeaderSize { header_size: u64, slot_count: u32, table_end: u64 },
    #[error("slot stride {slot_stride} must be a multiple of {ALIGN} and at least the frame size {frame_bytes}")]
    SlotStride { slot_stride: u64, frame_bytes: u64 },
    #[error("{format} has {planes} planes, the header says {header}")]
    PlaneCount { format: PixFmt, planes: usize, header: u32 },
    #[error("plane {plane}: stride {stride} is less than a row of {row_bytes} bytes")]
    PlaneStride { plane: usize, stride: usize, row_bytes: usize },
    #[error("plane {plane} ends at byte {end}, beyond the frame size {frame_bytes}")]
    PlaneEnd { plane: usize, end: u64, frame_bytes: u64 },
    #[error(
        "size mismatch: the file has {file_len} bytes, the header describes {want} \
         ({header_size} of header + {slot_count} slots x {slot_stride})"
    )]
    SizeMismatch { file_len: u64, want: u64, header_size: u64, slot_count: u32, slot_stride: u64 },
}

impl HeaderError {
    /// The writer has not finished creating the ring (a short file, the magic still zero): a reader
    /// waits for it instead of refusing it.
    pub fn is_not_ready(&self) -> bool {
        matches!(self, HeaderError::Truncated { .. } | HeaderError::NoMagic)
    }
}

pub(super) fn u32_at(b: &[u8], at: u64) -> u32 {
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
            return Err(HeaderError::Truncated { len: b.len() });
        }
        let magic: [u8; 8] = b[..8].try_into().unwrap();
        if magic == [0; 8] {
            return Err(HeaderError::NoMagic);
        }
        if magic != MAGIC {
            return Err(HeaderError::WrongMagic(magic));
        }
        let version = u32_at(b, off::VERSION);
        if version != VERSION {
            return Err(HeaderError::Version(version));
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
    pub fn check(&self, file_len: u64) -> Result<(PixFmt, Vec<PlaneLayout>), HeaderError> {
        let format = PixFmt::from_code(self.pix_fmt).ok_or(HeaderError::UnknownFormat(self.pix_fmt))?;
        if self.width == 0 || self.height == 0 {
            return Err(HeaderError::EmptySize { width: self.width, height: self.height });
        }
        if self.slot_count == 0 || self.slot_count > MAX_SLOTS {
            return Err(HeaderError::SlotCount(self.slot_count));
        }
        let table_end = SLOT_TABLE + SLOT_ENTRY * self.slot_count as u64;
        let header_size = self.header_size as u64;
        if !header_size.is_multiple_of(ALIGN) || header_size < table_end {
            return Err(HeaderError::HeaderSize { header_size, slot_count: self.slot_count, table_end });
        }
        if !self.slot_stride.is_multiple_of(ALIGN) || self.slot_stride < self.frame_bytes {
            return Err(HeaderError::SlotStride { slot_stride: self.slot_stride, frame_bytes: self.frame_bytes });
        }
        let packed = format.planes(self.width, self.height);
        if self.plane_count as usize != packed.len() {
            return Err(HeaderError::PlaneCount { format, planes: packed.len(), header: self.plane_count });
        }
        let mut planes = Vec::new();
        for (i, p) in packed.iter().enumerate() {
            let (stride, offset) = (self.plane_stride[i] as usize, self.plane_offset[i] as usize);
            if stride < p.row_bytes {
                return Err(HeaderError::PlaneStride { plane: i, stride, row_bytes: p.row_bytes });
            }
            let end = (offset + stride * (p.rows - 1) + p.row_bytes) as u64;
            if end > self.frame_bytes {
                return Err(HeaderError::PlaneEnd { plane: i, end, frame_bytes: self.frame_bytes });
            }
            planes.push(PlaneLayout { offset, stride, rows: p.rows, row_bytes: p.row_bytes });
        }
        let want = header_size + self.slot_count as u64 * self.slot_stride;
        if file_len < want {
            return Err(HeaderError::SizeMismatch {
                file_len,
                want,
                header_size,
                slot_count: self.slot_count,
                slot_stride: self.slot_stride,
            });
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_half_created_ring_is_not_ready_and_a_foreign_one_is_refused() {
        let good = Header::rawvideo(64, 48, PixFmt::Rgb24, 3).encode();
        let short = Header::decode(&good[..100]).unwrap_err();
        assert_eq!(short, HeaderError::Truncated { len: 100 });
        assert_eq!(short.to_string(), "truncated header: the file has 100 bytes, a header needs 256");
        let zero = Header::decode(&[0; 256]).unwrap_err();
        assert_eq!(zero, HeaderError::NoMagic);
        assert!(short.is_not_ready() && zero.is_not_ready());

        let mut foreign = good;
        foreign[..8].copy_from_slice(b"NOTARING");
        let e = Header::decode(&foreign).unwrap_err();
        assert_eq!(e, HeaderError::WrongMagic(*b"NOTARING"));
        assert_eq!(e.to_string(), r#"wrong magic "NOTARING" (want "AGCSHM01"): not an agentcast frame ring"#);
        let mut newer = good;
        newer[8..12].copy_from_slice(&2u32.to_le_bytes());
        let e = Header::decode(&newer).unwrap_err();
        assert_eq!(e, HeaderError::Version(2));
        assert_eq!(e.to_string(), "layout version 2 is not supported (this agentcast reads 1)");
        assert!(!HeaderError::WrongMagic(*b"NOTARING").is_not_ready() && !HeaderError::Version(2).is_not_ready());
    }

    #[test]
    fn check_names_what_does_not_fit() {
        let good = Header::rawvideo(64, 48, PixFmt::Rgb24, 3);
        let check = |spoil: &dyn Fn(&mut Header)| {
            let mut h = good.clone();
            spoil(&mut h);
            h.check(good.file_len()).unwrap_err()
        };
        assert_eq!(check(&|h| h.pix_fmt = 99), HeaderError::UnknownFormat(99));
        assert_eq!(check(&|h| h.height = 0).to_string(), "size 64x0 is empty");
        assert_eq!(check(&|h| h.slot_count = 256).to_string(), "slot count 256 is outside 1..=255");
        assert_eq!(
            check(&|h| h.header_size = 100).to_string(),
            "header size 100 must be a multiple of 4096 and hold the 3 slot entries (448 bytes)"
        );
        assert_eq!(
            check(&|h| h.slot_stride = 4096).to_string(),
            "slot stride 4096 must be a multiple of 4096 and at least the frame size 9216"
        );
        assert_eq!(check(&|h| h.plane_count = 3).to_string(), "rgb24 has 1 planes, the header says 3");
        assert_eq!(
            check(&|h| h.plane_stride[0] = 10).to_string(),
            "plane 0: stride 10 is less than a row of 192 bytes"
        );
        assert_eq!(
            check(&|h| h.plane_offset[0] = 100).to_string(),
            "plane 0 ends at byte 9316, beyond the frame size 9216"
        );
        let e = good.check(good.file_len() - 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "size mismatch: the file has 40959 bytes, the header describes 40960 (4096 of header + 3 slots x 12288)"
        );
        assert!(!e.is_not_ready());
    }
}
