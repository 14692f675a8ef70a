//! `--output stdout|fifo:PATH|tcp:ADDR:PORT`, parsed and validated (pure).

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
}

impl Output {
    /// Whether readers come and go (FIFO, TCP) rather than one reader for the process's life.
    pub fn demand_paged(&self) -> bool {
        !matches!(self, Output::Stdout)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Output::Stdout => write!(f, "stdout"),
            Output::Fifo(p) => write!(f, "fifo:{}", p.display()),
            Output::Tcp(a) => write!(f, "tcp:{a}"),
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
    Err(format!("'{s}' is not stdout, fifo:PATH or tcp:ADDR:PORT"))
}

/// Refuses a TCP address other than loopback unless remote readers were allowed explicitly.
pub fn check_remote(output: &Output, allow_remote: bool) -> Result<(), String> {
    match output {
        Output::Tcp(a) if !a.ip().is_loopback() && !allow_remote => Err(format!(
            "--output tcp:{a} listens beyond this machine; use a loopback address (127.0.0.1) or add --allow-remote"
        )),
        _ => Ok(()),
    }
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
        assert!(parse("udp:1.2.3.4:5").unwrap_err().contains("fifo:PATH"));
    }

    #[test]
    fn remote_addresses_need_allow_remote() {
        let any = parse("tcp:0.0.0.0:9001").unwrap();
        assert!(check_remote(&any, false).unwrap_err().contains("--allow-remote"));
        assert!(check_remote(&any, true).is_ok());
        assert!(check_remote(&parse("tcp:127.0.0.1:9001").unwrap(), false).is_ok());
        assert!(check_remote(&parse("tcp:[::1]:9001").unwrap(), false).is_ok());
    }

    #[test]
    fn display_round_trips() {
        for s in ["stdout", "fifo:/tmp/x.h264", "tcp:127.0.0.1:9001"] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
    }
}
