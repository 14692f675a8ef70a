//! Finding the node: the daemon's socket (is PipeWire there at all?), the video nodes GStreamer's
//! PipeWire device provider lists, which of them TARGET names (a `node.name`, `object.serial` or
//! object id), and how the source ends when none appears within `--source-timeout`.

use std::ffi::OsString;
use std::fmt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;

use super::START_HINT;
use crate::exit::Exit;
use crate::source::live::SourceEnd;

/// Where libpipewire looks for the daemon's socket: `$PIPEWIRE_REMOTE` (a name or an absolute
/// path, default `pipewire-0`) in `$PIPEWIRE_RUNTIME_DIR`, else `$XDG_RUNTIME_DIR`. `var` reads the
/// environment.
fn socket_path(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, String> {
    let name = PathBuf::from(var("PIPEWIRE_REMOTE").unwrap_or_else(|| "pipewire-0".into()));
    if name.is_absolute() {
        return Ok(name);
    }
    ["PIPEWIRE_RUNTIME_DIR", "XDG_RUNTIME_DIR"]
        .iter()
        .find_map(|v| var(v).filter(|d| !d.is_empty()))
        .map(|dir| PathBuf::from(dir).join(&name))
        .ok_or_else(|| {
            format!("no PipeWire daemon: XDG_RUNTIME_DIR is not set, so there is no socket to find ({START_HINT})")
        })
}

/// Ok when something accepts connections on the daemon's socket.
pub(super) fn daemon_answers() -> Result<(), String> {
    let path = socket_path(|k| std::env::var_os(k))?;
    UnixStream::connect(&path)
        .map(drop)
        .map_err(|e| format!("no PipeWire daemon answers at {} ({e}); {START_HINT}", path.display()))
}

/// A node as the device provider lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Node {
    name: String,
    serial: Option<String>,
    id: Option<String>,
}

impl Node {
    fn of(device: &gst::Device) -> Option<Node> {
        let props = device.properties()?;
        let get = |k: &str| -> Option<String> {
            let v = props.value(k).ok()?;
            v.get::<String>().ok().or_else(|| v.serialize().ok().map(|s| s.to_string()))
        };
        Some(Node { name: get("node.name")?, serial: get("object.serial"), id: get("object.id") })
    }

    pub(super) fn matches(&self, target: &str) -> bool {
        self.name == target || self.serial.as_deref() == Some(target) || self.id.as_deref() == Some(target)
    }

    /// What `target-object` gets: the serial (unique) when known, else the name.
    pub(super) fn target_object(&self) -> &str {
        self.serial.as_deref().unwrap_or(&self.name)
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.serial {
            Some(s) => write!(f, "{} (serial {s})", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// The video nodes (`Video/Source`) the device provider lists now.
pub(super) fn video_nodes(provider: &gst::DeviceProvider) -> Vec<Node> {
    provider.devices().iter().filter(|d| d.has_classes("Video/Source")).filter_map(Node::of).collect()
}

/// The listed node that `target` names, if any.
pub(super) fn find(provider: &gst::DeviceProvider, target: &str) -> Option<Node> {
    video_nodes(provider).into_iter().find(|n| n.matches(target))
}

/// How the source `what` ends when no node `target` was listed for `t`: cleanly after the node went
/// away (`ever_linked`), as missing input when it never appeared.
pub(super) fn missing_end(what: &str, target: &str, ever_linked: bool, t: Duration) -> SourceEnd {
    if ever_linked {
        SourceEnd::Finished(format!(
            "{what}: the node went away and no node {target} came back within {} s (--source-timeout); ending the stream",
            t.as_secs_f32()
        ))
    } else {
        SourceEnd::Failed(
            Exit::NoInput,
            format!(
                "{what}: no PipeWire video node with the name, serial or id {target} appeared within {} s (--source-timeout)",
                t.as_secs_f32()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_is_found_like_libpipewire_finds_it() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| OsString::from(v))
        };
        assert_eq!(
            socket_path(env(&[("XDG_RUNTIME_DIR", "/run/user/7")])).unwrap(),
            PathBuf::from("/run/user/7/pipewire-0")
        );
        let runtime = env(&[
            ("XDG_RUNTIME_DIR", "/run/user/7"),
            ("PIPEWIRE_RUNTIME_DIR", "/tmp/pw"),
            ("PIPEWIRE_REMOTE", "other"),
        ]);
        assert_eq!(socket_path(runtime).unwrap(), PathBuf::from("/tmp/pw/other"));
        assert_eq!(socket_path(env(&[("PIPEWIRE_REMOTE", "/abs/sock")])).unwrap(), PathBuf::from("/abs/sock"));
        assert!(socket_path(env(&[("XDG_RUNTIME_DIR", "")])).unwrap_err().contains("pipewire-headless.sh start"));
    }

    #[test]
    fn targets_match_a_name_serial_or_id() {
        let n = Node { name: "gamescope".into(), serial: Some("98".into()), id: Some("32".into()) };
        assert!(n.matches("gamescope") && n.matches("98") && n.matches("32"));
        assert!(!n.matches("game"));
        assert_eq!(n.target_object(), "98");
        assert_eq!(n.to_string(), "gamescope (serial 98)");
    }
}
