//! The integration tests: one binary, one module per area, all against the real `ringsgi`
//! binary on 127.0.0.1 port 0.

mod support;

// Harakiri (per request and per executor), background tasks, the `crazy` app.
mod harakiri;

// HTTP/1.1: keep-alive, pipelining, chunked, 100-continue, bad input, slots, workers, panics.
mod http;

// The uwsgi listener (--socket): packets over TCP and unix sockets, ping, refused packets.
mod uwsgi;
// Static files (--static-map, --static-index): bytes, validators, ranges, path safety.
mod static_files;

// The master: reload and recycling under load, uWSGI signals, stats and metrics.
mod lifecycle;
// nginx in front (a real nginx, generated config): uwsgi_pass over TCP and unix, proxy_pass pool.
mod nginx;

// Python WSGI apps (embedded CPython, greenlet engine, the uwsgi API): `--features python`.
#[cfg(feature = "python")]
mod python;
// The gevent engine (--gevent): gevent's loop on the worker's ring.
#[cfg(feature = "python")]
mod gevent;
