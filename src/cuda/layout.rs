//! Copy geometry for handing a frame to an encoder in CUDA memory (pure; no CUDA needed): the NV12
//! layout NVENC takes, with a row pitch aligned for the device, and the two 2D copies (luma, then
//! interleaved chroma) that fill it from a packed source. Used by the zero-copy path (`cuda::frames`).

/// Where an NV12 frame's planes sit in one pitched allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nv12Layout {
    pub width: u32,
    pub height: u32,
    /// Bytes per row of both planes (>= width, a multiple of the alignment).
    pub pitch: usize,
    /// Byte offset of the interleaved UV plane (the luma plane starts at 0).
    pub uv_offset: usize,
    /// Bytes of the whole allocation.
    pub size: usize,
}

/// One 2D copy: `rows` rows of `row_bytes` bytes, from `src_offset` (rows `src_pitch` apart) to
/// `dst_offset` (rows `dst_pitch` apart). The parameters of a cuMemcpy2D.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Copy2d {
    pub src_offset: usize,
    pub src_pitch: usize,
    pub dst_offset: usize,
    pub dst_pitch: usize,
    pub row_bytes: usize,
    pub rows: usize,
}

impl Nv12Layout {
    /// The layout for `width` x `height` with rows aligned to `align` bytes (a power of two; CUDA's
    /// texture pitch alignment, typically 256 or 512). 4:2:0 needs even sizes: odd ones are refused.
    pub fn new(width: u32, height: u32, align: usize) -> Result<Nv12Layout, String> {
        if width == 0 || height == 0 {
            return Err(format!("{width}x{height}: an empty frame"));
        }
        if !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(format!("{width}x{height}: NV12 needs an even width and height"));
        }
        if align == 0 || !align.is_power_of_two() {
            return Err(format!("pitch alignment {align} is not a power of two"));
        }
        let pitch = (width as usize).div_ceil(align) * align;
        let uv_offset = pitch * height as usize;
        Ok(Nv12Layout { width, height, pitch, uv_offset, size: uv_offset + pitch * height as usize / 2 })
    }

    /// The layout an allocator chose (GstCudaMemory: `cuMemAllocPitch`'s pitch for both planes, chroma
    /// after `height` luma rows), as its GstVideoMeta reports it, checked before any copy trusts it.
    pub fn with_planes(
        width: u32,
        height: u32,
        pitches: [usize; 2],
        uv_offset: usize,
        size: usize,
    ) -> Result<Nv12Layout, String> {
        let even = Nv12Layout::new(width, height, 1)?;
        let [pitch, uv_pitch] = pitches;
        if pitch != uv_pitch {
            return Err(format!("NV12 planes with different pitches ({pitch} and {uv_pitch}) are not supported"));
        }
        if pitch < width as usize {
            return Err(format!("a row pitch of {pitch} bytes is less than the width {width}"));
        }
        if uv_offset < pitch * height as usize {
            return Err(format!("the chroma plane at {uv_offset} overlaps {height} luma rows of {pitch} bytes"));
        }
        let needed = uv_offset + pitch * (height as usize / 2 - 1) + width as usize;
        if needed > size {
            return Err(format!("an NV12 frame needs {needed} bytes, the buffer has {size}"));
        }
        Ok(Nv12Layout { pitch, uv_offset, size, ..even })
    }

    /// The copies from a tightly packed NV12 source (the shader pack's output: luma rows of `width`
    /// bytes, then `height / 2` interleaved chroma rows of `width` bytes) into this layout.
    pub fn copies_from_packed(&self) -> [Copy2d; 2] {
        let (w, h) = (self.width as usize, self.height as usize);
        [
            Copy2d { src_offset: 0, src_pitch: w, dst_offset: 0, dst_pitch: self.pitch, row_bytes: w, rows: h },
            Copy2d {
                src_offset: w * h,
                src_pitch: w,
                dst_offset: self.uv_offset,
                dst_pitch: self.pitch,
                row_bytes: w,
                rows: h / 2,
            },
        ]
    }

    /// Bytes the frame crosses to the host on the readback path instead (packed NV12: 1.5 per pixel).
    pub fn readback_bytes(&self) -> usize {
        self.width as usize * self.height as usize * 3 / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pitch_is_aligned_and_planes_follow_each_other() {
        let l = Nv12Layout::new(1920, 1080, 512).unwrap();
        assert_eq!(l.pitch, 2048);
        assert_eq!(l.uv_offset, 2048 * 1080);
        assert_eq!(l.size, 2048 * 1080 * 3 / 2);
        assert_eq!(l.readback_bytes(), 1920 * 1080 * 3 / 2);
        let exact = Nv12Layout::new(1280, 720, 256).unwrap();
        assert_eq!(exact.pitch, 1280, "already aligned: no padding");
    }

    #[test]
    fn allocator_layouts_are_checked_before_they_are_trusted() {
        // GstCudaMemory at 1920x1080: pitch 2048, chroma right after the luma rows.
        let l = Nv12Layout::with_planes(1920, 1080, [2048, 2048], 2048 * 1080, 2048 * 1620).unwrap();
        assert_eq!(l, Nv12Layout::new(1920, 1080, 512).unwrap());
        assert!(
            Nv12Layout::with_planes(1920, 1080, [1024, 1024], 1024 * 1080, 1 << 24).unwrap_err().contains("less than")
        );
        assert!(
            Nv12Layout::with_planes(1920, 1080, [2048, 2048], 2048 * 1000, 1 << 24).unwrap_err().contains("overlaps")
        );
        assert!(
            Nv12Layout::with_planes(1920, 1080, [2048, 2048], 2048 * 1080, 2048 * 1600).unwrap_err().contains("needs")
        );
        assert!(
            Nv12Layout::with_planes(1920, 1080, [2048, 4096], 2048 * 1080, 1 << 24).unwrap_err().contains("pitches")
        );
        assert!(Nv12Layout::with_planes(1919, 1080, [2048, 2048], 2048 * 1080, 1 << 24).unwrap_err().contains("even"));
    }

    #[test]
    fn odd_or_empty_sizes_and_bad_alignments_are_refused() {
        assert!(Nv12Layout::new(1279, 720, 256).unwrap_err().contains("even"));
        assert!(Nv12Layout::new(1280, 721, 256).unwrap_err().contains("even"));
        assert!(Nv12Layout::new(0, 720, 256).is_err());
        assert!(Nv12Layout::new(1280, 720, 300).unwrap_err().contains("power of two"));
    }

    #[test]
    fn copies_cover_every_source_byte_once_and_stay_inside_the_allocation() {
        let l = Nv12Layout::new(642, 362, 256).unwrap();
        let [y, uv] = l.copies_from_packed();
        assert_eq!((y.rows, uv.rows), (362, 181));
        assert_eq!(y.row_bytes * y.rows + uv.row_bytes * uv.rows, l.readback_bytes());
        assert_eq!(uv.src_offset, y.row_bytes * y.rows, "chroma follows luma in the packed source");
        for c in [y, uv] {
            assert!(c.row_bytes <= c.dst_pitch);
            assert!(c.dst_offset + (c.rows - 1) * c.dst_pitch + c.row_bytes <= l.size);
        }
    }
}
