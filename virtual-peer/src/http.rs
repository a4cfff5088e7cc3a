//! A minimal HTTP/1.1 responder, one request per connection.
//!
//! Pure bytes in, bytes out, so it is tested without a network: the smoltcp
//! glue in `services.rs` feeds it what the socket received and asks it to
//! fill whatever send-buffer space the socket has. Bodies are generated on
//! the fly, so `GET /bytes/N` streams any N in constant memory.

/// What `GET /` returns.
pub const VIRTUAL_PEER_GREETING: &str = "hello from the wg-wrap virtual peer\n";

/// Byte `i` of every `GET /bytes/N` body. 251 is prime, so the pattern does
/// not line up with any power-of-two buffer or packet size and a shifted,
/// duplicated or dropped chunk shows up as a mismatch.
pub fn pattern_byte(i: u64) -> u8 {
    (i % PATTERN_PERIOD) as u8
}

const PATTERN_PERIOD: u64 = 251;
/// Requests larger than this (headers included) are refused: we only ever
/// expect a request line and a few headers.
const MAX_REQUEST: usize = 8 * 1024;
const NOT_FOUND_BODY: &[u8] = b"not found\n";
const BAD_REQUEST_BODY: &[u8] = b"bad request\n";

/// The pattern laid out for a whole chunk plus one period, so body bytes are
/// produced by `copy_from_slice` at any phase instead of a division per byte.
const TABLE_CHUNK: usize = 16 * 1024;
const TABLE_LEN: usize = TABLE_CHUNK + PATTERN_PERIOD as usize;
static PATTERN_TABLE: [u8; TABLE_LEN] = pattern_table();

const fn pattern_table() -> [u8; TABLE_LEN] {
    let mut table = [0u8; TABLE_LEN];
    let mut i = 0;
    while i < TABLE_LEN {
        table[i] = (i as u64 % PATTERN_PERIOD) as u8;
        i += 1;
    }
    table
}

/// Fill `out` with the body pattern starting at body offset `start`.
fn fill_pattern(start: u64, out: &mut [u8]) {
    let mut pos = start;
    for chunk in out.chunks_mut(TABLE_CHUNK) {
        let phase = (pos % PATTERN_PERIOD) as usize;
        chunk.copy_from_slice(&PATTERN_TABLE[phase..phase + chunk.len()]);
        pos += chunk.len() as u64;
    }
}

enum Body {
    Static(&'static [u8]),
    Pattern(u64),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Static(bytes) => bytes.len() as u64,
            Body::Pattern(n) => *n,
        }
    }
}

struct Response {
    head: Vec<u8>,
    body: Body,
    /// Bytes of head + body already handed out.
    sent: u64,
}

/// The per-connection state: reading the request, then writing the response.
#[derive(Default)]
pub struct HttpConn {
    request: Vec<u8>,
    response: Option<Response>,
}

impl HttpConn {
    pub fn new() -> HttpConn {
        HttpConn::default()
    }

    /// Feed received bytes. Once a complete request head is in (or the
    /// request is too large), the response is decided; later bytes are ignored.
    pub fn receive(&mut self, data: &[u8]) {
        if self.response.is_some() {
            return;
        }
        let room = MAX_REQUEST + 1 - self.request.len();
        self.request
            .extend_from_slice(&data[..data.len().min(room)]);
        if let Some(end) = find_head_end(&self.request) {
            self.response = Some(route(&self.request[..end]));
        } else if self.request.len() > MAX_REQUEST {
            self.response = Some(respond(
                400,
                "Bad Request",
                "text/plain",
                Body::Static(BAD_REQUEST_BODY),
            ));
        }
    }

    /// Whether a response has been decided (the request head is complete).
    pub fn responding(&self) -> bool {
        self.response.is_some()
    }

    /// Write the next response bytes into `out`; returns how many.
    pub fn fill(&mut self, out: &mut [u8]) -> usize {
        let Some(resp) = self.response.as_mut() else {
            return 0;
        };
        let mut written = 0;
        let head_len = resp.head.len() as u64;
        if resp.sent < head_len {
            let from = &resp.head[resp.sent as usize..];
            let n = from.len().min(out.len());
            out[..n].copy_from_slice(&from[..n]);
            written = n;
            resp.sent += n as u64;
        }
        let body_pos = resp.sent.saturating_sub(head_len);
        let remaining = resp.body.len() - body_pos;
        let n = remaining.min((out.len() - written) as u64) as usize;
        if n > 0 {
            let dst = &mut out[written..written + n];
            match &resp.body {
                Body::Static(bytes) => {
                    let at = body_pos as usize;
                    dst.copy_from_slice(&bytes[at..at + n]);
                }
                Body::Pattern(_) => fill_pattern(body_pos, dst),
            }
            resp.sent += n as u64;
            written += n;
        }
        written
    }

    /// Whether the whole response has been handed out.
    pub fn done(&self) -> bool {
        // Written as a subtraction: head + body overflows for /bytes/{u64::MAX}.
        self.response
            .as_ref()
            .is_some_and(|r| r.sent.checked_sub(r.head.len() as u64) == Some(r.body.len()))
    }
}

/// Offset just past the blank line ending the request head, if present.
/// Bare `\n` line ends are accepted too (RFC 9112 §2.2 allows it).
fn find_head_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|p| p + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Decide the response from the request head.
fn route(head: &[u8]) -> Response {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return respond(
            400,
            "Bad Request",
            "text/plain",
            Body::Static(BAD_REQUEST_BODY),
        );
    };
    if !version.starts_with(b"HTTP/1.") {
        return respond(
            400,
            "Bad Request",
            "text/plain",
            Body::Static(BAD_REQUEST_BODY),
        );
    }
    if method == b"GET" {
        if target == b"/" {
            return respond(
                200,
                "OK",
                "text/plain",
                Body::Static(VIRTUAL_PEER_GREETING.as_bytes()),
            );
        }
        if let Some(n) = target.strip_prefix(b"/bytes/").and_then(parse_decimal) {
            return respond(200, "OK", "application/octet-stream", Body::Pattern(n));
        }
    }
    respond(404, "Not Found", "text/plain", Body::Static(NOT_FOUND_BODY))
}

/// A plain decimal u64 (no sign, no spaces, no overflow).
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, &d| {
        let digit = (d as char).to_digit(10)?;
        acc.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn respond(status: u16, reason: &str, content_type: &str, body: Body) -> Response {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nServer: wg-wrap-virtual-peer\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    Response {
        head: head.into_bytes(),
        body,
        sent: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a request through a connection, draining the response in `chunk`-sized pieces.
    fn exchange(request: &[u8], chunk: usize) -> (String, Vec<u8>) {
        let mut conn = HttpConn::new();
        for piece in request.chunks(3) {
            conn.receive(piece);
        }
        assert!(conn.responding());
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        while !conn.done() {
            let n = conn.fill(&mut buf);
            assert!(n > 0);
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(conn.fill(&mut buf), 0);
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let body = out.split_off(split);
        (String::from_utf8(out).unwrap(), body)
    }

    #[test]
    fn greeting() {
        let (head, body) = exchange(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 7);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Connection: close\r\n"));
        assert!(head.contains(&format!(
            "Content-Length: {}\r\n",
            VIRTUAL_PEER_GREETING.len()
        )));
        assert_eq!(body, VIRTUAL_PEER_GREETING.as_bytes());
    }

    #[test]
    fn pattern_bodies_of_several_sizes() {
        for n in [0u64, 1, 250, 251, 252, 16 * 1024 + 300, 100_003] {
            for chunk in [1usize, 1000, 70_000] {
                if n > 20_000 && chunk == 1 {
                    continue;
                }
                let (head, body) =
                    exchange(format!("GET /bytes/{n} HTTP/1.0\n\n").as_bytes(), chunk);
                assert!(head.contains(&format!("Content-Length: {n}\r\n")), "{head}");
                assert_eq!(body.len() as u64, n);
                assert!(body
                    .iter()
                    .enumerate()
                    .all(|(i, &b)| b == pattern_byte(i as u64)));
            }
        }
    }

    #[test]
    fn huge_body_is_not_buffered() {
        let mut conn = HttpConn::new();
        conn.receive(b"GET /bytes/18446744073709551615 HTTP/1.1\r\n\r\n");
        let mut buf = vec![0u8; 4096];
        let n = conn.fill(&mut buf);
        assert_eq!(n, 4096);
        assert!(!conn.done());
    }

    #[test]
    fn not_found_and_bad_requests() {
        for req in [
            &b"GET /nope HTTP/1.1\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\n\r\n",
            b"GET /bytes/x HTTP/1.1\r\n\r\n",
            b"GET /bytes/-1 HTTP/1.1\r\n\r\n",
            b"GET /bytes/99999999999999999999 HTTP/1.1\r\n\r\n",
        ] {
            let (head, body) = exchange(req, 100);
            assert!(head.starts_with("HTTP/1.1 404 "), "{head}");
            assert_eq!(body, NOT_FOUND_BODY);
        }
        for req in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
        ] {
            let (head, _) = exchange(req, 100);
            assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
        }
    }

    #[test]
    fn oversized_request_is_refused() {
        let mut conn = HttpConn::new();
        conn.receive(b"GET / HTTP/1.1\r\n");
        assert!(!conn.responding());
        for _ in 0..1000 {
            conn.receive(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(conn.responding());
        let mut buf = [0u8; 64];
        let n = conn.fill(&mut buf);
        assert!(buf[..n].starts_with(b"HTTP/1.1 400 "));
    }
}
