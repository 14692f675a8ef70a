//! Which element encodes for a backend, and setting it up: the factory lookup (NVENC registers one
//! element per GPU), loading the plugins ahead of time, and the properties from the settings table
//! and `--encoder-opt`. The pipeline ([`super::pipeline`]) and the probe ([`super::probe`]) share it.

use anyhow::anyhow;
use gstreamer as gst;
use gstreamer::prelude::*;
use log::{debug, info, warn};

use crate::encode::settings::{self, Backend};
use crate::exit::{Exit, fail};

/// Loads the plugins of the elements a pipeline for `backend` is built from (their libraries, the
/// encoder's own included), so that building it later loads nothing: start-up does this on the
/// encoder's thread while EGL comes up. Best effort: what does not load fails later, when built.
pub fn preload(backend: Backend, gpu: Option<u32>) {
    let encoder = factory_for(backend, gpu).ok();
    let common = ["appsrc", "appsink", "videoconvert", "queue", "capsfilter", "h264parse"].map(String::from);
    for name in common.into_iter().chain(encoder) {
        if let Some(factory) = gst::ElementFactory::find(&name) {
            let _ = factory.load();
        }
    }
}

/// NVENC registers one element per GPU, in registration order (`nvcudah264enc` for the first with
/// NVENC, then `nvcudah264device1enc`, ...), so the suffix is not the CUDA ordinal: the one whose
/// read-only `cuda-device-id` is `gpu` is picked from `(factory, cuda-device-id)` pairs.
pub fn pick_nvenc_factory(base: &str, gpu: u32, found: &[(String, Option<i64>)]) -> Result<String, String> {
    let stem = base.strip_suffix("enc").unwrap_or(base);
    let ours = |name: &str| {
        name == base
            || name
                .strip_prefix(stem)
                .and_then(|r| r.strip_prefix("device"))
                .and_then(|r| r.strip_suffix("enc"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut seen = Vec::new();
    for (name, id) in found.iter().filter(|(n, _)| ours(n)) {
        if *id == Some(i64::from(gpu)) {
            return Ok(name.clone());
        }
        seen.push(format!("{name} on {}", id.map_or("an unknown device".into(), |i| format!("CUDA device {i}"))));
    }
    Err(format!(
        "no {base} element for CUDA device {gpu} (--gpu){}",
        if seen.is_empty() { String::new() } else { format!("; there is {}", seen.join(", ")) }
    ))
}

/// The element factory for `backend` on `gpu`: the table's name, except NVENC on a chosen GPU.
pub fn factory_for(backend: Backend, gpu: Option<u32>) -> Result<String, String> {
    let (true, Some(gpu)) = (backend.is_nvenc(), gpu) else {
        return Ok(backend.element().to_string());
    };
    let base = backend.element();
    let found: Vec<(String, Option<i64>)> = gst::Registry::get()
        .features(gst::ElementFactory::static_type())
        .into_iter()
        .filter(|f| f.name().starts_with(base.strip_suffix("enc").unwrap_or(base)))
        .filter_map(|f| f.downcast::<gst::ElementFactory>().ok())
        .map(|f| {
            let id = f.load().ok().and_then(|f| {
                let class = gst::glib::object::ObjectClass::from_type(f.element_type())?;
                let value = class.find_property("cuda-device-id")?.default_value().clone();
                value.get::<i32>().map(i64::from).or_else(|_| value.get::<u32>().map(i64::from)).ok()
            });
            (f.name().to_string(), id)
        })
        .collect();
    pick_nvenc_factory(base, gpu, &found)
}

/// How loudly [`apply_properties`] says that the installed element lacks a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// A warning: the stream runs without that setting.
    Warn,
    /// A debug line: a probe opens the element only to see that it works.
    Debug,
}

/// Applies the settings table to an encoder element. Properties the installed element lacks are
/// logged (as `missing` says), never silently skipped; a value the element rejects is an error.
pub fn apply_properties(element: &gst::Element, props: &[settings::Prop], missing: Missing) -> anyhow::Result<()> {
    let factory = element.factory().map(|f| f.name().to_string()).unwrap_or_default();
    for (name, value) in props {
        let Some(pspec) = element.find_property(name) else {
            let msg = format!(
                "{factory} has no property '{name}' (wanted {value}); this GStreamer version ignores that setting"
            );
            match missing {
                Missing::Debug => debug!("{msg}"),
                Missing::Warn => warn!("{msg}"),
            }
            continue;
        };
        let v = gst::glib::Value::deserialize_with_pspec(value, &pspec)
            .map_err(|e| anyhow!("{factory}: property {name}={value}: {e}"))?;
        element.set_property_from_value(name, &v);
        debug!("{factory}: {name}={value}");
    }
    Ok(())
}

/// Applies `--encoder-opt` overrides: each must name a real property of the element, parse as its
/// type, and keep go2rtc's rules (see [`settings::refuse_option`]). Errors are usage errors.
pub fn apply_user_options(
    element: &gst::Element,
    backend: Backend,
    options: &[(String, String)],
) -> anyhow::Result<()> {
    let factory = backend.element();
    for (name, value) in options {
        let Some(pspec) = element.find_property(name) else {
            return Err(fail(
                Exit::Usage,
                format!(
                    "--encoder-opt {name}={value}: {factory} has no property '{name}' (see gst-inspect-1.0 {factory})"
                ),
            ));
        };
        if let Some(why) = settings::refuse_option(name, value) {
            return Err(fail(Exit::Usage, format!("--encoder-opt {name}={value}: refused, {why}")));
        }
        let v = gst::glib::Value::deserialize_with_pspec(value, &pspec).map_err(|_| {
            fail(
                Exit::Usage,
                format!(
                    "--encoder-opt {name}={value}: not a valid value for {factory}'s {name} ({})",
                    pspec.value_type()
                ),
            )
        })?;
        element.set_property_from_value(name, &v);
        info!("{factory}: {name}={value} (from --encoder-opt)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(list: &[(&str, Option<i64>)]) -> Vec<(String, Option<i64>)> {
        list.iter().map(|(n, i)| (n.to_string(), *i)).collect()
    }

    #[test]
    fn nvenc_factory_is_picked_by_cuda_device_id_not_by_its_suffix() {
        // GPU 0 has no NVENC (an H100 beside an L4): the L4 is CUDA device 1 but registers first.
        let f = found(&[("nvcudah264enc", Some(1)), ("nvcudah264device1enc", Some(2)), ("nvcudah265enc", Some(0))]);
        assert_eq!(pick_nvenc_factory("nvcudah264enc", 1, &f).unwrap(), "nvcudah264enc");
        assert_eq!(pick_nvenc_factory("nvcudah264enc", 2, &f).unwrap(), "nvcudah264device1enc");
        let e = pick_nvenc_factory("nvcudah264enc", 0, &f).unwrap_err();
        assert_eq!(
            e,
            "no nvcudah264enc element for CUDA device 0 (--gpu); there is nvcudah264enc on CUDA device 1, \
             nvcudah264device1enc on CUDA device 2"
        );
        let old = found(&[("nvh264enc", Some(0)), ("nvh264device1enc", Some(1)), ("nvh264devicexenc", Some(3))]);
        assert_eq!(pick_nvenc_factory("nvh264enc", 1, &old).unwrap(), "nvh264device1enc");
        assert!(pick_nvenc_factory("nvh264enc", 3, &old).is_err(), "not an NVENC device element name");
        assert!(pick_nvenc_factory("nvh264enc", 0, &[]).unwrap_err().ends_with("(--gpu)"));
    }

    #[test]
    fn other_backends_keep_their_element_whatever_the_gpu() {
        assert_eq!(factory_for(Backend::X264, Some(3)).unwrap(), "x264enc");
        assert_eq!(factory_for(Backend::NvencCuda, None).unwrap(), "nvcudah264enc");
    }
}
