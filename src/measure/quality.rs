//! `agentcast quality`: is it the encoder settings? Renders a scene (by default both `gradient` and
//! `demo`), encodes it with the real encoder pipeline and settings table, decodes it in-process
//! (avdec_h264, else openh264dec), matches every decoded picture with its source picture by frame
//! stamp, and reports PSNR, SSIM and the banding score (false contour steps where the source is
//! smooth; see [`crate::measure::metrics::banding_score`]). `--sweep` varies bitrate and `--qp-max`
//! per size and names the cheapest settings (by the bitrate actually produced) whose banding stays
//! under the threshold.

use log::info;

use crate::cli::QualityArgs;
use crate::config::{Config, SourceSpec};
use crate::encode::pipeline::{Encoder, Input, Push, Setup};
use crate::encode::settings::{Backend, EncoderSettings};
use crate::frame::{Frame, RawFormat};
use crate::plan::{Plan, gpu_packs};

use crate::exit::{Exit, fail};
use crate::measure::{decode, metrics};
use crate::render::{Gpu, Renderer};
use crate::settings::BuiltinScene;

/// PSNR of identical pictures is infinite; reports cap it here (JSON has no infinity).
pub const PSNR_CAP_DB: f64 = 100.0;

/// One encode, measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Run {
    pub scene: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub encoder: String,
    pub bitrate_kbps: u32,
    pub qp_max: u32,
    /// What the encoder really produced.
    pub actual_kbps: f64,
    pub frames: u64,
    /// Decoded pictures matched with their source by stamp.
    pub compared: u64,
    /// Decoded pictures whose stamp could not be read (not compared).
    pub misreads: u64,
    pub psnr_db: Option<f64>,
    pub ssim: Option<f64>,
    /// Mean banding score over the compared pictures, and the worst one.
    pub banding: Option<f64>,
    pub banding_max: Option<f64>,
}

/// Running sums of the metrics.
#[derive(Debug, Default, Clone)]
pub struct Scores {
    psnr: Vec<f64>,
    ssim: Vec<f64>,
    banding: Vec<f64>,
}

impl Scores {
    /// Compares one decoded luma plane (tightly packed) with its source.
    pub fn add(&mut self, source: &[u8], decoded: &[u8], width: usize, height: usize) {
        self.psnr.push(metrics::psnr(source, decoded).min(PSNR_CAP_DB));
        self.ssim.push(metrics::ssim(source, decoded, width, height));
        self.banding.push(metrics::banding_score(source, decoded, width, height));
    }

    pub fn compared(&self) -> u64 {
        self.psnr.len() as u64
    }

    fn mean(v: &[f64]) -> Option<f64> {
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    }

    pub fn psnr(&self) -> Option<f64> {
        Self::mean(&self.psnr)
    }
    pub fn ssim(&self) -> Option<f64> {
        Self::mean(&self.ssim)
    }
    pub fn banding(&self) -> Option<f64> {
        Self::mean(&self.banding)
    }
    pub fn banding_max(&self) -> Option<f64> {
        self.banding.iter().copied().reduce(f64::max)
    }
}

/// (scene, width, height) and its cheapest run under the threshold.
pub type Cheapest = Vec<((String, u32, u32), Option<Run>)>;

/// Per (scene, width, height): the run with the lowest actual bitrate whose mean banding is under
/// `threshold` (`None` when no run got there).
pub fn cheapest(runs: &[Run], threshold: f64) -> Cheapest {
    let mut keys: Vec<(String, u32, u32)> = Vec::new();
    for r in runs {
        let key = (r.scene.clone(), r.width, r.height);
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys.into_iter()
        .map(|key| {
            let best = runs
                .iter()
                .filter(|r| (r.scene.clone(), r.width, r.height) == key)
                .filter(|r| r.banding.is_some_and(|b| b < threshold))
                .min_by(|a, b| a.actual_kbps.total_cmp(&b.actual_kbps))
                .cloned();
            (key, best)
        })
        .collect()
}

/// Parses `1280x720,1920x1080`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or_else(|| format!("size {s:?} is not WIDTHxHEIGHT"))?;
    let num = |v: &str| v.trim().parse::<u32>().map_err(|_| format!("size {s:?} is not WIDTHxHEIGHT"));
    Ok((num(w)?, num(h)?))
}

/// The flags after `--` that `--sweep` sets itself.
const SWEPT: &[&str] = &["--bitrate", "--qp-max", "--width", "--height"];

pub fn run(a: &QualityArgs) -> anyhow::Result<Exit> {
    let given = |flag: &str| super::flag_given(&a.args, flag);
    if !a.sweep {
        for (flag, set) in [
            ("--bitrates", a.bitrates.is_some()),
            ("--qp-max-values", a.qp_max_values.is_some()),
            ("--sizes", a.sizes.is_some()),
        ] {
            if set {
                return Err(fail(Exit::Usage, format!("{flag} only applies with --sweep")));
            }
        }
    } else if let Some(flag) = SWEPT.iter().find(|f| given(f)) {
        return Err(fail(
            Exit::Usage,
            format!("{flag} after -- conflicts with --sweep, which sets it (use --bitrates, --qp-max-values, --sizes)"),
        ));
    }
    let (stream_args, base) = super::producer_config(&a.args)?;
    if !base.stamp {
        return Err(fail(Exit::Usage, "quality matches pictures by frame stamp; drop --no-stamp"));
    }
    let scenes: Vec<SourceSpec> = if given("--scene") || given("--shader") || given("--source") {
        vec![base.source.clone()]
    } else {
        vec![SourceSpec::Scene(BuiltinScene::Gradient), SourceSpec::Scene(BuiltinScene::Demo)]
    };
    let sizes = if a.sweep {
        match &a.sizes {
            Some(list) => list
                .iter()
                .map(|s| parse_size(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| fail(Exit::Usage, format!("--sizes: {e}")))?,
            None => vec![(1280, 720), (1920, 1080)],
        }
    } else {
        vec![(base.width, base.height)]
    };
    let bitrates = if a.sweep {
        a.bitrates.clone().unwrap_or_else(|| vec![500, 1000, 2000, 4000, 8000])
    } else {
        vec![base.encoder_settings.bitrate_kbps]
    };
    let qp_maxes = if a.sweep {
        a.qp_max_values.clone().unwrap_or_else(|| vec![34, 42, 51])
    } else {
        vec![base.encoder_settings.qp_max]
    };

    crate::gst_util::init()?;
    let chosen = crate::stream::choose_encoder(&base)?;
    let (backend, _lease) = (chosen.backend, chosen.lease);
    info!("quality: encoder {} ({} frames per run)", backend.element(), a.frames);
    let mut runs = Vec::new();
    for &(width, height) in &sizes {
        // Each size goes through the producer's own validation.
        let mut sized = stream_args.clone();
        sized.width = width;
        sized.height = height;
        let cfg = sized.config().map_err(|e| fail(Exit::Usage, format!("--sizes {width}x{height}: {e}")))?;
        for scene in &scenes {
            let mut cfg = cfg.clone();
            cfg.source = scene.clone();
            let (format, sources) = render_sources(&cfg, a.frames)?;
            for &bitrate in &bitrates {
                for &qp_max in &qp_maxes {
                    let settings = EncoderSettings { bitrate_kbps: bitrate, qp_max, ..cfg.encoder_settings };
                    let run = measure(&cfg, backend, settings, format, &sources)?;
                    if !a.json {
                        eprintln!(
                            "agentcast quality: {} {}x{} {} kbit/s qp-max {}: banding {}",
                            run.scene,
                            width,
                            height,
                            bitrate,
                            qp_max,
                            run.banding.map_or("-".into(), |b| format!("{b:.2}"))
                        );
                    }
                    runs.push(run);
                }
            }
        }
    }
    let best = cheapest(&runs, a.threshold);
    if a.json {
        let cheapest_json: Vec<_> = best
            .iter()
            .map(|((scene, w, h), run)| serde_json::json!({ "scene": scene, "width": w, "height": h, "run": run }))
            .collect();
        println!(
            "{}",
            serde_json::json!({ "threshold": a.threshold, "psnr_cap_db": PSNR_CAP_DB, "runs": runs, "cheapest": cheapest_json })
        );
    } else {
        print!("{}", table(&runs, a.sweep.then_some((a.threshold, &best))));
    }
    Ok(Exit::Ok)
}

/// The scene as the user names it: the `--scene` value, or the `--shader` path.
fn scene_name(s: &SourceSpec) -> String {
    match s {
        SourceSpec::Scene(scene) => scene.name().to_string(),
        SourceSpec::Shader(p) => p.display().to_string(),
        other => other.to_string(),
    }
}

/// Renders `frames` source pictures, packed to YUV by the GPU pass exactly as the producer's GPU
/// path does (so the source is what the encoder is given).
fn render_sources(cfg: &Config, frames: u64) -> anyhow::Result<(RawFormat, Vec<Vec<u8>>)> {
    let format = [RawFormat::I420, RawFormat::Nv12]
        .into_iter()
        .find(|&f| gpu_packs(f, cfg.width, cfg.height))
        .ok_or_else(|| fail(Exit::Usage, format!("quality needs --width a multiple of 4 (got {})", cfg.width)))?;
    let cuda = crate::cuda::select(cfg.gpu).map_err(|e| fail(Exit::Unavailable, e))?;
    let gpu = Gpu::open(cfg.egl_device, cuda)?;
    let mut renderer = Renderer::new(gpu, &cfg.render_settings()?, Plan::Gpu(format))?;
    let mut sources = Vec::with_capacity(frames as usize);
    let mut keep = |_, frame: Frame<'_>| {
        sources.push(frame.bytes().ok_or_else(|| anyhow::anyhow!("quality reads frames back"))?.to_vec());
        Ok(())
    };
    for i in 0..frames {
        renderer.render(i)?;
        renderer.collect_ready(&mut keep)?;
    }
    renderer.collect(0, &mut keep)?;
    Ok((format, sources))
}

/// Encodes the sources with these settings, decodes the result and scores it.
fn measure(
    cfg: &Config,
    backend: Backend,
    settings: EncoderSettings,
    format: RawFormat,
    sources: &[Vec<u8>],
) -> anyhow::Result<Run> {
    let units = encode(cfg, backend, settings, format, sources)?;
    let bytes: usize = units.iter().map(Vec::len).sum();
    let (w, h) = (cfg.width as usize, cfg.height as usize);
    let mut scores = Scores::default();
    let mut misreads = 0u64;
    let mut packed = vec![0u8; w * h];
    decode::decode(units.iter().map(Vec::as_slice), |p| {
        let source = crate::stamp::decode(p.luma, p.stride, p.width, p.height).and_then(|n| sources.get(n as usize));
        let Some(source) = source else {
            misreads += 1;
            return;
        };
        for (row, out) in packed.chunks_exact_mut(w).enumerate() {
            out.copy_from_slice(&p.luma[row * p.stride..row * p.stride + w]);
        }
        scores.add(&source[..w * h], &packed, w, h);
    })?;
    let seconds = sources.len() as f64 / f64::from(cfg.fps);
    Ok(Run {
        scene: scene_name(&cfg.source),
        width: cfg.width,
        height: cfg.height,
        fps: cfg.fps,
        encoder: backend.element().to_string(),
        bitrate_kbps: settings.bitrate_kbps,
        qp_max: settings.qp_max,
        actual_kbps: (bytes as f64 * 8.0 / 1000.0 / seconds).round(),
        frames: sources.len() as u64,
        compared: scores.compared(),
        misreads,
        psnr_db: scores.psnr().map(|v| (v * 100.0).round() / 100.0),
        ssim: scores.ssim().map(|v| (v * 10000.0).round() / 10000.0),
        banding: scores.banding().map(|v| (v * 100.0).round() / 100.0),
        banding_max: scores.banding_max().map(|v| (v * 100.0).round() / 100.0),
    })
}

/// Runs the producer's encoder pipeline (settings table and `--encoder-opt` included) over the
/// sources, unpaced, and returns its access units.
fn encode(
    cfg: &Config,
    backend: Backend,
    settings: EncoderSettings,
    format: RawFormat,
    sources: &[Vec<u8>],
) -> anyhow::Result<Vec<Vec<u8>>> {
    let setup = Setup {
        width: cfg.width,
        height: cfg.height,
        fps: cfg.fps,
        input: Input::Yuv(format),
        backend,
        settings,
        options: &cfg.encoder_opts,
        stall_after: None,
        fail_after: None,
        mpegts: false,
        gpu: cfg.gpu,
        cuda_context: None,
    };
    let encoder = Encoder::new(&setup)?;
    encoder.start()?;
    let appsink = encoder.appsink();
    let units = std::thread::scope(|scope| -> anyhow::Result<Vec<Vec<u8>>> {
        let puller = scope.spawn(move || {
            let mut units = Vec::new();
            while let Ok(sample) = appsink.pull_sample() {
                if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
                    units.push(map.as_slice().to_vec());
                }
            }
            units
        });
        let pushed = (|| -> anyhow::Result<()> {
            for (i, frame) in sources.iter().enumerate() {
                while encoder.push(i as u64, Frame::Bytes(frame))? == Push::Full {
                    if let Some(e) = encoder.pending_error() {
                        return Err(fail(Exit::Software, e));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
            encoder.end_of_stream();
            Ok(())
        })();
        if pushed.is_err() {
            encoder.stop(); // ends the puller
        }
        let units = puller.join().map_err(|_| anyhow::anyhow!("the encoder output thread panicked"))?;
        pushed.map(|_| units)
    })?;
    let error = encoder.pending_error();
    encoder.stop();
    if let Some(e) = error {
        return Err(fail(Exit::Software, format!("encoder {}: {e}", backend.element())));
    }
    if units.is_empty() {
        return Err(fail(Exit::Software, format!("encoder {} produced nothing", backend.element())));
    }
    Ok(units)
}

/// The human table; with a sweep, the cheapest settings under the threshold follow.
pub fn table(runs: &[Run], sweep: Option<(f64, &Cheapest)>) -> String {
    let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |x| format!("{x:.digits$}"));
    let mut t = String::from(
        "| scene | size | encoder | bitrate kbit/s | qp-max | actual kbit/s | PSNR dB | SSIM | banding | banding max | compared | misreads |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        t += &format!(
            "| {} | {}x{} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |\n",
            r.scene,
            r.width,
            r.height,
            r.encoder,
            r.bitrate_kbps,
            r.qp_max,
            r.actual_kbps,
            opt(r.psnr_db, 2),
            opt(r.ssim, 4),
            opt(r.banding, 2),
            opt(r.banding_max, 2),
            r.compared,
            r.misreads
        );
    }
    if let Some((threshold, best)) = sweep {
        t +=
            &format!("\nCheapest settings with banding under {threshold} (false steps per 10,000 smooth positions):\n");
        for ((scene, w, h), run) in best {
            t += &match run {
                Some(r) => format!(
                    "  {scene} {w}x{h}: --bitrate {} --qp-max {} ({:.0} kbit/s actual, banding {})\n",
                    r.bitrate_kbps,
                    r.qp_max,
                    r.actual_kbps,
                    opt(r.banding, 2)
                ),
                None => format!("  {scene} {w}x{h}: none of the swept settings\n"),
            };
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scores crafted (source, decoded) pairs, exactly as a run scores decoded pictures.
    fn score_pairs(pairs: &[(&[u8], &[u8])], width: usize, height: usize) -> Scores {
        let mut s = Scores::default();
        for (a, b) in pairs {
            s.add(a, b, width, height);
        }
        s
    }

    fn gradient(w: usize, h: usize) -> Vec<u8> {
        (0..h).flat_map(|_| (0..w).map(move |x| (16 + x * 200 / w) as u8)).collect()
    }

    #[test]
    fn identical_pictures_score_capped_psnr_and_no_banding() {
        let g = gradient(320, 64);
        let s = score_pairs(&[(&g, &g), (&g, &g)], 320, 64);
        assert_eq!(s.psnr(), Some(PSNR_CAP_DB));
        assert_eq!(s.ssim(), Some(1.0));
        assert_eq!(s.banding(), Some(0.0));
        assert_eq!(s.compared(), 2);
    }

    #[test]
    fn a_posterised_gradient_bands_clearly_more_than_the_smooth_one() {
        let (w, h) = (640, 64);
        let g = gradient(w, h);
        let posterised: Vec<u8> = g.iter().map(|&v| v / 16 * 16 + 8).collect();
        let smooth = score_pairs(&[(&g, &g)], w, h).banding().unwrap();
        let banded = score_pairs(&[(&g, &posterised)], w, h).banding().unwrap();
        assert_eq!(smooth, 0.0);
        assert!(banded > 10.0, "posterised to 16 levels scored only {banded}");
    }

    fn run(scene: &str, kbps: f64, banding: Option<f64>) -> Run {
        Run {
            scene: scene.into(),
            width: 1280,
            height: 720,
            fps: 30,
            encoder: "x264enc".into(),
            bitrate_kbps: kbps as u32,
            qp_max: 34,
            actual_kbps: kbps,
            frames: 60,
            compared: 60,
            misreads: 0,
            psnr_db: Some(40.0),
            ssim: Some(0.99),
            banding,
            banding_max: banding,
        }
    }

    #[test]
    fn cheapest_picks_the_lowest_actual_bitrate_under_the_threshold_per_scene() {
        let runs = [
            run("gradient", 500.0, Some(9.0)),
            run("gradient", 2000.0, Some(0.5)),
            run("gradient", 1000.0, Some(0.9)),
            run("demo", 500.0, Some(3.0)),
            run("demo", 800.0, None),
        ];
        let best = cheapest(&runs, 1.0);
        assert_eq!(best.len(), 2);
        assert_eq!(best[0].1.as_ref().unwrap().actual_kbps, 1000.0);
        assert_eq!(best[1].0.0, "demo");
        assert!(best[1].1.is_none());
    }

    #[test]
    fn sizes_parse_or_say_why() {
        assert_eq!(parse_size("1280x720"), Ok((1280, 720)));
        assert!(parse_size("1280").unwrap_err().contains("WIDTHxHEIGHT"));
        assert!(parse_size("axb").is_err());
    }
}
