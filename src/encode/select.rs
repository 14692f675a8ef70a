//! Which encoder backend to use. Pure: the caller says which elements are installed.

use crate::cli::EncoderArg;
use crate::encode::settings::Backend;

/// Chooses the backend for `--encoder`, given a test for "this element factory is installed".
/// The error is one line naming the flag and the package to install.
pub fn choose(choice: EncoderArg, installed: impl Fn(&str) -> bool) -> Result<Backend, String> {
    let forced = match choice {
        EncoderArg::Auto => None,
        EncoderArg::X264 => Some(Backend::X264),
        EncoderArg::Openh264 => Some(Backend::OpenH264),
    };
    match forced {
        Some(b) if installed(b.element()) => Ok(b),
        Some(b) => Err(format!(
            "--encoder {}: GStreamer element {} is not installed (install {})",
            b.name(),
            b.element(),
            b.package()
        )),
        None => Backend::AUTO_ORDER.into_iter().find(|b| installed(b.element())).ok_or_else(|| {
            let wanted: Vec<String> =
                Backend::AUTO_ORDER.iter().map(|b| format!("{} ({})", b.element(), b.package())).collect();
            format!("--encoder auto: no H.264 encoder is installed; install one of: {}", wanted.join(", "))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_prefers_x264_then_openh264() {
        assert_eq!(choose(EncoderArg::Auto, |_| true), Ok(Backend::X264));
        assert_eq!(choose(EncoderArg::Auto, |e| e == "openh264enc"), Ok(Backend::OpenH264));
        let e = choose(EncoderArg::Auto, |_| false).unwrap_err();
        assert!(e.contains("gstreamer1.0-plugins-ugly") && e.contains("openh264enc"), "{e}");
    }

    #[test]
    fn forced_encoder_must_be_installed() {
        assert_eq!(choose(EncoderArg::Openh264, |_| true), Ok(Backend::OpenH264));
        let e = choose(EncoderArg::X264, |e| e != "x264enc").unwrap_err();
        assert_eq!(e, "--encoder x264: GStreamer element x264enc is not installed (install gstreamer1.0-plugins-ugly)");
    }
}
