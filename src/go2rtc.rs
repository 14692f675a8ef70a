//! `agentcast go2rtc-config`: a go2rtc YAML for a fleet of agents. Pure: settings in, text out.
//!
//! go2rtc splits an `exec:` command on whitespace with '…'/"…" quoting and cuts it at the first
//! `#` (where its own options such as `#killsignal=15` begin), so arguments are quoted its way and
//! any argument containing `#` is refused.

use std::fmt::Write as _;

/// How go2rtc gets each agent's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// go2rtc starts one agentcast per viewer session and reads its stdout, MPEG-TS (`--mux
    /// mpegts`): go2rtc passes each frame on as soon as it is in, where raw H.264 waits for the next.
    Exec,
    /// agentcast runs on its own and writes a FIFO; go2rtc runs `cat FIFO` while someone watches.
    Fifo,
    /// agentcast runs on its own and listens on TCP; go2rtc connects while someone watches.
    Tcp,
    /// go2rtc starts one agentcast per viewer session, which publishes to go2rtc's RTSP server
    /// (`--output {output}`): frames are timed by the encoder and none waits for the next.
    Rtsp,
    /// No streams: agents serve RTSP themselves (`--output rtsp-listen:`) and register through
    /// go2rtc's API (`--register`); go2rtc pulls only the ones someone watches.
    Pull,
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct Fleet {
    pub names: Vec<String>,
    pub mode: Mode,
    /// The agentcast binary, as go2rtc will run it (exec) and as `exec.allow_paths` lists it.
    pub bin: String,
    /// Address go2rtc's api/rtsp/webrtc listen on.
    pub listen: String,
    /// FIFO path per agent; `{name}` is replaced.
    pub fifo_template: String,
    /// TCP port of the first agent; the others follow.
    pub tcp_port_base: u16,
    /// Extra producer arguments, passed to every agent.
    pub args: Vec<String>,
    /// The command line that generated it, for the header comment.
    pub invocation: String,
}

/// `agent_01`, `agent_02`, ... (two digits at least, more for big fleets).
pub fn numbered_names(n: u32) -> Vec<String> {
    let width = n.to_string().len().max(2);
    (1..=n).map(|i| format!("agent_{i:0width$}")).collect()
}

/// Quotes one argument the way go2rtc splits exec commands; refuses what it cannot carry.
pub fn quote_arg(arg: &str) -> Result<String, String> {
    if arg.contains('#') {
        return Err(format!("argument '{arg}' contains '#': go2rtc cuts exec commands at the first '#'"));
    }
    if arg.contains(['\n', '\r']) {
        return Err(format!("argument {arg:?} contains a line break"));
    }
    if arg.is_empty() {
        return Ok("\"\"".into());
    }
    if !arg.contains([' ', '\t', '"', '\'']) {
        return Ok(arg.to_string());
    }
    if !arg.contains('"') {
        Ok(format!("\"{arg}\""))
    } else if !arg.contains('\'') {
        Ok(format!("'{arg}'"))
    } else {
        Err(format!("argument {arg:?} contains both quote kinds, which go2rtc cannot split"))
    }
}

/// Splits a command the way go2rtc does (whitespace, '…' and "…" quoting); the inverse of
/// [`quote_arg`], used to check round trips.
pub fn split_like_go2rtc(cmd: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in cmd.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// A YAML double-quoted scalar.
fn y(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if ok { Ok(()) } else { Err(format!("--name '{name}': stream names may use letters, digits, '_' and '-' only")) }
}

impl Fleet {
    /// The producer's command line for one agent (without go2rtc's `#` options).
    fn producer(&self, name: &str, output: Option<&str>) -> Result<String, String> {
        let mut words = vec![quote_arg(&self.bin)?];
        if let Some(o) = output {
            words.push("--output".into());
            words.push(quote_arg(o)?);
        }
        words.push("--stream".into());
        words.push(quote_arg(name)?);
        // stdout (exec mode): MPEG-TS, whose PES lengths let go2rtc pass each frame on at once; raw
        // H.264 waits in go2rtc's framing until the next frame starts (one frame interval, at the
        // first picture too). A producer argument that names the mux, or another output (MPEG-TS
        // is for stdout only), wins.
        let named = |flag: &str| self.args.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
        if self.mode == Mode::Exec && !named("--mux") && !named("--output") {
            words.push("--mux".into());
            words.push("mpegts".into());
        }
        for a in &self.args {
            words.push(quote_arg(a)?);
        }
        Ok(words.join(" "))
    }

    fn fifo_path(&self, name: &str) -> String {
        self.fifo_template.replace("{name}", name)
    }

    /// The YAML text.
    pub fn render(&self) -> Result<String, String> {
        if self.names.is_empty() && self.mode != Mode::Pull {
            return Err("no agents: give --agents N or --name NAME".into());
        }
        for n in &self.names {
            validate_name(n)?;
        }
        if self.mode == Mode::Fifo && !self.fifo_template.contains("{name}") && self.names.len() > 1 {
            return Err(format!("--fifo-path {}: needs {{name}} so each agent gets its own FIFO", self.fifo_template));
        }
        let last_port = u32::from(self.tcp_port_base) + self.names.len() as u32 - 1;
        if self.mode == Mode::Tcp && last_port > u32::from(u16::MAX) {
            return Err(format!(
                "--tcp-port-base {}: {} agents run past port 65535",
                self.tcp_port_base,
                self.names.len()
            ));
        }
        let host = self.listen.as_str();
        let mut t = String::new();
        let w = &mut t;
        let mode = format!("{:?}", self.mode).to_lowercase();
        match self.mode {
            Mode::Pull => {
                writeln!(w, "# go2rtc config for a fleet of agentcast agents that register themselves (mode pull).")
                    .unwrap()
            }
            _ => writeln!(w, "# go2rtc config for {} agentcast stream(s), mode {mode}.", self.names.len()).unwrap(),
        }
        writeln!(w, "# Generated by: {}", self.invocation).unwrap();
        match self.mode {
            Mode::Pull if host == "0.0.0.0" || host == "::" => {
                writeln!(w, "# go2rtc listens on every address, so agents on other machines reach its API.").unwrap();
            }
            Mode::Pull => {
                writeln!(w, "# go2rtc listens on {host} only, so only agents on this machine can register;").unwrap();
                writeln!(w, "# for agents on other machines, generate with --listen 0.0.0.0.").unwrap();
            }
            _ => writeln!(w, "# go2rtc listens on {host} only; change that with --listen.").unwrap(),
        }
        match self.mode {
            Mode::Pull => {
                let api = if host == "0.0.0.0" || host == "::" { "GO2RTC_HOST" } else { host };
                let mut agent = vec![quote_arg(&self.bin)?, "--output rtsp-listen:0.0.0.0:0/{hostname}-{pid}".into()];
                agent.push(format!("--register http://{api}:1984"));
                for a in &self.args {
                    agent.push(quote_arg(a)?);
                }
                writeln!(w, "# No streams are listed: each agent serves RTSP and announces itself through the API,")
                    .unwrap();
                writeln!(w, "# and go2rtc pulls only the agents someone watches. Run each agent as, for example:")
                    .unwrap();
                writeln!(w, "#   {}", agent.join(" ")).unwrap();
                writeln!(w, "# (add --name NAME and --advertise HOST where the defaults do not fit).").unwrap();
            }
            Mode::Exec => {
                writeln!(w, "# go2rtc starts one producer per viewer session and stops it with SIGTERM").unwrap();
                writeln!(w, "# (#killsignal=15), then SIGKILL 5 s later (#killtimeout=5). MPEG-TS on stdout").unwrap();
                writeln!(w, "# (--mux mpegts): go2rtc passes each frame on as soon as it is in.").unwrap();
            }
            Mode::Rtsp => {
                writeln!(w, "# go2rtc starts one producer per viewer session; it publishes to go2rtc's RTSP").unwrap();
                writeln!(w, "# server at {{output}} (so rtsp must stay on) and is stopped with SIGTERM").unwrap();
                writeln!(w, "# (#killsignal=15), then SIGKILL 5 s later (#killtimeout=5).").unwrap();
            }
            Mode::Fifo | Mode::Tcp => {
                writeln!(w, "# Run one producer per agent beside go2rtc (systemd, docker compose):").unwrap();
                for (i, n) in self.names.iter().enumerate() {
                    let output = match self.mode {
                        Mode::Fifo => format!("fifo:{}", self.fifo_path(n)),
                        _ => format!("tcp:127.0.0.1:{}", u32::from(self.tcp_port_base) + i as u32),
                    };
                    writeln!(w, "#   {}", self.producer(n, Some(&output))?).unwrap();
                }
            }
        }
        writeln!(w, "api:\n  listen: {}", y(&format!("{host}:1984"))).unwrap();
        writeln!(w, "rtsp:\n  listen: {}", y(&format!("{host}:8554"))).unwrap();
        writeln!(w, "webrtc:\n  listen: {}\n  ice_servers: []", y(&format!("{host}:8555"))).unwrap();
        writeln!(w, "# Listeners agentcast does not need stay off.").unwrap();
        writeln!(w, "rtmp:\n  listen: \"\"\nsrtp:\n  listen: \"\"").unwrap();
        match self.mode {
            Mode::Exec | Mode::Rtsp => writeln!(w, "exec:\n  allow_paths:\n    - {}", y(&self.bin)).unwrap(),
            Mode::Fifo => writeln!(w, "exec:\n  allow_paths:\n    - {}", y(CAT)).unwrap(),
            Mode::Tcp | Mode::Pull => {}
        }
        if self.mode == Mode::Pull {
            writeln!(w, "streams: {{}}").unwrap();
            return Ok(t);
        }
        writeln!(w, "streams:").unwrap();
        for (i, n) in self.names.iter().enumerate() {
            let source = match self.mode {
                Mode::Exec => format!("exec:{}#killsignal=15#killtimeout=5", self.producer(n, None)?),
                Mode::Rtsp => format!("exec:{}#killsignal=15#killtimeout=5", self.producer(n, Some("{output}"))?),
                Mode::Fifo => format!("exec:{CAT} {}#killsignal=15#killtimeout=2", quote_arg(&self.fifo_path(n))?),
                Mode::Tcp | Mode::Pull => format!("tcp://127.0.0.1:{}", u32::from(self.tcp_port_base) + i as u32),
            };
            writeln!(w, "  {n}: {}", y(&source)).unwrap();
        }
        Ok(t)
    }
}

/// `cat`, by its full path so `exec.allow_paths` can list it.
pub const CAT: &str = "/usr/bin/cat";

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet(mode: Mode) -> Fleet {
        Fleet {
            names: numbered_names(2),
            mode,
            bin: "/usr/local/bin/agentcast".into(),
            listen: "127.0.0.1".into(),
            fifo_template: "/run/agentcast/{name}.h264".into(),
            tcp_port_base: 9001,
            args: vec!["--fps".into(), "30".into()],
            invocation: "agentcast go2rtc-config".into(),
        }
    }

    #[test]
    fn names() {
        assert_eq!(numbered_names(3), vec!["agent_01", "agent_02", "agent_03"]);
        assert_eq!(numbered_names(100)[0], "agent_001");
    }

    #[test]
    fn quoting_round_trips_through_go2rtcs_splitter() {
        let args = ["plain", "with space", "say \"hi\"", "it's", "", "/path/to/a b.glsl"];
        let cmd: Vec<String> = args.iter().map(|a| quote_arg(a).unwrap()).collect();
        assert_eq!(split_like_go2rtc(&cmd.join(" ")), args);
        assert!(quote_arg("a#b").unwrap_err().contains("'#'"));
        assert!(quote_arg("both \" and '").is_err());
    }

    #[test]
    fn exec_lines_are_exact() {
        let text = fleet(Mode::Exec).render().unwrap();
        assert!(
            text.contains(
                "  agent_01: \"exec:/usr/local/bin/agentcast --stream agent_01 --mux mpegts --fps 30#killsignal=15#killtimeout=5\""
            ),
            "{text}"
        );
        assert!(text.contains("    - \"/usr/local/bin/agentcast\""));
        assert!(text.contains("listen: \"127.0.0.1:1984\""));
        assert!(text.contains("ice_servers: []"));
    }

    #[test]
    fn exec_mux_or_output_given_by_the_user_wins() {
        for args in [vec!["--mux", "raw"], vec!["--mux=raw"], vec!["--output", "tcp:127.0.0.1:9000"]] {
            let f = Fleet { args: args.iter().map(|a| a.to_string()).collect(), ..fleet(Mode::Exec) };
            let text = f.render().unwrap();
            assert!(!text.contains("mpegts\""), "{text}");
            assert!(text.contains(&format!("--stream agent_01 {}#", args.join(" "))), "{text}");
        }
        // Only stdout gets MPEG-TS: the other modes' producers keep raw H.264.
        for mode in [Mode::Rtsp, Mode::Fifo, Mode::Tcp] {
            assert!(!fleet(mode).render().unwrap().contains("--mux"), "{mode:?}");
        }
    }

    #[test]
    fn rtsp_lines_publish_to_go2rtcs_output() {
        let text = fleet(Mode::Rtsp).render().unwrap();
        let line = "  agent_01: \"exec:/usr/local/bin/agentcast --output {output} --stream agent_01 --fps 30#killsignal=15#killtimeout=5\"";
        assert!(text.contains(line), "{text}");
        assert!(text.contains("    - \"/usr/local/bin/agentcast\""));
        assert!(text.contains("rtsp:\n  listen: \"127.0.0.1:8554\""), "{text}");
    }

    #[test]
    fn fifo_and_tcp_sources() {
        let text = fleet(Mode::Fifo).render().unwrap();
        assert!(
            text.contains("agent_02: \"exec:/usr/bin/cat /run/agentcast/agent_02.h264#killsignal=15#killtimeout=2\"")
        );
        assert!(
            text.contains("#   /usr/local/bin/agentcast --output fifo:/run/agentcast/agent_01.h264 --stream agent_01")
        );
        let text = fleet(Mode::Tcp).render().unwrap();
        assert!(text.contains("agent_02: \"tcp://127.0.0.1:9002\""));
        assert!(!text.contains("allow_paths"));
    }

    #[test]
    fn pull_mode_lists_no_streams_and_shows_an_agent() {
        let text = fleet(Mode::Pull).render().unwrap();
        assert!(text.contains("streams: {}"), "{text}");
        assert!(text.contains("api:\n  listen: \"127.0.0.1:1984\""), "{text}");
        assert!(text.contains("rtsp:\n  listen: \"127.0.0.1:8554\""), "{text}");
        assert!(!text.contains("exec:\n") && !text.contains("agent_01"), "{text}");
        assert!(text.contains(
            "#   /usr/local/bin/agentcast --output rtsp-listen:0.0.0.0:0/{hostname}-{pid} --register http://127.0.0.1:1984 --fps 30"
        ));
        let mut f = fleet(Mode::Pull);
        f.listen = "0.0.0.0".into();
        let text = f.render().unwrap();
        assert!(text.contains("--register http://GO2RTC_HOST:1984") && text.contains("listen: \"0.0.0.0:1984\""));
    }

    #[test]
    fn refusals() {
        let mut f = fleet(Mode::Exec);
        f.args.push("--shader=/a#b.glsl".into());
        assert!(f.render().unwrap_err().contains("'#'"));
        let mut f = fleet(Mode::Exec);
        f.names = vec!["bad name".into()];
        assert!(f.render().unwrap_err().starts_with("--name 'bad name'"));
        let mut f = fleet(Mode::Fifo);
        f.fifo_template = "/run/agentcast/one.h264".into();
        assert!(f.render().unwrap_err().contains("{name}"));
        let mut f = fleet(Mode::Tcp);
        f.tcp_port_base = 65535;
        assert!(f.render().unwrap_err().contains("65535"));
    }
}
