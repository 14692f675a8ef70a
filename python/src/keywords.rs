//! `agentcast.Stream`'s keyword settings onto the library's [`ConfigBuilder`], without an argv.
//!
//! Each keyword is the CLI flag of the same name (`max_lag` is `--max-lag`), and its values go
//! through that flag's own clap value parser (the very parser object of the CLI's `Arg`: its
//! ranges, the settings enums' `ValueEnum`, `SourceSpec::parse`, the output parser, `PixFmt`'s
//! `FromStr`), which gives both the typed value and, for a bad one, the CLI's message word for
//! word (the Python API promises it). The other errors clap raises while it reads a command line
//! (an unknown flag, a value for a bare flag, a flag given twice, flags that exclude each other)
//! are clap's own errors, filled in with the same context. `AGENTCAST_*` variables fill in the
//! settings not given, as they do for the CLI. The typed values go onto the builder's fields,
//! and its checks do the rest.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, ArgMatches, Command, CommandFactory};

use agentcast::cli::Cli;
use agentcast::config::ConfigBuilder;

/// A keyword's value as the Python package hands it over: a bare flag (`True`), or the values'
/// text, one per flag given (a list, or a dict's `NAME=VALUE` items).
pub enum Given {
    Flag,
    Values(Vec<String>),
}

/// The stream's settings, unchecked, and the log filter (`log_level`, the CLI's global flag).
pub struct Settings {
    pub builder: ConfigBuilder,
    pub log_level: Option<String>,
}

/// A setting that was given (as a keyword or through its variable), with the values its flag's
/// parser made of it.
struct Present<'a> {
    arg: &'a Arg,
    parsed: ArgMatches,
}

/// Reads the keyword settings (in the order given) and the `AGENTCAST_*` variables onto a
/// [`ConfigBuilder`]. `Err` is the one-line message the CLI prints for the same mistake, in the
/// order the CLI meets them: the keywords' own errors, the variables', then conflicts.
pub fn settings(given: Vec<(String, Given)>) -> Result<Settings, String> {
    let mut cmd = Cli::command();
    cmd.build();
    let cmd = &cmd;
    let mut present: Vec<Present> = Vec::new();
    for (keyword, given) in given {
        let long = keyword.replace('_', "-");
        let Some(arg) = setting(cmd, &long) else {
            return Err(unknown(cmd, &long));
        };
        let parsed = match (given, arg.get_action().takes_values()) {
            // What a bare flag holds on the command line.
            (Given::Flag, false) => parse(arg, &["true".into()])?,
            (Given::Values(values), false) => {
                let value = (ContextKind::InvalidValue, text(&values[0]));
                return Err(clap_error(cmd, ErrorKind::TooManyValues, arg, [value]));
            }
            (Given::Flag, true) => {
                let possible = arg.get_possible_values();
                let possible = possible.iter().filter(|v| !v.is_hide_set()).map(|v| v.get_name().to_string());
                let none = (ContextKind::InvalidValue, text(""));
                let possible = (ContextKind::ValidValue, ContextValue::Strings(possible.collect()));
                return Err(clap_error(cmd, ErrorKind::InvalidValue, arg, [none, possible]));
            }
            (Given::Values(values), true) => {
                let values: Vec<OsString> = values.into_iter().map(OsString::from).collect();
                if values.len() > 1 && !matches!(arg.get_action(), ArgAction::Append) {
                    // As clap: the first value is read, the second time the flag comes is refused.
                    parse(arg, &values[..1])?;
                    return Err(clap_error(
                        cmd,
                        ErrorKind::ArgumentConflict,
                        arg,
                        [(ContextKind::PriorArg, text(arg))],
                    ));
                }
                parse(arg, &values)?
            }
        };
        present.push(Present { arg, parsed });
    }
    // The CLI reads a variable only for a flag not given, after the command line.
    for arg in cmd.get_arguments() {
        let given = present.iter().any(|p| p.arg.get_id() == arg.get_id());
        if let Some(value) = arg.get_env().and_then(std::env::var_os).filter(|_| !given) {
            present.push(Present { arg, parsed: parse(arg, &[value])? });
        }
    }
    conflicts(cmd, &present)?;
    let mut settings = Settings { builder: ConfigBuilder::default(), log_level: None };
    let (mut stamp, mut no_stamp) = (false, false);
    for p in &present {
        let b = &mut settings.builder;
        let f = &mut b.faults;
        match p.arg.get_id().as_str() {
            "width" => b.width = p.one()?,
            "height" => b.height = p.one()?,
            "fps" => b.fps = p.one()?,
            "bitrate" => b.bitrate_kbps = p.one()?,
            "gop" => b.gop = Some(p.one()?),
            "qp_max" => b.qp_max = p.one()?,
            "profile" => b.profile = p.one()?,
            "encoder" => b.encoder = p.one()?,
            "encoder_opts" => b.encoder_opts = p.all()?,
            "nvenc_sessions" => b.nvenc_sessions = p.one()?,
            "lock_dir" => b.lock_dir = Some(p.one()?),
            "on_busy" => b.on_busy = p.one()?,
            "wait_timeout" => b.wait_timeout_s = p.one()?,
            "stream" => b.stream = Some(p.one()?),
            "stats_interval" => b.stats_interval_s = p.one()?,
            "stats_file" => b.stats_file = Some(p.one()?),
            "stall_timeout" => b.stall_timeout_s = p.one()?,
            "debug_stall_after" => f.stall_after = Some(p.one()?),
            "debug_fail_after" => f.fail_after = Some(p.one()?),
            "debug_fail_times" => f.fail_times = p.one()?,
            "debug_lease_encoder" => f.lease_element = Some(p.one()?),
            "debug_cuda_download" => f.cuda_download = p.one()?,
            "convert" => b.convert = p.one()?,
            "path" => b.path = p.one()?,
            "source" => b.source = Some(p.one()?),
            "pix_fmt" => b.pix_fmt = Some(p.one()?),
            "source_timeout" => b.source_timeout_s = p.one()?,
            // Pushed frames take the place of the scene (as in `StreamArgs::push_builder`); the
            // flags are still read, so a bad value or a conflict is reported as the CLI does.
            "scene" | "shader" => {}
            "no_stamp" => no_stamp = p.one()?,
            "stamp" => stamp = p.one()?,
            "frame_log" => b.frame_log = Some(p.one::<PathBuf>()?),
            "frames" => b.frames = Some(p.one()?),
            "duration" => b.duration_s = Some(p.one()?),
            "no_pace" => b.pace = !p.one::<bool>()?,
            "output" => b.output = p.one()?,
            "mux" => b.mux = p.one()?,
            "allow_remote" => b.allow_remote = p.one()?,
            "register" => b.register = Some(p.one()?),
            "name" => b.name = Some(p.one()?),
            "advertise" => b.advertise = Some(p.one()?),
            "idle" => b.idle = p.one()?,
            "max_lag" => b.max_lag_ms = p.one()?,
            "egl_device" => b.egl_device = Some(p.one()?),
            "gpu" => b.gpu = Some(p.one()?),
            "log_level" => settings.log_level = Some(p.one()?),
            _ => return Err(format!("agentcast.Stream does not take {} (a flag of the agentcast command)", p.arg)),
        }
    }
    // The CLI makes them exclusive; neither leaves it to the source (as `StreamArgs::builder`).
    settings.builder.stamp = if stamp { Some(true) } else { no_stamp.then_some(false) };
    Ok(settings)
}

impl Present<'_> {
    /// The values as the flag's parser made them; `Err` (a bug here, not the user's mistake) when
    /// the field reads another type than the flag's parser makes.
    fn all<T: Clone + Send + Sync + 'static>(&self) -> Result<Vec<T>, String> {
        match self.parsed.try_get_many::<T>(VALUE) {
            Ok(Some(values)) => Ok(values.cloned().collect()),
            _ => Err(format!(
                "agentcast.Stream cannot read {} (its value is not a {})",
                self.arg,
                std::any::type_name::<T>()
            )),
        }
    }

    /// The value (the last one, as clap keeps it for a flag given once).
    fn one<T: Clone + Send + Sync + 'static>(&self) -> Result<T, String> {
        let last = self.all::<T>()?.pop();
        last.ok_or_else(|| format!("agentcast.Stream read no value for {}", self.arg))
    }
}

/// The stream setting (or global flag) spelled `--long`; help and version are no settings.
fn setting<'a>(cmd: &'a Command, long: &str) -> Option<&'a Arg> {
    cmd.get_arguments()
        .find(|a| a.get_long() == Some(long) && !matches!(a.get_action(), ArgAction::Help | ArgAction::Version))
}

/// The id of the one argument of the command that [`parse`] runs a flag's values through.
const VALUE: &str = "value";

/// Runs `values` through `arg`'s own value parser (a clone of the CLI's), split at the flag's
/// delimiter as clap splits them. clap calls a value parser only while it reads arguments, so
/// the values go to a command whose one argument is that parser, after a `--` (every value is a
/// value, even `--x` or empty); its error is the CLI's, once it names the flag again.
fn parse(arg: &Arg, values: &[OsString]) -> Result<ArgMatches, String> {
    let mut value =
        Arg::new(VALUE).value_parser(arg.get_value_parser().clone()).action(ArgAction::Append).num_args(1..).last(true);
    if let Some(delimiter) = arg.get_value_delimiter() {
        value = value.value_delimiter(delimiter);
    }
    let items = std::iter::once(OsString::from("--")).chain(values.iter().cloned());
    Command::new("agentcast").no_binary_name(true).arg(value).try_get_matches_from(items).map_err(|mut e| {
        e.insert(ContextKind::InvalidArg, text(arg));
        agentcast::usage_line(&e)
    })
}

/// A value as clap's error context holds it.
fn text(value: impl ToString) -> ContextValue {
    ContextValue::String(value.to_string())
}

/// One of the errors clap raises while it reads a command line, about `arg`, in clap's words.
fn clap_error<const N: usize>(
    cmd: &Command,
    kind: ErrorKind,
    arg: &Arg,
    context: [(ContextKind, ContextValue); N],
) -> String {
    let mut e = clap::Error::new(kind).with_cmd(cmd);
    e.insert(ContextKind::InvalidArg, text(arg));
    for (kind, value) in context {
        e.insert(kind, value);
    }
    agentcast::usage_line(&e)
}

/// clap's error for an unknown flag, with its tip when a setting is spelled much alike (clap's
/// measure: Jaro similarity over 0.7; the closest one, the later one of equals).
fn unknown(cmd: &Command, long: &str) -> String {
    let mut e = clap::Error::new(ErrorKind::UnknownArgument).with_cmd(cmd);
    e.insert(ContextKind::InvalidArg, text(format!("--{long}")));
    let mut best: Option<(f64, &str)> = None;
    for candidate in cmd.get_arguments().filter_map(|a| setting(cmd, a.get_long()?).and(a.get_long())) {
        let score = strsim::jaro(long, candidate);
        if score > 0.7 && best.is_none_or(|(top, _)| score >= top) {
            best = Some((score, candidate));
        }
    }
    if let Some((_, candidate)) = best {
        e.insert(ContextKind::SuggestedArg, text(format!("--{candidate}")));
    }
    agentcast::usage_line(&e)
}

/// clap's error for settings given together that the CLI makes exclusive: the first one given
/// (keywords in their order, then variables) that excludes, or is excluded by, any other.
fn conflicts(cmd: &Command, present: &[Present]) -> Result<(), String> {
    let excludes = |a: &Arg, b: &Arg| cmd.get_arg_conflicts_with(a).iter().any(|c| c.get_id() == b.get_id());
    for p in present {
        let others: Vec<String> = present
            .iter()
            .filter(|q| q.arg.get_id() != p.arg.get_id() && (excludes(p.arg, q.arg) || excludes(q.arg, p.arg)))
            .map(|q| q.arg.to_string())
            .collect();
        let prior = match others.as_slice() {
            [] => continue,
            [one] => text(one),
            _ => ContextValue::Strings(others),
        };
        return Err(clap_error(cmd, ErrorKind::ArgumentConflict, p.arg, [(ContextKind::PriorArg, prior)]));
    }
    Ok(())
}
