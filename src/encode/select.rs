//! Which encoder backend to use. Candidates are probed by really opening them (the caller's probe
//! encodes a frame), never judged by name: H100/H200/A100 have CUDA but no NVENC, and a VA driver
//! may lack H.264 encode. Pure: the caller supplies "is it installed" and the probe.

use std::fmt;

use crate::encode::settings::Backend;
use crate::settings::EncoderChoice;

/// What happened to one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    NotInstalled,
    /// Installed, but opening it failed (the reason).
    Failed(String),
    Opened,
    /// Not tried: an earlier candidate was chosen.
    NotTried,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::NotInstalled => write!(f, "not installed"),
            Outcome::Failed(why) => write!(f, "does not open: {why}"),
            Outcome::Opened => write!(f, "opens"),
            Outcome::NotTried => write!(f, "not tried"),
        }
    }
}

/// The candidates for `--encoder`, in the order they are tried.
pub fn candidates(choice: EncoderChoice) -> Vec<Backend> {
    match choice {
        EncoderChoice::Auto => Backend::AUTO_ORDER.to_vec(),
        EncoderChoice::Nvenc => Backend::family("nvenc"),
        EncoderChoice::Vaapi => Backend::family("vaapi"),
        EncoderChoice::X264 => vec![Backend::X264],
        EncoderChoice::Openh264 => vec![Backend::OpenH264],
    }
}

/// Tries `candidates` in order; returns what happened to each and the first that opened.
pub fn probe_all(
    candidates: &[Backend],
    installed: impl Fn(&str) -> bool,
    mut probe: impl FnMut(Backend) -> Result<(), String>,
    try_all: bool,
) -> (Vec<(Backend, Outcome)>, Option<Backend>) {
    let mut chosen = None;
    let mut report = Vec::new();
    for &b in candidates {
        let outcome = if chosen.is_some() && !try_all {
            Outcome::NotTried
        } else if !installed(b.element()) {
            Outcome::NotInstalled
        } else {
            match probe(b) {
                Ok(()) => Outcome::Opened,
                Err(why) => Outcome::Failed(why),
            }
        };
        if outcome == Outcome::Opened && chosen.is_none() {
            chosen = Some(b);
        }
        report.push((b, outcome));
    }
    (report, chosen)
}

/// Chooses the backend for `--encoder`, with one line per skipped candidate (for the log). The
/// error is one line naming the flag, each candidate's fate and what to install.
pub fn choose(
    choice: EncoderChoice,
    installed: impl Fn(&str) -> bool,
    probe: impl FnMut(Backend) -> Result<(), String>,
) -> Result<(Backend, Vec<String>), String> {
    choose_from(&candidates(choice), choice, installed, probe)
}

/// [`choose`] over an explicit list (the backends after a failed one, for runtime fallback).
pub fn choose_from(
    list: &[Backend],
    choice: EncoderChoice,
    installed: impl Fn(&str) -> bool,
    probe: impl FnMut(Backend) -> Result<(), String>,
) -> Result<(Backend, Vec<String>), String> {
    let (report, chosen) = probe_all(list, installed, probe, false);
    let skipped: Vec<String> = report
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::NotInstalled | Outcome::Failed(_)))
        .map(|(b, o)| format!("{} ({}) {o}", b.name(), b.element()))
        .collect();
    match chosen {
        Some(b) => Ok((b, skipped)),
        None => {
            let flag = format!("{choice:?}").to_lowercase();
            let hints: Vec<String> = report
                .iter()
                .filter(|(_, o)| *o == Outcome::NotInstalled)
                .map(|(b, _)| format!("{}: {}", b.element(), b.package()))
                .collect();
            let mut msg = format!("--encoder {flag}: no H.264 encoder opens ({})", skipped.join("; "));
            if !hints.is_empty() {
                msg.push_str(&format!("; install {}", hints.join(", ")));
            }
            Err(msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opens(list: &'static [&'static str]) -> impl FnMut(Backend) -> Result<(), String> {
        move |b| if list.contains(&b.element()) { Ok(()) } else { Err("OpenEncodeSessionEx failed".into()) }
    }

    #[test]
    fn auto_skips_hardware_that_does_not_open() {
        // An H100: nvcodec elements may register, but NVENC does not open.
        let installed = |e: &str| e != "vah264enc" && e != "vaapih264enc";
        let (b, skipped) = choose(EncoderChoice::Auto, installed, opens(&["x264enc", "openh264enc"])).unwrap();
        assert_eq!(b, Backend::X264);
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(skipped[0].starts_with("nvenc (nvcudah264enc) does not open: OpenEncodeSessionEx"));
        assert!(skipped[2].starts_with("vaapi (vah264enc) not installed"));
    }

    #[test]
    fn auto_prefers_hardware_that_opens() {
        let (b, _) = choose(EncoderChoice::Auto, |_| true, opens(&["nvh264enc", "x264enc"])).unwrap();
        assert_eq!(b, Backend::Nvenc);
    }

    #[test]
    fn forced_family_that_is_missing_is_one_clear_error() {
        let e = choose(EncoderChoice::Nvenc, |e| e.starts_with('x'), opens(&[])).unwrap_err();
        assert!(e.starts_with("--encoder nvenc: no H.264 encoder opens"), "{e}");
        assert!(e.contains("nvcudah264enc: gstreamer1.0-plugins-bad and an NVIDIA driver with NVENC"), "{e}");
        let e = choose(EncoderChoice::X264, |_| false, opens(&[])).unwrap_err();
        assert!(e.contains("x264enc: gstreamer1.0-plugins-ugly"), "{e}");
    }

    #[test]
    fn probing_stops_at_the_first_that_opens_unless_asked_for_all() {
        let mut tried = Vec::new();
        let (report, chosen) = probe_all(
            &Backend::AUTO_ORDER,
            |_| true,
            |b| {
                tried.push(b);
                if b == Backend::Va { Ok(()) } else { Err("no".into()) }
            },
            false,
        );
        assert_eq!(chosen, Some(Backend::Va));
        assert_eq!(tried, vec![Backend::NvencCuda, Backend::Nvenc, Backend::Va]);
        assert_eq!(report.last().unwrap().1, Outcome::NotTried);
        let (report, _) = probe_all(&Backend::AUTO_ORDER, |_| true, |_| Ok(()), true);
        assert!(report.iter().all(|(_, o)| *o == Outcome::Opened));
    }
}
