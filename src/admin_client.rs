//! A small blocking HTTP/1.0 client for the management API, so that `warren definitions
//! export|import` can work against a running broker (whose data dir it may not touch).
//! HTTP/1.0 keeps replies close-delimited: no chunked decoding is needed.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use base64::Engine;

/// Largest reply read (a definitions export of a very large broker fits).
const MAX_REPLY: u64 = 256 << 20;

/// Sends one request with HTTP basic auth; returns the status code and the body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    (user, password): (&str, &str),
    body: Option<&[u8]>,
) -> io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nAuthorization: Basic {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut reply = Vec::new();
    stream.take(MAX_REPLY + 1).read_to_end(&mut reply)?;
    if reply.len() as u64 > MAX_REPLY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("reply larger than {MAX_REPLY} bytes"),
        ));
    }
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not an HTTP reply");
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let status = std::str::from_utf8(&reply[..split])
        .ok()
        .and_then(|h| h.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, reply[split + 4..].to_vec()))
}
