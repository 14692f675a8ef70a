//! `--output stdout|fifo:PATH|tcp:ADDR:PORT|rtsp://HOST:PORT/PATH|rtsp-listen:HOST:PORT/NAME`, parsed
//! and validated (pure; the `{hostname}`/`{pid}`/`{env:VAR}` templates in a NAME are expanded later,
//! by [`crate::register::expand_name`]).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Standard output: go2rtc's `exec:` source, or a pipe into ffmpeg/a file.
    Stdout,
    /// A named pipe that readers (`exec:cat PATH`) open and close at any time.
    Fifo(PathBuf),
    /// A TCP listener; one reader at a time (go2rtc's `tcp://ADDR:PORT` source).
    Tcp(SocketAddr),
    /// An RTSP server to publish to (ANNOUNCE/RECORD), such as go2rtc's `{output}`.
    Rtsp(RtspUrl),
    /// An RTSP server of our own, as an IP camera serves: clients (go2rtc, ffplay, VLC) pull
    /// `rtsp://HOST:PORT/NAME` and share one encoder.
    RtspListen(Listen),
}

/// `rtsp-listen:HOST:PORT/NAME`: where the RTSP server listens and the path it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// The address to listen on (port 0: a free port, chosen when the server starts).
    pub addr: SocketAddr,
    /// The path, as given: `{hostname}`, `{pid}` and `{env:VAR}` are expanded at start.
    pub name: String,
}

/// An `rtsp://[USER[:PASS]@]HOST[:PORT]/PATH` location, with the parts a connect check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtspUrl {
    /// The whole URL, as given (rtspclientsink's `location`).
    pub url: String,
    /// Host name or address, without brackets.
    pub host: String,
    /// The port (554, RTSP's default, when the URL names none).
    pub port: u16,
}

/// RTSP's well-known port, for URLs that name none.
pub const RTSP_DEFAULT_PORT: u16 = 554;

impl RtspUrl {
    /// The URL without a password, for logs and errors.
    pub fn redacted(&self) -> String {
        let rest = self.url.strip_prefix("rtsp://").unwrap_or(&self.url);
        let authority = rest.split('/').next().unwrap_or_default();
        match authority.rsplit_once('@') {
            Some((_, host)) => format!("rtsp://***@{host}{}", &rest[authority.len()..]),
            None => self.url.clone(),
        }
    }
}

fn parse_rtsp(s: &str) -> Result<RtspUrl, String> {
    let bad = |why: &str| format!("{s} is not rtsp://HOST[:PORT]/PATH ({why})");
    let rest = s.strip_prefix("rtsp://").ok_or_else(|| bad("only rtsp:// is supported"))?;
    let (authority, path) = rest.split_at(rest.find('/').ok_or_else(|| bad("no /PATH"))?);
    if path.len() < 2 {
        return Err(bad("no /PATH"));
    }
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no HOST"));
    }
    let port = match port {
        None => RTSP_DEFAULT_PORT,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port is not 1-65535"))?,
    };
    Ok(RtspUrl { url: s.to_string(), host: host.to_string(), port })
}

impl Output {
    /// Whether readers come and go (FIFO, TCP) rather than one reader for the process's life
    /// (stdout, or the RTSP server we publish to).
    pub fn demand_paged(&self) -> bool {
        matches!(self, Output::Fifo(_) | Output::Tcp(_) | Output::RtspListen(_))
    }
}

/// Checks a stream name as go2rtc and an RTSP path carry it: 1 to 128 of `A-Z a-z 0-9 . _ -`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > 128 {
        return Err(format!("the name is {} characters long; at most 128", name.len()));
    }
    match name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        Some(c) => Err(format!("'{c}' is not allowed in a name (use A-Z a-z 0-9 . _ -)")),
        None if name.starts_with('.') => Err("a name may not start with '.'".into()),
        None => Ok(()),
    }
}

/// Whether a name holds a `{...}` template to expand at start.
fn is_template(name: &str) -> bool {
    name.contains('{')
}

fn parse_listen(s: &str) -> Result<Listen, String> {
    let form = "rtsp-listen:HOST:PORT/NAME (e.g. rtsp-listen:0.0.0.0:8554/agent_01)";
    let rest = s.strip_prefix("rtsp-listen:").unwrap_or(s);
    let Some((hostport, name)) = rest.split_once('/') else {
        return Err(format!("{s} is not {form}: no /NAME"));
    };
    let addr = if let Some(port) = hostport.strip_prefix("localhost:") {
        format!("127.0.0.1:{port}")
    } else {
        hostport.to_string()
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("{s} is not {form}: '{hostport}' is not an IP address and port (IPv6 as [::1]:8554)"))?;
    if !is_template(name) {
        check_name(name).map_err(|e| format!("{s}: {e}"))?;
    }
    Ok(Listen { addr, name: name.to_string() })
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Stdout => write!(f, "stdout"),
            Output::Fifo(p) => write!(f, "fifo:{}", p.display()),
            Output::Tcp(a) => write!(f, "tcp:{a}"),
            Output::Rtsp(u) => write!(f, "{}", u.redacted()),
            Output::RtspListen(l) => write!(f, "rtsp-listen:{}/{}", l.addr, l.name),
        }
    }
}

/// Parses an `--output` value. The error says what forms are accepted.
pub fn parse(s: &str) -> Result<Output, String> {
    if s == "stdout" || s == "-" {
        return Ok(Output::Stdout);
    }
    if let Some(path) = s.strip_prefix("fifo:") {
        if path.is_empty() {
            return Err("fifo: needs a path, e.g. fifo:/run/agentcast/agent_01.h264".into());
        }
        return Ok(Output::Fifo(PathBuf::from(path)));
    }
    if let Some(addr) = s.strip_prefix("tcp:") {
        return addr
            .parse::<SocketAddr>()
            .map(Output::Tcp)
            .map_err(|_| format!("tcp:{addr} is not ADDR:PORT (e.g. tcp:127.0.0.1:9001 or tcp:[::1]:9001)"));
    }
    if s.starts_with("rtsp://") {
        return parse_rtsp(s).map(Output::Rtsp);
    }
    if s.starts_with("rtsp-listen:") {
        return parse_listen(s).map(Output::RtspListen);
    }
    Err(format!("'{s}' is not stdout, fifo:PATH, tcp:ADDR:PORT, rtsp://HOST:PORT/PATH or rtsp-listen:HOST:PORT/NAME"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        assert_eq!(parse("stdout"), Ok(Output::Stdout));
        assert_eq!(parse("fifo:/run/a.h264"), Ok(Output::Fifo("/run/a.h264".into())));
        assert_eq!(parse("tcp:127.0.0.1:9001"), Ok(Output::Tcp("127.0.0.1:9001".parse().unwrap())));
        assert_eq!(parse("tcp:[::1]:9001"), Ok(Output::Tcp("[::1]:9001".parse().unwrap())));
        assert!(parse("fifo:").unwrap_err().contains("needs a path"));
        assert!(parse("tcp:localhost").unwrap_err().contains("ADDR:PORT"));
        assert!(parse("udp:1.2.3.4:5").unwrap_err().contains("rtsp://HOST:PORT/PATH"));
        let u = |host: &str, port: u16, url: &str| RtspUrl { url: url.into(), host: host.into(), port };
        let go2rtc = "rtsp://127.0.0.1:8554/0cc175b9c0f1b6a831c399e269772661";
        assert_eq!(parse(go2rtc), Ok(Output::Rtsp(u("127.0.0.1", 8554, go2rtc))));
        assert_eq!(parse("rtsp://cam.local/a/b"), Ok(Output::Rtsp(u("cam.local", 554, "rtsp://cam.local/a/b"))));
        assert_eq!(parse("rtsp://[::1]:8554/x"), Ok(Output::Rtsp(u("::1", 8554, "rtsp://[::1]:8554/x"))));
        assert_eq!(parse("rtsp://me:pw@h:9/x"), Ok(Output::Rtsp(u("h", 9, "rtsp://me:pw@h:9/x"))));
        for bad in
            ["rtsp://h:8554", "rtsp://h:8554/", "rtsp://:8554/x", "rtsp://h:0/x", "rtsp://h:x/y", "rtsp://[::1/x"]
        {
            assert!(parse(bad).unwrap_err().contains("is not rtsp://HOST[:PORT]/PATH"), "{bad}");
        }
    }

    #[test]
    fn rtsp_listen_takes_an_address_a_port_and_a_name() {
        let l = |addr: &str, name: &str| Output::RtspListen(Listen { addr: addr.parse().unwrap(), name: name.into() });
        assert_eq!(parse("rtsp-listen:0.0.0.0:8554/agent_01"), Ok(l("0.0.0.0:8554", "agent_01")));
        assert_eq!(parse("rtsp-listen:127.0.0.1:0/a.b-c"), Ok(l("127.0.0.1:0", "a.b-c")));
        assert_eq!(parse("rtsp-listen:[::1]:8554/x"), Ok(l("[::1]:8554", "x")));
        assert_eq!(parse("rtsp-listen:localhost:9/x"), Ok(l("127.0.0.1:9", "x")));
        assert_eq!(parse("rtsp-listen:0.0.0.0:0/run7-{env:POD_NAME}"), Ok(l("0.0.0.0:0", "run7-{env:POD_NAME}")));
        for (bad, why) in [
            ("rtsp-listen:0.0.0.0:8554", "no /NAME"),
            ("rtsp-listen:0.0.0.0:8554/", "the name is empty"),
            ("rtsp-listen:0.0.0.0:8554/a/b", "'/' is not allowed"),
            ("rtsp-listen:0.0.0.0:8554/a b", "' ' is not allowed"),
            ("rtsp-listen:0.0.0.0:8554/.x", "may not start with '.'"),
            ("rtsp-listen:cam.local:8554/x", "is not an IP address and port"),
            ("rtsp-listen:0.0.0.0/x", "is not an IP address and port"),
            ("rtsp-listen:0.0.0.0:99999/x", "is not an IP address and port"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(parse(&format!("rtsp-listen:0.0.0.0:1/{}", "a".repeat(129))).unwrap_err().contains("at most 128"));
        assert!(parse("rtsp-listen:0.0.0.0:1/x").unwrap().demand_paged());
    }

    #[test]
    fn display_round_trips() {
        for s in
            ["stdout", "fifo:/tmp/x.h264", "tcp:127.0.0.1:9001", "rtsp://127.0.0.1:8554/a", "rtsp-listen:0.0.0.0:0/a"]
        {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
        assert_eq!(parse("rtsp://me:pw@h:9/x").unwrap().to_string(), "rtsp://***@h:9/x");
    }
}
