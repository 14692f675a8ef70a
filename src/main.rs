//! Start-up and exit codes only: parse, set up logging, run, map the outcome to an exit code.

use std::io::Read;
use std::process::ExitCode;

use anyhow::Context as _;

use agentcast::check;
use agentcast::cli::{CheckArgs, Cli, Command};
use agentcast::config::Config;
use agentcast::exit::{self, Exit, ExitExt, fail};

fn main() -> ExitCode {
    let cli = match Cli::parse_args(std::env::args_os()) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    init_logging(cli.log_level.as_deref());
    let result = match &cli.command {
        Some(Command::Check(args)) => run_check(args),
        Some(Command::Latency(args)) => agentcast::measure::latency::run(args),
        Some(Command::Quality(args)) => agentcast::measure::quality::run(args),
        Some(Command::Encoders(args)) => agentcast::encode::list(args),
        Some(Command::Slots(args)) => agentcast::slots::show(args),
        Some(Command::Doctor(args)) => agentcast::doctor::doctor(args),
        Some(Command::Go2rtcConfig(args)) => go2rtc_config(args),
        None => Config::from_args(&cli.stream)
            .map_err(|e| fail(Exit::Usage, e))
            .and_then(|cfg| agentcast::app::run(&cfg).map(|()| Exit::Ok)),
    };
    match result {
        Ok(code) => ExitCode::from(code.code()),
        Err(err) => {
            let code = exit::classify(&err);
            if code != Exit::Ok {
                eprintln!("agentcast: {err:#}");
            }
            ExitCode::from(code.code())
        }
    }
}

/// Help and version go to stdout as usual; errors become one line on stderr with exit code 2.
fn clap_exit(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let text = e.render().to_string();
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    eprintln!("agentcast: {} (see --help)", line.join(" ").trim_start_matches("error: "));
    ExitCode::from(Exit::Usage.code())
}

fn init_logging(level: Option<&str>) {
    let mut builder = env_logger::Builder::new();
    match level {
        Some(spec) => builder.parse_filters(spec),
        None => match std::env::var("RUST_LOG") {
            Ok(spec) if !spec.is_empty() => builder.parse_filters(&spec),
            _ => builder.filter_level(log::LevelFilter::Info),
        },
    };
    builder.target(env_logger::Target::Stderr).format_timestamp_millis().init();
}

fn go2rtc_config(a: &agentcast::cli::Go2rtcArgs) -> anyhow::Result<Exit> {
    let names =
        if a.names.is_empty() { agentcast::go2rtc::numbered_names(a.agents.unwrap_or(1)) } else { a.names.clone() };
    let invocation: Vec<String> =
        std::env::args().skip(1).map(|arg| agentcast::go2rtc::quote_arg(&arg).unwrap_or(arg)).collect();
    let fleet = agentcast::go2rtc::Fleet {
        names,
        mode: a.mode,
        bin: a.bin.clone(),
        listen: a.listen.clone(),
        fifo_template: a.fifo_path.clone(),
        tcp_port_base: a.tcp_port_base,
        args: a.args.clone(),
        invocation: format!("agentcast {}", invocation.join(" ")),
    };
    let text = fleet.render().map_err(|e| fail(Exit::Usage, e))?;
    print!("{text}");
    Ok(Exit::Ok)
}

fn run_check(args: &CheckArgs) -> anyhow::Result<Exit> {
    let mut buf = Vec::new();
    let name = args.input.display().to_string();
    if name == "-" {
        std::io::stdin().read_to_end(&mut buf).context("reading standard input").exit(Exit::NoInput)?;
    } else {
        buf = std::fs::read(&args.input).with_context(|| format!("reading {name}")).exit(Exit::NoInput)?;
    }
    let report = check::check_stream(&buf);
    println!("{name}:");
    println!("{report}");
    Ok(if report.ok() { Exit::Ok } else { Exit::CheckFailed })
}
