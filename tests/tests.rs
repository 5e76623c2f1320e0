//! The integration tests: one binary, one module per area, all against the real `ringsgi`
//! binary on 127.0.0.1 port 0.

mod support;

// Harakiri (per request and per executor), background tasks, the `crazy` app.
mod harakiri;

// HTTP/1.1: keep-alive, pipelining, chunked, 100-continue, bad input, slots, workers, panics.
mod http;

// Slowloris: heads in progress hold no slot, --header-timeout answers 408 (issue #8).
mod slowloris;

// Idle keep-alive connections: parked without a task or buffer, woken, expired, drained.
mod idle;

// The multishot receive of kept-alive connections: bodies, pipelining, parking, the pool, drain.
mod multishot;

// The uwsgi listener (--socket): packets over TCP and unix sockets, ping, refused packets.
mod uwsgi;
// Static files (--static-map, --static-index): bytes, validators, ranges, path safety.
mod static_files;

// The master: reload and recycling under load, uWSGI signals, stats and metrics.
mod lifecycle;
// nginx in front (a real nginx, generated config): uwsgi_pass over TCP and unix, proxy_pass pool.
mod nginx;

// systemd: socket activation (systemd-socket-activate) and sd_notify (READY, WATCHDOG, ...).
mod systemd;

// tower services as apps: examples/axum.rs end to end, also behind nginx (issue 13).
mod axum_example;

// Request logs: --logto, --logformat (uWSGI templates, JSON), --touch-logreopen.
mod logging;
// Python WSGI apps (embedded CPython, greenlet engine, the uwsgi API): `--features python`.
#[cfg(feature = "python")]
mod python;
// Python WSGI apps (--features python): PEP 3333, bad apps, the uwsgi module, harakiri,
// --pyrun, stats, the examples against uWSGI's answers, Flask over HTTP and behind nginx.
#[cfg(feature = "python")]
mod python_wsgi;

// Client addresses behind balancers: PROXY protocol (nginx stream), trusted X-Forwarded-For.
mod proxy;
// The gevent engine (--gevent): gevent's loop on the worker's ring.
#[cfg(feature = "python")]
mod gevent;

// The HTTP client (`ringsgi::client`) through examples/fanout.rs: HTTP and HTTPS upstreams,
// a stalled one, a refused port, pool reuse across requests.
#[cfg(feature = "client")]
mod fanout;
