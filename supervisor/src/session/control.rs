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

use crate::dataplane::{PeerConfig, PeerStats, ReloadSummary};
use crate::namespace::netsetup::{self, NetOps};
use crate::reresolve::{Handover, Names};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wgconf::{Config, Endpoint};

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
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
    /// Registered wrapped processes that are alive.
    pub wrapped_pids: Vec<u32>,
    pub peers: Vec<PeerStatus>,
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
    fn failed(error: String) -> ReloadReply {
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

impl PeerStatus {
    pub fn from_stats(s: &PeerStats) -> PeerStatus {
        PeerStatus {
            public_key: base64::engine::general_purpose::STANDARD.encode(s.public_key),
            endpoint: s.endpoint.map(|e| e.to_string()),
            allowed_ips: s.allowed_ips.iter().map(|n| n.to_string()).collect(),
            latest_handshake_secs_ago: s.last_handshake.map(|d| d.as_secs()),
            rx_bytes: s.rx_bytes,
            tx_bytes: s.tx_bytes,
            persistent_keepalive: s.persistent_keepalive,
        }
    }
}

/// What the control server needs from the running tunnel.
pub trait Tunnel: Send + Sync {
    fn stats(&self) -> Vec<PeerStats>;
    fn reconfigure(&self, private_key: [u8; 32], peers: Vec<PeerConfig>) -> ReloadSummary;
    /// Whether the UDP socket is IPv6 (endpoints are then v4-mapped).
    fn ipv6_socket(&self) -> bool;
    /// The host UDP socket's port.
    fn listen_port(&self) -> u16;
}

/// Session facts that do not live in the tunnel.
pub trait SessionInfo: Send + Sync {
    fn held(&self) -> bool;
    fn wrapped_pids(&self) -> Vec<u32>;
}

pub struct Control {
    pub name: String,
    pub supervisor_pid: u32,
    pub started_unix: u64,
    pub tun_index: u32,
    pub tunnel: Arc<dyn Tunnel>,
    pub session: Arc<dyn SessionInfo>,
    pub net: Mutex<Box<dyn NetOps + Send>>,
    pub config: Mutex<Config>,
    /// Hostname endpoints under re-resolution; `None` when the session has no host
    /// socket to look names up with.
    pub names: Option<Names>,
}

/// The data plane's view of a profile's peers.
pub fn peer_configs(config: &Config, ipv6_socket: bool) -> Vec<PeerConfig> {
    config
        .peers
        .iter()
        .map(|p| PeerConfig {
            public_key: *p.public_key.as_bytes(),
            preshared_key: p.preshared_key.map(|k| *k.as_bytes()),
            endpoint: match &p.endpoint {
                Some(Endpoint::Addr(a)) => Some(crate::dataplane::socket_form(*a, ipv6_socket)),
                // The CLI resolves names on the host before handing a profile over.
                Some(Endpoint::Host { .. }) | None => None,
            },
            persistent_keepalive: p.persistent_keepalive,
            allowed_ips: p.allowed_ips.clone(),
        })
        .collect()
}

impl Control {
    pub fn status(&self) -> SessionStatus {
        SessionStatus {
            name: self.name.clone(),
            supervisor_pid: self.supervisor_pid,
            started_unix: self.started_unix,
            listen_port: Some(self.tunnel.listen_port()),
            held: self.session.held(),
            wrapped_pids: self.session.wrapped_pids(),
            peers: self
                .tunnel
                .stats()
                .iter()
                .map(PeerStatus::from_stats)
                .collect(),
        }
    }

    /// Apply a new profile text like `wg syncconf`. Interface settings that only take
    /// effect in a new namespace are reported, not applied. `names`: the profile's
    /// hostname endpoints (and the host's nameservers), which re-resolution works from
    /// from now on.
    pub fn reload(&self, text: &str, names: Handover) -> ReloadReply {
        let new = match wgconf::parse(text) {
            Ok(parsed) => parsed.config,
            Err(e) => return ReloadReply::failed(e.to_string()),
        };
        let mut reply = ReloadReply {
            error: None,
            ..ReloadReply::failed(String::new())
        };
        let mut current = self.config.lock().unwrap_or_else(|e| e.into_inner());
        let (old_i, new_i) = (&current.interface, &new.interface);
        let mut not_applied = |what: &str, changed: bool| {
            if changed {
                reply.warnings.push(format!(
                    "{what} changed: not applied to the running session (run `down` and `up` to apply it)"
                ));
            }
        };
        not_applied("Address", old_i.addresses != new_i.addresses);
        not_applied(
            "DNS",
            old_i.dns != new_i.dns || old_i.dns_search != new_i.dns_search,
        );
        not_applied("MTU", old_i.mtu != new_i.mtu);
        not_applied("ListenPort", old_i.listen_port != new_i.listen_port);

        // Routes first: a failure leaves the running configuration untouched. They
        // follow the addresses the namespace really has (Address is not reloaded;
        // without an IPv6 address, IPv6 is off on the tunnel and gets no routes).
        let mut routed = new.clone();
        routed.interface.addresses = current.interface.addresses.clone();
        let old_routes = netsetup::tunnel_routes(&current);
        let new_routes = netsetup::tunnel_routes(&routed);
        {
            let mut net = self.net.lock().unwrap_or_else(|e| e.into_inner());
            for r in new_routes.iter().filter(|r| !old_routes.contains(r)) {
                if let Err(e) = net.add_route(self.tun_index, *r) {
                    reply.error = Some(format!("add route {r}: {e}"));
                    return reply;
                }
            }
            for r in old_routes.iter().filter(|r| !new_routes.contains(r)) {
                if let Err(e) = net.del_route(self.tun_index, *r) {
                    reply.warnings.push(format!("remove route {r}: {e}"));
                }
            }
        }
        let summary = self.tunnel.reconfigure(
            *new.interface.private_key.as_bytes(),
            peer_configs(&new, self.tunnel.ipv6_socket()),
        );
        // Interface settings that were not applied stay as they are.
        let mut applied = new;
        applied.interface.addresses = current.interface.addresses.clone();
        applied.interface.dns = current.interface.dns.clone();
        applied.interface.dns_search = current.interface.dns_search.clone();
        applied.interface.mtu = current.interface.mtu;
        applied.interface.listen_port = current.interface.listen_port;
        *current = applied;
        match &self.names {
            Some(watched) => watched.replace(names),
            None if !names.endpoints.is_empty() => reply.warnings.push(
                "hostname endpoints will not be re-resolved in this session (it has no host \
                 socket for lookups)"
                    .into(),
            ),
            None => {}
        }
        reply.ok = true;
        reply.kept = summary.kept;
        reply.replaced = summary.replaced;
        reply.added = summary.added;
        reply.removed = summary.removed;
        reply
    }

    /// Serve requests on `listener` in a background thread.
    pub fn serve(self: Arc<Self>, listener: UnixListener) -> io::Result<()> {
        std::thread::Builder::new()
            .name("control".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    // A misbehaving client must not stop the server.
                    let _ = self.handle(stream);
                }
            })?;
        Ok(())
    }

    fn handle(&self, stream: UnixStream) -> io::Result<()> {
        let peer = rustix::net::sockopt::socket_peercred(&stream)?;
        if peer.uid != rustix::process::getuid() {
            return Ok(());
        }
        stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
        let mut reader = BufReader::new(&stream);
        let mut request = String::new();
        reader.by_ref().take(64).read_line(&mut request)?;
        let answer = match request.trim_end().split_once(' ') {
            None if request.trim_end() == "status" => serde_json::to_string(&self.status()),
            Some(("reload", len)) => {
                let reply = match read_reload(&mut reader, len) {
                    Ok((text, names)) => self.reload(&text, names),
                    Err(e) => ReloadReply::failed(e),
                };
                serde_json::to_string(&reply)
            }
            _ => Ok(String::from("{\"error\":\"unknown request\"}")),
        }
        .map_err(io::Error::other)?;
        (&stream).write_all(answer.as_bytes())?;
        (&stream).write_all(b"\n")
    }
}

/// The body of `reload N`: N bytes of handover text, then the profile.
fn read_reload(reader: &mut impl Read, names_len: &str) -> Result<(String, Handover), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reresolve::NamedEndpoint;

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
