//! What the client reaches through the tunnel: an HTTP server and a UDP echo, run as
//! threads of the test process on sockets bound inside the server namespace to the
//! server's tunnel addresses (so only packets that came out of the real peer reach them).
//!
//! HTTP (one request per connection, `Connection: close`):
//! - `GET /hello` -> [`GREETING`];
//! - `GET /bytes/N` -> N bytes of [`fill_pattern`];
//! - `GET /slow/N` -> the same bytes, paced (64 KiB every [`SLOW_PACE`]) so a test can
//!   act while the transfer is in flight;
//! - `POST /seq/N` with the output of `seq 1 N` as body -> `ok LEN` when every byte
//!   matches, else a 400 naming the first difference.
//!
//! Every thread stops when the [`Services`] value is dropped.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub const GREETING: &str = "hello from the real peer's side\n";
pub const HTTP_PORT: u16 = 80;
pub const ECHO_PORT: u16 = 7;
pub const SLOW_PACE: Duration = Duration::from_millis(15);
const CHUNK: usize = 64 * 1024;
/// How often idle loops look at the stop flag.
const POLL: Duration = Duration::from_millis(50);
/// A stuck client must not hold a server thread (and its namespace) for long; but a
/// roaming client only re-handshakes after WireGuard's 15 s of silence, and the
/// transfer must survive that.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Byte `i` of the download stream: SplitMix64 of the 8-byte block number, so a
/// block that arrives shifted, repeated or out of order is caught, not only a flipped bit.
pub fn fill_pattern(offset: u64, buf: &mut [u8]) {
    let mut i = 0;
    while i < buf.len() {
        let pos = offset + i as u64;
        let block = splitmix64(pos / 8).to_le_bytes();
        let from = (pos % 8) as usize;
        let n = (8 - from).min(buf.len() - i);
        buf[i..i + n].copy_from_slice(&block[from..from + n]);
        i += n;
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The first offset where `data` differs from the pattern, if any.
pub fn first_pattern_mismatch(data: &[u8]) -> Option<usize> {
    let mut expected = vec![0u8; CHUNK];
    for (n, chunk) in data.chunks(CHUNK).enumerate() {
        let offset = n * CHUNK;
        fill_pattern(offset as u64, &mut expected[..chunk.len()]);
        if let Some(i) = chunk.iter().zip(&expected).position(|(a, b)| a != b) {
            return Some(offset + i);
        }
    }
    None
}

/// The output of `seq 1 n`.
pub fn seq_text(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=n {
        writeln!(out, "{i}").unwrap();
    }
    out
}

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    /// Download bytes written to clients so far, over all connections.
    sent: AtomicU64,
    /// Upload body bytes read so far, over all connections.
    received: AtomicU64,
    /// One line per request, for failure messages.
    log: Mutex<Vec<String>>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Shared {
    fn note(&self, line: String) {
        self.log.lock().unwrap().push(line);
    }
}

pub struct Services {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Services {
    /// Serve on already bound sockets (bound inside the server namespace).
    pub fn start(http: Vec<TcpListener>, echo: Vec<UdpSocket>) -> Services {
        let shared = Arc::new(Shared::default());
        let mut threads = Vec::new();
        for listener in http {
            let shared = shared.clone();
            threads.push(std::thread::spawn(move || accept_loop(listener, shared)));
        }
        for socket in echo {
            let shared = shared.clone();
            threads.push(std::thread::spawn(move || echo_loop(socket, shared)));
        }
        Services { shared, threads }
    }

    /// Download bytes written so far.
    pub fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::SeqCst)
    }

    /// Upload body bytes read so far.
    pub fn received(&self) -> u64 {
        self.shared.received.load(Ordering::SeqCst)
    }

    /// What the servers saw, one line per request.
    pub fn log(&self) -> String {
        self.shared.log.lock().unwrap().join("\n")
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        let workers = std::mem::take(&mut *self.shared.workers.lock().unwrap());
        for t in workers {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    listener.set_nonblocking(true).unwrap();
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((conn, from)) => {
                let s = shared.clone();
                let worker = std::thread::spawn(move || {
                    if let Err(e) = serve(conn, from, &s) {
                        s.note(format!("{from}: connection failed: {e}"));
                    }
                });
                shared.workers.lock().unwrap().push(worker);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(e) => {
                shared.note(format!("accept failed: {e}"));
                std::thread::sleep(POLL);
            }
        }
    }
}

fn echo_loop(socket: UdpSocket, shared: Arc<Shared>) {
    socket.set_read_timeout(Some(POLL)).unwrap();
    let mut buf = vec![0u8; 65536];
    while !shared.stop.load(Ordering::SeqCst) {
        match socket.recv_from(&mut buf) {
            Ok((n, from)) => {
                let _ = socket.send_to(&buf[..n], from);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => shared.note(format!("udp echo: {e}")),
        }
    }
}

struct Request {
    method: String,
    path: String,
    content_length: u64,
    expect_continue: bool,
}

fn read_head(conn: &mut TcpStream) -> io::Result<(Request, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 16 * 1024 {
            return Err(io::Error::other("request head too long"));
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::other(
                "connection closed before the request head ended",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = buf[end + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let mut req = Request {
        method,
        path,
        content_length: 0,
        expect_continue: false,
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            req.content_length = value.parse().unwrap_or(0);
        } else if name.eq_ignore_ascii_case("expect") {
            req.expect_continue = value.eq_ignore_ascii_case("100-continue");
        }
    }
    Ok((req, rest))
}

fn respond(conn: &mut TcpStream, status: &str, body: &[u8]) -> io::Result<()> {
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    conn.write_all(body)
}

fn serve(mut conn: TcpStream, from: SocketAddr, shared: &Shared) -> io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let (req, body_start) = read_head(&mut conn)?;
    shared.note(format!("{from}: {} {}", req.method, req.path));
    let arg = |prefix: &str| {
        req.path
            .strip_prefix(prefix)
            .and_then(|n| n.parse::<u64>().ok())
    };
    match req.method.as_str() {
        "GET" if req.path == "/hello" => respond(&mut conn, "200 OK", GREETING.as_bytes()),
        "GET" if arg("/bytes/").is_some() => {
            send_pattern(&mut conn, arg("/bytes/").unwrap(), None, shared)
        }
        "GET" if arg("/slow/").is_some() => {
            send_pattern(&mut conn, arg("/slow/").unwrap(), Some(SLOW_PACE), shared)
        }
        "POST" if arg("/seq/").is_some() => {
            if req.expect_continue {
                conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            }
            let expected = seq_text(arg("/seq/").unwrap());
            shared
                .received
                .fetch_add(body_start.len() as u64, Ordering::SeqCst);
            let mut body = body_start;
            let mut chunk = vec![0u8; CHUNK];
            while (body.len() as u64) < req.content_length {
                if shared.stop.load(Ordering::SeqCst) {
                    return Ok(());
                }
                let n = conn.read(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
                shared.received.fetch_add(n as u64, Ordering::SeqCst);
            }
            let verdict = match body.iter().zip(&expected).position(|(a, b)| a != b) {
                None if body.len() == expected.len() => format!("ok {}\n", body.len()),
                None => format!(
                    "length {} differs from the expected {}\n",
                    body.len(),
                    expected.len()
                ),
                Some(i) => format!("first difference at byte {i} of {}\n", body.len()),
            };
            shared.note(format!("{from}: upload verdict: {}", verdict.trim_end()));
            let status = if verdict.starts_with("ok") {
                "200 OK"
            } else {
                "400 Bad Request"
            };
            respond(&mut conn, status, verdict.as_bytes())
        }
        _ => respond(&mut conn, "404 Not Found", b"not found\n"),
    }
}

fn send_pattern(
    conn: &mut TcpStream,
    len: u64,
    pace: Option<Duration>,
    shared: &Shared,
) -> io::Result<()> {
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    while offset < len {
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        let n = (len - offset).min(CHUNK as u64) as usize;
        fill_pattern(offset, &mut buf[..n]);
        conn.write_all(&buf[..n])?;
        offset += n as u64;
        shared.sent.fetch_add(n as u64, Ordering::SeqCst);
        if let Some(pace) = pace {
            std::thread::sleep(pace);
        }
    }
    Ok(())
}

#[test]
fn pattern_is_position_dependent_and_offset_consistent() {
    let mut whole = vec![0u8; 1000];
    fill_pattern(0, &mut whole);
    let mut part = vec![0u8; 13];
    fill_pattern(501, &mut part);
    assert_eq!(part, whole[501..514]);
    assert_eq!(first_pattern_mismatch(&whole), None);
    let mut shifted = whole.clone();
    shifted.copy_within(8..16, 16);
    assert_eq!(first_pattern_mismatch(&shifted), Some(16));
    assert_eq!(&seq_text(3), b"1\n2\n3\n");
}
