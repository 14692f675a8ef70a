//! `--register URL --name NAME --advertise HOST`: the agent announces itself to go2rtc as a camera.
//!
//! Once the output listens (`rtsp-listen:` or `tcp:`), the agent sends go2rtc's API
//! `PATCH /api/streams?name=NAME&src=rtsp://ADVERTISE:PORT/NAME` (or `tcp://ADVERTISE:PORT`);
//! go2rtc keeps it in memory and pulls the stream only while someone watches. A [`Registrar`]
//! thread then looks every [`CHECK_EVERY`] and registers again when go2rtc lost the stream (it
//! restarted: in-memory registrations go with it); while go2rtc cannot be reached streaming goes on,
//! the registrar says so once and retries with a backoff up to [`RETRY_MAX`]. Dropping the
//! registrar (every way a stream ends) sends `DELETE /api/streams?src=NAME` within
//! [`DELETE_DEADLINE`], only if the name still points at this agent.
//!
//! A name go2rtc already streams from another source: a source that answers on its port is a live
//! agent, and start-up refuses the name (exit 73; later checks leave it alone and say so once).
//! One that does not answer is a dead agent's leftover (a pod that restarted with a new address),
//! and is taken over. go2rtc's PATCH keeps an existing stream whose name is the source's RTSP path
//! (it treats it as an alias), so a takeover deletes the old stream first.
//!
//! Passwords in the URL become a basic-auth header and are never logged.

use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use log::{debug, info, warn};

use crate::exit::{Exit, fail};

/// How often a registered agent checks that go2rtc still has it.
pub const CHECK_EVERY: Duration = Duration::from_secs(3);
/// The longest wait between two tries while go2rtc cannot be reached.
pub const RETRY_MAX: Duration = Duration::from_secs(5);
/// Each request's bound.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(1500);
/// The whole unregistration on exit (a GET and a DELETE), so that exit stays fast.
pub const DELETE_DEADLINE: Duration = Duration::from_millis(500);
/// How long a source that already holds the name gets to answer before it counts as dead.
const LIVE_PROBE: Duration = Duration::from_millis(500);

/// go2rtc's API: `http://[USER:PASS@]HOST[:PORT][/PREFIX]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Api {
    /// `http://HOST:PORT[/PREFIX]`, without the user and password.
    base: String,
    host: String,
    port: u16,
    /// The `Authorization` header's value.
    auth: Option<String>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.shown())
    }
}

impl Api {
    /// Parses `--register`. The error says what is accepted.
    pub fn parse(s: &str) -> Result<Api, String> {
        let form = "http://HOST[:PORT] (go2rtc's API, e.g. http://go2rtc:1984; user:password@ allowed)";
        let rest = s.strip_prefix("http://").ok_or_else(|| {
            if s.starts_with("https://") {
                format!("--register {}: https is not supported; give go2rtc's plain API address, {form}", redact(s))
            } else {
                format!("--register {} is not {form}", redact(s))
            }
        })?;
        let (authority, prefix) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| format!("--register {}: unclosed [", redact(s)))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("--register {} is not {form}: no HOST", redact(s)));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("--register {}: the port is not 1-65535", redact(s)))?,
        };
        let auth = userinfo.map(|u| {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let pair = format!("{}:{}", percent_decode(user), percent_decode(pass));
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
        });
        let shown_host = if host.contains(':') { format!("[{host}]") } else { host.clone() };
        let base = format!("http://{shown_host}:{port}{}", prefix.trim_end_matches('/'));
        Ok(Api { base, host, port, auth })
    }

    /// The URL for logs and errors: never the password.
    pub fn shown(&self) -> String {
        self.base.clone()
    }

    /// The address this machine reaches go2rtc from: the source address of the route to it (a UDP
    /// socket connected there; nothing is sent).
    pub fn route_source(&self) -> Result<IpAddr, String> {
        let target = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("{}: {e}", self.host))?
            .next()
            .ok_or_else(|| format!("{} has no address", self.host))?;
        let any: SocketAddr = if target.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" }.parse().expect("a literal");
        let socket = UdpSocket::bind(any).map_err(|e| e.to_string())?;
        socket.connect(target).map_err(|e| format!("no route to {target}: {e}"))?;
        socket.local_addr().map(|a| a.ip()).map_err(|e| e.to_string())
    }
}

/// `user:pass@` in a URL, as `***@`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let authority = rest.split('/').next().unwrap_or_default();
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[authority.len()..]),
        None => url.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Expands `{hostname}`, `{pid}` and `{env:VAR}` in a name. An unknown `{...}` or a variable that
/// is not set is an error naming it.
pub fn expand_name(
    template: &str,
    env: impl Fn(&str) -> Option<String>,
    hostname: impl Fn() -> String,
    pid: u32,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after.find('}').ok_or_else(|| format!("'{{' without '}}' in '{template}'"))?;
        let key = &after[..close];
        match key {
            "hostname" => out.push_str(&hostname()),
            "pid" => out.push_str(&pid.to_string()),
            _ => match key.strip_prefix("env:") {
                Some(var) => out.push_str(
                    &env(var).filter(|v| !v.is_empty()).ok_or_else(|| format!("{{env:{var}}}: {var} is not set"))?,
                ),
                None => {
                    return Err(format!("unknown template {{{key}}} (use {{hostname}}, {{pid}} or {{env:VAR}})"));
                }
            },
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// [`expand_name`] with this process's environment, host name and pid.
pub fn expand_name_here(template: &str) -> Result<String, String> {
    let hostname = || nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default();
    expand_name(template, |v| std::env::var(v).ok(), hostname, std::process::id())
}

/// What go2rtc has under the name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// Nothing: go2rtc never had it, or restarted, or it was deleted.
    Absent,
    /// Our source.
    Ours,
    /// Another source (its URLs).
    Other(Vec<String>),
}

/// Reads go2rtc's answer to `GET /api/streams?src=NAME`: `{"producers": [{"url": ...}], ...}`.
pub fn held_from(status: u16, body: &str, ours: &str) -> Result<Held, String> {
    match status {
        404 => return Ok(Held::Absent),
        200 => {}
        s => return Err(format!("HTTP {s}")),
    }
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("not go2rtc's JSON: {e}"))?;
    let urls: Vec<String> = v["producers"]
        .as_array()
        .map(|p| p.iter().filter_map(|p| p["url"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    Ok(if urls.iter().any(|u| u == ours) {
        Held::Ours
    } else if urls.is_empty() {
        Held::Absent
    } else {
        Held::Other(urls)
    })
}

/// What `--register`, `--name` and `--advertise` ask for (the name's templates expanded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Register {
    pub api: Api,
    pub name: String,
    /// `--advertise`; `None`: the output's address, or the route's source for a wildcard.
    pub advertise: Option<String>,
}

impl Register {
    /// The registration for an output listening on `bound`: `rtsp://HOST:PORT/NAME` for an RTSP
    /// server (`rtsp`), `tcp://HOST:PORT` otherwise.
    pub fn for_output(&self, bound: SocketAddr, rtsp: bool) -> Result<Registration, String> {
        let host = match &self.advertise {
            Some(h) => h.clone(),
            None if !bound.ip().is_unspecified() => bound.ip().to_string(),
            None => self
                .api
                .route_source()
                .map_err(|e| {
                    format!("--advertise: cannot tell this machine's address towards {}: {e}", self.api.shown())
                })?
                .to_string(),
        };
        let host = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host };
        let src = if rtsp {
            format!("rtsp://{host}:{}/{}", bound.port(), self.name)
        } else {
            format!("tcp://{host}:{}", bound.port())
        };
        Ok(Registration { api: self.api.clone(), name: self.name.clone(), src })
    }
}

/// One agent's registration: go2rtc's API, the stream's name and where go2rtc should pull it.
#[derive(Debug, Clone)]
pub struct Registration {
    pub api: Api,
    pub name: String,
    /// `rtsp://ADVERTISE:PORT/NAME` or `tcp://ADVERTISE:PORT`.
    pub src: String,
}

/// Why a try did not register.
#[derive(Debug)]
pub enum Refused {
    /// go2rtc did not answer (or not as go2rtc does).
    Unreachable(String),
    /// Another live agent streams under the name.
    Taken(Vec<String>),
}

impl Registration {
    fn agent(deadline: Duration) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(deadline))
            .http_status_as_error(false)
            .user_agent(concat!("agentcast/", env!("CARGO_PKG_VERSION")))
            .build()
            .into()
    }

    fn url(&self) -> String {
        format!("{}/api/streams", self.api.base)
    }

    fn with_auth<B>(&self, r: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.api.auth {
            Some(a) => r.header("Authorization", a),
            None => r,
        }
    }

    /// What go2rtc holds under the name now.
    pub fn held(&self, deadline: Duration) -> Result<Held, Refused> {
        let agent = Self::agent(deadline);
        let mut resp = self
            .with_auth(agent.get(self.url()).query("src", &self.name))
            .call()
            .map_err(|e| Refused::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        if status == 401 {
            return Err(Refused::Unreachable("401 Unauthorized (check the user and password in --register)".into()));
        }
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        held_from(status, &body, &self.src).map_err(Refused::Unreachable)
    }

    fn send(&self, method: &str, deadline: Duration) -> Result<(), Refused> {
        let agent = Self::agent(deadline);
        let resp = match method {
            "PATCH" => {
                self.with_auth(agent.patch(self.url()).query("name", &self.name).query("src", &self.src)).send_empty()
            }
            _ => self.with_auth(agent.delete(self.url()).query("src", &self.name)).call(),
        }
        .map_err(|e| Refused::Unreachable(e.to_string()))?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            // go2rtc deletes the stream, then fails to rewrite a read-only config file.
            400 if method == "DELETE" => Ok(()),
            s => Err(Refused::Unreachable(format!("{method} answered HTTP {s}"))),
        }
    }

    /// Registers unless a live agent holds the name; takes over a dead one's.
    pub fn register(&self) -> Result<bool, Refused> {
        match self.held(REQUEST_TIMEOUT)? {
            Held::Ours => Ok(false),
            Held::Other(urls) => {
                if urls.iter().any(|u| answers(u)) {
                    return Err(Refused::Taken(urls));
                }
                info!(
                    "register: go2rtc's '{}' pointed at {} (not answering); taking the name over",
                    self.name,
                    urls.join(", ")
                );
                self.send("DELETE", REQUEST_TIMEOUT)?;
                self.send("PATCH", REQUEST_TIMEOUT).map(|()| true)
            }
            Held::Absent => self.send("PATCH", REQUEST_TIMEOUT).map(|()| true),
        }
    }

    /// Removes the name if it still points at this agent, within `deadline`.
    pub fn unregister(&self, deadline: Duration) -> Result<(), Refused> {
        let t0 = Instant::now();
        if self.held(deadline)? != Held::Ours {
            return Ok(());
        }
        self.send("DELETE", deadline.saturating_sub(t0.elapsed()).max(Duration::from_millis(50)))
    }
}

/// Whether a source URL (`rtsp://HOST:PORT/...`, `tcp://HOST:PORT`) accepts a TCP connection.
fn answers(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else { return false };
    let hostport = rest.split('/').next().unwrap_or_default();
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
    let with_port = if hostport.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
        hostport.to_string()
    } else {
        format!("{hostport}:554")
    };
    with_port
        .to_socket_addrs()
        .map(|addrs| addrs.into_iter().any(|a| TcpStream::connect_timeout(&a, LIVE_PROBE).is_ok()))
        .unwrap_or(false)
}

/// Where the registration stands, for the stats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Pending = 0,
    Registered = 1,
    Unreachable = 2,
    Taken = 3,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Registered => "registered",
            State::Unreachable => "unreachable",
            State::Taken => "taken",
        }
    }
}

/// The registration's state, shared with the stats.
#[derive(Debug, Default)]
pub struct Status {
    state: AtomicU8,
}

impl Status {
    pub fn get(&self) -> State {
        match self.state.load(Ordering::Relaxed) {
            1 => State::Registered,
            2 => State::Unreachable,
            3 => State::Taken,
            _ => State::Pending,
        }
    }
    fn set(&self, s: State) {
        self.state.store(s as u8, Ordering::Relaxed);
    }
}

/// Keeps the registration alive; unregisters on drop. See the module doc.
pub struct Registrar {
    pub registration: Registration,
    stop: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<JoinHandle<()>>,
    pub status: Arc<Status>,
}

impl Registrar {
    /// Registers (one try, now) and starts the thread that keeps it. A name held by another live
    /// agent is exit 73; go2rtc out of reach is a warning, and streaming goes on.
    pub fn start(registration: Registration) -> anyhow::Result<Registrar> {
        let status = Arc::new(Status::default());
        let shown = format!("{} as '{}' -> {}", registration.api.shown(), registration.name, registration.src);
        match registration.register() {
            Ok(_) => {
                status.set(State::Registered);
                info!("register: registered with go2rtc at {shown}");
            }
            Err(Refused::Taken(urls)) => {
                return Err(fail(
                    Exit::CantCreate,
                    format!(
                        "--name {}: go2rtc at {} already streams it from {}, which answers; choose another --name or stop that agent",
                        registration.name,
                        registration.api.shown(),
                        urls.join(", ")
                    ),
                ));
            }
            Err(Refused::Unreachable(why)) => {
                status.set(State::Unreachable);
                warn!(
                    "register: go2rtc at {} cannot be reached ({why}); streaming on, retrying",
                    registration.api.shown()
                );
            }
        }
        let stop = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let thread = {
            let (registration, stop, status) = (registration.clone(), stop.clone(), status.clone());
            std::thread::Builder::new().name("register".into()).spawn(move || keep(&registration, &stop, &status))?
        };
        Ok(Registrar { registration, stop, thread: Some(thread), status })
    }
}

/// The registrar thread: check, register again where go2rtc lost the name, back off while it is
/// out of reach; each change of state is said once.
fn keep(r: &Registration, stop: &(std::sync::Mutex<bool>, std::sync::Condvar), status: &Status) {
    let mut wait = CHECK_EVERY;
    loop {
        {
            let stopped = stop.0.lock().unwrap_or_else(|p| p.into_inner());
            let (stopped, _) = stop.1.wait_timeout_while(stopped, wait, |s| !*s).unwrap_or_else(|p| p.into_inner());
            if *stopped {
                return;
            }
        }
        let before = status.get();
        match r.register() {
            Ok(sent) => {
                status.set(State::Registered);
                wait = CHECK_EVERY;
                if sent {
                    info!("register: go2rtc at {} had lost '{}'; registered again", r.api.shown(), r.name);
                } else if before != State::Registered {
                    info!("register: registered with go2rtc at {} as '{}'", r.api.shown(), r.name);
                }
            }
            Err(Refused::Unreachable(why)) => {
                status.set(State::Unreachable);
                wait = if before == State::Unreachable { (wait * 2).min(RETRY_MAX) } else { Duration::from_secs(1) };
                if before != State::Unreachable {
                    warn!("register: go2rtc at {} cannot be reached ({why}); streaming on, retrying", r.api.shown());
                } else {
                    debug!("register: still unreachable: {why}");
                }
            }
            Err(Refused::Taken(urls)) => {
                status.set(State::Taken);
                wait = CHECK_EVERY;
                if before != State::Taken {
                    warn!(
                        "register: go2rtc's '{}' now streams from {}, which answers; leaving it alone",
                        r.name,
                        urls.join(", ")
                    );
                }
            }
        }
    }
}

impl Drop for Registrar {
    /// Stops the thread and removes the registration, within [`DELETE_DEADLINE`].
    fn drop(&mut self) {
        *self.stop.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.stop.1.notify_all();
        let t0 = Instant::now();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let left = DELETE_DEADLINE.saturating_sub(t0.elapsed()).max(Duration::from_millis(100));
        match self.registration.unregister(left) {
            Ok(()) => {
                info!("register: removed '{}' from go2rtc at {}", self.registration.name, self.registration.api.shown())
            }
            Err(e) => debug!("register: could not remove '{}': {e:?}", self.registration.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_url_keeps_its_password_out_of_sight() {
        let a = Api::parse("http://admin:s%40cret@go2rtc:1984").unwrap();
        assert_eq!(a.shown(), "http://go2rtc:1984");
        assert_eq!(format!("{a:?}"), "http://go2rtc:1984");
        let basic = base64::engine::general_purpose::STANDARD.encode("admin:s@cret");
        assert_eq!(a.auth.as_deref(), Some(format!("Basic {basic}").as_str()));
        assert_eq!(Api::parse("http://127.0.0.1:1984/").unwrap().shown(), "http://127.0.0.1:1984");
        assert_eq!(Api::parse("http://h/go2rtc").unwrap().shown(), "http://h:80/go2rtc");
        assert_eq!(Api::parse("http://[::1]:1984").unwrap().shown(), "http://[::1]:1984");
        for (bad, why) in [
            ("go2rtc:1984", "is not http://HOST"),
            ("https://u:pw@go2rtc:1984", "https is not supported"),
            ("http://:1984", "no HOST"),
            ("http://h:0", "the port"),
        ] {
            let e = Api::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains("pw"), "{e}");
        }
        assert_eq!(redact("http://u:pw@h:1/x"), "http://***@h:1/x");
    }

    #[test]
    fn names_expand_their_templates() {
        let env = |v: &str| (v == "POD_NAME").then(|| "agent-7f9c".to_string());
        let host = || "node3".to_string();
        assert_eq!(expand_name("run7-{env:POD_NAME}", env, host, 42).unwrap(), "run7-agent-7f9c");
        assert_eq!(expand_name("{hostname}_{pid}", env, host, 42).unwrap(), "node3_42");
        assert_eq!(expand_name("plain", env, host, 1).unwrap(), "plain");
        assert!(expand_name("{env:NOPE}", env, host, 1).unwrap_err().contains("NOPE is not set"));
        assert!(expand_name("{user}", env, host, 1).unwrap_err().contains("unknown template {user}"));
        assert!(expand_name("a{pid", env, host, 1).unwrap_err().contains("without"));
    }

    #[test]
    fn go2rtcs_answer_says_who_holds_the_name() {
        let ours = "rtsp://10.0.0.5:8554/a";
        assert_eq!(held_from(404, "", ours), Ok(Held::Absent));
        assert_eq!(
            held_from(200, r#"{"producers":[{"url":"rtsp://10.0.0.5:8554/a"}],"consumers":null}"#, ours),
            Ok(Held::Ours)
        );
        assert_eq!(
            held_from(200, r#"{"producers":[{"url":"rtsp://10.0.0.9:8554/a","remote_addr":"x"}]}"#, ours),
            Ok(Held::Other(vec!["rtsp://10.0.0.9:8554/a".into()]))
        );
        assert_eq!(held_from(200, r#"{"producers":[],"consumers":[]}"#, ours), Ok(Held::Absent));
        assert!(held_from(500, "", ours).unwrap_err().contains("500"));
        assert!(held_from(200, "<html>", ours).unwrap_err().contains("JSON"));
    }

    #[test]
    fn a_source_that_answers_is_live_and_one_that_does_not_is_not() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(answers(&format!("rtsp://127.0.0.1:{port}/a")));
        assert!(answers(&format!("tcp://127.0.0.1:{port}")));
        drop(l);
        assert!(!answers(&format!("rtsp://127.0.0.1:{port}/a")));
        assert!(!answers("not a url"));
    }

    #[test]
    fn the_route_to_loopback_starts_at_loopback() {
        let a = Api::parse("http://127.0.0.1:1984").unwrap();
        assert_eq!(a.route_source().unwrap(), "127.0.0.1".parse::<IpAddr>().unwrap());
    }
}
