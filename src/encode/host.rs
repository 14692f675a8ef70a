//! An agent's RGB frames into the encoder's YUV, on the CPU, with yuvutils-rs (SIMD: about 0.12 ms
//! for a 1280x720 frame on one core here, where GStreamer's videoconvert took about 1.5 ms of CPU).
//! BT.709, limited range: what the caps say and what the rendered path writes.

use anyhow::anyhow;
use yuvutils_rs::{
    BufferStoreMut, YuvBiPlanarImageMut, YuvConversionMode, YuvPlanarImageMut, YuvRange, YuvStandardMatrix,
};

use crate::frame::PixFmt;
use crate::frame::RawFormat;

/// Whether frames of `format` are converted here (RGB in any order, with or without a fourth byte).
pub fn converts(format: PixFmt) -> bool {
    matches!(format, PixFmt::Rgb24 | PixFmt::Bgr24 | PixFmt::Rgba | PixFmt::Bgra | PixFmt::Rgb0 | PixFmt::Bgr0)
}

/// Whether GStreamer's layout of `to` at `width` (its plane `strides`) is tightly packed, which is
/// what yuvutils-rs writes; other widths go through videoconvert instead.
pub fn fits(to: RawFormat, width: u32, strides: &[i32]) -> bool {
    let w = width as i32;
    match to {
        RawFormat::Nv12 => strides.len() >= 2 && strides[0] == w && strides[1] == w,
        RawFormat::I420 => strides.len() >= 3 && strides[0] == w && strides[1] == w / 2 && strides[2] == w / 2,
    }
}

/// Converts one `width` x `height` frame of `from` (rawvideo layout) into `to`, written into `dst` at
/// GStreamer's plane `offsets` and `strides` for that format.
pub fn to_yuv(
    from: PixFmt,
    src: &[u8],
    (width, height): (u32, u32),
    to: RawFormat,
    dst: &mut [u8],
    offsets: &[usize],
    strides: &[i32],
) -> anyhow::Result<()> {
    let src_stride = width * from.bytes_per_pixel() as u32;
    let (range, matrix, mode) = (YuvRange::Limited, YuvStandardMatrix::Bt709, YuvConversionMode::Balanced);
    let error = |e: yuvutils_rs::YuvError| anyhow!("converting {from} to {}: {e}", to.caps_name());
    match to {
        RawFormat::Nv12 => {
            let (y, uv) = dst.split_at_mut(offsets[1]);
            let mut image = YuvBiPlanarImageMut {
                y_plane: BufferStoreMut::Borrowed(&mut y[offsets[0]..]),
                y_stride: strides[0] as u32,
                uv_plane: BufferStoreMut::Borrowed(uv),
                uv_stride: strides[1] as u32,
                width,
                height,
            };
            let convert = match from {
                PixFmt::Rgb24 => yuvutils_rs::rgb_to_yuv_nv12,
                PixFmt::Bgr24 => yuvutils_rs::bgr_to_yuv_nv12,
                PixFmt::Rgba | PixFmt::Rgb0 => yuvutils_rs::rgba_to_yuv_nv12,
                PixFmt::Bgra | PixFmt::Bgr0 => yuvutils_rs::bgra_to_yuv_nv12,
                other => return Err(anyhow!("{other} is not an RGB format")),
            };
            convert(&mut image, src, src_stride, range, matrix, mode).map_err(error)
        }
        RawFormat::I420 => {
            let (y, uv) = dst.split_at_mut(offsets[1]);
            let (u, v) = uv.split_at_mut(offsets[2] - offsets[1]);
            let mut image = YuvPlanarImageMut {
                y_plane: BufferStoreMut::Borrowed(&mut y[offsets[0]..]),
                y_stride: strides[0] as u32,
                u_plane: BufferStoreMut::Borrowed(u),
                u_stride: strides[1] as u32,
                v_plane: BufferStoreMut::Borrowed(v),
                v_stride: strides[2] as u32,
                width,
                height,
            };
            let convert = match from {
                PixFmt::Rgb24 => yuvutils_rs::rgb_to_yuv420,
                PixFmt::Bgr24 => yuvutils_rs::bgr_to_yuv420,
                PixFmt::Rgba | PixFmt::Rgb0 => yuvutils_rs::rgba_to_yuv420,
                PixFmt::Bgra | PixFmt::Bgr0 => yuvutils_rs::bgra_to_yuv420,
                other => return Err(anyhow!("{other} is not an RGB format")),
            };
            convert(&mut image, src, src_stride, range, matrix, mode).map_err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flat colours land on their BT.709 limited-range values in every order and both layouts.
    #[test]
    fn flat_colours_become_their_bt709_values() {
        let (w, h) = (32u32, 6u32);
        // Pure red in BT.709 limited range: Y 63, Cb 102, Cr 240 (within rounding).
        for from in [PixFmt::Rgb24, PixFmt::Bgr24, PixFmt::Rgba, PixFmt::Bgra, PixFmt::Rgb0, PixFmt::Bgr0] {
            let px: Vec<u8> = match from {
                PixFmt::Rgb24 => vec![255, 0, 0],
                PixFmt::Bgr24 => vec![0, 0, 255],
                PixFmt::Rgba | PixFmt::Rgb0 => vec![255, 0, 0, 255],
                _ => vec![0, 0, 255, 255],
            };
            let src: Vec<u8> = px.iter().copied().cycle().take(from.frame_bytes(w, h)).collect();
            for to in [RawFormat::Nv12, RawFormat::I420] {
                let (offsets, strides): (Vec<usize>, Vec<i32>) = match to {
                    RawFormat::Nv12 => (vec![0, 32 * 6], vec![32, 32]),
                    RawFormat::I420 => (vec![0, 32 * 6, 32 * 6 + 16 * 3], vec![32, 16, 16]),
                };
                assert!(fits(to, w, &strides));
                let mut dst = vec![0u8; 32 * 6 * 3 / 2];
                to_yuv(from, &src, (w, h), to, &mut dst, &offsets, &strides).unwrap();
                let near = |v: u8, want: u8| v.abs_diff(want) <= 2;
                assert!(near(dst[0], 63) && near(dst[31], 63), "{from} -> {to:?}: Y {}", dst[0]);
                let (cb, cr) = match to {
                    RawFormat::Nv12 => (dst[offsets[1]], dst[offsets[1] + 1]),
                    RawFormat::I420 => (dst[offsets[1]], dst[offsets[2]]),
                };
                assert!(near(cb, 102) && near(cr, 240), "{from} -> {to:?}: Cb {cb} Cr {cr}");
            }
        }
    }

    #[test]
    fn padded_layouts_are_left_to_videoconvert() {
        assert!(fits(RawFormat::Nv12, 1280, &[1280, 1280]));
        assert!(!fits(RawFormat::Nv12, 34, &[36, 36]));
        assert!(!fits(RawFormat::I420, 36, &[36, 20, 20]));
        assert!(fits(RawFormat::I420, 40, &[40, 20, 20]));
    }
}
