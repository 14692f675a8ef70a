//! The machine-readable frame stamp: one row of large black and white blocks near the top of every
//! picture that carries the frame number, so that tests and benchmarks can decode video and tell
//! which frame each picture is.
//!
//! Layout, left to right: a white and a black sync block, 32 bits of frame number (most significant
//! first), then 8 bits of CRC-8 over those 32 bits. Blocks are square, about 1/60 of the width, so
//! they survive lossy H.264 at low bitrates; the decoder averages the centre of each block.
//! The renderer draws it from [`StampLayout`] and [`bits`]; [`decode`] reads it back from a luma plane.

/// Sync blocks + payload bits + check bits.
pub const BLOCKS: u32 = 2 + 32 + 8;
/// Smallest block edge in pixels that still decodes reliably after 4:2:0 and lossy coding.
pub const MIN_BLOCK: u32 = 8;

/// Where the stamp goes in a `width` x `height` picture (top-left origin, pixels).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StampLayout {
    pub x: u32,
    pub y: u32,
    /// Edge length of one block.
    pub block: u32,
}

impl StampLayout {
    /// The layout for a picture size, or `None` when the picture is too small for a readable stamp.
    pub fn for_size(width: u32, height: u32) -> Option<Self> {
        // Use 70% of the width, in whole multiples of 2 pixels so chroma blocks align.
        let block = (width * 7 / 10 / BLOCKS) & !1;
        let block = block.min(64);
        if block < MIN_BLOCK || height < block * 3 {
            return None;
        }
        let x = ((width - block * BLOCKS) / 2) & !1;
        Some(Self { x, y: block & !1, block })
    }

    /// Smallest width that carries a stamp.
    pub fn min_width() -> u32 {
        (MIN_BLOCK * BLOCKS * 10).div_ceil(7)
    }

    pub fn width(&self) -> u32 {
        self.block * BLOCKS
    }
}

/// CRC-8 (polynomial 0x07) over the frame number's big-endian bytes.
pub fn crc8(value: u32) -> u8 {
    let mut crc = 0u8;
    for byte in value.to_be_bytes() {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 { (crc << 1) ^ 0x07 } else { crc << 1 };
        }
    }
    crc
}

/// The block values for a frame number, left to right (`true` = white).
pub fn bits(frame: u32) -> [bool; BLOCKS as usize] {
    let mut out = [false; BLOCKS as usize];
    out[0] = true;
    for i in 0..32 {
        out[2 + i] = frame >> (31 - i) & 1 == 1;
    }
    let crc = crc8(frame);
    for i in 0..8 {
        out[34 + i] = crc >> (7 - i) & 1 == 1;
    }
    out
}

/// Paints the stamp of `frame` into a host frame in the rawvideo layout of `format` (agent frames
/// with `--stamp`): white and black blocks, limited-range in YUV formats, chroma neutral.
pub fn paint_host(data: &mut [u8], format: crate::frame::PixFmt, width: u32, height: u32, frame: u32) {
    use crate::frame::PixFmt;
    let Some(l) = StampLayout::for_size(width, height) else { return };
    let planes = format.planes(width, height);
    let yuv = matches!(format, PixFmt::Nv12 | PixFmt::I420);
    let (white, black) = if yuv { (235u8, 16u8) } else { (255, 0) };
    let bpp = format.bytes_per_pixel();
    let (b, y0, x0) = (l.block as usize, l.y as usize, l.x as usize);
    for (i, bit) in bits(frame).iter().enumerate() {
        let luma = if *bit { white } else { black };
        let x = x0 + i * b;
        for row in y0..y0 + b {
            let start = planes[0].offset + row * planes[0].stride + x * bpp;
            for px in data[start..start + b * bpp].chunks_exact_mut(bpp) {
                // RGB, BGR and grey: every colour byte; a fourth byte (alpha or unused) is left alone.
                let colour = if bpp == 4 { 3 } else { bpp };
                px[..colour].fill(luma);
            }
        }
        if yuv {
            // Neutral chroma under the block: 2x2 subsampled, block edges are even.
            for p in &planes[1..] {
                let per = if format == PixFmt::Nv12 { 2 } else { 1 };
                for row in y0 / 2..(y0 + b) / 2 {
                    let start = p.offset + row * p.stride + x / 2 * per;
                    data[start..start + b / 2 * per].fill(128);
                }
            }
        }
    }
}

/// Reads the frame number from a decoded luma plane (`stride` bytes per row). Returns `None` when
/// the picture carries no valid stamp (no sync pattern, or the check bits disagree).
pub fn decode(luma: &[u8], stride: usize, width: u32, height: u32) -> Option<u32> {
    let layout = StampLayout::for_size(width, height)?;
    let b = layout.block as usize;
    // Average the centre half of each block.
    let mean = |i: usize| -> Option<u32> {
        let x0 = layout.x as usize + i * b + b / 4;
        let y0 = layout.y as usize + b / 4;
        let (mut sum, mut n) = (0u32, 0u32);
        for y in y0..y0 + b / 2 {
            let row = luma.get(y * stride + x0..y * stride + x0 + b / 2)?;
            sum += row.iter().map(|&v| u32::from(v)).sum::<u32>();
            n += row.len() as u32;
        }
        Some(sum / n.max(1))
    };
    let (white, black) = (mean(0)?, mean(1)?);
    if white < black + 64 {
        return None;
    }
    let threshold = (white + black) / 2;
    let mut word: u64 = 0;
    for i in 2..BLOCKS as usize {
        word = (word << 1) | u64::from(mean(i)? > threshold);
    }
    let frame = (word >> 8) as u32;
    (crc8(frame) == (word & 0xff) as u8).then_some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Paints a stamp the way the shader does, into a grey luma plane.
    fn paint(frame: u32, w: u32, h: u32, white: u8, black: u8) -> Vec<u8> {
        let mut luma = vec![128u8; (w * h) as usize];
        let l = StampLayout::for_size(w, h).unwrap();
        for (i, bit) in bits(frame).iter().enumerate() {
            for y in l.y..l.y + l.block {
                for x in l.x + i as u32 * l.block..l.x + (i as u32 + 1) * l.block {
                    luma[(y * w + x) as usize] = if *bit { white } else { black };
                }
            }
        }
        luma
    }

    #[test]
    fn round_trips_frame_numbers() {
        for (w, h) in [(1280, 720), (1920, 1080), (640, 360), (482, 270)] {
            for frame in [0, 1, 29, 30, 12345, u32::MAX] {
                let luma = paint(frame, w, h, 235, 16);
                assert_eq!(decode(&luma, w as usize, w, h), Some(frame), "{w}x{h} frame {frame}");
            }
        }
    }

    #[test]
    fn survives_noise_and_limited_range() {
        let (w, h) = (1280, 720);
        let mut luma = paint(777, w, h, 200, 40);
        // Deterministic +-30 noise.
        let mut s = 1u32;
        for v in &mut luma {
            s = s.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *v = (i32::from(*v) + (s >> 16) as i32 % 61 - 30).clamp(0, 255) as u8;
        }
        assert_eq!(decode(&luma, w as usize, w, h), Some(777));
    }

    #[test]
    fn rejects_pictures_without_a_stamp_or_with_a_bad_check() {
        let (w, h) = (1280, 720);
        assert_eq!(decode(&vec![128; (w * h) as usize], w as usize, w, h), None);
        let mut luma = paint(5, w, h, 235, 16);
        let l = StampLayout::for_size(w, h).unwrap();
        // Flip the last payload bit's block (bit 0 of 5 is 1 -> black).
        for y in l.y..l.y + l.block {
            for x in l.x + 33 * l.block..l.x + 34 * l.block {
                luma[(y * w + x) as usize] = 16;
            }
        }
        assert_eq!(decode(&luma, w as usize, w, h), None);
    }

    #[test]
    fn layout_fits_and_is_even() {
        for (w, h) in [(1280, 720), (1920, 1080), (3840, 2160), (482, 270)] {
            let l = StampLayout::for_size(w, h).unwrap();
            assert!(l.x + l.width() <= w && l.y + l.block <= h);
            assert_eq!((l.x % 2, l.y % 2, l.block % 2), (0, 0, 0));
        }
        assert!(StampLayout::for_size(StampLayout::min_width() - 2, 720).is_none());
        assert!(StampLayout::for_size(StampLayout::min_width() + 1, 720).is_some());
    }

    #[test]
    fn host_frames_carry_a_stamp_that_decodes() {
        use crate::frame::PixFmt;
        let (w, h) = (640, 360);
        for format in PixFmt::ALL {
            let mut data = vec![90u8; format.frame_bytes(w, h)];
            paint_host(&mut data, format, w, h, 4242);
            // The luma a decoder would see: grey/YUV luma directly, else one colour byte per pixel.
            let luma: Vec<u8> = match format {
                PixFmt::Gray | PixFmt::Nv12 | PixFmt::I420 => data[..(w * h) as usize].to_vec(),
                f => data.chunks_exact(f.bytes_per_pixel()).map(|px| px[1]).collect(),
            };
            assert_eq!(decode(&luma, w as usize, w, h), Some(4242), "{format}");
        }
    }

    #[test]
    fn crc_known_value() {
        // CRC-8/SMBUS of 00 00 00 01 is 0x07.
        assert_eq!(crc8(1), 0x07);
        assert_eq!(crc8(0), 0x00);
    }
}
