//! The command line's entry point, shared by the `agentcast` binary and `python -m agentcast`:
//! parse, set up logging, run the subcommand or the stream, map the outcome to an exit code. Only
//! here does the process's fate get decided: signals, and the exit at once after a stall.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::time::Duration;

use anyhow::Context as _;
use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;

use crate::check;
use crate::cli::{CheckArgs, Cli, Command};
use crate::config::Config;
use crate::exit::{self, Coded, Exit, ExitExt, fail};
use crate::stream::{Control, Stalled, Stream};

/// Runs the CLI with `args` (program name first) and returns the exit code.
pub fn cli_main(args: Vec<OsString>) -> u8 {
    crate::clock::started();
    let cli = match Cli::parse_args(args.clone()) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e, &args),
    };
    init_logging(cli.log_level.as_deref());
    if cli.command.is_none() {
        crate::stderr::hold();
    }
    let result = match &cli.command {
        Some(Command::Check(args)) => run_check(args),
        Some(Command::Latency(a)) => {
            let options = crate::measure::latency::Options {
                frames: a.frames,
                json: a.json,
                keep_stream: a.keep_stream.clone(),
                via: a.via.clone(),
                frame_log: a.frame_log.clone(),
                args: a.args.clone(),
            };
            crate::measure::latency::run(&options, &ProducerCli)
        }
        Some(Command::Quality(a)) => {
            let options = crate::measure::quality::Options {
                frames: a.frames,
                sweep: a.sweep,
                bitrates: a.bitrates.clone(),
                qp_max_values: a.qp_max_values.clone(),
                sizes: a.sizes.clone(),
                threshold: a.threshold,
                json: a.json,
                args: a.args.clone(),
            };
            crate::measure::quality::run(&options, &ProducerCli)
        }
        Some(Command::Encoders(args)) => crate::encode::list(args.json, args.width, args.height),
        Some(Command::Slots(a)) => crate::slots::show(a.lock_dir.as_deref(), a.nvenc_sessions),
        Some(Command::Doctor(a)) => crate::doctor::doctor(&crate::doctor::Options {
            json: a.json,
            lock_dir: a.lock_dir.clone(),
            fifo_dir: a.fifo_dir.clone(),
            width: a.width,
            height: a.height,
        }),
        Some(Command::Go2rtcConfig(a)) => go2rtc_config(a, &args),
        None => cli
            .stream
            .config()
            .map_err(|e| fail(Exit::Usage, e))
            // Errors first: the user's mistakes before any start-up line (see preflight).
            .and_then(|cfg| crate::preflight::preflight(&cfg).map(|()| cfg))
            .and_then(|cfg| stream(cfg).map(|()| Exit::Ok)),
    };
    match result {
        Ok(code) => code.code(),
        Err(err) => {
            let code = exit::classify(&err);
            if code != Exit::Ok {
                say(&format!("{err:#}"));
            }
            crate::stderr::release();
            if code != Exit::Ok && cli.command.is_none() {
                linger_for_reader();
            }
            code.code()
        }
    }
}

/// Runs the stream until it ends; SIGTERM/SIGINT stop it, SIGUSR1 asks for an IDR.
fn stream(cfg: Config) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM while the stream starts (after the output was created) must still
    // stop it cleanly rather than kill the process.
    let signals = Signals::new([SIGTERM, SIGINT, SIGUSR1]).context("installing signal handlers")?;
    let publishes = matches!(cfg.output, crate::sink::output::Output::Rtsp(_));
    let handle = Stream::start(cfg)?;
    if publishes && !settled(&handle) {
        // The RTSP server turned the stream away: its reason comes first, the start-up lines after.
        return handle.wait();
    }
    crate::stderr::release();
    watch_signals(signals, handle.control())?;
    let result = handle.wait();
    if let Err(e) = &result
        && e.chain().any(|c| c.downcast_ref::<Coded>().is_some_and(|c| c.error.is::<Stalled>()))
    {
        say(&format!("{e:#}; exiting so the supervisor restarts us"));
        // The stalled stage may hold locks that a normal exit would wait on.
        signal_hook::low_level::exit(i32::from(Exit::Software.code()));
    }
    result
}

/// How long the start-up lines stay held after an RTSP publisher started: a server that refuses
/// the stream does so at its first access unit (go2rtc: right after RECORD, for a path it does not
/// know), and that refusal is a start-up error whose line must come first.
const PUBLISH_SETTLE: Duration = Duration::from_millis(1500);

/// Whether the stream is still running once [`PUBLISH_SETTLE`] has passed.
fn settled(handle: &crate::stream::Handle) -> bool {
    let deadline = std::time::Instant::now() + PUBLISH_SETTLE;
    while std::time::Instant::now() < deadline {
        if !handle.is_running() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Installs the signal thread. The first SIGTERM/SIGINT stops the stream; a second one exits at
/// once with 128+signal.
fn watch_signals(mut signals: Signals, control: Control) -> anyhow::Result<()> {
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut stopping = false;
        for sig in signals.forever() {
            match sig {
                SIGUSR1 => control.request_keyframe(),
                _ if stopping => {
                    say(&format!("second signal {sig}, exiting now"));
                    signal_hook::low_level::exit(128 + sig);
                }
                _ => {
                    stopping = true;
                    control.stop_now(sig);
                }
            }
        }
    })?;
    Ok(())
}

/// Writes `agentcast: LINE` to stderr in one write(2): an unbuffered `eprintln!` writes its pieces
/// one by one, and a reader that takes what is there when the process dies (go2rtc) may get only
/// `agentcast: `.
fn say(line: &str) {
    let _ = std::io::stderr().lock().write_all(format!("agentcast: {line}\n").as_bytes());
}

/// How long a failed start-up keeps stdout open after its `agentcast:` line (see
/// [`linger_for_reader`]). go2rtc's stderr copy needs well under 1 ms when the machine is quiet;
/// this covers a busy 2-core machine many times over (docs/PERFORMANCE.md, "Start-up errors").
const LINGER: Duration = Duration::from_millis(200);

/// After a failure before any stream byte went out, keeps stdout open [`LINGER`] longer when it is a
/// pipe or socket (a terminal, a file or /dev/null: nothing waits). go2rtc formats a failed
/// producer's error as soon as stdout ends, from the stderr bytes a goroutine has copied by then;
/// when stdout ends with the process, that copy can lose the race and the viewer sees
/// `exec/pipe: EOF` with no reason (GO2RTC.md, "Lifecycle").
fn linger_for_reader() {
    if crate::sink::stdout::wrote_any() || !stdout_is_pipe() {
        return;
    }
    log::debug!("no stream byte went out: keeping stdout (a pipe) open {LINGER:?} so its reader reads stderr first");
    std::thread::sleep(LINGER);
}

fn stdout_is_pipe() -> bool {
    use nix::sys::stat::{SFlag, fstat};
    use std::os::fd::AsFd as _;
    let Ok(st) = fstat(std::io::stdout().as_fd()) else { return false };
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    kind == SFlag::S_IFIFO || kind == SFlag::S_IFSOCK
}

/// Help and version go to stdout as usual; errors become one line on stderr with exit code 2.
fn clap_exit(e: clap::Error, args: &[OsString]) -> u8 {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return 0;
    }
    let line = usage_line(&e);
    let line = match from_env(&e, args) {
        from if from.is_empty() => line,
        from => line.replacen(" (see --help)", &format!("{from} (see --help)"), 1),
    };
    say(&line);
    linger_for_reader();
    Exit::Usage.code()
}

/// " (from AGENTCAST_X)" when the value clap refused came from that variable rather than the command
/// line, so the error names what the user has to change.
fn from_env(e: &clap::Error, args: &[OsString]) -> String {
    use clap::CommandFactory as _;
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) else { return String::new() };
    let long = arg.split_whitespace().next().unwrap_or_default().trim_start_matches("--");
    let flag = format!("--{long}");
    let on_command_line =
        args.iter().skip(1).map(|a| a.to_string_lossy()).any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    let cmd = Cli::command();
    let env = cmd.get_arguments().find(|a| a.get_long() == Some(long)).and_then(|a| a.get_env());
    match env {
        Some(var) if !on_command_line && std::env::var_os(var).is_some() => {
            format!(" (from {})", var.to_string_lossy())
        }
        _ => String::new(),
    }
}

/// A command-line error as the one line the CLI prints after `agentcast: ` (the Python package
/// raises it as `UsageError`).
pub fn usage_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty())
        .collect();
    format!("{} (see --help)", line.join(" ").trim_start_matches("error: "))
}

/// Logs go to stderr (stdout carries the video): `--log-level`, else RUST_LOG, else info.
pub fn init_logging(level: Option<&str>) {
    let mut builder = env_logger::Builder::new();
    match level {
        Some(spec) => builder.parse_filters(spec),
        None => match std::env::var("RUST_LOG") {
            Ok(spec) if !spec.is_empty() => builder.parse_filters(&spec),
            _ => builder.filter_level(log::LevelFilter::Info),
        },
    };
    // A second call (the Python package runs the CLI in-process) keeps the first logger.
    if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        builder.write_style(env_logger::WriteStyle::Always);
    }
    let target = env_logger::Target::Pipe(Box::new(LogWriter));
    let _ = builder.target(target).format_timestamp_millis().try_init();
}

/// The log's target: stderr, or the held lines while the stream starts ([`crate::stderr`]).
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::stderr::write(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The producer flags after a measuring command's `--`, read by the command line that owns them.
struct ProducerCli;

impl ProducerCli {
    /// Parses `args` as the producer's command line: stream flags only.
    fn stream_args(args: &[String]) -> anyhow::Result<crate::cli::StreamArgs> {
        let argv = std::iter::once("agentcast".to_string()).chain(args.iter().cloned());
        let cli = Cli::parse_args(argv).map_err(|e| {
            let first = e.to_string().lines().next().unwrap_or("").trim_start_matches("error: ").to_string();
            fail(Exit::Usage, format!("producer arguments after --: {first}"))
        })?;
        if cli.command.is_some() {
            return Err(fail(Exit::Usage, "producer arguments after -- must be stream flags, not a subcommand"));
        }
        Ok(cli.stream)
    }
}

impl crate::measure::ProducerFlags for ProducerCli {
    fn config(&self, args: &[String]) -> anyhow::Result<Config> {
        Self::stream_args(args)?.config().map_err(|e| fail(Exit::Usage, e))
    }

    fn config_at_size(&self, args: &[String], width: u32, height: u32) -> Result<Config, String> {
        let mut sized = Self::stream_args(args).map_err(|e| e.to_string())?;
        sized.width = width;
        sized.height = height;
        sized.config().map_err(|e| e.to_string())
    }
}

fn go2rtc_config(a: &crate::cli::Go2rtcArgs, args: &[OsString]) -> anyhow::Result<Exit> {
    let names = if a.names.is_empty() { crate::go2rtc::numbered_names(a.agents.unwrap_or(1)) } else { a.names.clone() };
    let invocation: Vec<String> = args
        .iter()
        .skip(1)
        .map(|arg| arg.to_string_lossy().into_owned())
        .map(|arg| crate::go2rtc::quote_arg(&arg).unwrap_or(arg))
        .collect();
    let fleet = crate::go2rtc::Fleet {
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
    if report.ok() {
        return Ok(Exit::Ok);
    }
    // One line on stderr too, for whoever reads only that (the report above is on stdout).
    let what = if buf.is_empty() {
        "empty input (0 bytes)".to_string()
    } else {
        format!("{} violation(s) of go2rtc's raw H.264 rules (see the report on stdout)", report.violations.len())
    };
    say(&format!("check {name}: {what}"));
    Ok(Exit::CheckFailed)
}
