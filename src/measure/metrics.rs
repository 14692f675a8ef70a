//! Picture-quality metrics on 8-bit luma planes (pure): PSNR, SSIM and a banding score. They are the
//! measuring core for `agentcast quality` (issue 7): a decoded picture is compared with the source
//! picture that carried the same frame stamp.

/// Peak signal-to-noise ratio in dB; `f64::INFINITY` for identical planes.
pub fn psnr(source: &[u8], decoded: &[u8]) -> f64 {
    assert_eq!(source.len(), decoded.len(), "planes differ in size");
    let sse: f64 = source.iter().zip(decoded).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum();
    if sse == 0.0 {
        return f64::INFINITY;
    }
    let mse = sse / source.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

/// Mean SSIM over 8x8 windows (stride 4), with the usual constants for 8-bit data.
pub fn ssim(source: &[u8], decoded: &[u8], width: usize, height: usize) -> f64 {
    assert_eq!(source.len(), width * height);
    assert_eq!(decoded.len(), width * height);
    const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
    const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);
    let (mut total, mut windows) = (0.0, 0usize);
    let mut y = 0;
    while y + 8 <= height {
        let mut x = 0;
        while x + 8 <= width {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for row in y..y + 8 {
                for col in x..x + 8 {
                    let a = f64::from(source[row * width + col]);
                    let b = f64::from(decoded[row * width + col]);
                    sa += a;
                    sb += b;
                    saa += a * a;
                    sbb += b * b;
                    sab += a * b;
                }
            }
            let n = 64.0;
            let (ma, mb) = (sa / n, sb / n);
            let (va, vb, cov) = (saa / n - ma * ma, sbb / n - mb * mb, sab / n - ma * mb);
            total += ((2.0 * ma * mb + C1) * (2.0 * cov + C2)) / ((ma * ma + mb * mb + C1) * (va + vb + C2));
            windows += 1;
            x += 4;
        }
        y += 4;
    }
    if windows == 0 { 1.0 } else { total / windows as f64 }
}

/// 3x3 box blur (edges clamped), so pixel noise and dither do not read as contours while real
/// contours, which are lines, survive.
fn blur(p: &[u8], width: usize, height: usize) -> Vec<f32> {
    let mut out = vec![0f32; p.len()];
    for y in 0..height {
        for x in 0..width {
            let mut sum = 0u32;
            for dy in [-1i64, 0, 1] {
                for dx in [-1i64, 0, 1] {
                    let yy = (y as i64 + dy).clamp(0, height as i64 - 1) as usize;
                    let xx = (x as i64 + dx).clamp(0, width as i64 - 1) as usize;
                    sum += u32::from(p[yy * width + xx]);
                }
            }
            out[y * width + x] = sum as f32 / 9.0;
        }
    }
    out
}

/// Banding: false contour steps per 10,000 smooth positions, on 3x3-blurred pictures. A position (a
/// pair of horizontal or vertical neighbours) is smooth where the source changes by at most one code
/// value there and by at most four across the six pixels around it; a false contour step is a smooth
/// position where the decoded picture jumps by 1.5 or more. The source itself scores 0; posterised or
/// blocky gradients score high; fine noise does not.
pub fn banding_score(source: &[u8], decoded: &[u8], width: usize, height: usize) -> f64 {
    assert_eq!(source.len(), width * height);
    assert_eq!(decoded.len(), width * height);
    let (s, d) = (blur(source, width, height), blur(decoded, width, height));
    let (mut smooth, mut steps) = (0u64, 0u64);
    let mut look = |a: usize, b: usize, around: [usize; 6]| {
        if (s[a] - s[b]).abs() > 1.0 {
            return;
        }
        let (lo, hi) = around.iter().fold((f32::MAX, f32::MIN), |(lo, hi), &i| (lo.min(s[i]), hi.max(s[i])));
        if hi - lo > 4.0 {
            return;
        }
        smooth += 1;
        if (d[a] - d[b]).abs() >= 1.5 {
            steps += 1;
        }
    };
    for y in 0..height {
        for x in 2..width.saturating_sub(3) {
            let i = y * width + x;
            look(i, i + 1, [i - 2, i - 1, i, i + 1, i + 2, i + 3]);
        }
    }
    for y in 2..height.saturating_sub(3) {
        for x in 0..width {
            let i = y * width + x;
            look(i, i + width, [i - 2 * width, i - width, i, i + width, i + 2 * width, i + 3 * width]);
        }
    }
    if smooth == 0 { 0.0 } else { steps as f64 * 10_000.0 / smooth as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = 320;
    const H: usize = 64;

    /// A horizontal ramp over the full 8-bit range (what the `gradient` scene's top half shows).
    fn ramp() -> Vec<u8> {
        (0..H).flat_map(|_| (0..W).map(|x| (x * 255 / (W - 1)) as u8)).collect()
    }

    fn posterise(p: &[u8], levels: u32) -> Vec<u8> {
        let step = 256 / levels;
        p.iter().map(|&v| ((u32::from(v) / step) * step) as u8).collect()
    }

    #[test]
    fn identical_pictures_are_perfect() {
        let s = ramp();
        assert_eq!(psnr(&s, &s), f64::INFINITY);
        assert!((ssim(&s, &s, W, H) - 1.0).abs() < 1e-9);
        assert_eq!(banding_score(&s, &s, W, H), 0.0);
    }

    #[test]
    fn a_posterised_gradient_bands_far_more_than_the_smooth_source() {
        let s = ramp();
        let p16 = posterise(&s, 16);
        let p64 = posterise(&s, 64);
        let b16 = banding_score(&s, &p16, W, H);
        let b64 = banding_score(&s, &p64, W, H);
        assert!(b16 > 100.0, "16 levels: {b16}");
        assert!(b64 < b16, "steps of 4 blur into a ramp, steps of 16 stay contours: {b64} vs {b16}");
        assert!(psnr(&s, &p16) < psnr(&s, &p64));
        assert!(ssim(&s, &p16, W, H) < 1.0);
    }

    #[test]
    fn mild_noise_lowers_psnr_but_does_not_band() {
        let s = ramp();
        let mut seed = 7u32;
        let noisy: Vec<u8> = s
            .iter()
            .map(|&v| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                v.saturating_add(((seed >> 16) % 2) as u8)
            })
            .collect();
        assert!(psnr(&s, &noisy) > 50.0);
        assert!(banding_score(&s, &noisy, W, H) < 1.0, "one-code-value noise is not a contour");
    }
}
