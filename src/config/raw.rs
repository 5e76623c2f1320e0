//! The options as written: one struct that parses both the command line and the TOML file.
//!
//! [`RawConfig`] derives [`clap::Parser`] and [`serde::Deserialize`], so every option has one
//! definition. Every field is optional (`Option<T>`, or an empty `Vec<T>` for repeatable
//! options) so that [`merge`] can tell "not given" from "given". Only syntax is checked here
//! ([`RawConfig::validate`]): number ranges, address and mount syntax, app names. Anything that
//! needs a system call (CPU affinity, `somaxconn`, host name resolution) happens when the
//! merged options are resolved into a [`Config`](super::Config).

use std::fmt;
use std::path::PathBuf;

use clap::Parser;
use serde::{Deserialize, Deserializer};

/// Every option as written on the command line or in the TOML file.
///
/// A field is `None` (or empty) when the option was not given; defaults are applied later, by
/// [`Config`](super::Config). The TOML key of an option is its long flag without the dashes.
#[derive(Debug, Clone, Default, PartialEq, Parser, Deserialize)]
#[command(
    name = "ringsgi",
    version,
    about = "A thread-per-core io_uring application server: uWSGI's async mode for Rust handlers",
    long_about = None,
    after_help = "Precedence: command-line flag > config file (--config) > built-in default."
)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawConfig {
    /// HTTP/1.1 listener (repeatable): ":PORT", "HOST:PORT", "[IPv6 addr]:PORT" or a unix path
    #[arg(long = "http-socket", visible_alias = "http", value_name = "ADDR")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub http_socket: Vec<String>,

    /// uwsgi-protocol listener (repeatable): same syntax as --http-socket, plus "@NAME" for an
    /// abstract unix socket
    #[arg(long, value_name = "ADDR")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub socket: Vec<String>,

    /// Number of worker processes [default: number of CPUs in the affinity mask]
    #[arg(long, short = 'p', visible_aliases = ["processes", "workers"], value_name = "N",
          value_parser = parse_cores, allow_negative_numbers = true)]
    pub cores: Option<usize>,

    /// Request slots per worker [default: 100]
    #[arg(long = "async", value_name = "N", value_parser = parse_async,
          allow_negative_numbers = true)]
    #[serde(rename = "async")]
    pub async_slots: Option<usize>,

    /// Listen backlog; must not exceed net.core.somaxconn [default: 1024]
    #[arg(long, short = 'l', value_name = "N", value_parser = parse_listen,
          allow_negative_numbers = true)]
    pub listen: Option<u32>,

    /// Set SO_REUSEPORT on the listening sockets [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub reuse_port: Option<bool>,

    /// App served at "/" unless a mount for "/" is given [default: hello]
    #[arg(long, value_name = "NAME", value_parser = parse_app)]
    pub app: Option<String>,

    /// Mount app NAME at PREFIX (repeatable): "/PREFIX=NAME"
    #[arg(long, value_name = "/PREFIX=NAME", value_parser = parse_mount_arg)]
    #[serde(default, deserialize_with = "one_or_many")]
    pub mount: Vec<String>,

    /// Host names the `crazy` app resolves (repeatable) [default: localhost]
    #[arg(long, value_name = "NAME")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub crazy_names: Vec<String>,

    /// Socket read/write timeout in seconds, fractions allowed, > 0 [default: 30]
    #[arg(long, short = 'z', value_name = "SECS", value_parser = parse_socket_timeout,
          allow_negative_numbers = true)]
    pub socket_timeout: Option<f64>,

    /// Idle wait for the next request on a kept-alive connection, in seconds; 0 disables
    /// keep-alive [default: 15]
    #[arg(long, value_name = "SECS", value_parser = parse_keepalive_timeout,
          allow_negative_numbers = true)]
    pub keepalive_timeout: Option<f64>,

    /// Total time a request head may take to arrive, from its first byte (from the accept
    /// on a new connection), in seconds, > 0; then 408 and close [default: 20]
    #[arg(long, value_name = "SECS", value_parser = parse_header_timeout,
          allow_negative_numbers = true)]
    pub header_timeout: Option<f64>,

    /// Expect a PROXY protocol header (v1 or v2, from a TCP load balancer) at the start of
    /// every connection of the HTTP listeners; the client address it carries becomes the
    /// request's peer. A connection without one is closed and logged [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub enable_proxy_protocol: Option<bool>,

    /// Peers whose Forwarded / X-Forwarded-For headers are believed (the client address then
    /// comes from them): comma-separated addresses, CIDR blocks, "*" for all, "" for none
    /// [default: 127.0.0.1,::1]
    #[arg(long, value_name = "LIST", value_parser = parse_forwarded_allow_ips)]
    pub forwarded_allow_ips: Option<String>,

    /// Request head size limit in bytes, 512..=1048576 [default: 8192]
    #[arg(long, short = 'b', value_name = "BYTES", value_parser = parse_buffer_size,
          allow_negative_numbers = true)]
    pub buffer_size: Option<usize>,

    /// Request body size limit in bytes; 0 means unlimited [default: unlimited]
    #[arg(long, value_name = "BYTES", value_parser = parse_limit_post,
          allow_negative_numbers = true)]
    pub limit_post: Option<u64>,

    /// Maximum number of uwsgi vars (key/value pairs) in a request [default: 128]
    #[arg(long, value_name = "N", value_parser = parse_max_vars,
          allow_negative_numbers = true)]
    pub max_vars: Option<usize>,

    /// Turn the request log off [default: false]
    #[arg(long, short = 'L', value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub disable_logging: Option<bool>,

    /// Cancel a request that runs longer than SECS seconds, fractions allowed [default: off]
    #[arg(long, short = 't', value_name = "SECS", value_parser = parse_harakiri,
          allow_negative_numbers = true)]
    pub harakiri: Option<f64>,

    /// Log details of every harakiri [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub harakiri_verbose: Option<bool>,

    /// Stats server address: "HOST:PORT" or a unix socket path [default: none]
    #[arg(long, value_name = "ADDR", value_parser = parse_stats)]
    pub stats: Option<String>,

    /// Seconds a worker gets to finish its requests on reload/shutdown [default: 60]
    #[arg(long, value_name = "SECS", value_parser = parse_reload_mercy,
          allow_negative_numbers = true)]
    pub reload_mercy: Option<f64>,

    /// Serve the stats document over HTTP (for browsers and `curl`) [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub stats_http: Option<bool>,

    /// Prometheus metrics endpoint (HTTP): "HOST:PORT" or a unix socket path [default: none]
    #[arg(long, value_name = "ADDR", value_parser = parse_stats)]
    pub metrics: Option<String>,

    /// Recycle a worker (drained, like a reload) after it served N requests; 0 = never
    /// [default: 0]
    #[arg(long, short = 'R', value_name = "N", value_parser = parse_limit_post,
          allow_negative_numbers = true)]
    pub max_requests: Option<u64>,

    /// Recycle a worker (drained) after it ran SECS seconds; 0 = never [default: 0]
    #[arg(long, value_name = "SECS", value_parser = parse_reload_mercy,
          allow_negative_numbers = true)]
    pub max_worker_lifetime: Option<f64>,

    /// Recycle a worker (drained) whose resident memory exceeds MB megabytes; 0 = never
    /// [default: 0]
    #[arg(long, value_name = "MB", value_parser = parse_limit_post,
          allow_negative_numbers = true)]
    pub reload_on_rss: Option<u64>,

    /// Write the master's pid to FILE (removed at exit) [default: none]
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,

    /// Drop privileges to this user (name or number) after binding [default: none]
    #[arg(long, value_name = "USER")]
    pub uid: Option<String>,

    /// Drop privileges to this group (name or number) after binding [default: none]
    #[arg(long, value_name = "GROUP")]
    pub gid: Option<String>,

    /// Refuse to start when the workers would run as root [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub refuse_root: Option<bool>,

    /// Change to DIR before anything else [default: none]
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,

    /// Raise signal NUM every SECS seconds (repeatable): "NUM SECS"
    #[arg(long, value_name = "NUM SECS", value_parser = parse_timer_arg)]
    #[serde(default, deserialize_with = "one_or_many")]
    pub timer: Vec<String>,

    /// Raise signal NUM on a cron schedule (repeatable): "NUM MIN HOUR DAY MONTH WEEKDAY",
    /// -1 = any, -N = every N
    #[arg(long, value_name = "NUM SPEC", value_parser = parse_cron_arg)]
    #[serde(default, deserialize_with = "one_or_many")]
    pub cron: Vec<String>,

    /// Raise signal NUM when PATH changes (repeatable): "NUM PATH"
    #[arg(long, value_name = "NUM PATH", value_parser = parse_file_monitor_arg)]
    #[serde(default, deserialize_with = "one_or_many")]
    pub file_monitor: Vec<String>,

    /// Permissions of the unix-socket listeners, in octal (e.g. 660, so that only the front
    /// server's group may connect); without a value 666 [default: none: as umask leaves them]
    #[arg(long, value_name = "MODE", value_parser = parse_chmod_socket, num_args = 0..=1,
          default_missing_value = "666")]
    #[serde(default, deserialize_with = "octal_mode")]
    pub chmod_socket: Option<String>,

    /// Owner of the unix-socket listeners: "USER" or "USER:GROUP" (names or numbers), so that
    /// the front server may connect to a 660 socket [default: none]
    #[arg(long, value_name = "USER[:GROUP]")]
    pub chown_socket: Option<String>,
    /// Serve the files under DIR at URL prefix MOUNT, before the apps (repeatable):
    /// "/MOUNT=DIR"; the longest mount wins
    #[arg(long, value_name = "/MOUNT=DIR", value_parser = parse_static_map_arg)]
    #[serde(default, deserialize_with = "one_or_many")]
    pub static_map: Vec<String>,

    /// File served for a request naming a directory under a --static-map, e.g. index.html
    /// [default: none: a directory is 403]
    #[arg(long, value_name = "NAME", value_parser = parse_static_index)]
    pub static_index: Option<String>,

    /// Write the log (requests and everything else) to FILE, appending, instead of stderr
    /// [default: none: stderr]
    #[arg(long, value_name = "FILE")]
    pub logto: Option<PathBuf>,

    /// Request log line: uWSGI's %(var) template (addr user ltime method uri proto status size
    /// msecs micros uagent referer host wid core ...) or "json" [default: ringsgi's line]
    #[arg(long, visible_alias = "log-format", value_name = "FORMAT",
          value_parser = parse_logformat)]
    pub logformat: Option<String>,

    /// Reopen the --logto file whenever FILE's modification time changes (logrotate: rename
    /// the log, then touch FILE) [default: none]
    #[arg(long, value_name = "FILE")]
    pub touch_logreopen: Option<PathBuf>,
    /// Python: serve the WSGI app in FILE at "/" (its callable: --callable) [default: none]
    #[arg(long, value_name = "FILE", value_parser = parse_wsgi_file)]
    pub wsgi_file: Option<String>,

    /// Python: serve the WSGI app of module MOD ("MOD" or "MOD:CALLABLE") at "/"
    /// [default: none]
    #[arg(long, short = 'w', value_name = "MOD[:CALLABLE]", value_parser = parse_module)]
    pub module: Option<String>,

    /// Python: the name of the WSGI callable in --wsgi-file, --module and mounted Python apps
    /// [default: application]
    #[arg(long, value_name = "NAME", value_parser = parse_callable)]
    pub callable: Option<String>,

    /// Python: add DIR to sys.path (repeatable)
    #[arg(long, value_name = "DIR")]
    #[serde(default, deserialize_with = "one_or_many")]
    pub pythonpath: Vec<String>,

    /// Python: use the virtual environment in DIR (its site-packages) [default: none]
    #[arg(long, visible_alias = "home", short = 'H', value_name = "DIR")]
    pub virtualenv: Option<PathBuf>,

    /// Python: run each request in its own greenlet, so that waits (body, slow client, the
    /// uwsgi API) switch to the other slots (with --async N) [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub greenlet: Option<bool>,

    /// Python: the gevent engine with N request slots per worker: gevent's loop runs on the
    /// worker's ring, each request in a gevent greenlet (socket timeout at least 30 s)
    /// [default: none]
    #[arg(long, value_name = "N", value_parser = parse_async)]
    pub gevent: Option<usize>,

    /// Python: gevent.monkey.patch_all() when the worker's loop starts, after the app is
    /// loaded (with --gevent) [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub gevent_monkey_patch: Option<bool>,

    /// Python: gevent.monkey.patch_all() before the app is loaded (with --gevent)
    /// [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub gevent_early_monkey_patch: Option<bool>,

    /// Python: a stopping worker waits (within --reload-mercy) until gevent's hub has
    /// nothing left to run (background greenlets, timers) (with --gevent) [default: false]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    pub gevent_wait_for_hub: Option<bool>,

    /// Python: run FILE as __main__ in a worker's executor and exit with its status (args
    /// after "--" become sys.argv[1:]) [default: none]
    #[arg(long, value_name = "FILE")]
    pub pyrun: Option<PathBuf>,

    /// Arguments of --pyrun (after "--")
    #[arg(last = true, value_name = "ARGS")]
    #[serde(skip)]
    pub pyrun_args: Vec<String>,

    /// TOML config file; command-line flags override its values
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
}

/// Combines the command line and the config file: per field, the command-line value wins.
///
/// For repeatable options a non-empty command-line list replaces the file's list entirely.
pub fn merge(cli: RawConfig, file: RawConfig) -> RawConfig {
    // Destructure both exhaustively so that a new field cannot be forgotten here.
    macro_rules! merged {
        ($($one:ident),* ; $($many:ident),*) => {{
            let RawConfig { $($one,)* $($many,)* } = cli;
            RawConfig {
                $($one: $one.or(file.$one),)*
                $($many: if $many.is_empty() { file.$many } else { $many },)*
            }
        }};
    }
    merged!(
        cores, async_slots, listen, reuse_port, app, socket_timeout, keepalive_timeout,
        header_timeout,
        enable_proxy_protocol,
        forwarded_allow_ips,
        buffer_size, limit_post, max_vars, disable_logging, harakiri, harakiri_verbose, stats,
        reload_mercy, stats_http, metrics, max_requests, max_worker_lifetime, reload_on_rss,
        pidfile, uid, gid, refuse_root, chdir, config, chmod_socket, chown_socket, static_index,
        logto, logformat, touch_logreopen, wsgi_file, module, callable, virtualenv, greenlet,
        pyrun, gevent, gevent_monkey_patch, gevent_early_monkey_patch, gevent_wait_for_hub;
        http_socket, socket, mount, crazy_names, timer, cron, file_monitor, static_map,
        pythonpath, pyrun_args
    )
}

/// A syntax error in one option, before it is tied to its source (command line or file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The option's key (the long flag without dashes), e.g. `cores`.
    pub key: &'static str,
    /// The offending value as written.
    pub value: String,
    /// What was expected, e.g. `expected a positive integer`.
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid value '{}' for --{}: {}",
            self.value, self.key, self.reason
        )
    }
}

impl RawConfig {
    /// Checks the syntax of every option that was given (ranges, addresses, mounts, names).
    ///
    /// The command-line values were already checked by clap's value parsers; this catches
    /// the same mistakes in values that came from the TOML file.
    pub fn validate(&self) -> Result<(), FieldError> {
        fn check<T: ToString>(
            key: &'static str,
            v: &Option<T>,
            f: impl Fn(&T) -> Result<(), String>,
        ) -> Result<(), FieldError> {
            match v {
                Some(v) => f(v).map_err(|reason| FieldError {
                    key,
                    value: v.to_string(),
                    reason,
                }),
                None => Ok(()),
            }
        }
        fn each(
            key: &'static str,
            vs: &[String],
            f: impl Fn(&str) -> Result<(), String>,
        ) -> Result<(), FieldError> {
            for v in vs {
                f(v).map_err(|reason| FieldError {
                    key,
                    value: v.clone(),
                    reason,
                })?;
            }
            Ok(())
        }
        let int = |r: IntRange| move |v: &usize| r.check(*v as u64);
        each("http-socket", &self.http_socket, |s| {
            parse_addr(s, false).map(drop)
        })?;
        each("socket", &self.socket, |s| parse_addr(s, true).map(drop))?;
        check("cores", &self.cores, int(CORES))?;
        check("wsgi-file", &self.wsgi_file, |s| {
            parse_wsgi_file(s).map(drop)
        })?;
        check("module", &self.module, |s| parse_module(s).map(drop))?;
        check("callable", &self.callable, |s| parse_callable(s).map(drop))?;
        check("async", &self.async_slots, int(ASYNC))?;
        check("gevent", &self.gevent, int(ASYNC))?;
        if self.gevent.is_some() && self.greenlet == Some(true) {
            return Err(FieldError {
                key: "gevent",
                value: self.gevent.unwrap_or(0).to_string(),
                reason: "--gevent and --greenlet are two engines: give one".to_owned(),
            });
        }
        check("listen", &self.listen, |v| LISTEN.check(u64::from(*v)))?;
        check("app", &self.app, |s| check_app_name(s))?;
        each("mount", &self.mount, |s| parse_mount(s).map(drop))?;
        let mut seen: Vec<String> = Vec::new();
        for m in &self.mount {
            let (prefix, _) = parse_mount(m).expect("checked above");
            if seen.contains(&prefix) {
                return Err(FieldError {
                    key: "mount",
                    value: m.clone(),
                    reason: format!("prefix '{prefix}' is mounted twice"),
                });
            }
            seen.push(prefix);
        }
        check("socket-timeout", &self.socket_timeout, |v| {
            POSITIVE_SECS.check(*v)
        })?;
        check("keepalive-timeout", &self.keepalive_timeout, |v| {
            NONNEG_SECS.check(*v)
        })?;
        check("header-timeout", &self.header_timeout, |v| {
            POSITIVE_SECS.check(*v)
        })?;
        check("buffer-size", &self.buffer_size, int(BUFFER_SIZE))?;
        check("max-vars", &self.max_vars, int(MAX_VARS))?;
        check("harakiri", &self.harakiri, |v| POSITIVE_SECS.check(*v))?;
        check("stats", &self.stats, |s| parse_addr(s, true).map(drop))?;
        check("reload-mercy", &self.reload_mercy, |v| {
            NONNEG_SECS.check(*v)
        })?;
        check("metrics", &self.metrics, |s| parse_addr(s, true).map(drop))?;
        check("max-worker-lifetime", &self.max_worker_lifetime, |v| {
            NONNEG_SECS.check(*v)
        })?;
        each("timer", &self.timer, |s| {
            crate::cron::parse_timer(s).map(drop)
        })?;
        each("cron", &self.cron, |s| {
            crate::cron::parse_cron_option(s).map(drop)
        })?;
        each("file-monitor", &self.file_monitor, |s| {
            crate::cron::parse_file_monitor(s).map(drop)
        })?;
        check("chmod-socket", &self.chmod_socket, |s| {
            parse_mode(s).map(drop)
        })?;
        each("static-map", &self.static_map, |s| {
            parse_static_map(s).map(drop)
        })?;
        let mut seen: Vec<String> = Vec::new();
        for m in &self.static_map {
            let (prefix, _) = parse_static_map(m).expect("checked above");
            if seen.contains(&prefix) {
                return Err(FieldError {
                    key: "static-map",
                    value: m.clone(),
                    reason: format!("prefix '{prefix}' is mapped twice"),
                });
            }
            seen.push(prefix);
        }
        check("static-index", &self.static_index, |s| {
            parse_static_index(s).map(drop)
        })?;
        check("logformat", &self.logformat, |s| {
            parse_logformat(s).map(drop)
        })?;
        Ok(())
    }
}

/// Accepts either one string or an array of strings for a repeatable TOML key.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "expected a string or an array of strings")]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

// ---------------------------------------------------------------------------------------------
// Numbers

/// An inclusive integer range with the phrase used in error messages.
#[derive(Clone, Copy)]
struct IntRange {
    min: u64,
    max: u64,
}

const CORES: IntRange = IntRange {
    min: 1,
    max: 65_536,
};
const ASYNC: IntRange = IntRange {
    min: 1,
    max: 1_000_000,
};
const LISTEN: IntRange = IntRange {
    min: 1,
    max: i32::MAX as u64,
};
const BUFFER_SIZE: IntRange = IntRange {
    min: 512,
    max: 1_048_576,
};
const LIMIT_POST: IntRange = IntRange {
    min: 0,
    max: u64::MAX,
};
const MAX_VARS: IntRange = IntRange {
    min: 1,
    max: 65_535,
};

impl IntRange {
    fn expected(self) -> String {
        match (self.min, self.max) {
            (0, u64::MAX) => "expected a non-negative integer".into(),
            (1, u64::MAX) => "expected a positive integer".into(),
            (1, max) => format!("expected a positive integer (at most {max})"),
            (min, max) => format!("expected an integer from {min} to {max}"),
        }
    }

    fn check(self, v: u64) -> Result<(), String> {
        if (self.min..=self.max).contains(&v) {
            Ok(())
        } else {
            Err(self.expected())
        }
    }

    fn parse(self, s: &str) -> Result<u64, String> {
        let v: u64 = s.parse().map_err(|_| self.expected())?;
        self.check(v)?;
        Ok(v)
    }
}

/// A range of seconds: `> 0` or `>= 0`, finite, and representable as a `Duration`.
#[derive(Clone, Copy)]
struct SecsRange {
    allow_zero: bool,
}

const POSITIVE_SECS: SecsRange = SecsRange { allow_zero: false };
const NONNEG_SECS: SecsRange = SecsRange { allow_zero: true };

/// The largest number of seconds accepted anywhere (about 31 years).
const MAX_SECS: f64 = 1e9;

impl SecsRange {
    fn expected(self) -> String {
        if self.allow_zero {
            "expected a number of seconds >= 0 (fractions allowed)".into()
        } else {
            "expected a number of seconds > 0 (fractions allowed)".into()
        }
    }

    fn check(self, v: f64) -> Result<(), String> {
        let ok = v.is_finite() && v <= MAX_SECS && (v > 0.0 || (self.allow_zero && v == 0.0));
        if ok { Ok(()) } else { Err(self.expected()) }
    }

    fn parse(self, s: &str) -> Result<f64, String> {
        // Rust's f64 parser also takes "inf" and "NaN"; check() rejects those.
        let v: f64 = s.parse().map_err(|_| self.expected())?;
        self.check(v)?;
        Ok(v)
    }
}

fn parse_cores(s: &str) -> Result<usize, String> {
    CORES.parse(s).map(|v| v as usize)
}
fn parse_async(s: &str) -> Result<usize, String> {
    ASYNC.parse(s).map(|v| v as usize)
}
fn parse_listen(s: &str) -> Result<u32, String> {
    LISTEN.parse(s).map(|v| v as u32)
}
fn parse_buffer_size(s: &str) -> Result<usize, String> {
    BUFFER_SIZE.parse(s).map(|v| v as usize)
}
fn parse_limit_post(s: &str) -> Result<u64, String> {
    LIMIT_POST.parse(s)
}
fn parse_max_vars(s: &str) -> Result<usize, String> {
    MAX_VARS.parse(s).map(|v| v as usize)
}
fn parse_socket_timeout(s: &str) -> Result<f64, String> {
    POSITIVE_SECS.parse(s)
}
fn parse_keepalive_timeout(s: &str) -> Result<f64, String> {
    NONNEG_SECS.parse(s)
}
fn parse_forwarded_allow_ips(s: &str) -> Result<String, String> {
    crate::config::parse_trusted(s).map(|_| s.to_owned())
}

fn parse_header_timeout(s: &str) -> Result<f64, String> {
    POSITIVE_SECS.parse(s)
}
fn parse_harakiri(s: &str) -> Result<f64, String> {
    POSITIVE_SECS.parse(s)
}
fn parse_reload_mercy(s: &str) -> Result<f64, String> {
    NONNEG_SECS.parse(s)
}
fn parse_timer_arg(s: &str) -> Result<String, String> {
    crate::cron::parse_timer(s).map(|_| s.to_owned())
}
fn parse_cron_arg(s: &str) -> Result<String, String> {
    crate::cron::parse_cron_option(s).map(|_| s.to_owned())
}
fn parse_file_monitor_arg(s: &str) -> Result<String, String> {
    crate::cron::parse_file_monitor(s).map(|_| s.to_owned())
}
fn parse_app(s: &str) -> Result<String, String> {
    check_app_name(s).map(|()| s.to_owned())
}
fn parse_mount_arg(s: &str) -> Result<String, String> {
    parse_mount(s).map(|_| s.to_owned())
}
fn parse_stats(s: &str) -> Result<String, String> {
    parse_addr(s, true).map(|_| s.to_owned())
}
fn parse_chmod_socket(s: &str) -> Result<String, String> {
    parse_mode(s).map(|_| s.to_owned())
}

/// A file mode in octal, as chmod(1) takes it: `660`, `0660`; at most `0777`.
pub fn parse_mode(s: &str) -> Result<u32, String> {
    let expected = || "expected an octal mode such as 660 (at most 777)".to_owned();
    if s.is_empty() || s.len() > 4 {
        return Err(expected());
    }
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o777 => Ok(m),
        _ => Err(expected()),
    }
}

/// `chmod-socket = "660"` or `chmod-socket = 660`: an integer is read as the octal digits it
/// is written with, as `chmod 660` is, not as the decimal number 660.
fn octal_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged, expecting = "expected an octal mode such as \"660\" or 660")]
    enum Mode {
        Text(String),
        Digits(u64),
    }
    Ok(Some(match Mode::deserialize(d)? {
        Mode::Text(s) => s,
        Mode::Digits(n) => n.to_string(),
    }))
}
fn parse_static_map_arg(s: &str) -> Result<String, String> {
    parse_static_map(s).map(|_| s.to_owned())
}

/// Checks a `--static-index` name: one path component, so that it cannot leave the directory
/// it is looked up in.
fn parse_logformat(s: &str) -> Result<String, String> {
    crate::logsink::LogFormat::parse(s).map(|_| s.to_owned())
}

fn parse_static_index(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s != "." && s != ".." && !s.contains(['/', '\\', '\0']);
    if ok {
        Ok(s.to_owned())
    } else {
        Err("expected a file name without '/' (e.g. index.html)".into())
    }
}

// ---------------------------------------------------------------------------------------------
// Names, mounts, addresses

/// Checks an app name: non-empty, only `[a-z0-9_-]`.
pub fn check_app_name(name: &str) -> Result<(), String> {
    if python_app(name).is_some() {
        return Ok(());
    }
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(
            "expected an app name made of [a-z0-9_-], a Python file FILE.py[:CALLABLE] or a \
             Python module MOD:CALLABLE"
                .into(),
        )
    }
}

/// A Python WSGI app named in a mount: `FILE.py` or `FILE.py:CALLABLE` (a WSGI file), or
/// `MOD:CALLABLE` (a module, dotted). Anything else is not a Python app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PythonApp {
    /// A WSGI file and the callable named after `:`, if any.
    File(String, Option<String>),
    /// A module and its callable.
    Module(String, String),
}

fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Parse a mount's app name as a Python app, if it is one (see [`PythonApp`]).
pub fn python_app(name: &str) -> Option<PythonApp> {
    let (main, callable) = match name.rsplit_once(':') {
        Some((m, c)) if is_ident(c) => (m, Some(c)),
        Some(_) => return None,
        None => (name, None),
    };
    if main.ends_with(".py")
        && main.len() > 3
        && !main
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b == b'=' || b == b':')
    {
        return Some(PythonApp::File(
            main.to_owned(),
            callable.map(str::to_owned),
        ));
    }
    let callable = callable?;
    if main.split('.').all(is_ident) {
        return Some(PythonApp::Module(main.to_owned(), callable.to_owned()));
    }
    None
}

fn parse_wsgi_file(s: &str) -> Result<String, String> {
    match python_app(s) {
        Some(PythonApp::File(..)) => Ok(s.to_owned()),
        _ => Err("expected a Python file FILE.py (optionally FILE.py:CALLABLE)".into()),
    }
}

fn parse_module(s: &str) -> Result<String, String> {
    let main = s.split_once(':').map_or(s, |(m, _)| m);
    let callable_ok = s.split_once(':').is_none_or(|(_, c)| is_ident(c));
    if main.split('.').all(is_ident) && callable_ok {
        Ok(s.to_owned())
    } else {
        Err("expected a module name MOD or MOD:CALLABLE (dotted identifiers)".into())
    }
}

fn parse_callable(s: &str) -> Result<String, String> {
    if is_ident(s) {
        Ok(s.to_owned())
    } else {
        Err("expected a Python identifier".into())
    }
}

/// Splits `"/PREFIX=NAME"` into the prefix and the app name, checking both.
///
/// The prefix must start with `/` and must not end with `/`, except `/` itself.
pub fn parse_mount(s: &str) -> Result<(String, String), String> {
    let (prefix, app) = s
        .split_once('=')
        .ok_or_else(|| "expected /PREFIX=NAME (no '=' found)".to_owned())?;
    if !prefix.starts_with('/') {
        return Err(format!("mount prefix '{prefix}' must start with '/'"));
    }
    if prefix.len() > 1 && prefix.ends_with('/') {
        return Err(format!("mount prefix '{prefix}' must not end with '/'"));
    }
    if prefix.contains("//") || prefix.bytes().any(|b| b.is_ascii_whitespace() || b == b'?') {
        return Err(format!("mount prefix '{prefix}' is not a clean URL path"));
    }
    check_app_name(app)?;
    Ok((prefix.to_owned(), app.to_owned()))
}

/// Splits `"/MOUNT=DIR"` into the URL prefix and the directory as written.
///
/// The prefix follows the rules of [`parse_mount`]; the directory must be non-empty. Whether
/// it exists is checked when the configuration is resolved.
pub fn parse_static_map(s: &str) -> Result<(String, PathBuf), String> {
    let (prefix, dir) = s
        .split_once('=')
        .ok_or_else(|| "expected /MOUNT=DIR (no '=' found)".to_owned())?;
    if !prefix.starts_with('/') {
        return Err(format!("static mount '{prefix}' must start with '/'"));
    }
    if prefix.len() > 1 && prefix.ends_with('/') {
        return Err(format!("static mount '{prefix}' must not end with '/'"));
    }
    if prefix.contains("//")
        || prefix.contains('%')
        || prefix.split('/').any(|seg| seg == "." || seg == "..")
        || prefix.bytes().any(|b| b.is_ascii_whitespace() || b == b'?')
    {
        return Err(format!("static mount '{prefix}' is not a clean URL path"));
    }
    if dir.is_empty() || dir.contains('\0') {
        return Err("expected a directory after '='".into());
    }
    Ok((prefix.to_owned(), PathBuf::from(dir)))
}

/// A listener address as written, checked for syntax but not resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddrSpec {
    /// `HOST:PORT`, `:PORT` (host `0.0.0.0`) or `[V6]:PORT` (host without brackets).
    Tcp {
        /// An IP address or a host name still to be resolved.
        host: String,
        /// The port; 0 lets the kernel choose.
        port: u16,
    },
    /// Anything containing `/`: a filesystem unix socket path.
    Unix(PathBuf),
    /// `@NAME`: an abstract unix socket (the name without the `@`).
    Abstract(String),
}

/// Longest unix socket path (`sun_path` is 108 bytes including the terminating NUL).
const MAX_UNIX_PATH: usize = 107;

/// Parses a listener address. `allow_abstract` admits `@NAME`.
pub fn parse_addr(s: &str, allow_abstract: bool) -> Result<AddrSpec, String> {
    if s.is_empty() {
        return Err(
            "expected an address: :PORT, HOST:PORT, [V6]:PORT or a unix socket path".into(),
        );
    }
    if s.contains('\0') {
        return Err("address contains a NUL byte".into());
    }
    if let Some(name) = s.strip_prefix('@') {
        if !allow_abstract {
            return Err("abstract unix sockets (@NAME) are only supported by --socket".into());
        }
        if name.is_empty() || name.len() > MAX_UNIX_PATH - 1 {
            return Err(format!(
                "abstract socket name must be 1 to {} bytes",
                MAX_UNIX_PATH - 1
            ));
        }
        return Ok(AddrSpec::Abstract(name.to_owned()));
    }
    if s.contains('/') {
        if s.len() > MAX_UNIX_PATH {
            return Err(format!(
                "unix socket path is longer than {MAX_UNIX_PATH} bytes"
            ));
        }
        return Ok(AddrSpec::Unix(PathBuf::from(s)));
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (v6, port) = rest
            .split_once("]:")
            .ok_or_else(|| "expected [V6]:PORT".to_owned())?;
        v6.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("'{v6}' is not an IPv6 address"))?;
        (v6, port)
    } else {
        let (host, port) = s.rsplit_once(':').ok_or_else(|| {
            "expected :PORT, HOST:PORT, [V6]:PORT or a unix socket path".to_owned()
        })?;
        if host.contains(':') {
            return Err("IPv6 addresses must be written in brackets: [V6]:PORT".into());
        }
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        let valid_name = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid_name {
            return Err(format!("'{host}' is not a valid host name"));
        }
        (host, port)
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("'{port}' is not a port number (0 to 65535)"))?;
    Ok(AddrSpec::Tcp {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn python_app_names_are_files_or_module_callables() {
        assert_eq!(
            python_app("app.py"),
            Some(PythonApp::File("app.py".into(), None))
        );
        assert_eq!(
            python_app("/srv/x/app.py:wsgi"),
            Some(PythonApp::File("/srv/x/app.py".into(), Some("wsgi".into())))
        );
        assert_eq!(
            python_app("pkg.mod:app"),
            Some(PythonApp::Module("pkg.mod".into(), "app".into()))
        );
        for rust_or_bad in [
            "hello",
            "pkg.mod",
            ".py",
            "a b.py",
            "mod:1x",
            "pkg..mod:app",
        ] {
            assert_eq!(python_app(rust_or_bad), None, "{rust_or_bad}");
        }
        assert!(check_app_name("pkg.mod:app").is_ok());
        assert!(parse_module("pkg.mod").is_ok());
        assert!(parse_module("pkg-mod").is_err());
        assert!(parse_wsgi_file("app.txt").is_err());
    }

    use super::*;

    fn cli(args: &[&str]) -> Result<RawConfig, clap::Error> {
        RawConfig::try_parse_from(std::iter::once("ringsgi").chain(args.iter().copied()))
    }

    #[test]
    fn merge_cli_wins_per_field() {
        let file = RawConfig {
            cores: Some(4),
            async_slots: Some(7),
            disable_logging: Some(true),
            ..Default::default()
        };
        let c = RawConfig {
            cores: Some(2),
            disable_logging: Some(false),
            ..Default::default()
        };
        let m = merge(c, file);
        assert_eq!(m.cores, Some(2));
        assert_eq!(m.async_slots, Some(7));
        assert_eq!(m.disable_logging, Some(false));
        assert_eq!(m.harakiri, None);
    }

    #[test]
    fn merge_vec_replaces_only_when_nonempty() {
        let file = RawConfig {
            http_socket: vec![":1".into(), ":2".into()],
            mount: vec!["/a=a".into()],
            ..Default::default()
        };
        let c = RawConfig {
            http_socket: vec![":3".into()],
            ..Default::default()
        };
        let m = merge(c, file);
        assert_eq!(m.http_socket, vec![":3".to_owned()]);
        assert_eq!(m.mount, vec!["/a=a".to_owned()]);
        assert!(m.socket.is_empty());
    }

    #[test]
    fn bool_flags() {
        assert_eq!(cli(&["--reuse-port"]).unwrap().reuse_port, Some(true));
        assert_eq!(
            cli(&["--reuse-port=false"]).unwrap().reuse_port,
            Some(false)
        );
        assert_eq!(cli(&["-L"]).unwrap().disable_logging, Some(true));
        assert_eq!(cli(&[]).unwrap().disable_logging, None);
        // A bool flag must not swallow the next argument.
        let r = cli(&["--harakiri-verbose", "--cores", "3"]).unwrap();
        assert_eq!((r.harakiri_verbose, r.cores), (Some(true), Some(3)));
    }

    #[test]
    fn repeatable_flags_accumulate() {
        let r = cli(&["--http", ":1", "--http-socket", ":2", "--mount", "/a=a"]).unwrap();
        assert_eq!(r.http_socket, vec![":1".to_owned(), ":2".to_owned()]);
        assert_eq!(r.mount, vec!["/a=a".to_owned()]);
    }

    #[test]
    fn toml_string_or_array_and_int_or_float_secs() {
        let r: RawConfig =
            toml::from_str("http-socket = \":1\"\nharakiri = 2\nsocket-timeout = 0.5\n").unwrap();
        assert_eq!(r.http_socket, vec![":1".to_owned()]);
        assert_eq!(r.harakiri, Some(2.0));
        assert_eq!(r.socket_timeout, Some(0.5));
        assert!(toml::from_str::<RawConfig>("config = \"x.toml\"").is_err());
    }

    #[test]
    fn addr_syntax() {
        let tcp = |h: &str, p| AddrSpec::Tcp {
            host: h.into(),
            port: p,
        };
        assert_eq!(parse_addr(":8080", false), Ok(tcp("0.0.0.0", 8080)));
        assert_eq!(parse_addr("127.0.0.1:0", false), Ok(tcp("127.0.0.1", 0)));
        assert_eq!(parse_addr("[::1]:0", false), Ok(tcp("::1", 0)));
        assert_eq!(parse_addr("localhost:9", false), Ok(tcp("localhost", 9)));
        assert_eq!(
            parse_addr("/tmp/x.sock", false),
            Ok(AddrSpec::Unix("/tmp/x.sock".into()))
        );
        assert_eq!(
            parse_addr("./x.sock", false),
            Ok(AddrSpec::Unix("./x.sock".into()))
        );
        assert_eq!(
            parse_addr("@abs", true),
            Ok(AddrSpec::Abstract("abs".into()))
        );
        for bad in [
            "", "8080", ":", ":65536", ":-1", "::1:80", "[::1]", "[nope]:1", "a b:1", "@",
        ] {
            assert!(parse_addr(bad, true).is_err(), "{bad:?} accepted");
        }
        assert!(parse_addr("@abs", false).is_err());
        assert!(parse_addr(&format!("/{}", "x".repeat(200)), false).is_err());
    }

    #[test]
    fn mount_syntax() {
        assert_eq!(
            parse_mount("/sleep=sleep"),
            Ok(("/sleep".into(), "sleep".into()))
        );
        assert_eq!(parse_mount("/=hello"), Ok(("/".into(), "hello".into())));
        assert_eq!(
            parse_mount("/a/b=x_y-1"),
            Ok(("/a/b".into(), "x_y-1".into()))
        );
        for bad in [
            "sleep", "/a=", "a=b", "/a/=b", "/a=B", "=x", "/a//b=x", "/a=b c",
        ] {
            assert!(parse_mount(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn static_map_and_index_syntax() {
        assert_eq!(
            parse_static_map("/s=/var/www"),
            Ok(("/s".into(), "/var/www".into()))
        );
        assert_eq!(
            parse_static_map("/=rel/dir"),
            Ok(("/".into(), "rel/dir".into()))
        );
        for bad in [
            "s=/x",
            "/s",
            "/s/=/x",
            "/s=",
            "/a//b=/x",
            "/a/../b=/x",
            "/%2e=/x",
            "/a b=/x",
        ] {
            assert!(parse_static_map(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_static_index("index.html").is_ok());
        for bad in ["", ".", "..", "a/b", "a\\b"] {
            assert!(parse_static_index(bad).is_err(), "{bad:?} accepted");
        }
        let twice = RawConfig {
            static_map: vec!["/s=/a".into(), "/s=/b".into()],
            ..Default::default()
        };
        assert!(twice.validate().is_err());
        let r = cli(&[
            "--static-map",
            "/a=/x",
            "--static-map",
            "/b=/y",
            "--static-index",
            "i.htm",
        ])
        .unwrap();
        assert_eq!(r.static_map.len(), 2);
        assert_eq!(r.static_index.as_deref(), Some("i.htm"));
    }

    #[test]
    fn validate_catches_file_values() {
        let bad = [
            RawConfig {
                cores: Some(0),
                ..Default::default()
            },
            RawConfig {
                async_slots: Some(1_000_001),
                ..Default::default()
            },
            RawConfig {
                buffer_size: Some(10),
                ..Default::default()
            },
            RawConfig {
                socket_timeout: Some(0.0),
                ..Default::default()
            },
            RawConfig {
                keepalive_timeout: Some(-1.0),
                ..Default::default()
            },
            RawConfig {
                header_timeout: Some(0.0),
                ..Default::default()
            },
            RawConfig {
                harakiri: Some(f64::NAN),
                ..Default::default()
            },
            RawConfig {
                mount: vec!["/a=a".into(), "/a=b".into()],
                ..Default::default()
            },
            RawConfig {
                http_socket: vec!["@x".into()],
                ..Default::default()
            },
            RawConfig {
                app: Some("Hello".into()),
                ..Default::default()
            },
            RawConfig {
                max_vars: Some(0),
                ..Default::default()
            },
            RawConfig {
                listen: Some(0),
                ..Default::default()
            },
            RawConfig {
                chmod_socket: Some("888".into()),
                ..Default::default()
            },
        ];
        for r in bad {
            assert!(r.validate().is_err(), "{r:?} accepted");
        }
        let e = RawConfig {
            cores: Some(0),
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value '0' for --cores: expected a positive integer (at most 65536)"
        );
        assert!(RawConfig::default().validate().is_ok());
    }

    #[test]
    fn chmod_socket_is_octal() {
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0666"), Ok(0o666));
        for bad in ["", "8", "1777", "abc", "-1", "07777"] {
            assert!(parse_mode(bad).is_err(), "{bad:?} accepted");
        }
        let r = cli(&["--http", ":1", "--chmod-socket", "--mount", "/a=a"]).unwrap();
        assert_eq!(r.chmod_socket.as_deref(), Some("666"));
        let r: RawConfig = toml::from_str("chmod-socket = 660").unwrap();
        assert_eq!(r.chmod_socket.as_deref(), Some("660"));
        let r: RawConfig = toml::from_str("chmod-socket = \"0600\"").unwrap();
        assert_eq!(r.chmod_socket.as_deref(), Some("0600"));
    }
}
