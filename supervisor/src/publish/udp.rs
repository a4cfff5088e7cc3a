//! UDP relaying: a flow per client address.
//!
//! A datagram from a new client address opens a flow: a socket inside the namespace
//! connected to `NS_PORT`, so the service's replies come back on it and go out of the
//! host socket to exactly that client. Datagrams are relayed one for one (boundaries
//! kept, up to 65507 bytes); a flow with no traffic either way for the idle timeout is
//! closed. Datagrams that cannot be delivered at once are dropped, as UDP allows —
//! nothing is queued. Answers leave from the local address the client sent to (a
//! port published on every address has several; `crate::sys::pktinfo`), so a flow
//! is a client address and the local address it talks to.

use super::PortInfo;
use crate::sys::pktinfo;
use rustix::io::Errno;
use rustix::net::{self, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

/// Most flows one published port keeps; datagrams from further clients are dropped
/// until some expire (each flow holds a descriptor).
pub const MAX_FLOWS: usize = 4096;
/// Most datagrams relayed per readiness event, so one busy socket cannot starve the
/// others (the sockets are level-triggered: the rest is picked up next round).
const BATCH: usize = 64;

/// The host side of a published UDP port.
pub struct Port {
    pub socket: OwnedFd,
    /// (client address, local address it sent to) -> flow index in the event loop's
    /// table.
    pub flows: HashMap<FlowKey, usize>,
}

/// A client and the local address it sends to (`None` where the kernel did not say).
pub type FlowKey = (SocketAddr, Option<IpAddr>);

impl Port {
    /// Take over a bound host socket, asking the kernel for each datagram's local
    /// address (without it, answers leave from wherever the routes say).
    pub fn new(socket: OwnedFd, ipv6: bool) -> Port {
        let _ = pktinfo::enable(socket.as_fd(), ipv6);
        Port {
            socket,
            flows: HashMap::new(),
        }
    }
}

pub struct Flow {
    pub port: usize,
    pub client: SocketAddr,
    /// The local address the client sends to; answers leave from it.
    pub local: Option<IpAddr>,
    pub socket: OwnedFd,
    pub last: Instant,
    info: Arc<PortInfo>,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.info.closed();
    }
}

impl Flow {
    /// A socket connected to `to` inside the namespace for datagrams from `key`'s
    /// client.
    pub fn open(
        port: usize,
        key: FlowKey,
        to: SocketAddr,
        info: Arc<PortInfo>,
    ) -> std::io::Result<Flow> {
        let family = match to {
            SocketAddr::V4(_) => AddressFamily::INET,
            SocketAddr::V6(_) => AddressFamily::INET6,
        };
        let socket = net::socket_with(
            family,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )?;
        net::connect(&socket, &to)?;
        info.opened();
        Ok(Flow {
            port,
            client: key.0,
            local: key.1,
            socket,
            last: Instant::now(),
            info,
        })
    }
}

/// One datagram from the host socket: `Some((bytes, flow key))`, or `None` when
/// there is nothing more to read now.
pub fn receive(socket: &OwnedFd, buf: &mut [u8]) -> Option<(usize, FlowKey)> {
    loop {
        match pktinfo::recv(socket.as_fd(), buf) {
            Ok(d) => match d.from {
                Some(from) => return Some((d.len, (from, d.to))),
                None => continue,
            },
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            // AGAIN, or an error queued by an earlier send: either way, no datagram.
            Err(_) => return None,
        }
    }
}

/// Relay what waits on a flow's socket back to its client through `host`; returns
/// whether anything moved.
pub fn replies(flow: &mut Flow, host: &OwnedFd, buf: &mut [u8]) -> bool {
    let mut moved = false;
    for _ in 0..BATCH {
        match net::recv(&flow.socket, &mut *buf, RecvFlags::empty()) {
            Ok((n, _)) => {
                let answer = &buf[..n];
                if pktinfo::send(host.as_fd(), answer, flow.client, flow.local).is_err() {
                    // A source the kernel will not take (say, a link-local address
                    // without its interface): let the routes choose, as before.
                    let _ = pktinfo::send(host.as_fd(), answer, flow.client, None);
                }
                moved = true;
            }
            Err(Errno::INTR) => continue,
            // AGAIN, or ECONNREFUSED (nothing listens on NS_PORT): nothing to relay.
            Err(_) => break,
        }
    }
    if moved {
        flow.last = Instant::now();
    }
    moved
}

/// Send one datagram into the namespace (dropped if it cannot go now).
pub fn forward(flow: &mut Flow, datagram: &[u8]) {
    let _ = net::send(&flow.socket, datagram, SendFlags::NOSIGNAL);
    flow.last = Instant::now();
}

/// How many datagrams to take from the host socket per event.
pub const HOST_BATCH: usize = BATCH;
