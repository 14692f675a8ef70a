//! The encoder choice, remembered per machine: opening every candidate with a test frame costs each
//! start-up a few ms with x264 alone and far more where hardware candidates are tried and refused
//! (NVENC on a card without it, a VA driver without H.264). The choice is kept in the lock
//! directory (`--lock-dir`, on tmpfs by default, so a reboot forgets it) under a key of everything
//! that decides it: the candidates' plugins as GStreamer's registry has them (file, version, size
//! and modification time), the GPU and driver (the NVIDIA driver version, the DRM render nodes and
//! their kernel drivers), this binary, and the settings the probe opens them with. Any change makes
//! another key, and so a fresh probe.
//!
//! The cache is only a hint: the real pipeline that follows opens the cached encoder, and when that
//! fails the entry is forgotten and the candidates are probed again (`stream::session`). A cache
//! that cannot be read or written is no cache; it never fails a start.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use gstreamer as gst;
use gstreamer::prelude::*;

use crate::encode::settings::{Backend, EncoderSettings};
use crate::settings::EncoderChoice;

/// One machine's remembered choice for one set of probe inputs.
#[derive(Debug, Clone)]
pub struct ProbeCache {
    path: PathBuf,
    key: String,
}

/// What was chosen last time, with the log lines of the candidates passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub backend: Backend,
    pub skipped: Vec<String>,
}

/// What the probe is asked: the choice, its candidates, and what they are opened with.
pub struct Inputs<'a> {
    pub choice: EncoderChoice,
    pub candidates: &'a [Backend],
    pub gpu: Option<u32>,
    pub settings: &'a EncoderSettings,
    pub width: u32,
    pub height: u32,
}

impl ProbeCache {
    /// The cache entry for `inputs` in `dir` (GStreamer must be initialised).
    pub fn new(dir: &Path, inputs: &Inputs<'_>) -> ProbeCache {
        let key = key(inputs, &machine());
        let mut h = std::hash::DefaultHasher::new();
        key.hash(&mut h);
        ProbeCache { path: dir.join(format!("encoder-choice-{:016x}.json", h.finish())), key }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The remembered choice, if this exact key has one.
    pub fn lookup(&self) -> Option<Remembered> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let doc: serde_json::Value = serde_json::from_str(&text).ok()?;
        if doc["key"].as_str() != Some(self.key.as_str()) {
            return None;
        }
        let element = doc["element"].as_str()?;
        let backend = Backend::AUTO_ORDER.into_iter().find(|b| b.element() == element)?;
        let skipped = doc["skipped"].as_array()?.iter().filter_map(|s| s.as_str().map(str::to_string)).collect();
        Some(Remembered { backend, skipped })
    }

    /// Remembers a choice (best effort: a directory we cannot write to only costs the next start a
    /// probe).
    pub fn store(&self, chosen: &Remembered) {
        let doc = serde_json::json!({
            "key": self.key,
            "element": chosen.backend.element(),
            "skipped": chosen.skipped,
        });
        let stored = self
            .path
            .parent()
            .map_or(Ok(()), std::fs::create_dir_all)
            .and_then(|()| crate::stats::write_atomic(&self.path, &doc.to_string()));
        if let Err(e) = stored {
            log::debug!("encoder choice not cached in {}: {e}", self.path.display());
        }
    }

    /// Forgets the entry (its encoder failed to open).
    pub fn forget(&self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The probe's inputs and the machine, as one text (kept whole in the entry and compared, so a hash
/// collision cannot return another machine's answer).
fn key(inputs: &Inputs<'_>, machine: &str) -> String {
    let plugins: Vec<String> = inputs.candidates.iter().map(|b| plugin_of(b.element())).collect();
    format!(
        "agentcast {} {}\nchoice {:?} gpu {:?} size {}x{} settings {:?}\nplugins {}\n{machine}",
        env!("CARGO_PKG_VERSION"),
        file_stamp(std::env::current_exe().ok().as_deref()),
        inputs.choice,
        inputs.gpu,
        inputs.width,
        inputs.height,
        inputs.settings,
        plugins.join("; "),
    )
}

/// An element's plugin as the registry has it: file, version and the file's size and time; or
/// "absent".
fn plugin_of(element: &str) -> String {
    let Some(factory) = gst::ElementFactory::find(element) else { return format!("{element} absent") };
    let Some(plugin) = factory.plugin() else { return format!("{element} (no plugin)") };
    let file = plugin.filename();
    format!("{element} {} {} {}", plugin.version(), file_stamp(file.as_deref()).as_str(), {
        file.map(|f| f.display().to_string()).unwrap_or_default()
    })
}

/// A file's size and modification time, or "-".
fn file_stamp(path: Option<&Path>) -> String {
    let Some(meta) = path.and_then(|p| std::fs::metadata(p).ok()) else { return "-".into() };
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    format!("{}B@{}", meta.len(), mtime.map_or(0, |d| d.as_nanos()))
}

/// The GPU and driver as far as they decide which encoder opens: the NVIDIA driver's version line
/// and device nodes, and each DRM render node with its kernel driver and PCI id.
fn machine() -> String {
    let mut parts = Vec::new();
    let nvidia = std::fs::read_to_string("/proc/driver/nvidia/version").unwrap_or_default();
    parts.push(format!("nvidia {}", nvidia.lines().next().unwrap_or("-")));
    let mut nodes: Vec<String> = std::fs::read_dir("/dev")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.starts_with("nvidia")).collect())
        .unwrap_or_default();
    nodes.sort();
    parts.push(format!("nodes {}", nodes.join(",")));
    let mut render: Vec<String> = std::fs::read_dir("/sys/class/drm")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("renderD"))
                .map(|e| {
                    let dev = e.path().join("device");
                    let driver = std::fs::read_link(dev.join("driver")).ok();
                    let driver = driver.as_ref().and_then(|d| d.file_name()).map(|n| n.to_string_lossy().into_owned());
                    let id = std::fs::read_to_string(dev.join("uevent")).unwrap_or_default();
                    let pci = id.lines().find(|l| l.starts_with("PCI_ID=")).unwrap_or("").to_string();
                    format!("{} {} {pci}", e.file_name().to_string_lossy(), driver.unwrap_or_default())
                })
                .collect()
        })
        .unwrap_or_default();
    render.sort();
    parts.push(format!("render {}", render.join(",")));
    parts.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::settings::Profile;

    fn inputs(settings: &EncoderSettings, width: u32) -> Inputs<'_> {
        Inputs {
            choice: EncoderChoice::Auto,
            candidates: &Backend::AUTO_ORDER,
            gpu: None,
            settings,
            width,
            height: 360,
        }
    }

    #[test]
    fn a_choice_is_remembered_under_its_key_only() {
        crate::gst_util::init().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let settings = EncoderSettings::new(4000, 30, 30, 34, Profile::High);
        let cache = ProbeCache::new(dir.path(), &inputs(&settings, 640));
        assert_eq!(cache.lookup(), None, "nothing stored yet");
        let chosen = Remembered { backend: Backend::X264, skipped: vec!["vaapi (vah264enc) not installed".into()] };
        cache.store(&chosen);
        assert_eq!(cache.lookup(), Some(chosen.clone()));
        assert_eq!(ProbeCache::new(dir.path(), &inputs(&settings, 640)).lookup(), Some(chosen));
        // Other probe inputs are another entry.
        let other = ProbeCache::new(dir.path(), &inputs(&settings, 1280));
        assert_ne!(other.path(), cache.path());
        assert_eq!(other.lookup(), None);
        // An entry whose key text differs (a collision, or an older format) is not believed.
        std::fs::write(other.path(), std::fs::read_to_string(cache.path()).unwrap()).unwrap();
        assert_eq!(other.lookup(), None);
        cache.forget();
        assert_eq!(cache.lookup(), None);
        // A directory that cannot be written is no cache, and no error.
        let nowhere = ProbeCache::new(Path::new("/proc/agentcast-no-such-dir"), &inputs(&settings, 640));
        nowhere.store(&Remembered { backend: Backend::X264, skipped: Vec::new() });
        assert_eq!(nowhere.lookup(), None);
    }

    #[test]
    fn the_key_names_the_plugins_and_the_machine() {
        crate::gst_util::init().unwrap();
        let settings = EncoderSettings::new(4000, 30, 30, 34, Profile::High);
        let k = key(&inputs(&settings, 640), "nvidia -");
        assert!(k.contains("size 640x360"), "{k}");
        assert!(k.contains("nvidia -"), "{k}");
        if crate::gst_util::element_installed("x264enc") {
            assert!(k.contains("x264enc 1."), "the plugin's version and file: {k}");
        }
        assert_ne!(k, key(&inputs(&settings, 640), "nvidia 550.1"), "another driver is another key");
    }
}
