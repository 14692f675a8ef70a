//! Every testing aid in one place: faults the tests inject to check the failure paths (an encoder
//! that stalls or fails after N access units, a software encoder that takes NVENC slot leases,
//! zero-copy frames into a CPU encoder). They come from hidden `--debug-*` flags and are logged as
//! warnings whenever they are active; nothing else in the crate knows how they work.

use gstreamer as gst;
use gstreamer::prelude::*;
use log::warn;
use std::sync::atomic::{AtomicU64, Ordering};

/// The testing aids asked for (all off by default).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Drop the encoder's output after this many access units, as if it had hung.
    pub stall_after: Option<u64>,
    /// The first `fail_times` pipelines post an encoder error after this many access units.
    pub fail_after: Option<u64>,
    pub fail_times: u32,
    /// This (software) encoder element takes NVENC slot leases as if it were NVENC.
    pub lease_element: Option<String>,
    /// Zero-copy frames may reach a CPU encoder through cudadownload (checks the GL -> CUDA ->
    /// GStreamer handoff on GPUs without NVENC).
    pub cuda_download: bool,
}

impl Faults {
    /// The injected failure for the pipeline built `built`-th (0 = the first).
    pub fn fail_after_for(&self, built: u32) -> Option<u64> {
        self.fail_after.filter(|_| built < self.fail_times)
    }

    /// Whether `element` takes slot leases although it is not NVENC.
    pub fn leases(&self, element: &str) -> bool {
        self.lease_element.as_deref() == Some(element)
    }
}

/// Injects the encoder faults on `encoder`'s output pad: an error after `fail_after` access units,
/// or silence after `stall_after`.
pub fn install(encoder: &gst::Element, name: &str, fail_after: Option<u64>, stall_after: Option<u64>) {
    let Some(pad) = encoder.static_pad("src") else { return };
    if let Some(n) = fail_after {
        warn!("testing aid: {name} will fail after {n} access units");
        let seen = AtomicU64::new(0);
        let element = encoder.downgrade();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if seen.fetch_add(1, Ordering::Relaxed) == n {
                if let Some(e) = element.upgrade() {
                    e.post_error_message(gst::error_msg!(gst::StreamError::Failed, ["injected encoder failure"]));
                }
                return gst::PadProbeReturn::Drop;
            }
            gst::PadProbeReturn::Ok
        });
    }
    if let Some(n) = stall_after {
        warn!("testing aid: dropping the encoder's output after {n} access units");
        let seen = AtomicU64::new(0);
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            if seen.fetch_add(1, Ordering::Relaxed) >= n { gst::PadProbeReturn::Drop } else { gst::PadProbeReturn::Ok }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_first_pipelines_fail() {
        let f = Faults { fail_after: Some(30), fail_times: 2, ..Faults::default() };
        assert_eq!((f.fail_after_for(0), f.fail_after_for(1), f.fail_after_for(2)), (Some(30), Some(30), None));
        assert_eq!(Faults::default().fail_after_for(0), None);
        let f = Faults { lease_element: Some("x264enc".into()), ..Faults::default() };
        assert!(f.leases("x264enc") && !f.leases("openh264enc"));
    }
}
