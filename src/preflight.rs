//! Errors first: everything the user gave is checked before any encoder is probed or EGL is set up,
//! so a mistake fails in milliseconds and its `agentcast:` line is the first thing on stderr. go2rtc
//! keeps only the first 512 bytes of a failed producer's stderr, so a cause printed after a dozen
//! start-up lines never reaches the viewer. Nothing here logs, opens an encoder or sets EGL up. What
//! can only be known by starting (a `--shader` that does not compile, an encoder that does not open,
//! the frame path) is left to start-up, whose lines are held back until it has succeeded (see
//! `stderr`), so its `agentcast:` line comes first too.

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::config::{Config, SourceSpec};
use crate::encode::{select, settings};
use crate::exit::{Exit, fail};
use crate::sink::output::Output;

/// Checks what the user gave, in the order a reader of `--help` meets it. The error carries its
/// exit code and names the flag or file.
pub fn preflight(cfg: &Config) -> anyhow::Result<()> {
    match &cfg.source {
        SourceSpec::Shader(path) => {
            // Read now; compiled at start-up on the stream's own GL context (EGL comes up once), where
            // a syntax error (exit 65) still comes first: the start-up lines are held back.
            std::fs::read_to_string(path)
                .map_err(|e| fail(Exit::NoInput, format!("--shader {}: {}", path.display(), e)))?;
        }
        SourceSpec::Raw(path) => {
            crate::source::raw::check(path, cfg.pix_fmt, (cfg.width, cfg.height))?;
        }
        SourceSpec::Unix(path) => crate::source::unix::check(path).map(drop)?,
        _ => {}
    }
    if !cfg.encoder_opts.is_empty() {
        crate::gst_util::init()?;
        let installed: Vec<(&'static str, Option<gst::glib::Type>)> = select::candidates(cfg.encoder)
            .into_iter()
            .map(|b| b.element())
            .map(|e| (e, element_type(e)))
            .filter(|(_, t)| t.is_some())
            .collect();
        let found = |element: &str, name: &str| {
            installed
                .iter()
                .find(|(e, _)| *e == element)
                .and_then(|(_, t)| gst::glib::object::ObjectClass::from_type((*t)?)?.find_property(name))
        };
        let elements: Vec<&str> = installed.iter().map(|(e, _)| *e).collect();
        check_encoder_opts(&cfg.encoder_opts, &elements, found).map_err(|e| fail(Exit::Usage, e))?;
    }
    check_output(&cfg.output)?;
    if let Some(path) = &cfg.frame_log {
        check_writable_file(path)
            .map_err(|e| fail(Exit::CantCreate, format!("--frame-log {}: {e}", path.display())))?;
    }
    if let Some(path) = &cfg.stats_file {
        check_replaceable_file(path)
            .map_err(|e| fail(Exit::CantCreate, format!("--stats-file {}: {e}", path.display())))?;
    }
    if cfg.leases.sessions > 0 {
        crate::slots::LockDir::open(&cfg.leases.dir, cfg.leases.sessions).map_err(|e| fail(Exit::CantCreate, e))?;
    }
    Ok(())
}

/// The element's GObject type, loading its plugin but creating no instance.
fn element_type(element: &str) -> Option<gst::glib::Type> {
    Some(gst::ElementFactory::find(element)?.load().ok()?.element_type())
}

/// `--encoder-opt NAME=VALUE`, checked against the properties of the elements the encoder choice may
/// end up with (`elements`, those installed; `find` gives an element's property). An option must keep
/// go2rtc's rules, and at least one of those elements must have the property and accept the value;
/// when none is installed the choice itself fails later (exit 69), so nothing is said here.
pub fn check_encoder_opts(
    options: &[(String, String)],
    elements: &[&str],
    find: impl Fn(&str, &str) -> Option<gst::glib::ParamSpec>,
) -> Result<(), String> {
    for (name, value) in options {
        if let Some(why) = settings::refuse_option(name, value) {
            return Err(format!("--encoder-opt {name}={value}: refused, {why}"));
        }
        if elements.is_empty() {
            continue;
        }
        let specs: Vec<(&str, gst::glib::ParamSpec)> =
            elements.iter().filter_map(|e| find(e, name).map(|p| (*e, p))).collect();
        let names = elements.join(", ");
        let Some((first, pspec)) = specs.first() else {
            return Err(if let [only] = elements {
                format!("--encoder-opt {name}={value}: {only} has no property '{name}' (see gst-inspect-1.0 {only})")
            } else {
                format!("--encoder-opt {name}={value}: none of {names} has a property '{name}' (see gst-inspect-1.0)")
            });
        };
        if !specs.iter().any(|(_, p)| gst::glib::Value::deserialize_with_pspec(value, p).is_ok()) {
            return Err(format!(
                "--encoder-opt {name}={value}: not a valid value for {first}'s {name} ({})",
                pspec.value_type()
            ));
        }
    }
    Ok(())
}

/// `--output`: a FIFO path must be a FIFO or not exist yet in a directory that does; a TCP address
/// must be free to listen on (tried and released at once).
fn check_output(output: &Output) -> anyhow::Result<()> {
    match output {
        Output::Stdout | Output::Rtsp(_) => Ok(()),
        Output::RtspListen(l) => crate::sink::rtsp_server::listen_on(l).map(drop),
        Output::Fifo(path) => crate::sink::fifo::check(path).map(drop),
        Output::Tcp(addr) => std::net::TcpListener::bind(addr)
            .map(drop)
            .map_err(|e| fail(Exit::CantCreate, format!("--output tcp:{addr}: cannot listen: {}", e))),
    }
}

/// A file we will create or append to: not a directory, in a directory that exists, and writable.
/// Opening it for append creates it empty where it was missing, which start-up does anyway.
fn check_writable_file(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a directory".into());
    }
    if let Some(dir) = parent(path)
        && !dir.is_dir()
    {
        return Err(format!("the directory {} does not exist", dir.display()));
    }
    std::fs::OpenOptions::new().append(true).create(true).open(path).map(drop).map_err(|e| e.to_string())
}

/// A file we replace whole (write a temporary file beside it, then rename: `stats::write_atomic`):
/// not a directory, in a directory that exists and where we may create files. Tried with the same
/// temporary name, removed at once; the file itself is not touched.
fn check_replaceable_file(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Err("is a directory".into());
    }
    let dir = parent(path).unwrap_or(Path::new("."));
    if !dir.is_dir() {
        return Err(format!("the directory {} does not exist", dir.display()));
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, b"").map_err(|e| format!("cannot create files in {}: {e}", dir.display()))?;
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

fn parent(path: &Path) -> Option<&Path> {
    path.parent().filter(|d| !d.as_os_str().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x264_spec(name: &str) -> Option<gst::glib::ParamSpec> {
        crate::gst_util::init().unwrap();
        let t = element_type("x264enc")?;
        gst::glib::object::ObjectClass::from_type(t)?.find_property(name)
    }

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn encoder_options_are_checked_against_real_properties() {
        let find = |_: &str, name: &str| x264_spec(name);
        assert_eq!(check_encoder_opts(&opts(&[("key-int-max", "10")]), &["x264enc"], find), Ok(()));
        let e = check_encoder_opts(&opts(&[("foo", "1")]), &["x264enc"], find).unwrap_err();
        assert_eq!(e, "--encoder-opt foo=1: x264enc has no property 'foo' (see gst-inspect-1.0 x264enc)");
        let e = check_encoder_opts(&opts(&[("foo", "1")]), &["x264enc", "openh264enc"], |_, _| None).unwrap_err();
        assert!(e.contains("none of x264enc, openh264enc has a property 'foo'"), "{e}");
        let e = check_encoder_opts(&opts(&[("bitrate", "abc")]), &["x264enc"], find).unwrap_err();
        assert!(e.contains("not a valid value for x264enc's bitrate"), "{e}");
        let e = check_encoder_opts(&opts(&[("bframes", "2")]), &[], find).unwrap_err();
        assert!(e.contains("refused, go2rtc cannot play B-frames"), "{e}");
        // Nothing installed: the encoder choice fails later with exit 69; nothing to say here.
        assert_eq!(check_encoder_opts(&opts(&[("foo", "1")]), &[], find), Ok(()));
    }

    #[test]
    fn files_we_write_need_a_directory_that_exists() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_writable_file(dir.path()).unwrap_err(), "is a directory");
        let e = check_writable_file(&dir.path().join("no/such/frames.log")).unwrap_err();
        assert!(e.starts_with("the directory ") && e.ends_with("does not exist"), "{e}");
        assert_eq!(check_writable_file(&dir.path().join("frames.log")), Ok(()));
    }

    #[test]
    fn fifo_paths_that_cannot_be_a_fifo_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let code = |o: Output| check_output(&o).map_err(|e| (crate::exit::classify(&e), format!("{e:#}")));
        let (exit, text) = code(Output::Fifo(dir.path().to_path_buf())).unwrap_err();
        assert_eq!(exit, Exit::CantCreate);
        assert!(text.contains("the path is a directory, not a FIFO"), "{text}");
        let (_, text) = code(Output::Fifo(dir.path().join("missing/a.h264"))).unwrap_err();
        assert!(text.contains("does not exist"), "{text}");
        assert!(code(Output::Fifo(dir.path().join("a.h264"))).is_ok());
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (exit, text) = code(Output::Tcp(busy.local_addr().unwrap())).unwrap_err();
        assert_eq!(exit, Exit::CantCreate);
        assert!(text.contains("cannot listen"), "{text}");
    }
}
