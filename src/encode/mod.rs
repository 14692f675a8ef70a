//! The encode stage: choosing a backend (`select`, by opening it: `probe`), the one settings table
//! (`settings`), the encoder element (`factory`), and the GStreamer pipeline appsrc ->
//! [videoconvert] -> queue -> encoder -> h264parse -> appsink (`pipeline`).

pub mod cache;
pub mod factory;
pub mod host;
pub mod pipeline;
pub mod probe;
pub mod select;
pub mod settings;

use std::time::Duration;

use crate::exit::Exit;
use crate::settings::{DEFAULT_BITRATE, DEFAULT_FPS, DEFAULT_QP_MAX, EncoderChoice};
use select::Outcome;
use settings::{Backend, EncoderSettings};

/// Opens every backend for real with the default settings at `width` x `height`: what happened to
/// each, and the one `--encoder auto` would choose. (`agentcast encoders` and `doctor`.)
pub fn probe_every_backend(width: u32, height: u32) -> (Vec<(Backend, Outcome)>, Option<Backend>) {
    let settings =
        EncoderSettings::new(DEFAULT_BITRATE, DEFAULT_FPS, DEFAULT_FPS, DEFAULT_QP_MAX, settings::Profile::High);
    let probe = |b| probe::probe(b, None, &settings, width, height, Duration::from_secs(5));
    select::probe_all(&select::candidates(EncoderChoice::Auto), crate::gst_util::element_installed, probe, true)
}

/// `agentcast encoders`: every backend, whether it is installed and really opens here, and which one
/// `--encoder auto` would choose, probed at `width` x `height` (`--json`: one JSON document). Exits 69
/// when none opens.
pub fn list(json: bool, width: u32, height: u32) -> anyhow::Result<Exit> {
    crate::gst_util::init()?;
    let (report, chosen) = probe_every_backend(width, height);
    if json {
        let rows: Vec<serde_json::Value> = report
            .iter()
            .map(|(b, o)| {
                serde_json::json!({
                    "backend": b.name(),
                    "element": b.element(),
                    "hardware": b.hardware(),
                    "installed": *o != Outcome::NotInstalled,
                    "opens": *o == Outcome::Opened,
                    "error": match o { Outcome::Failed(e) => Some(e.as_str()), _ => None },
                    "auto": Some(*b) == chosen,
                    "install": b.package(),
                })
            })
            .collect();
        let doc = serde_json::json!({
            "size": [width, height],
            "auto": chosen.map(Backend::element),
            "encoders": rows,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!("BACKEND   ELEMENT        INSTALLED  AUTO   OPENS");
        for (b, o) in &report {
            let installed = if *o == Outcome::NotInstalled { "no" } else { "yes" };
            let opens = match o {
                Outcome::Opened => "yes".to_string(),
                Outcome::NotInstalled => format!("no (install {})", b.package()),
                other => format!("no: {other}"),
            };
            let auto = if Some(*b) == chosen { "<-" } else { "" };
            println!("{:<9} {:<14} {:<10} {:<6} {}", b.name(), b.element(), installed, auto, opens);
        }
        match chosen {
            Some(b) => {
                println!("--encoder auto chooses {} ({}) at {}x{}", b.name(), b.element(), width, height)
            }
            None => println!("--encoder auto finds no H.264 encoder that opens"),
        }
    }
    Ok(if chosen.is_some() { Exit::Ok } else { Exit::Unavailable })
}
