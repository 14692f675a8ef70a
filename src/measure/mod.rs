//! Tools that measure a stream from the outside, the way a viewer sees it: an in-process H.264
//! decoder (`decode`), the picture metrics (`metrics`), end-to-end latency by frame stamp
//! (`latency`, behind `agentcast latency`; `via`, its RTSP-viewer mode) and the encoder-settings
//! diagnostic (`quality`, behind `agentcast quality`). None of this runs in the producer's frame loop.

pub mod decode;
pub mod latency;
pub mod metrics;
pub mod quality;
pub mod via;

use crate::config::Config;

/// Whether `flag` is among the producer arguments (as `--flag VALUE` or `--flag=VALUE`).
pub(crate) fn flag_given(args: &[String], flag: &str) -> bool {
    args.iter().any(|arg| arg.split('=').next() == Some(flag))
}

/// Reads the producer flags a measuring command got after `--`, exactly as the producer would, so
/// a mistake is one line (exit 2) from the tool rather than from its child. The flags are the
/// command line's to parse: it implements this, and the tools here never see clap.
pub trait ProducerFlags {
    /// The producer's config for `args`; a mistake is a usage error (exit 2).
    fn config(&self, args: &[String]) -> anyhow::Result<Config>;
    /// The same flags at another `--width`/`--height`, validated again; the error is the
    /// validation's message.
    fn config_at_size(&self, args: &[String], width: u32, height: u32) -> Result<Config, String>;
}
