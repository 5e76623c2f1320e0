//! The client's address behind a load balancer: the PROXY protocol (`--enable-proxy-protocol`,
//! from nginx's stream module with `proxy_protocol on`, and hand-made v2 headers) and trusted
//! `X-Forwarded-For` from nginx's `proxy_pass` (`--forwarded-allow-ips`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use crate::nginx::{Nginx, TempDir};
use crate::support::{Server, free_port};

/// Debian's dynamic stream module (package libnginx-mod-stream, installed by .ci/run).
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

fn get_on(mut c: TcpStream, target: &str, extra: &str) -> String {
    write!(
        c,
        "GET {target} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    out
}

#[test]
fn proxy_protocol_from_nginx_stream_names_the_real_client() {
    assert!(
        std::path::Path::new(STREAM_MODULE).exists(),
        "nginx's stream module is not installed: apt-get install libnginx-mod-stream (.ci/run does)"
    );
    let mut srv = Server::start(&["--cores", "1", "--enable-proxy-protocol"]);
    let stream_port = free_port();
    let main = format!(
        "load_module {STREAM_MODULE};
stream {{
    server {{
        listen 127.0.0.1:{stream_port};
        proxy_pass {};
        proxy_protocol on;
    }}
}}",
        srv.addr
    );
    let _nginx = Nginx::start_with(TempDir::new("proxy-stream"), &main, "", "");
    let c = TcpStream::connect(("127.0.0.1", stream_port)).unwrap();
    let me = c.local_addr().unwrap();
    let answer = get_on(c, "/via-stream", "");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    // The request log names this client (its own port), not nginx's connection.
    srv.wait_for(&format!("{me} GET /via-stream => 200"));

    // Without a PROXY header the connection is closed and logged.
    let answer = get_on(TcpStream::connect(srv.addr).unwrap(), "/direct", "");
    assert_eq!(answer, "");
    srv.wait_for("no PROXY protocol header on a --enable-proxy-protocol listener: closed");

    // A hand-made v2 header (what HAProxy sends with send-proxy-v2).
    let mut c = TcpStream::connect(srv.addr).unwrap();
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12, 203, 0, 113, 9, 127, 0, 0, 1]);
    h.extend_from_slice(&4242u16.to_be_bytes());
    h.extend_from_slice(&80u16.to_be_bytes());
    c.write_all(&h).unwrap();
    let answer = get_on(c, "/v2", "");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    srv.wait_for("203.0.113.9:4242 GET /v2 => 200");
    srv.signal("INT");
    srv.stop();
}

/// Connect to `to` from 127.0.0.2, a loopback address that is not in the default
/// `--forwarded-allow-ips` (127.0.0.1, ::1).
fn connect_from_127_0_0_2(to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
        .unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

#[test]
fn x_forwarded_for_from_a_trusted_nginx_names_the_client() {
    let mut srv = Server::start(&["--cores", "1"]);
    let nginx = Nginx::start(
        TempDir::new("proxy-xff"),
        "",
        &format!(
            "location / {{
        proxy_pass http://{};
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }}",
            srv.addr
        ),
    );
    // A forged entry first: nginx appends the address it saw (127.0.0.2), the first untrusted
    // hop from the right, which is the client.
    let nginx_addr = nginx.conn().stream.peer_addr().unwrap();
    let answer = get_on(
        connect_from_127_0_0_2(nginx_addr),
        "/xff",
        "X-Forwarded-For: 6.6.6.6\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    srv.wait_for("127.0.0.2:0 GET /xff => 200");
    // Straight to ringsgi from an untrusted address: its own header is ignored.
    let answer = get_on(
        connect_from_127_0_0_2(srv.addr),
        "/forged",
        "X-Forwarded-For: 6.6.6.6\r\n",
    );
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let line = srv.wait_for("GET /forged => 200");
    assert!(line.contains("127.0.0.2:"), "{line}");
    assert!(!line.contains("6.6.6.6"), "{line}");
    srv.signal("INT");
    srv.stop();
}
