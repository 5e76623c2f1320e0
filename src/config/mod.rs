//! Configuration: command line + TOML file → validated, immutable [`Config`].
//!
//! Two stages, as in ripgrep: [`raw::RawConfig`] holds the options as written (one struct
//! parses both the command line and the `--config` TOML file, and only syntax is checked
//! there); [`Config`] holds the resolved values (defaults applied, addresses resolved,
//! CPU affinity and `net.core.somaxconn` consulted).
//!
//! Precedence, per option: command-line flag > config file > built-in default. For a
//! repeatable option (`--http-socket`, `--socket`, `--mount`) a command-line list replaces
//! the file's list entirely. [`defaults()`] lists every option key and its default; the
//! shipped `config/ringsgi.toml` and `docs/config.md` are checked against it by tests.
//!
//! Every error is a [`ConfigError`] whose `Display` is one line naming the option, except
//! [`ConfigError::Exit`], which carries clap's `--help`/`--version` output.

pub mod raw;

use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use clap::error::{ContextKind, ContextValue, ErrorKind};

pub use raw::RawConfig;
use raw::{AddrSpec, FieldError};

const DEFAULT_ASYNC: usize = 100;
const DEFAULT_LISTEN: u32 = 1024;
const DEFAULT_APP: &str = "hello";
const DEFAULT_SOCKET_TIMEOUT: f64 = 30.0;
const DEFAULT_KEEPALIVE_TIMEOUT: f64 = 15.0;
const DEFAULT_HEADER_TIMEOUT: f64 = 20.0;
const DEFAULT_BUFFER_SIZE: usize = 8192;
const DEFAULT_MAX_VARS: usize = 128;
const DEFAULT_RELOAD_MERCY: f64 = 60.0;

/// Every option's TOML key (its long flag without the dashes) and its default as documented.
///
/// This is the single list that `docs/config.md` and `config/ringsgi.toml` are tested
/// against, and that the tests compare with the fields of [`RawConfig`]. `--config`,
/// `--help` and `--version` are not options of the file and are not listed.
pub fn defaults() -> &'static [(&'static str, &'static str)] {
    &[
        ("http-socket", "none"),
        ("socket", "none"),
        ("cores", "number of allowed CPUs"),
        ("async", "100"),
        ("listen", "1024"),
        ("reuse-port", "false"),
        ("app", "hello"),
        ("mount", "none"),
        ("socket-timeout", "30"),
        ("keepalive-timeout", "15"),
        ("header-timeout", "20"),
        ("enable-proxy-protocol", "false"),
        ("forwarded-allow-ips", "127.0.0.1,::1"),
        ("buffer-size", "8192"),
        ("limit-post", "unlimited"),
        ("max-vars", "128"),
        ("disable-logging", "false"),
        ("harakiri", "off"),
        ("harakiri-verbose", "false"),
        ("stats", "none"),
        ("reload-mercy", "60"),
        ("stats-http", "false"),
        ("metrics", "none"),
        ("max-requests", "0"),
        ("max-worker-lifetime", "0"),
        ("reload-on-rss", "0"),
        ("pidfile", "none"),
        ("uid", "none"),
        ("gid", "none"),
        ("refuse-root", "false"),
        ("chdir", "none"),
        ("timer", "none"),
        ("cron", "none"),
        ("file-monitor", "none"),
        ("crazy-names", "localhost"),
        ("chmod-socket", "none"),
        ("chown-socket", "none"),
        ("static-map", "none"),
        ("logto", "none"),
        ("logformat", "ringsgi's line"),
        ("touch-logreopen", "none"),
        ("static-index", "none"),
        ("wsgi-file", "none"),
        ("module", "none"),
        ("callable", "application"),
        ("pythonpath", "none"),
        ("virtualenv", "none"),
        ("greenlet", "false"),
        ("pyrun", "none"),
        ("gevent", "none"),
        ("gevent-monkey-patch", "false"),
        ("gevent-early-monkey-patch", "false"),
        ("gevent-wait-for-hub", "false"),
    ]
}

/// A resolved listener address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ListenAddr {
    /// A TCP address (host names are resolved to their first address).
    Tcp(SocketAddr),
    /// A filesystem unix socket path.
    Unix(PathBuf),
    /// An abstract unix socket name (written `@name`; stored without the `@`).
    Abstract(String),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "{}", p.display()),
            ListenAddr::Abstract(n) => write!(f, "@{n}"),
        }
    }
}

/// The Python options (used by a binary built with the `python` feature).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PythonOptions {
    /// The WSGI callable's name where a mount does not name it (`--callable`).
    pub callable: String,
    /// Added to `sys.path`, in order (`--pythonpath`).
    pub pythonpath: Vec<PathBuf>,
    /// A virtual environment (`--virtualenv`).
    pub virtualenv: Option<PathBuf>,
    /// Each request in its own greenlet (`--greenlet`).
    pub greenlet: bool,
    /// Run this script instead of serving (`--pyrun`).
    pub pyrun: Option<PathBuf>,
    /// Its arguments.
    pub pyrun_args: Vec<String>,
    /// The gevent engine (`--gevent N`; the slots are `async_slots`).
    pub gevent: bool,
    /// `patch_all()` when the worker's loop starts (`--gevent-monkey-patch`).
    pub gevent_monkey_patch: bool,
    /// `patch_all()` before the app is loaded (`--gevent-early-monkey-patch`).
    pub gevent_early_monkey_patch: bool,
    /// A stopping worker waits for the hub to have nothing left (`--gevent-wait-for-hub`).
    pub gevent_wait_for_hub: bool,
}

/// An app mounted at a URL path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Path prefix: starts with `/`, no trailing `/` unless it is `/` itself.
    pub prefix: String,
    /// App name (`[a-z0-9_-]+`); the binary checks it against its app registry.
    pub app: String,
}

impl Mount {
    /// Whether `path` is under this prefix, on a segment boundary: `/sleep` matches `/sleep`
    /// and `/sleep/x` but not `/sleepy`; `/` matches every path that starts with `/`.
    pub fn matches(&self, path: &str) -> bool {
        if self.prefix == "/" {
            return path.starts_with('/');
        }
        match path.strip_prefix(self.prefix.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

/// A directory served at a URL path prefix (`--static-map`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticMount {
    /// URL path prefix, with the rules of [`Mount::prefix`].
    pub prefix: String,
    /// The directory, canonical (absolute, no symlinks): files must resolve beneath it.
    pub dir: PathBuf,
}

/// The validated, resolved configuration. Built once by [`load_from_args`] (or
/// [`Config::resolve`]) and shared read-only afterwards.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// HTTP/1.1 listeners (`--http-socket`), in the order given.
    pub http_sockets: Vec<ListenAddr>,
    /// uwsgi-protocol listeners (`--socket`), in the order given.
    pub uwsgi_sockets: Vec<ListenAddr>,
    /// Number of worker processes (`--cores`), ≥ 1.
    pub cores: usize,
    /// CPU ids allowed by the process's affinity mask, ascending, never empty.
    pub cpus: Vec<usize>,
    /// Request slots per worker (`--async`), 1..=1_000_000.
    pub async_slots: usize,
    /// Listen backlog (`--listen`), ≤ `net.core.somaxconn` when that is readable.
    pub listen: u32,
    /// Set `SO_REUSEPORT` on listeners (`--reuse-port`).
    pub reuse_port: bool,
    /// Mounts, longest prefix first; always contains a `/` mount (`--app` or explicit).
    pub mounts: Vec<Mount>,
    /// Socket read/write timeout (`--socket-timeout`), > 0.
    pub socket_timeout: Duration,
    /// Keep-alive idle wait (`--keepalive-timeout`); zero disables keep-alive (the
    /// connection is closed after each response).
    pub keepalive_timeout: Duration,
    /// Total time a request head (or uwsgi packet) may take to arrive, from its first byte
    /// (from the accept on a new connection): `--header-timeout`, > 0. nginx's
    /// `client_header_timeout`.
    pub header_timeout: Duration,
    /// HTTP listeners expect a PROXY protocol header first (`--enable-proxy-protocol`).
    pub proxy_protocol: bool,
    /// Peers whose `Forwarded`/`X-Forwarded-For` are believed (`--forwarded-allow-ips`).
    pub forwarded_allow: Vec<crate::proto::forwarded::Trusted>,
    /// Request head size limit in bytes (`--buffer-size`), 512..=1_048_576.
    pub buffer_size: usize,
    /// Request body size limit in bytes (`--limit-post`); `None` = unlimited.
    pub limit_post: Option<u64>,
    /// Maximum number of uwsgi vars per request (`--max-vars`), ≥ 1.
    pub max_vars: usize,
    /// Request log off (`--disable-logging`).
    pub disable_logging: bool,
    /// Request time limit (`--harakiri`); `None` = off.
    pub harakiri: Option<Duration>,
    /// Log details of every harakiri (`--harakiri-verbose`).
    pub harakiri_verbose: bool,
    /// Stats server address as written (`--stats`), syntax-checked only.
    pub stats: Option<String>,
    /// Time a worker gets to finish its requests on reload/shutdown (`--reload-mercy`).
    pub reload_mercy: Duration,
    /// Serve the stats document over HTTP (`--stats-http`).
    pub stats_http: bool,
    /// Prometheus endpoint address as written (`--metrics`).
    pub metrics: Option<String>,
    /// Recycle a worker after this many requests (`--max-requests`).
    pub max_requests: Option<u64>,
    /// Recycle a worker after it ran this long (`--max-worker-lifetime`).
    pub max_worker_lifetime: Option<Duration>,
    /// Recycle a worker whose RSS exceeds this many bytes (`--reload-on-rss`, given in MB).
    pub reload_on_rss: Option<u64>,
    /// The master's pid file (`--pidfile`).
    pub pidfile: Option<PathBuf>,
    /// User to run as after binding (`--uid`), as written.
    pub uid: Option<String>,
    /// Group to run as after binding (`--gid`), as written.
    pub gid: Option<String>,
    /// Refuse to run workers as root (`--refuse-root`).
    pub refuse_root: bool,
    /// Working directory (`--chdir`).
    pub chdir: Option<PathBuf>,
    /// `--timer` signal sources: (signal, period).
    pub timers: Vec<(u8, Duration)>,
    /// `--cron` signal sources.
    pub crons: Vec<(u8, crate::cron::CronSpec)>,
    /// `--file-monitor` signal sources: (signal, path).
    pub file_monitors: Vec<(u8, PathBuf)>,
    /// Host names the built-in `crazy` app resolves (`--crazy-names`).
    pub crazy_names: Vec<String>,
    /// Mode set on unix-socket listeners after bind (`--chmod-socket`, octal); `None` leaves
    /// what the umask gave.
    pub chmod_socket: Option<u32>,
    /// Owner of unix-socket listeners (`--chown-socket`), as written; resolved at start.
    pub chown_socket: Option<String>,
    /// Static directories (`--static-map`), longest prefix first.
    pub static_maps: Vec<StaticMount>,
    /// File served for a directory under a static mount (`--static-index`).
    pub static_index: Option<String>,
    /// Where the log goes (`--logto`); `None`: stderr.
    pub logto: Option<PathBuf>,
    /// The request log's format (`--logformat`).
    pub logformat: crate::logsink::LogFormat,
    /// Reopen `logto` when this file is touched (`--touch-logreopen`).
    pub touch_logreopen: Option<PathBuf>,
    /// Python apps: interpreter, engine, `--pyrun` (`python` feature).
    pub python: PythonOptions,
}

impl Config {
    /// The CPU worker `i` is pinned to: `cpus[i % cpus.len()]`.
    pub fn cpu_for_worker(&self, i: usize) -> usize {
        self.cpus[i % self.cpus.len()]
    }

    /// The mount serving `path` (a URL path without the query string): the longest prefix
    /// that matches on a segment boundary (see [`Mount::matches`]). `None` only for a path
    /// that does not start with `/`.
    pub fn route(&self, path: &str) -> Option<&Mount> {
        self.mounts.iter().find(|m| m.matches(path))
    }

    /// Resolves raw options (already merged) into a `Config`: checks syntax, applies
    /// defaults, resolves host names, reads the CPU affinity mask and `net.core.somaxconn`.
    pub fn resolve(raw: RawConfig) -> Result<Config, ConfigError> {
        resolve_with(raw, &Host::probe())
    }
}

/// A configuration error. `Display` is one line naming the option (or the file), except
/// for [`ConfigError::Exit`].
#[derive(Debug)]
pub enum ConfigError {
    /// `--help` or `--version` was asked for: not a failure; print it and exit 0 with
    /// [`ConfigError::print_and_exit`]. `Display` renders the help or version text.
    Exit(clap::Error),
    /// Anything wrong with the options, as one line without a trailing newline.
    Invalid(String),
}

impl ConfigError {
    /// Whether this is `--help`/`--version` output rather than an error.
    pub fn is_help(&self) -> bool {
        matches!(self, ConfigError::Exit(_))
    }

    /// The process exit code to use: 0 for help/version, 2 for errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::Exit(e) => e.exit_code(),
            ConfigError::Invalid(_) => 2,
        }
    }

    /// Prints help/version to stdout, or `ringsgi: <message>` to stderr, and exits with
    /// [`ConfigError::exit_code`].
    pub fn print_and_exit(self) -> ! {
        match self {
            ConfigError::Exit(e) => e.exit(),
            ConfigError::Invalid(msg) => {
                eprintln!("ringsgi: {msg}");
                std::process::exit(2)
            }
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Exit(e) => write!(f, "{}", e.render()),
            ConfigError::Invalid(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<clap::Error> for ConfigError {
    fn from(e: clap::Error) -> Self {
        match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => ConfigError::Exit(e),
            _ => ConfigError::Invalid(clap_one_line(&e)),
        }
    }
}

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// clap's rendered error, first line, without the `error: ` prefix; for bad values the arg
/// is shown as the bare flag (`--cores`, not `'--cores <N>'`).
fn clap_one_line(e: &clap::Error) -> String {
    let rendered = e.render().to_string();
    let first = rendered
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let mut line = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    if matches!(
        e.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        if let Some(ContextValue::String(arg)) = e.get(ContextKind::InvalidArg) {
            let flag = arg.split([' ', '=', '[']).next().unwrap_or(arg);
            line = line.replacen(&format!("'{arg}'"), flag, 1);
        }
        if let Some(ContextValue::Strings(valid)) = e.get(ContextKind::ValidValue)
            && !line.contains(':')
        {
            line = format!("{line}: expected one of {}", valid.join(", "));
        }
    }
    if line.is_empty() {
        "invalid command line".to_owned()
    } else {
        line
    }
}

/// Parses the command line (`args` includes the program name, as from
/// [`std::env::args_os`]), reads the `--config` file if given, merges (flag > file) and
/// resolves into a [`Config`].
pub fn load_from_args<I, T>(args: I) -> Result<Config, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let raw = merged_from_args(args)?;
    Config::resolve(raw)
}

/// Parses the command line and the config file, validates both and merges them.
fn merged_from_args<I, T>(args: I) -> Result<RawConfig, ConfigError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = RawConfig::try_parse_from(args)?;
    cli.validate().map_err(|e| invalid(e.to_string()))?;
    let file = match &cli.config {
        Some(path) => load_file(path)?,
        None => RawConfig::default(),
    };
    Ok(raw::merge(cli, file))
}

/// Reads and syntax-checks a TOML config file.
fn load_file(path: &Path) -> Result<RawConfig, ConfigError> {
    let shown = path.display();
    let src = std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("{shown}: cannot read config file: {e}")))?;
    let raw: RawConfig =
        toml::from_str(&src).map_err(|e| invalid(toml_one_line(path, &src, &e)))?;
    raw.validate()
        .map_err(|FieldError { key, value, reason }| {
            invalid(format!(
                "{shown}: invalid value '{value}' for {key}: {reason}"
            ))
        })?;
    Ok(raw)
}

/// `file:line:col: [key: ]message` on one line; unknown keys as `unknown key 'name'`.
fn toml_one_line(path: &Path, src: &str, e: &toml::de::Error) -> String {
    let msg = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    let (loc, key) = match e.span() {
        Some(span) => {
            let start = span.start.min(src.len());
            let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_no = src[..start].matches('\n').count() + 1;
            let col = src[line_start..start].chars().count() + 1;
            let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
            (
                format!(":{line_no}:{col}"),
                key_of_line(&src[line_start..line_end]),
            )
        }
        None => (String::new(), None),
    };
    let file = path.display();
    let unknown = msg
        .strip_prefix("unknown field `")
        .and_then(|r| r.split_once('`'))
        .map(|(name, _)| name);
    match (unknown, key) {
        (Some(name), _) => format!("{file}{loc}: unknown key '{name}'"),
        (None, Some(key)) => format!("{file}{loc}: {key}: {msg}"),
        (None, None) => format!("{file}{loc}: {msg}"),
    }
}

/// The bare key of a `key = value` TOML line, if it has one.
fn key_of_line(line: &str) -> Option<&str> {
    let key = line.split_once('=')?.0.trim();
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    bare.then_some(key)
}

/// gunicorn's default for `--forwarded-allow-ips`: a proxy on this machine.
const DEFAULT_FORWARDED_ALLOW_IPS: &str = "127.0.0.1,::1";

/// `--forwarded-allow-ips`: comma-separated entries ([`crate::proto::forwarded::Trusted`]);
/// empty trusts nobody.
pub(crate) fn parse_trusted(s: &str) -> Result<Vec<crate::proto::forwarded::Trusted>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(crate::proto::forwarded::Trusted::parse)
        .collect()
}

/// What the machine says: allowed CPUs and the backlog ceiling.
struct Host {
    cpus: Vec<usize>,
    somaxconn: Option<u32>,
    /// Listening sockets come from systemd (socket activation), so the configuration may
    /// name none.
    activated: bool,
}

impl Host {
    fn probe() -> Host {
        Host {
            cpus: allowed_cpus(),
            somaxconn: read_somaxconn(),
            activated: activated(),
        }
    }
}

/// Set by a reload for its check run when the running master has sockets from systemd.
pub(crate) const ACTIVATED_ENV: &str = "RINGSGI_ACTIVATED";

/// Whether this process has (or, after a reload, inherited) sockets from systemd:
/// `LISTEN_FDS` for this pid, a handover that carries them, or a reload's check run.
fn activated() -> bool {
    let env = |k: &str| std::env::var(k).ok();
    let for_us = env("LISTEN_PID").and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id())
        && env("LISTEN_FDS")
            .and_then(|n| n.trim().parse::<u32>().ok())
            .is_some_and(|n| n > 0);
    for_us
        || env("RINGSGI_HANDOVER").is_some_and(|h| h.contains("\"systemd:"))
        || env(ACTIVATED_ENV).is_some()
}

/// CPU ids in this process's affinity mask, ascending; falls back to
/// `0..available_parallelism` if the mask cannot be read.
fn allowed_cpus() -> Vec<usize> {
    use nix::sched::{CpuSet, sched_getaffinity};
    use nix::unistd::Pid;
    let from_mask = sched_getaffinity(Pid::from_raw(0)).ok().map(|set| {
        (0..CpuSet::count())
            .filter(|&i| set.is_set(i).unwrap_or(false))
            .collect::<Vec<_>>()
    });
    match from_mask {
        Some(cpus) if !cpus.is_empty() => cpus,
        _ => (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect(),
    }
}

/// `/proc/sys/net/core/somaxconn`, or `None` if it cannot be read.
fn read_somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Resolve a stats or metrics address as written (`--stats`, `--metrics`).
pub fn resolve_listen_addr(written: &str) -> Result<ListenAddr, String> {
    resolve_addr("stats", written, true).map_err(|e| e.to_string())
}

fn resolve_addr(key: &str, written: &str, allow_abstract: bool) -> Result<ListenAddr, ConfigError> {
    let spec = raw::parse_addr(written, allow_abstract)
        .map_err(|reason| invalid(format!("invalid value '{written}' for --{key}: {reason}")))?;
    Ok(match spec {
        // Absolute from the start: `--chdir` (and a reload from another directory) must not
        // change which file is bound, adopted or removed at exit.
        AddrSpec::Unix(p) if p.is_relative() => match std::env::current_dir() {
            Ok(cwd) => ListenAddr::Unix(cwd.join(p)),
            Err(_) => ListenAddr::Unix(p),
        },
        AddrSpec::Unix(p) => ListenAddr::Unix(p),
        AddrSpec::Abstract(n) => ListenAddr::Abstract(n),
        AddrSpec::Tcp { host, port } => match host.parse::<IpAddr>() {
            Ok(ip) => ListenAddr::Tcp(SocketAddr::new(ip, port)),
            Err(_) => {
                let cannot =
                    |why: String| invalid(format!("cannot resolve --{key} '{written}': {why}"));
                let first = (host.as_str(), port)
                    .to_socket_addrs()
                    .map_err(|e| cannot(e.to_string()))?
                    .next()
                    .ok_or_else(|| cannot("no addresses".into()))?;
                ListenAddr::Tcp(first)
            }
        },
    })
}

fn secs(v: f64) -> Duration {
    // RawConfig::validate bounds every seconds value to a finite 0..=1e9.
    Duration::from_secs_f64(v)
}

fn resolve_with(raw: RawConfig, host: &Host) -> Result<Config, ConfigError> {
    raw.validate().map_err(|e| invalid(e.to_string()))?;

    let http_sockets = raw
        .http_socket
        .iter()
        .map(|s| resolve_addr("http-socket", s, false))
        .collect::<Result<Vec<_>, _>>()?;
    let uwsgi_sockets = raw
        .socket
        .iter()
        .map(|s| resolve_addr("socket", s, true))
        .collect::<Result<Vec<_>, _>>()?;
    // --pyrun runs a script, not a server: it needs no listener; neither does a server whose
    // sockets come from systemd.
    if http_sockets.is_empty() && uwsgi_sockets.is_empty() && raw.pyrun.is_none() && !host.activated
    {
        return Err(invalid(
            "no listener configured: give --http-socket ADDR (or http-socket in the config file), or start under systemd socket activation",
        ));
    }

    let cpus = if host.cpus.is_empty() {
        vec![0]
    } else {
        host.cpus.clone()
    };
    let cores = raw.cores.unwrap_or(cpus.len());

    let listen = match (raw.listen, host.somaxconn) {
        (Some(n), Some(max)) if n > max => {
            return Err(invalid(format!(
                "--listen {n} is above net.core.somaxconn ({max}): raise it with sysctl or lower --listen"
            )));
        }
        (Some(n), _) => n,
        // The default never fails: the kernel would clamp it anyway.
        (None, Some(max)) => DEFAULT_LISTEN.min(max.max(1)),
        (None, None) => DEFAULT_LISTEN,
    };

    let mut mounts = Vec::with_capacity(raw.mount.len() + 1);
    for m in &raw.mount {
        let (prefix, app) = raw::parse_mount(m)
            .map_err(|reason| invalid(format!("invalid value '{m}' for --mount: {reason}")))?;
        if mounts.iter().any(|x: &Mount| x.prefix == prefix) {
            return Err(invalid(format!(
                "--mount: prefix '{prefix}' is mounted twice"
            )));
        }
        mounts.push(Mount { prefix, app });
    }
    // --wsgi-file and --module name the app at "/", as --app does.
    let python_root = match (&raw.wsgi_file, &raw.module) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "--wsgi-file and --module both name the app at \"/\": give one".to_owned(),
            ));
        }
        (Some(f), None) => Some(f.clone()),
        (None, Some(m)) if m.contains(':') => Some(m.clone()),
        (None, Some(m)) => Some(format!(
            "{m}:{}",
            raw.callable.as_deref().unwrap_or("application")
        )),
        (None, None) => None,
    };
    if python_root.is_some() && raw.app.is_some() {
        return Err(invalid(
            "--app and --wsgi-file/--module both name the app at \"/\": give one".to_owned(),
        ));
    }
    if !mounts.iter().any(|m| m.prefix == "/") {
        let app = python_root
            .or_else(|| raw.app.clone())
            .unwrap_or_else(|| DEFAULT_APP.to_owned());
        mounts.push(Mount {
            prefix: "/".to_owned(),
            app,
        });
    }
    mounts.sort_by(|a, b| {
        b.prefix
            .len()
            .cmp(&a.prefix.len())
            .then_with(|| a.prefix.cmp(&b.prefix))
    });

    let mut static_maps = Vec::with_capacity(raw.static_map.len());
    for m in &raw.static_map {
        let (prefix, dir) = raw::parse_static_map(m)
            .map_err(|reason| invalid(format!("invalid value '{m}' for --static-map: {reason}")))?;
        // Canonical once, here in the master: workers check that every file they open
        // resolves beneath this path, and a relative or symlinked root would defeat that.
        let canonical = std::fs::canonicalize(&dir)
            .map_err(|e| invalid(format!("--static-map '{m}': {}: {e}", dir.display())))?;
        if !canonical.is_dir() {
            return Err(invalid(format!(
                "--static-map '{m}': {} is not a directory",
                dir.display()
            )));
        }
        static_maps.push(StaticMount {
            prefix,
            dir: canonical,
        });
    }
    static_maps.sort_by(|a, b| {
        b.prefix
            .len()
            .cmp(&a.prefix.len())
            .then_with(|| a.prefix.cmp(&b.prefix))
    });

    Ok(Config {
        http_sockets,
        uwsgi_sockets,
        cores,
        cpus,
        // --gevent N is the number of slots (uWSGI: `--gevent N` sets the async cores).
        async_slots: raw.gevent.or(raw.async_slots).unwrap_or(DEFAULT_ASYNC),
        listen,
        reuse_port: raw.reuse_port.unwrap_or(false),
        mounts,
        // uWSGI's gevent plugin raises the socket timeout to at least 30 s.
        socket_timeout: secs({
            let t = raw.socket_timeout.unwrap_or(DEFAULT_SOCKET_TIMEOUT);
            if raw.gevent.is_some() { t.max(30.0) } else { t }
        }),
        keepalive_timeout: secs(raw.keepalive_timeout.unwrap_or(DEFAULT_KEEPALIVE_TIMEOUT)),
        header_timeout: secs(raw.header_timeout.unwrap_or(DEFAULT_HEADER_TIMEOUT)),
        proxy_protocol: raw.enable_proxy_protocol.unwrap_or(false),
        forwarded_allow: parse_trusted(
            raw.forwarded_allow_ips
                .as_deref()
                .unwrap_or(DEFAULT_FORWARDED_ALLOW_IPS),
        )
        .map_err(|e| invalid(format!("--forwarded-allow-ips: {e}")))?,
        buffer_size: raw.buffer_size.unwrap_or(DEFAULT_BUFFER_SIZE),
        limit_post: raw.limit_post.filter(|&n| n != 0),
        max_vars: raw.max_vars.unwrap_or(DEFAULT_MAX_VARS),
        disable_logging: raw.disable_logging.unwrap_or(false),
        harakiri: raw.harakiri.map(secs),
        harakiri_verbose: raw.harakiri_verbose.unwrap_or(false),
        stats: raw.stats,
        reload_mercy: secs(raw.reload_mercy.unwrap_or(DEFAULT_RELOAD_MERCY)),
        stats_http: raw.stats_http.unwrap_or(false),
        metrics: raw.metrics.clone(),
        max_requests: raw.max_requests.filter(|&n| n != 0),
        max_worker_lifetime: raw.max_worker_lifetime.filter(|&s| s != 0.0).map(secs),
        reload_on_rss: raw.reload_on_rss.filter(|&n| n != 0).map(|mb| mb << 20),
        pidfile: raw.pidfile.clone(),
        uid: raw.uid.clone(),
        gid: raw.gid.clone(),
        refuse_root: raw.refuse_root.unwrap_or(false),
        chdir: raw.chdir.clone(),
        timers: raw
            .timer
            .iter()
            .map(|s| crate::cron::parse_timer(s).expect("validated"))
            .collect(),
        crons: raw
            .cron
            .iter()
            .map(|s| crate::cron::parse_cron_option(s).expect("validated"))
            .collect(),
        file_monitors: raw
            .file_monitor
            .iter()
            .map(|s| crate::cron::parse_file_monitor(s).expect("validated"))
            .collect(),
        crazy_names: if raw.crazy_names.is_empty() {
            vec!["localhost".to_owned()]
        } else {
            raw.crazy_names.clone()
        },
        chown_socket: raw.chown_socket.clone(),
        chmod_socket: raw
            .chmod_socket
            .as_deref()
            .map(|m| raw::parse_mode(m).expect("checked by validate")),
        static_maps,
        static_index: raw.static_index,
        logto: raw.logto.clone(),
        logformat: match &raw.logformat {
            Some(f) => crate::logsink::LogFormat::parse(f)
                .map_err(|e| invalid(format!("--logformat: {e}")))?,
            None => crate::logsink::LogFormat::Default,
        },
        touch_logreopen: raw.touch_logreopen.clone(),
        python: PythonOptions {
            callable: raw.callable.unwrap_or_else(|| "application".to_owned()),
            pythonpath: raw.pythonpath.iter().map(PathBuf::from).collect(),
            virtualenv: raw.virtualenv,
            greenlet: raw.greenlet.unwrap_or(false),
            pyrun: raw.pyrun,
            pyrun_args: raw.pyrun_args,
            gevent: raw.gevent.is_some(),
            gevent_monkey_patch: raw.gevent_monkey_patch.unwrap_or(false),
            gevent_early_monkey_patch: raw.gevent_early_monkey_patch.unwrap_or(false),
            gevent_wait_for_hub: raw.gevent_wait_for_hub.unwrap_or(false),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::collections::BTreeSet;

    fn host() -> Host {
        Host {
            cpus: vec![0, 2, 5],
            somaxconn: Some(4096),
            activated: false,
        }
    }

    fn load(args: &[&str]) -> Result<Config, ConfigError> {
        let args = std::iter::once("ringsgi").chain(args.iter().copied());
        resolve_with(merged_from_args(args)?, &host())
    }

    fn err(args: &[&str]) -> String {
        match load(args) {
            Ok(c) => panic!("{args:?} accepted: {c:?}"),
            Err(ConfigError::Exit(e)) => panic!("{args:?} gave help: {e}"),
            Err(e @ ConfigError::Invalid(_)) => {
                assert_eq!(e.exit_code(), 2);
                assert!(!e.is_help());
                e.to_string()
            }
        }
    }

    /// A temp file with a unique name, removed on drop.
    struct TempToml(PathBuf);

    impl TempToml {
        fn new(contents: &str) -> TempToml {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let name = format!(
                "ringsgi-config-test-{}-{}.toml",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(name);
            std::fs::write(&path, contents).unwrap();
            TempToml(path)
        }
        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempToml {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn bad_command_lines_give_one_line_naming_the_option() {
        let table: &[(&[&str], &str)] = &[
            (
                &["--cores", "0"],
                "invalid value '0' for --cores: expected a positive integer",
            ),
            (
                &["--cores", "abc"],
                "invalid value 'abc' for --cores: expected a positive integer",
            ),
            (&["-p", "-3"], "invalid value '-3' for --cores"),
            (&["--async", "0"], "invalid value '0' for --async"),
            (&["--async", "1000001"], "--async"),
            (
                &["--buffer-size", "10"],
                "invalid value '10' for --buffer-size: expected an integer from 512 to 1048576",
            ),
            (
                &["--socket-timeout", "-1"],
                "invalid value '-1' for --socket-timeout: expected a number of seconds > 0",
            ),
            (
                &["--socket-timeout", "0"],
                "invalid value '0' for --socket-timeout",
            ),
            (&["--harakiri", "0"], "invalid value '0' for --harakiri"),
            (&["--harakiri", "inf"], "--harakiri"),
            (&["--keepalive-timeout", "x"], "--keepalive-timeout"),
            (
                &["--mount", "sleep"],
                "invalid value 'sleep' for --mount: expected /PREFIX=NAME",
            ),
            (&["--mount", "/a="], "invalid value '/a=' for --mount"),
            (
                &["--mount", "/a=a", "--mount", "/a=b", "--http", ":0"],
                "mounted twice",
            ),
            (
                &["--listen", "99999999", "--http", ":0"],
                "--listen 99999999 is above net.core.somaxconn (4096)",
            ),
            (&["--listen", "abc"], "--listen"),
            (
                &["--http", "8080"],
                "invalid value '8080' for --http-socket",
            ),
            (&["--http", "@abs"], "--http-socket"),
            (&["--app", "Bad!"], "--app"),
            (&["--bogus"], "unexpected argument '--bogus'"),
            (&["--cores"], "--cores"),
            (
                &["--reuse-port=maybe"],
                "invalid value 'maybe' for --reuse-port: expected one of true, false",
            ),
            (
                &[],
                "no listener configured: give --http-socket ADDR (or http-socket in the config file), or start under systemd socket activation",
            ),
            (&["--cores", "2"], "no listener configured"),
            (
                &["--config", "/nonexistent/ringsgi.toml"],
                "/nonexistent/ringsgi.toml: cannot read config file",
            ),
        ];
        for (args, want) in table {
            let got = err(args);
            assert!(
                got.contains(want),
                "{args:?}: got {got:?}, want it to contain {want:?}"
            );
            assert!(!got.contains('\n'), "{args:?}: not one line: {got:?}");
            assert!(!got.starts_with("error:"), "{args:?}: {got:?}");
        }
    }

    #[test]
    fn bad_files_give_one_line_naming_file_and_key() {
        let table: &[(&str, &str)] = &[
            ("corez = 2\n", ":1:1: unknown key 'corez'"),
            (
                "http-socket = [\":0\"]\n[server]\nx = 1\n",
                "unknown key 'server'",
            ),
            (
                "cores = \"two\"\n",
                ":1:9: cores: invalid type: string \"two\"",
            ),
            ("async = 1.5\n", "async"),
            ("cores = -1\n", "cores"),
            ("reuse-port = 1\n", "reuse-port"),
            ("http-socket = 8080\n", "http-socket"),
            (
                "cores = 0\n",
                "invalid value '0' for cores: expected a positive integer",
            ),
            ("buffer-size = 10\n", "invalid value '10' for buffer-size"),
            ("harakiri = 0\n", "invalid value '0' for harakiri"),
            ("mount = [\"sleep\"]\n", "invalid value 'sleep' for mount"),
            ("cores = = 2\n", ":1:"),
            ("config = \"other.toml\"\n", "unknown key 'config'"),
        ];
        for (src, want) in table {
            let f = TempToml::new(src);
            let got = err(&["--config", f.path(), "--http", ":0"]);
            assert!(got.starts_with(f.path()), "{src:?}: got {got:?}");
            assert!(
                got.contains(want),
                "{src:?}: got {got:?}, want it to contain {want:?}"
            );
            assert!(!got.contains('\n'), "{src:?}: not one line: {got:?}");
        }
    }

    #[test]
    fn help_and_version_exit_zero() {
        for flag in ["--help", "-h", "--version", "-V"] {
            match load(&[flag]) {
                Err(e @ ConfigError::Exit(_)) => {
                    assert!(e.is_help());
                    assert_eq!(e.exit_code(), 0, "{flag}");
                    assert!(e.to_string().contains("ringsgi"), "{flag}");
                }
                other => panic!("{flag}: {other:?}"),
            }
        }
    }

    #[test]
    fn defaults_and_aliases() {
        let c = load(&["--http", ":0"]).unwrap();
        assert_eq!(
            c.http_sockets,
            vec![ListenAddr::Tcp("0.0.0.0:0".parse().unwrap())]
        );
        assert_eq!(c.cores, 3);
        assert_eq!(c.cpus, vec![0, 2, 5]);
        assert_eq!(c.async_slots, 100);
        assert_eq!(
            c.mounts,
            vec![Mount {
                prefix: "/".into(),
                app: "hello".into()
            }]
        );
        assert_eq!(c.limit_post, None);
        assert_eq!(c.harakiri, None);

        for args in [
            &["--processes", "2", "--http", ":0"][..],
            &["--workers", "2", "--http", ":0"],
            &["-p", "2", "--http-socket", ":0"],
            &["--cores", "2", "--socket", "@x"],
        ] {
            assert_eq!(load(args).unwrap().cores, 2, "{args:?}");
        }
        assert_eq!(
            load(&["--gevent", "5", "--http", ":0"])
                .unwrap()
                .async_slots,
            5
        );
        let c = load(&[
            "-l", "100", "-z", "0.5", "-b", "1024", "-L", "-t", "3", "--http", ":0",
        ])
        .unwrap();
        assert_eq!(c.listen, 100);
        assert_eq!(c.socket_timeout, Duration::from_millis(500));
        assert_eq!(c.buffer_size, 1024);
        assert!(c.disable_logging);
        assert_eq!(c.harakiri, Some(Duration::from_secs(3)));
        let c = load(&[
            "--limit-post",
            "0",
            "--keepalive-timeout",
            "0",
            "--http",
            ":0",
        ])
        .unwrap();
        assert_eq!(c.limit_post, None);
        assert_eq!(c.keepalive_timeout, Duration::ZERO);
    }

    #[test]
    fn cpu_for_worker_wraps_around_allowed_cpus() {
        let c = load(&["--cores", "5", "--http", ":0"]).unwrap();
        let pinned: Vec<usize> = (0..c.cores).map(|i| c.cpu_for_worker(i)).collect();
        assert_eq!(pinned, vec![0, 2, 5, 0, 2]);
    }

    #[test]
    fn real_host_probe_is_sane() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        assert!(cpus.windows(2).all(|w| w[0] < w[1]));
        let c = load_from_args(["ringsgi", "--http", "127.0.0.1:0"]).unwrap();
        assert_eq!(c.cores, c.cpus.len());
        if let Some(max) = read_somaxconn() {
            assert!(c.listen <= max);
        }
    }

    #[test]
    fn flag_overrides_file_and_lists_replace() {
        let f = TempToml::new(
            "http-socket = [\":1\", \":2\"]\ncores = 4\nasync = 7\nharakiri = 2\n\
             socket-timeout = 0.5\nmount = [\"/a=a\"]\nreuse-port = true\n",
        );
        let c = load(&["--config", f.path()]).unwrap();
        assert_eq!(c.cores, 4);
        assert_eq!(c.async_slots, 7);
        assert_eq!(c.harakiri, Some(Duration::from_secs(2)));
        assert_eq!(c.socket_timeout, Duration::from_millis(500));
        assert_eq!(c.http_sockets.len(), 2);
        assert!(c.reuse_port);
        assert_eq!(c.route("/a/b").unwrap().app, "a");

        let c = load(&[
            "--config",
            f.path(),
            "--cores",
            "2",
            "--http",
            ":3",
            "--harakiri",
            "0.25",
            "--reuse-port=false",
        ])
        .unwrap();
        assert_eq!(c.cores, 2);
        assert_eq!(c.async_slots, 7, "file value kept where no flag was given");
        assert_eq!(
            c.http_sockets,
            vec![ListenAddr::Tcp("0.0.0.0:3".parse().unwrap())]
        );
        assert_eq!(c.harakiri, Some(Duration::from_millis(250)));
        assert!(!c.reuse_port);
        assert_eq!(c.mounts.len(), 2, "file mounts kept when no --mount given");

        let c = load(&["--config", f.path(), "--mount", "/b=b"]).unwrap();
        let prefixes: Vec<&str> = c.mounts.iter().map(|m| m.prefix.as_str()).collect();
        assert_eq!(prefixes, vec!["/b", "/"]);
    }

    #[test]
    fn routing_longest_prefix_on_segment_boundary() {
        let c = load(&[
            "--http",
            ":0",
            "--app",
            "root",
            "--mount",
            "/sleep=sleep",
            "--mount",
            "/sleep/deep=deep",
            "--mount",
            "/echo=echo",
        ])
        .unwrap();
        let prefixes: Vec<&str> = c.mounts.iter().map(|m| m.prefix.as_str()).collect();
        assert_eq!(prefixes, vec!["/sleep/deep", "/sleep", "/echo", "/"]);
        let app = |p: &str| c.route(p).map(|m| m.app.as_str());
        assert_eq!(app("/sleep"), Some("sleep"));
        assert_eq!(app("/sleep/"), Some("sleep"));
        assert_eq!(app("/sleep/x"), Some("sleep"));
        assert_eq!(app("/sleep/deep"), Some("deep"));
        assert_eq!(app("/sleep/deeper"), Some("sleep"));
        assert_eq!(app("/sleepy"), Some("root"));
        assert_eq!(app("/"), Some("root"));
        assert_eq!(app("/other/x"), Some("root"));
        assert_eq!(app("*"), None);

        // An explicit "/" mount wins over --app.
        let c = load(&["--http", ":0", "--app", "root", "--mount", "/=top"]).unwrap();
        assert_eq!(
            c.mounts,
            vec![Mount {
                prefix: "/".into(),
                app: "top".into()
            }]
        );
    }

    #[test]
    fn static_maps_are_canonical_longest_first_and_must_exist() {
        let tmp = std::env::temp_dir();
        let tmp_s = tmp.to_str().unwrap();
        let c = load(&[
            "--http",
            ":0",
            "--static-map",
            &format!("/s={tmp_s}"),
            "--static-map",
            &format!("/s/deep={tmp_s}/."),
            "--static-index",
            "index.html",
        ])
        .unwrap();
        let canonical = std::fs::canonicalize(&tmp).unwrap();
        assert_eq!(
            c.static_maps,
            vec![
                StaticMount {
                    prefix: "/s/deep".into(),
                    dir: canonical.clone()
                },
                StaticMount {
                    prefix: "/s".into(),
                    dir: canonical
                },
            ]
        );
        assert_eq!(c.static_index.as_deref(), Some("index.html"));
        let got = err(&[
            "--http",
            ":0",
            "--static-map",
            "/s=/nonexistent/ringsgi-dir",
        ]);
        assert!(
            got.starts_with(
                "--static-map '/s=/nonexistent/ringsgi-dir': /nonexistent/ringsgi-dir: "
            ),
            "{got}"
        );
        let file = format!("/s={}/Cargo.toml", env!("CARGO_MANIFEST_DIR"));
        let got = err(&["--http", ":0", "--static-map", &file]);
        assert!(got.contains("is not a directory"), "{got}");
    }

    #[test]
    fn address_table() {
        let tcp = |s: &str| ListenAddr::Tcp(s.parse().unwrap());
        let table: &[(&str, ListenAddr)] = &[
            (":8080", tcp("0.0.0.0:8080")),
            ("127.0.0.1:0", tcp("127.0.0.1:0")),
            ("[::1]:0", tcp("[::1]:0")),
            ("/tmp/x.sock", ListenAddr::Unix("/tmp/x.sock".into())),
            ("@abs", ListenAddr::Abstract("abs".into())),
        ];
        for (written, want) in table {
            let c = load(&["--socket", written]).unwrap();
            assert_eq!(&c.uwsgi_sockets[0], want, "{written}");
            assert_eq!(
                c.uwsgi_sockets[0].to_string().trim_start_matches("0.0.0.0"),
                written.to_string().as_str()
            );
        }
        let c = load(&["--http", "localhost:0"]).unwrap();
        match &c.http_sockets[0] {
            ListenAddr::Tcp(a) => assert!(a.ip().is_loopback() && a.port() == 0, "{a}"),
            other => panic!("{other:?}"),
        }
        let got = err(&["--http", "no-such-host.invalid:80"]);
        assert!(
            got.starts_with("cannot resolve --http-socket 'no-such-host.invalid:80'"),
            "{got}"
        );
    }

    fn read(rel: &str) -> String {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn docs_list_every_key_with_its_default() {
        let doc = read("docs/config.md");
        for (key, default) in defaults() {
            let row = doc
                .lines()
                .find(|l| l.starts_with('|') && l.contains(&format!("`{key}`")));
            let row = row.unwrap_or_else(|| panic!("docs/config.md: no table row for `{key}`"));
            assert!(
                row.contains(default),
                "docs/config.md: row for `{key}` lacks default {default:?}"
            );
        }
        assert!(doc.contains("flag > file > default"));
    }

    #[test]
    fn shipped_toml_has_every_key_and_loads() {
        let src = read("config/ringsgi.toml");
        for (key, _) in defaults() {
            let present = src.lines().any(|l| {
                let l = l.trim_start_matches('#').trim_start();
                l.strip_prefix(key)
                    .is_some_and(|r| r.trim_start().starts_with('='))
            });
            assert!(present, "config/ringsgi.toml lacks `{key}`");
        }
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/ringsgi.toml");
        let c =
            load_from_args([OsString::from("ringsgi"), "--config".into(), path.into()]).unwrap();
        assert_eq!(
            c.http_sockets,
            vec![ListenAddr::Tcp("127.0.0.1:8080".parse().unwrap())]
        );
        let mounts: Vec<(&str, &str)> = c
            .mounts
            .iter()
            .map(|m| (m.prefix.as_str(), m.app.as_str()))
            .collect();
        assert_eq!(
            mounts,
            vec![
                ("/cpubound", "cpubound"),
                ("/sleeping", "sleeping"),
                ("/signals", "signals"),
                ("/crazy", "crazy"),
                ("/sleep", "sleep"),
                ("/echo", "echo"),
                ("/", "hello")
            ]
        );
        assert_eq!(c.async_slots, 100);
        assert_eq!(c.cores, c.cpus.len());
    }

    /// Every key in `defaults()` is a field of both the TOML and the CLI side, and vice versa.
    #[test]
    fn defaults_list_matches_raw_config_fields() {
        let example = |key: &str| match key {
            "http-socket" | "socket" => "[\":0\"]",
            "mount" => "[\"/a=a\"]",
            "crazy-names" => "[\"localhost\"]",
            "app" => "\"hello\"",
            "stats" | "metrics" => "\"127.0.0.1:9191\"",
            "pidfile" | "chdir" => "\"/tmp\"",
            "uid" | "gid" | "chown-socket" => "\"nobody\"",
            "timer" => "[\"1 2\"]",
            "cron" => "[\"1 -1 -1 -1 -1 -1\"]",
            "file-monitor" => "[\"1 /tmp\"]",
            "stats-http" | "refuse-root" => "true",
            "max-worker-lifetime" => "1.5",
            "reuse-port" | "disable-logging" | "harakiri-verbose" | "enable-proxy-protocol" => {
                "true"
            }
            "forwarded-allow-ips" => "\"10.0.0.0/8\"",
            "socket-timeout" | "keepalive-timeout" | "header-timeout" | "harakiri"
            | "reload-mercy" => "1.5",
            "buffer-size" => "4096",
            "static-map" => "[\"/s=/tmp\"]",
            "static-index" => "\"index.html\"",
            "logto" | "touch-logreopen" => "\"/tmp/ringsgi.log\"",
            "logformat" => "\"%(addr) %(status)\"",
            "wsgi-file" => "\"app.py\"",
            "module" => "\"app:application\"",
            "callable" => "\"app\"",
            "pythonpath" => "[\"/tmp\"]",
            "virtualenv" | "pyrun" => "\"/tmp\"",
            "greenlet" => "false",
            "gevent-monkey-patch" | "gevent-early-monkey-patch" | "gevent-wait-for-hub" => "true",
            _ => "2",
        };
        let src: String = defaults()
            .iter()
            .map(|(k, _)| format!("{k} = {}\n", example(k)))
            .collect();
        let raw: RawConfig = toml::from_str(&src).unwrap_or_else(|e| panic!("{e}\n{src}"));
        raw.validate().unwrap();
        // `config` is command-line only; every other field is set, so none is missing
        // from defaults().
        assert_eq!(raw.config, None);
        let debug = format!(
            "{:?}",
            RawConfig {
                config: Some("x".into()),
                pyrun_args: vec!["x".into()],
                ..raw
            }
        );
        assert!(
            !debug.contains(": None") && !debug.contains(": []"),
            "{debug}"
        );

        let mut cmd = RawConfig::command();
        cmd.build();
        let longs: BTreeSet<&str> = cmd.get_arguments().filter_map(|a| a.get_long()).collect();
        let mut keys: BTreeSet<&str> = defaults().iter().map(|(k, _)| *k).collect();
        keys.extend(["config", "help", "version"]);
        assert_eq!(longs, keys);
    }

    /// `--gevent N`: N slots, the gevent engine, a socket timeout of at least 30 s (uWSGI's
    /// gevent plugin); not together with --greenlet.
    #[test]
    fn gevent_sets_the_slots_and_raises_the_socket_timeout() {
        let c = load(&["--http", ":0", "--gevent", "7", "--socket-timeout", "4"]).unwrap();
        assert_eq!(c.async_slots, 7);
        assert!(c.python.gevent);
        assert_eq!(c.socket_timeout, Duration::from_secs(30));
        let c = load(&["--http", ":0", "--gevent", "7", "--socket-timeout", "45"]).unwrap();
        assert_eq!(c.socket_timeout, Duration::from_secs(45));
        let c = load(&["--http", ":0", "--socket-timeout", "4"]).unwrap();
        assert!(!c.python.gevent);
        assert_eq!(c.socket_timeout, Duration::from_secs(4));
        let c = load(&[
            "--http",
            ":0",
            "--gevent",
            "7",
            "--gevent-monkey-patch",
            "--gevent-wait-for-hub",
        ])
        .unwrap();
        assert!(c.python.gevent_monkey_patch && c.python.gevent_wait_for_hub);
        assert!(!c.python.gevent_early_monkey_patch);
        assert!(load(&["--http", ":0", "--gevent", "7", "--greenlet"]).is_err());
        assert!(load(&["--http", ":0", "--gevent", "0"]).is_err());
    }

    /// The documented default texts agree with the values the resolver applies.
    #[test]
    fn default_texts_match_resolved_defaults() {
        let c = load(&["--http", ":0"]).unwrap();
        let secs = |d: Duration| d.as_secs_f64().to_string();
        for (key, text) in defaults() {
            let shown = match *key {
                "http-socket" => continue,
                "socket" => (if c.uwsgi_sockets.is_empty() {
                    "none"
                } else {
                    "?"
                })
                .to_owned(),
                "cores" => (if c.cores == c.cpus.len() {
                    "number of allowed CPUs"
                } else {
                    "?"
                })
                .to_owned(),
                "async" => c.async_slots.to_string(),
                "listen" => c.listen.to_string(),
                "reuse-port" => c.reuse_port.to_string(),
                "app" => c.route("/").unwrap().app.clone(),
                "mount" => (if c.mounts.len() == 1 { "none" } else { "?" }).to_owned(),
                "socket-timeout" => secs(c.socket_timeout),
                "keepalive-timeout" => secs(c.keepalive_timeout),
                "header-timeout" => secs(c.header_timeout),
                "enable-proxy-protocol" => c.proxy_protocol.to_string(),
                "forwarded-allow-ips" => (if c.forwarded_allow.len() == 2 {
                    "127.0.0.1,::1"
                } else {
                    "?"
                })
                .to_owned(),
                "buffer-size" => c.buffer_size.to_string(),
                "limit-post" => c
                    .limit_post
                    .map_or("unlimited".to_owned(), |n| n.to_string()),
                "max-vars" => c.max_vars.to_string(),
                "disable-logging" => c.disable_logging.to_string(),
                "harakiri" => c.harakiri.map_or("off".to_owned(), secs),
                "harakiri-verbose" => c.harakiri_verbose.to_string(),
                "stats" => c.stats.clone().unwrap_or_else(|| "none".to_owned()),
                "reload-mercy" => secs(c.reload_mercy),
                "stats-http" => c.stats_http.to_string(),
                "refuse-root" => c.refuse_root.to_string(),
                "max-requests" => c.max_requests.unwrap_or(0).to_string(),
                "max-worker-lifetime" => c.max_worker_lifetime.map_or("0".to_owned(), secs),
                "reload-on-rss" => c.reload_on_rss.unwrap_or(0).to_string(),
                "metrics" | "pidfile" | "uid" | "gid" | "chdir" => {
                    let set = match *key {
                        "metrics" => c.metrics.is_some(),
                        "pidfile" => c.pidfile.is_some(),
                        "uid" => c.uid.is_some(),
                        "gid" => c.gid.is_some(),
                        _ => c.chdir.is_some(),
                    };
                    (if set { "?" } else { "none" }).to_owned()
                }
                "timer" | "cron" | "file-monitor" => {
                    let n = c.timers.len() + c.crons.len() + c.file_monitors.len();
                    (if n == 0 { "none" } else { "?" }).to_owned()
                }
                "crazy-names" => c.crazy_names.join(","),
                "chown-socket" => c.chown_socket.clone().unwrap_or_else(|| "none".to_owned()),
                "chmod-socket" => c
                    .chmod_socket
                    .map_or("none".to_owned(), |m| format!("{m:o}")),
                "static-map" => (if c.static_maps.is_empty() {
                    "none"
                } else {
                    "?"
                })
                .to_owned(),
                "static-index" => c.static_index.clone().unwrap_or_else(|| "none".to_owned()),
                "logto" => c
                    .logto
                    .as_ref()
                    .map_or("none".to_owned(), |p| p.display().to_string()),
                "touch-logreopen" => c
                    .touch_logreopen
                    .as_ref()
                    .map_or("none".to_owned(), |p| p.display().to_string()),
                "logformat" => (if c.logformat == crate::logsink::LogFormat::Default {
                    "ringsgi's line"
                } else {
                    "?"
                })
                .to_owned(),
                "wsgi-file" | "module" => {
                    let python = c.mounts.iter().any(|m| raw::python_app(&m.app).is_some());
                    (if python { "?" } else { "none" }).to_owned()
                }
                "callable" => c.python.callable.clone(),
                "pythonpath" => (if c.python.pythonpath.is_empty() {
                    "none"
                } else {
                    "?"
                })
                .to_owned(),
                "virtualenv" => (if c.python.virtualenv.is_some() {
                    "?"
                } else {
                    "none"
                })
                .to_owned(),
                "greenlet" => c.python.greenlet.to_string(),
                "gevent" => (if c.python.gevent { "?" } else { "none" }).to_owned(),
                "gevent-monkey-patch" => c.python.gevent_monkey_patch.to_string(),
                "gevent-early-monkey-patch" => c.python.gevent_early_monkey_patch.to_string(),
                "gevent-wait-for-hub" => c.python.gevent_wait_for_hub.to_string(),
                "pyrun" => (if c.python.pyrun.is_some() {
                    "?"
                } else {
                    "none"
                })
                .to_owned(),
                other => panic!("no check for key {other}"),
            };
            assert_eq!(&shown, text, "default of {key}");
        }
    }
}
