//! The control channel: a unix socket in the profile directory through which the CLI
//! asks a running supervisor for its status or hands it a new configuration.
//!
//! One request per connection, a line naming it, then for `reload N` the re-resolution
//! handover (N bytes of [`Handover`] text: the profile's hostname endpoints and the
//! host's nameservers as the CLI read them) and the profile text (endpoints resolved)
//! up to end-of-file; the answer is one JSON document. The socket is abstract and lives
//! in the host's network namespace (the CLI made it there), so wrapped programs cannot
//! connect — a `reload` from inside could otherwise re-point the tunnel at any address
//! the host reaches. Other users could: SO_PEERCRED must show our uid.

use crate::contract::handover::Handover;
use crate::contract::publish::{Owner, PublishReply, PublishSpec, PublishedPort, MAX_PORTS};
use serde::{Deserialize, Serialize};
use std::io::IoSlice;
use std::io::{self, Read, Write};
use std::os::fd::BorrowedFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// How long a client may take to send its request.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest profile accepted by `reload`.
const MAX_PROFILE: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStatus {
    pub name: String,
    pub supervisor_pid: u32,
    pub started_unix: u64,
    /// The host UDP socket's port, as `wg show` lists it (absent: an older supervisor).
    #[serde(default)]
    pub listen_port: Option<u16>,
    /// An `up` holds the session.
    pub held: bool,
    /// Wrapped processes that are alive: registered ones and what they left running in
    /// the namespace (see [`crate::contract::state::wrapped_processes`]).
    pub wrapped_pids: Vec<u32>,
    pub peers: Vec<PeerStatus>,
    /// Ports published into the namespace (absent: an older supervisor).
    #[serde(default)]
    pub published: Vec<PublishedPort>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    pub public_key: String,
    pub endpoint: Option<String>,
    pub allowed_ips: Vec<String>,
    pub latest_handshake_secs_ago: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub persistent_keepalive: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReply {
    pub ok: bool,
    pub error: Option<String>,
    pub warnings: Vec<String>,
    pub kept: usize,
    pub replaced: usize,
    pub added: usize,
    pub removed: usize,
}

impl ReloadReply {
    pub(crate) fn failed(error: String) -> ReloadReply {
        ReloadReply {
            ok: false,
            error: Some(error),
            warnings: Vec::new(),
            kept: 0,
            replaced: 0,
            added: 0,
            removed: 0,
        }
    }
}

/// The body of `reload N`: N bytes of handover text, then the profile.
pub(crate) fn read_reload(
    reader: &mut impl Read,
    names_len: &str,
) -> Result<(String, Handover), String> {
    let len: u64 = names_len
        .parse()
        .ok()
        .filter(|n| *n <= MAX_PROFILE)
        .ok_or("bad reload request")?;
    let mut names = String::new();
    let mut text = String::new();
    let read = Read::by_ref(reader)
        .take(len)
        .read_to_string(&mut names)
        .and_then(|_| reader.take(MAX_PROFILE).read_to_string(&mut text));
    read.map_err(|e| format!("reading the reload request: {e}"))?;
    if names.len() as u64 != len {
        return Err("truncated reload request".into());
    }
    let names = Handover::parse(&names).map_err(|e| e.to_string())?;
    Ok((text, names))
}

/// A request line as the server reads it (at most 64 bytes, newline included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Request<'a> {
    Status,
    /// `reload N`: N as sent; [`read_reload`] checks it.
    Reload(&'a str),
    /// `publish WORD`: the owner word as sent; [`Owner::from_word`] checks it.
    Publish(&'a str),
    Unknown,
}

impl<'a> Request<'a> {
    pub(crate) fn parse(line: &'a str) -> Request<'a> {
        let line = line.trim_end();
        match line.split_once(' ') {
            None if line == "status" => Request::Status,
            Some(("reload", len)) => Request::Reload(len),
            Some(("publish", owner)) => Request::Publish(owner),
            _ => Request::Unknown,
        }
    }

    /// The line (without its newline) that parses to this request; `None` for
    /// [`Request::Unknown`].
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn render(&self) -> Option<String> {
        match self {
            Request::Status => Some("status".into()),
            Request::Reload(len) => Some(format!("reload {len}")),
            Request::Publish(owner) => Some(format!("publish {owner}")),
            Request::Unknown => None,
        }
    }
}

/// The request line and body of a `reload`: the handover text of `names` and the
/// profile `text` (see the module docs).
pub fn reload_request(text: &str, names: &Handover) -> (String, String) {
    let names = names.render();
    (format!("reload {}", names.len()), format!("{names}{text}"))
}

/// Ask a running supervisor over its control socket (by abstract name); returns the
/// raw JSON answer.
pub fn request(socket_name: &str, request: &str, body: Option<&str>) -> io::Result<String> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(socket_name)?;
    let mut stream = UnixStream::connect_addr(&addr)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    writeln!(stream, "{request}")?;
    if let Some(body) = body {
        stream.write_all(body.as_bytes())?;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// Hand listening sockets to a running supervisor (see [`crate::contract::publish`]):
/// one `sendmsg` carrying the request and the descriptors.
pub fn publish(
    socket_name: &str,
    owner: Owner,
    ports: &[(PublishSpec, BorrowedFd<'_>)],
) -> io::Result<PublishReply> {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    use std::mem::MaybeUninit;
    use std::os::linux::net::SocketAddrExt;
    if ports.len() > MAX_PORTS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("at most {MAX_PORTS} ports can be published at once"),
        ));
    }
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(socket_name)?;
    let stream = UnixStream::connect_addr(&addr)?;
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let specs: Vec<PublishSpec> = ports.iter().map(|(s, _)| *s).collect();
    let text = format!(
        "publish {}\n{}",
        owner.word(),
        serde_json::to_string(&specs).map_err(io::Error::other)?
    );
    let fds: Vec<BorrowedFd<'_>> = ports.iter().map(|(_, fd)| *fd).collect();
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_PORTS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !control.push(SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("too many descriptors for one message"));
    }
    let bytes = text.as_bytes();
    let sent = sendmsg(
        &stream,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    // The descriptors went with the first bytes; the rest (if any) follows plainly.
    (&stream).write_all(&bytes[sent..])?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut answer = String::new();
    (&stream).read_to_string(&mut answer)?;
    serde_json::from_str(&answer).map_err(|_| {
        io::Error::other(format!(
            "the supervisor answered {answer:?} (started by an older wg-wrap? `down` and `up` it again)"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::handover::NamedEndpoint;

    #[test]
    fn reload_request_round_trips_names_and_profile() {
        let names = Handover {
            nameservers: vec!["127.0.0.53".parse().unwrap()],
            endpoints: vec![NamedEndpoint {
                public_key: [7; 32],
                host: "vpn.example.com".into(),
                port: 51820,
            }],
        };
        let profile = "[Interface]\nPrivateKey = x\n\n[Peer]\nEndpoint = 192.0.2.1:51820\n";
        let (line, body) = reload_request(profile, &names);
        let len = line.strip_prefix("reload ").expect("a reload request line");
        let (text, got) = read_reload(&mut body.as_bytes(), len).unwrap();
        assert_eq!((text.as_str(), got), (profile, names));
        // Without names the section is empty, and the profile follows at once.
        let (line, body) = reload_request(profile, &Handover::default());
        assert_eq!(line, "reload 0");
        assert_eq!(body, profile);
    }

    #[test]
    fn request_lines_parse_and_render_back() {
        let cases = [
            ("status\n", Request::Status),
            ("status", Request::Status),
            ("reload 42\n", Request::Reload("42")),
            // The length is read_reload's to check, the owner Owner::from_word's.
            ("reload x y\n", Request::Reload("x y")),
            ("publish session\n", Request::Publish("session")),
            ("publish command\r\n", Request::Publish("command")),
            ("publish nobody\n", Request::Publish("nobody")),
        ];
        for (line, want) in cases {
            assert_eq!(Request::parse(line), want, "{line:?}");
            let again = want.render().unwrap();
            assert_eq!(Request::parse(&again), want, "{line:?}");
        }
        for garbage in [
            "",
            "\n",
            "status now\n",
            " status\n",
            "reload\n",
            "reload \n",
            "publish\n",
            "RELOAD 1\n",
            "reload\t1\n",
            "\u{0}\u{ff}\n",
            "publish  \n",
        ] {
            assert_eq!(Request::parse(garbage), Request::Unknown, "{garbage:?}");
            assert_eq!(Request::Unknown.render(), None);
        }
        // Only trailing whitespace is dropped: a leading blank stays in the argument.
        assert_eq!(Request::parse("reload  7\n"), Request::Reload(" 7"));
    }

    #[test]
    fn malformed_reload_requests_are_refused() {
        let mut body: &[u8] = b"endpoint";
        assert_eq!(
            read_reload(&mut body, "20").unwrap_err(),
            "truncated reload request"
        );
        for len in ["x", "-1", "99999999999"] {
            assert_eq!(
                read_reload(&mut &b""[..], len).unwrap_err(),
                "bad reload request"
            );
        }
        let mut body: &[u8] = b"garbage line\n[Interface]\n";
        assert!(read_reload(&mut body, "13")
            .unwrap_err()
            .contains("line 1: not understood"));
    }
}
