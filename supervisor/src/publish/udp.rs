//! UDP relaying: a flow per client address.
//!
//! A datagram from a new client address opens a flow: a socket inside the namespace
//! connected to `NS_PORT`, so the service's replies come back on it and go out of the
//! host socket to exactly that client. Datagrams are relayed one for one (boundaries
//! kept, up to 65507 bytes); a flow with no traffic either way for the idle timeout is
//! closed. Datagrams that cannot be delivered at once are dropped, as UDP allows —
//! nothing is queued.

use super::PortInfo;
use rustix::io::Errno;
use rustix::net::{self, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
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
    /// Client address -> flow index in the event loop's table.
    pub flows: HashMap<SocketAddr, usize>,
}

pub struct Flow {
    pub port: usize,
    pub client: SocketAddr,
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
    /// A socket connected to `to` inside the namespace for datagrams from `client`.
    pub fn open(
        port: usize,
        client: SocketAddr,
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
            client,
            socket,
            last: Instant::now(),
            info,
        })
    }
}

/// One datagram from the host socket: `Some((bytes, client))`, or `None` when there
/// is nothing more to read now.
pub fn receive(socket: &OwnedFd, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    loop {
        match net::recvfrom(socket, &mut *buf, RecvFlags::empty()) {
            Ok((n, _, Some(addr))) => match SocketAddr::try_from(addr) {
                Ok(addr) => return Some((n, addr)),
                Err(_) => continue,
            },
            Ok((_, _, None)) => continue,
            Err(Errno::INTR) => continue,
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
                let _ = net::sendto(host, &buf[..n], SendFlags::NOSIGNAL, &flow.client);
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
