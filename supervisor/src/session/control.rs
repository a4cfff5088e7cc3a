//! The control server: answers the CLI's requests (see [`crate::contract::control`]
//! for the protocol) from the running tunnel and session.

use crate::contract::control::{
    read_reload, PeerStatus, ReloadReply, Request, SessionStatus, REQUEST_TIMEOUT,
};
use crate::contract::handover::Handover;
use crate::contract::publish::{self, Owner, PublishReply, MAX_PORTS};
use crate::dataplane::{PeerConfig, PeerStats, Tunnel};
use crate::namespace::netsetup::{self, NetOps};
use crate::publish::Publisher;
use crate::reresolve::Names;
use base64::Engine;
use std::io::{self, BufRead, BufReader, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use wgconf::{Config, Endpoint};

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
    /// Published ports (`up -p`, `exec -p`).
    pub publisher: Publisher,
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
            published: self.publisher.status(),
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
                    let Ok(stream) = stream else {
                        // Out of descriptors, say: accept fails at once while the
                        // request waits, so pause instead of spinning.
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        continue;
                    };
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
        // The first read takes the descriptors a `publish` carries with its first bytes.
        let (first, fds, truncated) = receive_with_fds(&stream)?;
        let mut reader = BufReader::new(io::Cursor::new(first).chain(&stream));
        let mut request = String::new();
        reader.by_ref().take(64).read_line(&mut request)?;
        let answer = match Request::parse(&request) {
            Request::Status => serde_json::to_string(&self.status()),
            Request::Reload(len) => {
                let reply = match read_reload(&mut reader, len) {
                    Ok((text, names)) => self.reload(&text, names),
                    Err(e) => ReloadReply::failed(e),
                };
                serde_json::to_string(&reply)
            }
            Request::Publish(owner) => {
                let reply = match self.publish(&mut reader, owner, fds, truncated, peer.pid) {
                    Ok(()) => PublishReply {
                        ok: true,
                        error: None,
                    },
                    Err(e) => PublishReply {
                        ok: false,
                        error: Some(e),
                    },
                };
                serde_json::to_string(&reply)
            }
            Request::Unknown => Ok(String::from("{\"error\":\"unknown request\"}")),
        }
        .map_err(io::Error::other)?;
        (&stream).write_all(answer.as_bytes())?;
        (&stream).write_all(b"\n")
    }

    /// `publish session|command`: the specs, one handed-over listener each.
    fn publish(
        &self,
        reader: &mut impl Read,
        owner: &str,
        fds: Vec<OwnedFd>,
        truncated: bool,
        peer: rustix::process::Pid,
    ) -> Result<(), String> {
        let owner = Owner::from_word(owner).ok_or("bad publish request")?;
        let mut text = String::new();
        reader
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| format!("reading the publish request: {e}"))?;
        let specs = publish::parse_request_body(&text, fds.len(), truncated)?;
        let owner = match owner {
            Owner::Session => None,
            Owner::Command => {
                // The requester waits for our answer, so its PID names it still.
                let pidfd = rustix::process::pidfd_open(peer, rustix::process::PidfdFlags::empty())
                    .map_err(|e| format!("watch the requesting process: {e}"))?;
                Some((peer.as_raw_nonzero().get() as u32, pidfd))
            }
        };
        self.publisher
            .add(specs.into_iter().zip(fds).collect(), owner)
    }
}

/// One `recvmsg` of up to 64 KiB: the bytes, the descriptors that came with them
/// (close-on-exec), and whether some descriptors were cut off.
fn receive_with_fds(stream: &UnixStream) -> io::Result<(Vec<u8>, Vec<OwnedFd>, bool)> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};
    let mut bytes = vec![0u8; 64 * 1024];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_PORTS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(
        stream,
        &mut [IoSliceMut::new(&mut bytes)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )?;
    bytes.truncate(got.bytes);
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = message {
            fds.extend(received);
        }
    }
    Ok((bytes, fds, got.flags.contains(ReturnFlags::CTRUNC)))
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
