//! Tools that measure a stream from the outside, the way a viewer sees it: an in-process H.264
//! decoder (`decode`), the picture metrics (`metrics`), end-to-end latency by frame stamp
//! (`latency`, behind `agentcast latency`; `via`, its RTSP-viewer mode) and the encoder-settings
//! diagnostic (`quality`, behind `agentcast quality`). None of this runs in the producer's frame loop.

pub mod decode;
pub mod latency;
pub mod metrics;
pub mod quality;
pub mod via;

use crate::cli::{Cli, StreamArgs};
use crate::config::Config;
use crate::exit::{Exit, fail};

/// Whether `flag` is among the producer arguments (as `--flag VALUE` or `--flag=VALUE`).
pub(crate) fn flag_given(args: &[String], flag: &str) -> bool {
    args.iter().any(|arg| arg.split('=').next() == Some(flag))
}

/// Parses and validates the producer flags a measuring command got after `--`, exactly as the
/// producer would, so a mistake is one line (exit 2) from the tool rather than from its child.
pub(crate) fn producer_config(args: &[String]) -> anyhow::Result<(StreamArgs, Config)> {
    let argv = std::iter::once("agentcast".to_string()).chain(args.iter().cloned());
    let cli = Cli::parse_args(argv).map_err(|e| {
        let first = e.to_string().lines().next().unwrap_or("").trim_start_matches("error: ").to_string();
        fail(Exit::Usage, format!("producer arguments after --: {first}"))
    })?;
    if cli.command.is_some() {
        return Err(fail(Exit::Usage, "producer arguments after -- must be stream flags, not a subcommand"));
    }
    let cfg = cli.stream.config().map_err(|e| fail(Exit::Usage, e))?;
    Ok((cli.stream, cfg))
}
