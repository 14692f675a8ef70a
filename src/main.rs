//! The `agentcast` binary: everything happens in [`agentcast::cli_main`], which `python -m
//! agentcast` shares.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(agentcast::cli_main(std::env::args_os().collect()))
}
