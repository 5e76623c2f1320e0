//! Local upstreams for the HTTP client's tests (`src/client/tests.rs` includes this file
//! too): a listener on 127.0.0.1:0 whose thread serves each connection with a given
//! behaviour, counts connections, and reports each connection's end on a channel; and a
//! test certificate authority (rcgen) for HTTPS upstreams (rustls server, ring provider).

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A byte stream an upstream behaviour talks over (plain TCP or TLS).
pub(crate) trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

type Behaviour = dyn Fn(&mut dyn Conn, usize) + Send + Sync;

/// A running upstream. Its thread and connection threads end with the test process.
pub(crate) struct Upstream {
    pub(crate) addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// One message per connection that ended: its index (0-based, in accept order).
    ended: Mutex<mpsc::Receiver<usize>>,
}

impl Upstream {
    /// Serve plain HTTP: `behaviour(conn, index)` for each connection.
    pub(crate) fn start(
        behaviour: impl Fn(&mut dyn Conn, usize) + Send + Sync + 'static,
    ) -> Upstream {
        Upstream::spawn(None, Arc::new(behaviour))
    }

    /// Serve HTTPS with `tls` (see [`TestCa::server_config`]).
    pub(crate) fn start_tls(
        tls: Arc<rustls::ServerConfig>,
        behaviour: impl Fn(&mut dyn Conn, usize) + Send + Sync + 'static,
    ) -> Upstream {
        Upstream::spawn(Some(tls), Arc::new(behaviour))
    }

    fn spawn(tls: Option<Arc<rustls::ServerConfig>>, behaviour: Arc<Behaviour>) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let count = accepted.clone();
        std::thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(s) = s else { return };
                let i = count.fetch_add(1, Ordering::SeqCst);
                let behaviour = behaviour.clone();
                let tls = tls.clone();
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
                    match tls {
                        None => {
                            let mut s = s;
                            behaviour(&mut s, i);
                        }
                        Some(cfg) => {
                            let conn = rustls::ServerConnection::new(cfg).unwrap();
                            let mut tls = rustls::StreamOwned::new(conn, s);
                            // The handshake fails when the client refuses our certificate.
                            if tls.conn.complete_io(&mut tls.sock).is_ok() {
                                behaviour(&mut tls, i);
                            }
                        }
                    }
                    let _ = tx.send(i);
                });
            }
        });
        Upstream {
            addr,
            accepted,
            ended: Mutex::new(rx),
        }
    }

    /// The index of a connection that ended since the last call, if any (does not wait).
    pub(crate) fn try_ended(&self) -> Option<usize> {
        self.ended.lock().unwrap().try_recv().ok()
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Wait (at most 20 s) for the next connection to end; its index.
    pub(crate) fn next_ended(&self) -> Option<usize> {
        self.ended
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(20))
            .ok()
    }

    pub(crate) fn url(&self, scheme: &str, path: &str) -> String {
        format!("{scheme}://{}{path}", self.addr)
    }
}

/// A request as the upstream read it.
#[derive(Debug, Default)]
pub(crate) struct Req {
    pub(crate) method: String,
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Req {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Read one request (head and a `Content-Length` or chunked body); `None` at EOF or on error.
pub(crate) fn read_request(conn: &mut dyn Conn) -> Option<Req> {
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let mut req = Req {
        method: parts.next()?.to_owned(),
        target: parts.next()?.to_owned(),
        ..Req::default()
    };
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        req.headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    if let Some(n) = req.header("content-length") {
        let n: usize = n.parse().ok()?;
        req.body = vec![0; n];
        r.read_exact(&mut req.body).ok()?;
    } else if req
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            req.body.extend_from_slice(&chunk[..n]);
        }
    }
    // BufReader may have read ahead: a pipelined request would be lost, but the client
    // sends one request at a time on a connection.
    if !r.buffer().is_empty() {
        return None;
    }
    Some(req)
}

/// Answer `status` with `body` (keep-alive).
pub(crate) fn respond(conn: &mut dyn Conn, status: u16, body: &[u8]) -> io::Result<()> {
    respond_with(conn, status, &[], body)
}

pub(crate) fn respond_with(
    conn: &mut dyn Conn,
    status: u16,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    conn.write_all(&bytes)?;
    conn.flush()
}

/// The usual upstream: answers every request on the connection with `200` and `body`.
pub(crate) fn serve_body(body: &'static [u8]) -> impl Fn(&mut dyn Conn, usize) + Send + Sync {
    move |conn, _| {
        while read_request(conn).is_some() {
            if respond(conn, 200, body).is_err() {
                return;
            }
        }
    }
}

/// Wait until the peer closes (or 20 s pass), reading and discarding what it sends.
pub(crate) fn until_closed(conn: &mut dyn Conn) {
    let mut buf = [0u8; 1024];
    while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
}

/// A certificate authority made for one test, and server certificates it signs.
pub(crate) struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        TestCa { cert, key }
    }

    /// The CA certificate in PEM, as `SSL_CERT_FILE` or a client option would read it.
    pub(crate) fn pem(&self) -> String {
        self.cert.pem()
    }

    /// Write the CA certificate to a fresh file; its path.
    pub(crate) fn write_pem(&self, dir: &std::path::Path) -> std::path::PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("ca.pem");
        std::fs::write(&path, self.pem()).unwrap();
        path
    }

    /// A rustls server configuration with a certificate for `localhost` and 127.0.0.1
    /// signed by this CA.
    pub(crate) fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.server_config_for(&["localhost", "127.0.0.1"])
    }

    /// A rustls server configuration with a certificate for `names` signed by this CA.
    pub(crate) fn server_config_for(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = rcgen::CertificateParams::new(names).unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        #[allow(deprecated)] // the ring provider: see src/client/tls.rs
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], der)
            .unwrap();
        Arc::new(cfg)
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then closed).
pub(crate) fn refused_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Connect to `addr` and read one line (used by readiness checks).
pub(crate) fn first_line(addr: SocketAddr) -> String {
    let s = TcpStream::connect(addr).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    line
}
