//! The relay thread: one epoll set for every listener, connection, flow and owner.
//!
//! Every registered descriptor's token is a [`Source`]: what it is and its index in
//! one of the loop's tables. One `match` dispatches them:
//! - `Wake`: the control server queued new listeners ([`super::Publisher::add`]);
//! - `Listener`: a TCP listener to accept from, or a UDP host socket to read;
//! - `Owner`: the pidfd of an `exec` whose ports end with it;
//! - `Client`/`Inner`: a relayed TCP connection's sockets (edge-triggered);
//! - `Flow`: a UDP flow's socket inside the namespace.
//!
//! The thread lives in the supervisor's network namespace, so the sockets it creates
//! (the inner ends) are there; the host listeners came from the host namespace.

use super::tcp::{self, Conn, Side};
use super::udp::{self, Flow};
use super::{lock, Batch, PortInfo, Shared, Slab};
use crate::contract::publish::Proto;
use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{self, SocketFlags};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often idle UDP flows are looked for, while there are any.
const SWEEP: Duration = Duration::from_secs(1);
/// Descriptors a relayed TCP connection holds: the accepted client, the socket inside
/// the namespace, and a pipe (two descriptors) per direction.
const TCP_FDS: usize = 6;
/// Descriptors a UDP flow holds: its socket inside the namespace.
const FLOW_FDS: usize = 1;
/// Descriptors left to the rest of the supervisor whatever the relay holds: control
/// requests, the session directory, a pidfd per wrapped process (at least this many,
/// and at least a quarter of the limit).
const RESERVED_FDS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Wake,
    Listener(usize),
    Owner(usize),
    Client(usize),
    Inner(usize),
    Flow(usize),
}

impl Source {
    fn data(self) -> EventData {
        let (kind, index) = match self {
            Source::Wake => (0, 0),
            Source::Listener(i) => (1, i),
            Source::Owner(i) => (2, i),
            Source::Client(i) => (3, i),
            Source::Inner(i) => (4, i),
            Source::Flow(i) => (5, i),
        };
        EventData::new_u64((kind << 32) | index as u64)
    }

    fn from_data(data: EventData) -> Option<Source> {
        let (kind, index) = (data.u64() >> 32, (data.u64() & 0xffff_ffff) as usize);
        Some(match kind {
            0 => Source::Wake,
            1 => Source::Listener(index),
            2 => Source::Owner(index),
            3 => Source::Client(index),
            4 => Source::Inner(index),
            5 => Source::Flow(index),
            _ => return None,
        })
    }
}

enum Kind {
    Tcp(OwnedFd),
    Udp(udp::Port),
}

struct Port {
    info: Arc<PortInfo>,
    kind: Kind,
}

struct Owner {
    pidfd: OwnedFd,
    ports: Vec<usize>,
}

pub(super) struct Loop {
    shared: Arc<Shared>,
    epoll: OwnedFd,
    ports: Slab<Port>,
    owners: Slab<Owner>,
    conns: Slab<Conn>,
    flows: Slab<Flow>,
    /// One datagram at a time (UDP); allocated once.
    buf: Vec<u8>,
    udp_idle: Duration,
    /// TCP listeners that stopped accepting for want of descriptors: tried again when
    /// a connection closes or a flow expires (being edge-triggered, they would not
    /// wake us otherwise).
    stalled: Vec<usize>,
    /// Descriptors relayed connections and flows may hold together. Anyone who can
    /// reach a published port could otherwise open connections until the process is
    /// out of descriptors, and the session's other threads (which then fail to open
    /// anything) with it. At the budget, clients wait in the listener's backlog.
    fd_budget: usize,
}

/// Start the relay thread.
pub(super) fn spawn(
    shared: Arc<Shared>,
    udp_idle: Duration,
    fd_budget: Option<usize>,
) -> io::Result<()> {
    let limit = raise_descriptor_limit();
    let budget = fd_budget.unwrap_or_else(|| budget_of(limit));
    let mut l = Loop::new(shared, udp_idle, budget)?;
    std::thread::Builder::new()
        .name("publish".into())
        .spawn(move || l.run())?;
    Ok(())
}

/// Each relayed connection holds six descriptors (two sockets, two pipes): take the
/// hard limit rather than the 1024 most sessions start with. Returns the limit now
/// in force.
fn raise_descriptor_limit() -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    let now = getrlimit(Resource::Nofile).current;
    now.map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX))
}

/// What the relay may hold of a descriptor limit of `limit` (see `Loop::fd_budget`).
fn budget_of(limit: usize) -> usize {
    limit.saturating_sub(RESERVED_FDS.max(limit / 4))
}

impl Loop {
    fn new(shared: Arc<Shared>, udp_idle: Duration, fd_budget: usize) -> io::Result<Loop> {
        let epoll = epoll::create(CreateFlags::CLOEXEC)?;
        epoll::add(&epoll, &shared.wake, Source::Wake.data(), EventFlags::IN)?;
        Ok(Loop {
            shared,
            epoll,
            ports: Slab::new(),
            owners: Slab::new(),
            conns: Slab::new(),
            flows: Slab::new(),
            buf: vec![0; 65536],
            udp_idle,
            stalled: Vec::new(),
            fd_budget,
        })
    }

    /// Whether `more` descriptors fit in the budget next to what connections and
    /// flows hold now.
    fn fits(&self, more: usize) -> bool {
        self.conns.len() * TCP_FDS + self.flows.len() * FLOW_FDS + more <= self.fd_budget
    }

    /// Let a listener that stopped accepting wait for descriptors to come free.
    fn stall(&mut self, i: usize) {
        if !self.stalled.contains(&i) {
            self.stalled.push(i);
        }
    }

    /// Descriptors came free: the stalled listeners accept again.
    fn retry_stalled(&mut self) {
        for i in std::mem::take(&mut self.stalled) {
            self.on_listener(i);
        }
    }

    fn run(&mut self) {
        let mut events: Vec<Event> = Vec::with_capacity(256);
        let mut last_sweep = Instant::now();
        loop {
            let timeout = (!self.flows.is_empty()).then(|| Timespec {
                tv_sec: SWEEP.as_secs() as i64,
                tv_nsec: SWEEP.subsec_nanos() as i64,
            });
            events.clear();
            match epoll::wait(
                &self.epoll,
                rustix::buffer::spare_capacity(&mut events),
                timeout.as_ref(),
            ) {
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => {
                    eprintln!("wg-wrap supervisor: port relay stopped: epoll_wait: {e}");
                    return;
                }
            }
            for event in &events {
                let Some(source) = Source::from_data(event.data) else {
                    continue;
                };
                self.dispatch(source, event.flags);
            }
            if !self.flows.is_empty() && last_sweep.elapsed() >= SWEEP.min(self.udp_idle) {
                self.expire_flows();
                last_sweep = Instant::now();
            }
        }
    }

    fn dispatch(&mut self, source: Source, flags: EventFlags) {
        match source {
            Source::Wake => self.take_new_ports(),
            Source::Listener(i) => self.on_listener(i),
            Source::Owner(i) => self.on_owner(i),
            Source::Client(i) => self.on_conn(i, Side::Client, flags),
            Source::Inner(i) => self.on_conn(i, Side::Inner, flags),
            Source::Flow(i) => self.on_flow(i),
        }
    }

    fn take_new_ports(&mut self) {
        let mut counter = [0u8; 8];
        let _ = rustix::io::read(&self.shared.wake, &mut counter);
        let batches: Vec<Batch> = std::mem::take(&mut *lock(&self.shared.queue));
        for batch in batches {
            let mut indices = Vec::new();
            for (info, fd) in batch.ports {
                let kind = match info.spec.proto {
                    Proto::Tcp => Kind::Tcp(fd),
                    Proto::Udp => Kind::Udp(udp::Port::new(fd, info.spec.host_ip.is_ipv6())),
                };
                let i = self.ports.insert(Port { info, kind });
                let (fd, flags) = match &self.ports.get_mut(i).map(|p| &p.kind) {
                    Some(Kind::Tcp(fd)) => (fd.as_fd(), EventFlags::IN | EventFlags::ET),
                    Some(Kind::Udp(u)) => (u.socket.as_fd(), EventFlags::IN),
                    None => continue,
                };
                if let Err(e) = epoll::add(&self.epoll, fd, Source::Listener(i).data(), flags) {
                    eprintln!("wg-wrap supervisor: cannot watch a published port: {e}");
                }
                indices.push(i);
            }
            if let Some(pidfd) = batch.owner {
                let o = self.owners.insert(Owner {
                    pidfd,
                    ports: indices,
                });
                let Some(owner) = self.owners.get_mut(o) else {
                    continue;
                };
                if let Err(e) = epoll::add(
                    &self.epoll,
                    &owner.pidfd,
                    Source::Owner(o).data(),
                    EventFlags::IN,
                ) {
                    eprintln!("wg-wrap supervisor: cannot watch a publishing command: {e}");
                }
            }
        }
    }

    fn on_listener(&mut self, i: usize) {
        let Some(port) = self.ports.get_mut(i) else {
            return;
        };
        let info = port.info.clone();
        if let Kind::Udp(_) = port.kind {
            return self.on_udp_host(i, info);
        }
        loop {
            if !self.fits(TCP_FDS) {
                // At the budget: the rest wait in the backlog until a connection
                // closes or a flow expires.
                return self.stall(i);
            }
            let Some(Port {
                kind: Kind::Tcp(listener),
                ..
            }) = self.ports.get_mut(i)
            else {
                return;
            };
            match net::accept_with(&*listener, SocketFlags::CLOEXEC | SocketFlags::NONBLOCK) {
                Ok(client) => {
                    if !self.relay(i, client, &info) {
                        return self.stall(i);
                    }
                }
                Err(Errno::INTR) | Err(Errno::CONNABORTED) => {}
                Err(Errno::AGAIN) => return,
                // Out of descriptors or memory all the same: as at the budget.
                Err(_) => return self.stall(i),
            }
        }
    }

    /// Start relaying an accepted client of port `i`; false when the process ran out
    /// of descriptors or memory doing so (that client is lost; the listener should
    /// wait before accepting more).
    fn relay(&mut self, i: usize, client: OwnedFd, info: &Arc<PortInfo>) -> bool {
        let conn = match Conn::open(i, client, info.spec.ns_addr(), info.clone()) {
            Ok(conn) => conn,
            Err(e) => return !crate::sys::is_exhaustion(&e),
        };
        let c = self.conns.insert(conn);
        let Some(conn) = self.conns.get_mut(c) else {
            return true;
        };
        let flags = EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET;
        let added = epoll::add(&self.epoll, &conn.client, Source::Client(c).data(), flags)
            .and_then(|()| epoll::add(&self.epoll, &conn.inner, Source::Inner(c).data(), flags));
        if added.is_err() {
            self.conns.remove(c);
        }
        true
    }

    fn on_udp_host(&mut self, i: usize, info: Arc<PortInfo>) {
        for _ in 0..udp::HOST_BATCH {
            let room = self.fits(FLOW_FDS);
            let Some(Port {
                kind: Kind::Udp(port),
                ..
            }) = self.ports.get_mut(i)
            else {
                return;
            };
            let Some((n, key)) = udp::receive(&port.socket, &mut self.buf) else {
                return;
            };
            let f = match port.flows.get(&key) {
                Some(&f) => f,
                None => {
                    if port.flows.len() >= udp::MAX_FLOWS || !room {
                        continue;
                    }
                    let Ok(flow) = Flow::open(i, key, info.spec.ns_addr(), info.clone()) else {
                        continue;
                    };
                    let f = self.flows.insert(flow);
                    port.flows.insert(key, f);
                    let Some(flow) = self.flows.get_mut(f) else {
                        continue;
                    };
                    if epoll::add(
                        &self.epoll,
                        &flow.socket,
                        Source::Flow(f).data(),
                        EventFlags::IN,
                    )
                    .is_err()
                    {
                        port.flows.remove(&key);
                        self.flows.remove(f);
                        continue;
                    }
                    f
                }
            };
            if let Some(flow) = self.flows.get_mut(f) {
                udp::forward(flow, &self.buf[..n]);
            }
        }
    }

    fn on_flow(&mut self, f: usize) {
        let Some(flow) = self.flows.get_mut(f) else {
            return;
        };
        let Some(Port {
            kind: Kind::Udp(port),
            ..
        }) = self.ports.get_mut(flow.port)
        else {
            return;
        };
        udp::replies(flow, &port.socket, &mut self.buf);
    }

    fn expire_flows(&mut self) {
        let before = self.flows.len();
        self.remove_idle_flows();
        if self.flows.len() < before {
            self.retry_stalled();
        }
    }

    fn remove_idle_flows(&mut self) {
        let now = Instant::now();
        for f in self.flows.indices() {
            let Some(flow) = self.flows.get_mut(f) else {
                continue;
            };
            if now.duration_since(flow.last) < self.udp_idle {
                continue;
            }
            let (port, key) = (flow.port, (flow.client, flow.local));
            if let Some(Port {
                kind: Kind::Udp(p), ..
            }) = self.ports.get_mut(port)
            {
                p.flows.remove(&key);
            }
            self.flows.remove(f);
        }
    }

    fn on_conn(&mut self, c: usize, side: Side, flags: EventFlags) {
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        if conn.on_event(side, flags.contains(EventFlags::ERR)) == tcp::State::Closed {
            // Closing the sockets also takes them out of the epoll set.
            self.conns.remove(c);
            self.retry_stalled();
        }
    }

    /// The owner's pidfd became readable: the process exited; its ports end.
    fn on_owner(&mut self, o: usize) {
        let Some(owner) = self.owners.get_mut(o) else {
            return;
        };
        let mut fds = [PollFd::new(&owner.pidfd, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        if !matches!(poll(&mut fds, Some(&zero)), Ok(n) if n > 0) {
            return;
        }
        let Some(owner) = self.owners.remove(o) else {
            return;
        };
        for p in owner.ports {
            self.remove_port(p);
        }
    }

    fn remove_port(&mut self, p: usize) {
        let Some(port) = self.ports.remove(p) else {
            return;
        };
        for c in self.conns.indices() {
            if self.conns.get_mut(c).is_some_and(|conn| conn.port == p) {
                self.conns.remove(c);
            }
        }
        if let Kind::Udp(u) = &port.kind {
            for &f in u.flows.values() {
                self.flows.remove(f);
            }
        }
        lock(&self.shared.table).retain(|info| !Arc::ptr_eq(info, &port.info));
        self.stalled.retain(|&i| i != p);
        self.retry_stalled();
    }
}
