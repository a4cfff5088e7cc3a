//! HTTP/1.1 GETs through the test client.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::{TestClient, TestError};

impl TestClient {
    /// `GET path` from `http://dst/`, collecting the body.
    pub fn http_get(
        &mut self,
        dst: IpAddr,
        path: &str,
        timeout: Duration,
    ) -> Result<HttpResponse, TestError> {
        let mut responses = self.http_get_many(&[(dst, path)], timeout)?;
        Ok(responses.remove(0))
    }

    /// Several GETs over concurrent connections, collecting the bodies.
    pub fn http_get_many(
        &mut self,
        gets: &[(IpAddr, &str)],
        timeout: Duration,
    ) -> Result<Vec<HttpResponse>, TestError> {
        let mut readers: Vec<HttpReader> = gets.iter().map(|_| HttpReader::default()).collect();
        let mut bodies: Vec<Vec<u8>> = gets.iter().map(|_| Vec::new()).collect();
        let requests: Vec<(SocketAddr, Vec<u8>)> = gets
            .iter()
            .map(|&(dst, path)| {
                (
                    SocketAddr::new(dst, crate::HTTP_PORT),
                    get_request(dst, path),
                )
            })
            .collect();
        let exchanges: Vec<(SocketAddr, &[u8])> =
            requests.iter().map(|(a, r)| (*a, r.as_slice())).collect();
        self.tcp_exchanges(&exchanges, false, timeout, &mut |i, chunk| {
            readers[i].feed(chunk, &mut |body| bodies[i].extend_from_slice(body))
        })?;
        readers
            .into_iter()
            .zip(bodies)
            .map(|(reader, body)| {
                Ok(HttpResponse {
                    body,
                    ..reader.finish()?
                })
            })
            .collect()
    }

    /// `GET path` from `http://dst/`, handing body bytes to `on_body` as they
    /// arrive (for bodies too large to hold).
    pub fn http_get_streaming(
        &mut self,
        dst: IpAddr,
        path: &str,
        timeout: Duration,
        on_body: &mut dyn FnMut(&[u8]),
    ) -> Result<HttpResponse, TestError> {
        let mut reader = HttpReader::default();
        let request = get_request(dst, path);
        self.tcp_exchange(
            SocketAddr::new(dst, crate::HTTP_PORT),
            &request,
            false,
            timeout,
            &mut |chunk| reader.feed(chunk, on_body),
        )?;
        reader.finish()
    }
}

/// An HTTP response; `body` is empty when it was streamed to a callback.
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names lower-cased, values trimmed.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Body bytes received (streamed or not).
    pub body_len: u64,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits an HTTP response stream into head and body.
#[derive(Default)]
struct HttpReader {
    head: Vec<u8>,
    head_done: bool,
    body_len: u64,
}

impl HttpReader {
    fn feed(&mut self, chunk: &[u8], on_body: &mut dyn FnMut(&[u8])) {
        let body = if self.head_done {
            chunk
        } else {
            let old = self.head.len();
            self.head.extend_from_slice(chunk);
            // Search from a little before the new bytes: the blank line may straddle chunks.
            let from = old.saturating_sub(3);
            let Some(pos) = self.head[from..].windows(4).position(|w| w == b"\r\n\r\n") else {
                return;
            };
            let end = from + pos + 4;
            self.head.truncate(end);
            self.head_done = true;
            &chunk[end - old..]
        };
        self.body_len += body.len() as u64;
        on_body(body);
    }

    fn finish(self) -> Result<HttpResponse, TestError> {
        if !self.head_done {
            return Err(TestError::BadReply(
                "connection closed before the response head ended",
            ));
        }
        let mut response = parse_head(&self.head)?;
        response.body_len = self.body_len;
        Ok(response)
    }
}

fn get_request(dst: IpAddr, path: &str) -> Vec<u8> {
    let host = match dst {
        IpAddr::V4(a) => a.to_string(),
        IpAddr::V6(a) => format!("[{a}]"),
    };
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// Parse a response head (status line and headers, ending in a blank line).
fn parse_head(head: &[u8]) -> Result<HttpResponse, TestError> {
    let text =
        std::str::from_utf8(head).map_err(|_| TestError::BadReply("response head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(TestError::BadReply("malformed status line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(TestError::BadReply("not an HTTP/1.x response"));
    }
    let status = code
        .parse()
        .map_err(|_| TestError::BadReply("malformed status code"))?;
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: Vec::new(),
        body_len: 0,
    })
}
