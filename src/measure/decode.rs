//! Decodes Annex-B access units in-process with GStreamer's `avdec_h264` (gstreamer1.0-libav), or
//! `openh264dec` where libav is not installed (see [`h264_decoder`]), and hands each picture's luma
//! plane to a callback, tagged with the index of the access unit it came from. Decoding is a
//! separate step after capture, so its cost never delays the reading it measures.

use anyhow::{Context, anyhow};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use crate::exit::{Exit, ExitExt, fail};
use crate::gst_util::make;

/// A nominal frame duration for the PTS that carries each access unit's index through the decoder.
const TICK_NS: u64 = 1_000_000;

/// One decoded picture.
pub struct Picture<'a> {
    /// Index of the access unit (in the order given) that produced it.
    pub index: u64,
    /// The luma plane, `stride` bytes per row.
    pub luma: &'a [u8],
    pub stride: usize,
    pub width: u32,
    pub height: u32,
}

/// Decodes `units` (whole access units, in stream order) and calls `on_picture` for every picture,
/// in output order. Returns the number of pictures. A stream the decoder rejects is an error (exit
/// 70); a missing decoder is exit 69 naming the package.
pub fn decode<'a>(
    units: impl Iterator<Item = &'a [u8]> + Send,
    mut on_picture: impl FnMut(Picture<'_>),
) -> anyhow::Result<u64> {
    crate::gst_util::init()?;
    let appsrc = gst_app::AppSrc::builder()
        .caps(
            &gst::Caps::builder("video/x-h264").field("stream-format", "byte-stream").field("alignment", "au").build(),
        )
        .format(gst::Format::Time)
        .block(true)
        .max_bytes(4 << 20)
        .build();
    let parse = make("h264parse", "gstreamer1.0-plugins-bad")?;
    let dec = h264_decoder()?;
    let appsink = gst_app::AppSink::builder().sync(false).max_buffers(4).enable_last_sample(false).build();
    let pipe = gst::Pipeline::with_name("agentcast-decode");
    let chain: [gst::Element; 4] = [appsrc.clone().upcast(), parse, dec, appsink.clone().upcast()];
    pipe.add_many(&chain).context("building the decoder")?;
    gst::Element::link_many(&chain).context("linking the decoder").exit(Exit::Software)?;
    pipe.set_state(gst::State::Playing).map_err(|_| fail(Exit::Software, "the H.264 decoder did not start"))?;
    let bus = pipe.bus().context("decoder bus")?;
    std::thread::scope(|scope| {
        let feeder = appsrc.clone();
        scope.spawn(move || {
            for (i, unit) in units.enumerate() {
                let mut buffer = gst::Buffer::from_slice(unit.to_vec());
                buffer.get_mut().expect("new buffer").set_pts(gst::ClockTime::from_nseconds(i as u64 * TICK_NS));
                if feeder.push_buffer(buffer).is_err() {
                    return; // the pipeline stopped; the reader reports why
                }
            }
            let _ = feeder.end_of_stream();
        });
        let mut pictures = 0u64;
        let mut read = || loop {
            if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error])
                && let gst::MessageView::Error(e) = msg.view()
            {
                return Err(fail(
                    Exit::Software,
                    format!("decoding the stream: {}", crate::gst_util::bus_error_line(&msg, e)),
                ));
            }
            let Some(sample) = appsink.try_pull_sample(gst::ClockTime::from_mseconds(100)) else {
                if appsink.is_eos() {
                    return Ok(pictures);
                }
                continue;
            };
            let caps = sample.caps().ok_or_else(|| anyhow!("decoded picture without caps"))?;
            let info = gst_video::VideoInfo::from_caps(caps).context("decoded caps")?;
            let buffer = sample.buffer().ok_or_else(|| anyhow!("decoded sample without a buffer"))?;
            let index = buffer.pts().map_or(pictures, |t| (t.nseconds() + TICK_NS / 2) / TICK_NS);
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
                .map_err(|_| anyhow!("mapping a decoded picture"))?;
            let luma = frame.plane_data(0).context("decoded luma plane")?;
            on_picture(Picture {
                index,
                luma,
                stride: info.stride()[0] as usize,
                width: info.width(),
                height: info.height(),
            });
            pictures += 1;
        };
        let result = read();
        // Unblocks the feeder (a push into a stopped pipeline fails) before the scope joins it.
        let _ = pipe.set_state(gst::State::Null);
        result
    })
}

/// The H.264 decoders a measurement may use, in order of preference, with the Debian package of each.
/// H.264 decoding is bit-exact, so both give the same pictures; OpenH264's decodes the High profile
/// (CABAC, 8x8 transforms) that x264 sends as well (its plugin is much lighter than libav's).
pub const H264_DECODERS: [(&str, &str); 2] =
    [("avdec_h264", "gstreamer1.0-libav"), ("openh264dec", "gstreamer1.0-plugins-bad")];

/// The first of [`H264_DECODERS`] installed here; exit 69 naming both packages where neither is.
pub fn h264_decoder() -> anyhow::Result<gst::Element> {
    crate::gst_util::init()?;
    match H264_DECODERS.iter().find(|(name, _)| crate::gst_util::element_installed(name)) {
        Some((name, package)) => {
            log::debug!("decoding with {name}");
            make(name, package)
        }
        None => Err(fail(
            Exit::Unavailable,
            "no H.264 decoder in GStreamer: install gstreamer1.0-libav (avdec_h264) or gstreamer1.0-plugins-bad \
             (openh264dec)",
        )),
    }
}

/// Splits an Annex-B byte stream into access units (byte ranges).
pub fn split_units(stream: &[u8]) -> Vec<std::ops::Range<usize>> {
    let nals: Vec<_> = crate::annexb::nals(stream).collect();
    crate::annexb::access_units(&nals)
        .into_iter()
        .filter(|r| !r.is_empty())
        .map(|r| nals[r.start].offset..nals[r.end - 1].end())
        .collect()
}
