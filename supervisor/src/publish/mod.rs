//! Port publishing (host -> namespace): the listeners the CLI opened on the host and
//! handed over, and the relays from them to `127.0.0.1:NS_PORT` (or `[::1]`) inside
//! the namespace.
//!
//! - `mod.rs`: the [`Publisher`] the control server hands new listeners to, and the
//!   table `status` reads;
//! - `event_loop.rs`: one thread, one epoll set, a closed enum of event sources;
//!   started with the session (it sleeps in `epoll_wait` until a port is published,
//!   and no thread needs to be created once the session runs);
//! - `tcp.rs`: a relayed connection, spliced both ways through a pipe per direction
//!   (the pipe is the fixed per-direction buffer: backpressure, never a heap queue);
//! - `udp.rs`: a flow per client address with its own socket inside, idle flows
//!   expire.
//!
//! Every descriptor here is close-on-exec, and the supervisor never starts a program:
//! a host listener can reach no wrapped process.

mod event_loop;
mod tcp;
mod udp;

use crate::contract::publish::{Proto, PublishSpec, PublishedPort};
use rustix::event::{eventfd, EventfdFlags};
use rustix::net::sockopt;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a UDP flow lives without a datagram either way.
pub const UDP_IDLE: Duration = Duration::from_secs(60);

/// A published port's entry in the table `status` reads.
pub struct PortInfo {
    pub spec: PublishSpec,
    pub owner_pid: Option<u32>,
    pub active: AtomicU64,
    pub total: AtomicU64,
}

impl PortInfo {
    fn opened(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }
    fn closed(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Listeners handed over in one request, for the event loop to take on.
pub(crate) struct Batch {
    ports: Vec<(Arc<PortInfo>, OwnedFd)>,
    /// The process the ports live with (a pidfd), or none: the session.
    owner: Option<OwnedFd>,
}

/// Shared between the control server and the event loop.
struct Shared {
    table: Mutex<Vec<Arc<PortInfo>>>,
    queue: Mutex<Vec<Batch>>,
    /// Written to tell the loop that `queue` has work.
    wake: OwnedFd,
}

pub struct Publisher {
    shared: Arc<Shared>,
}

impl Publisher {
    pub fn new() -> io::Result<Publisher> {
        Publisher::with_limits(UDP_IDLE, None)
    }

    /// Start the relay thread, with UDP flows ending after `udp_idle` and, given
    /// `fd_budget`, at most that many descriptors held by connections and flows
    /// (otherwise a share of the process's limit).
    fn with_limits(udp_idle: Duration, fd_budget: Option<usize>) -> io::Result<Publisher> {
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let shared = Arc::new(Shared {
            table: Mutex::new(Vec::new()),
            queue: Mutex::new(Vec::new()),
            wake,
        });
        event_loop::spawn(shared.clone(), udp_idle, fd_budget)?;
        Ok(Publisher { shared })
    }

    /// Relay `ports` (listening TCP or bound UDP sockets, one per spec) from now on;
    /// with `owner` (a pidfd and its PID), until that process exits. Nothing is taken
    /// on if one socket does not match its spec.
    pub fn add(
        &self,
        ports: Vec<(PublishSpec, OwnedFd)>,
        owner: Option<(u32, OwnedFd)>,
    ) -> Result<(), String> {
        for (spec, fd) in &ports {
            check_socket(spec, fd).map_err(|e| format!("publish {spec}: {e}"))?;
        }
        let (owner_pid, owner) = owner.unzip();
        let ports: Vec<(Arc<PortInfo>, OwnedFd)> = ports
            .into_iter()
            .map(|(spec, fd)| {
                let info = Arc::new(PortInfo {
                    spec,
                    owner_pid,
                    active: AtomicU64::new(0),
                    total: AtomicU64::new(0),
                });
                (info, fd)
            })
            .collect();
        lock(&self.shared.table).extend(ports.iter().map(|(info, _)| info.clone()));
        lock(&self.shared.queue).push(Batch { ports, owner });
        rustix::io::write(&self.shared.wake, &1u64.to_ne_bytes())
            .map_err(|e| format!("wake the port relay: {e}"))?;
        Ok(())
    }

    /// The published ports with their connection counts.
    pub fn status(&self) -> Vec<PublishedPort> {
        lock(&self.shared.table)
            .iter()
            .map(|p| PublishedPort {
                spec: p.spec,
                owner_pid: p.owner_pid,
                connections: p.active.load(Ordering::Relaxed),
                total_connections: p.total.load(Ordering::Relaxed),
            })
            .collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The CLI opened the socket for `spec`; make sure it is that (a listening TCP socket
/// or a UDP socket), and non-blocking from now on.
fn check_socket(spec: &PublishSpec, fd: &OwnedFd) -> io::Result<()> {
    let ty = sockopt::socket_type(fd)?;
    let ok = match spec.proto {
        Proto::Tcp => ty == rustix::net::SocketType::STREAM && sockopt::socket_acceptconn(fd)?,
        Proto::Udp => ty == rustix::net::SocketType::DGRAM,
    };
    if !ok {
        return Err(io::Error::other(
            "the descriptor handed over is not a listening socket of that protocol",
        ));
    }
    rustix::io::ioctl_fionbio(fd, true)?;
    Ok(())
}

/// A vector with stable indices and reuse of freed ones: the loop's tokens index it.
struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Slab<T> {
    fn new() -> Slab<T> {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
    fn insert(&mut self, item: T) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.items[i] = Some(item);
                i
            }
            None => {
                self.items.push(Some(item));
                self.items.len() - 1
            }
        }
    }
    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.items.get_mut(i).and_then(Option::as_mut)
    }
    fn remove(&mut self, i: usize) -> Option<T> {
        let item = self.items.get_mut(i)?.take();
        if item.is_some() {
            self.free.push(i);
        }
        item
    }
    fn indices(&self) -> Vec<usize> {
        (0..self.items.len())
            .filter(|&i| self.items[i].is_some())
            .collect()
    }
    fn is_empty(&self) -> bool {
        self.items.len() == self.free.len()
    }
    fn len(&self) -> usize {
        self.items.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests;
