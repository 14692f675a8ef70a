//! Probing by opening: a backend counts as usable only once it has encoded a frame here, since an
//! element that is installed may still fail to open (NVENC on a GPU without it, a VA driver
//! without H.264 encode).

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use super::factory::{Missing, apply_properties, factory_for};
use super::pipeline::first_bus_error;
use crate::encode::settings::{self, Backend, EncoderSettings};
use crate::gst_util::caps_for;

/// Opens `backend` for real: builds it with our settings and encodes one grey frame at the stream's
/// size, within `timeout`. An element that exists but cannot open (NVENC on an H100, a VA driver
/// without H.264 encode) fails here with the reason.
pub fn probe(
    backend: Backend,
    gpu: Option<u32>,
    settings: &EncoderSettings,
    width: u32,
    height: u32,
    timeout: std::time::Duration,
) -> Result<(), String> {
    let format = backend.raw_formats()[0];
    let caps = caps_for(format.caps_name(), width, height, settings.fps, "bt709");
    let info = gst_video::VideoInfo::from_caps(&caps).map_err(|e| format!("caps: {e}"))?;
    let appsrc = gst_app::AppSrc::builder().caps(&caps).format(gst::Format::Time).build();
    let factory = factory_for(backend, gpu)?;
    let encoder = gst::ElementFactory::make(&factory).build().map_err(|e| e.to_string())?;
    apply_properties(&encoder, &settings::properties(backend, settings), Missing::Debug)
        .map_err(|e| format!("{e:#}"))?;
    let appsink = gst_app::AppSink::builder().sync(false).build();
    let pipeline = gst::Pipeline::with_name("probe");
    let chain: [&gst::Element; 3] = [appsrc.upcast_ref(), &encoder, appsink.upcast_ref()];
    pipeline.add_many(chain).map_err(|e| e.to_string())?;
    gst::Element::link_many(chain).map_err(|_| format!("{format:?} input does not negotiate"))?;
    let result = (|| {
        let bus = pipeline.bus().ok_or("no bus")?;
        if pipeline.set_state(gst::State::Playing).is_err() {
            return Err(first_bus_error(&bus).unwrap_or_else(|| "the element failed to start".into()));
        }
        let mut frame = gst::Buffer::with_size(info.size()).map_err(|e| e.to_string())?;
        {
            let b = frame.get_mut().ok_or("buffer not writable")?;
            b.set_pts(gst::ClockTime::ZERO);
            b.map_writable().map_err(|e| e.to_string())?.fill(128);
        }
        let _ = appsrc.push_buffer(frame);
        let _ = appsrc.end_of_stream();
        // appsink holds EOS back until its samples are pulled, so pull, and watch the bus meanwhile.
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Some(e) = first_bus_error(&bus) {
                return Err(e);
            }
            if appsink.try_pull_sample(gst::ClockTime::from_mseconds(20)).is_some() {
                return Ok(());
            }
            if appsink.is_eos() {
                return Err("it produced no output for a frame".into());
            }
        }
        Err(format!("no output within {timeout:?} (hung?)"))
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}
